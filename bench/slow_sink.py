#!/usr/bin/env python3
"""A local SMTP sink that takes DELAY_MS to accept each message, as a relay does that
writes every message to disk (Postfix fsyncs each queue file) or scans it first, and
appends the Message-ID of every accepted message to a file so copies can be counted.

Usage: slow_sink.py PORT IDS_FILE DELAY_MS      e.g. 2597 /tmp/ids 10
Offers PIPELINING (replies are written in order, so pipelined commands just work) and
8BITMIME. asyncio, standard library only. Listens on 127.0.0.1 only. Used by
bench/instances.sh: a relay whose answer takes time is what bounds delivery per
connection, and so what several instances add to.
"""
import asyncio
import sys

port, ids_path, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) / 1000.0
ids = open(ids_path, "a", buffering=1)


async def session(reader, writer):
    writer.write(b"220 slow-sink ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-slow-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                message_id = None
                in_headers = True
                while True:
                    l = await reader.readline()
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    if in_headers:
                        if l in (b"\r\n", b"\n"):
                            in_headers = False
                        elif l[:11].lower() == b"message-id:":
                            message_id = l[11:].strip().decode("ascii", "replace")
                await asyncio.sleep(delay)
                if message_id:
                    ids.write(message_id + "\n")
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", port, backlog=1000)
    async with server:
        await server.serve_forever()


asyncio.run(main())
