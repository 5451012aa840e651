#!/usr/bin/env bash
# Crash survival: deliver one digest issue while `herald serve` is killed with SIGKILL at
# random moments and restarted, into a sink that keeps every message; then count.
#
# Usage (as root; `apt-get install postfix`, its service stopped):
#   bench/crash.sh [READERS] [KILLS] [INSTANCES] [DATABASE-URL]
#     READERS    readers of the issue (default 20000)
#     KILLS      how many SIGKILLs (default 20)
#     INSTANCES  herald serve processes on one database (default 1; >1 needs PostgreSQL)
#     DATABASE   default: a fresh SQLite file; a postgres:// URL must name an empty database
# With KILLS=0 and RATE=0 it measures plain delivery, e.g. one instance against three.
# Env: RATE (messages/s over all connections, default 400, so the issue outlasts the kills;
#      0 = unlimited),
#      CONN (connections per instance, default 8), RELAY_DOWN=SECONDS (stop the sink that
#      long in the middle of the run), PG_RESTART=1 (restart the local PostgreSQL server in
#      the middle of the run; with a postgres:// DATABASE-URL), GREYLIST=SHARE (instead of
#      smtp-sink, bench/greylist_sink.py answers 451 to that share of messages, e.g. 0.2),
#      BENCH_BIN (another build).
#
# Prints: readers without the digest (must be 0), duplicate deliveries and the bound they
# must stay under (KILLS x CONN: the messages that can be in flight at a kill), the ledger's
# final counts (all sent), and the longest gap between two deliveries after a restart.
# Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
OLDPWD_ROOT="$PWD"
N="${1:-20000}"
KILLS="${2:-20}"
INSTANCES="${3:-1}"
RATE="${RATE:-400}"
CONN="${CONN:-8}"
PORT=2598
WORK="$(mktemp -d)"
DB_URL="${4:-sqlite:$WORK/herald.db}"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    kill "${SINK:-0}" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
. bench/lib.sh
export HERALD_DATABASE__URL="$DB_URL" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" \
    HERALD_LOG=warn HERALD_MAIL__URL="smtp://127.0.0.1:$PORT" HERALD_DELIVERY__CONNECTIONS="$CONN" \
    HERALD_DELIVERY__RATE_PER_SECOND="$((RATE / INSTANCES))" HERALD_HTTP__LISTEN=127.0.0.1:0 \
    HERALD_MAIL__SEND_TIMEOUT=10s HERALD_MAIL__CONNECT_TIMEOUT=5s HERALD_DELIVERY__INITIAL_BACKOFF=5s

# The sink runs as nobody: it must reach the dump folder.
chmod 755 "$WORK" && mkdir -p "$WORK/dump" && chmod 777 "$WORK/dump"
start_relay() {
    if [ -n "${GREYLIST:-}" ]; then
        /usr/bin/python3 "$OLDPWD_ROOT/bench/greylist_sink.py" "$PORT" "$WORK/dump" "$GREYLIST" >/dev/null 2>&1 &
    else
        # -d: one file per transaction, so every delivered copy can be counted.
        smtp-sink -u nobody -d "$WORK/dump/%H%M%S." -c 127.0.0.1:$PORT 1000 >/dev/null 2>&1 &
    fi
    SINK=$!
}
start_relay
sleep 0.5

reader_list "$N" "$WORK/list.csv"
cd "$WORK"
seed_issue "$OLDPWD/tests/fixtures/wmd.rss.xml"

start() { "$BIN" serve >>"$WORK/serve.log" 2>&1 & PIDS[$1]=$!; }
delivered() { find "$WORK/dump" -type f | wc -l; }
T_START=$(date +%s.%N)
for i in $(seq 0 $((INSTANCES - 1))); do start "$i"; done

echo "readers=$N kills=$KILLS instances=$INSTANCES rate=$RATE/s connections=$CONN db=${DB_URL%%:*}"
max_gap=0
for k in $(seq 1 "$KILLS"); do
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.5, 2.5), 2))')"
    victim=$(( (k - 1) % INSTANCES ))
    kill -9 "${PIDS[$victim]}" 2>/dev/null || true
    wait "${PIDS[$victim]}" 2>/dev/null || true
    if [ -n "${RELAY_DOWN:-}" ] && [ "$k" = "$((KILLS / 2))" ]; then
        kill "$SINK"; sleep "$RELAY_DOWN"; start_relay
    fi
    if [ -n "${PG_RESTART:-}" ] && [ "$k" = "$((KILLS / 2))" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main restart
    fi
    start "$victim"
    # How long until the next delivery after this restart (a stall would show here).
    before=$(delivered); t0=$(date +%s.%N)
    while [ "$(delivered)" = "$before" ]; do
        [ "$(unsettled "'queued'")" = 0 ] && break
        sleep 0.05
    done
    gap=$(python3 -c "print(round($(date +%s.%N)-$t0, 2))")
    max_gap=$(python3 -c "print(max($max_gap, $gap))")
done
# Let them finish; then stop cleanly.
while [ "$(unsettled "'queued', 'sending', 'retrying'")" != 0 ]; do
    sleep 0.5
done
T_END=$(date +%s.%N)
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
sleep 1

# Only whole messages count: a transaction cut off by a kill may have left a partial file
# (which would hide a reader who never got the digest). Ours end with the closing boundary.
python3 - "$WORK/dump" > "$WORK/ids.raw" <<'PY'
import os, sys
for name in os.listdir(sys.argv[1]):
    data = open(os.path.join(sys.argv[1], name), "rb").read()
    if not data.rstrip().endswith(b"--"):
        continue
    for line in data.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            print(line.split(b":", 1)[1].strip().decode())
            break
PY
sort "$WORK/ids.raw" > "$WORK/ids"
total=$(wc -l < "$WORK/ids")
unique=$(uniq < "$WORK/ids" | wc -l)
echo "delivered copies: $total, distinct Message-IDs: $unique of $N readers"
echo "readers without the digest: $((N - unique))"
echo "duplicates: $((total - unique)) (bound: kills x connections = $((KILLS * CONN)))"
echo "ledger: $("$BIN" issues list --format json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['counts'])")"
echo "longest wait for the next delivery after a restart: ${max_gap}s"
echo "elapsed: $(python3 -c "print(f'{$T_END-$T_START:.1f}')")s, $(python3 -c "print(f'{$N/($T_END-$T_START):.0f}')") readers/s"
