#!/usr/bin/env python3
"""A local SMTP sink for bench/crash.sh that refuses a share of messages with 451 (as a
greylisting or rate-limiting server does) and writes every accepted one to its own file.

Usage: greylist_sink.py PORT DUMP_DIR SHARE    e.g. 2598 /tmp/dump 0.2
Python 3.11's smtpd/asyncore (deprecated, gone in 3.12; Debian 12 ships 3.11). Listens on
127.0.0.1 only.
"""
import asyncore
import os
import random
import smtpd
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

port, dump, share = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
counter = 0


class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        global counter
        if random.random() < share:
            return "451 4.7.1 Greylisted, try again later"
        counter += 1
        with open(os.path.join(dump, f"{os.getpid()}.{counter}"), "wb") as f:
            f.write(data)
        return None


Sink(("127.0.0.1", port), None, decode_data=False)
asyncore.loop()
