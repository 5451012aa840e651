#!/usr/bin/env bash
# A full disk under the SQLite database while `herald serve` delivers an issue: the
# database lives on a small ext4 file system of its own (a loop device), which is filled
# to the last block for FULL_SECONDS mid-issue and then emptied again.
#
# Usage (as root; `apt-get install postfix`, its service stopped; needs loop devices):
#   bench/fulldisk.sh [READERS] [FULL_SECONDS]      default 20000 30
# Env: RATE (messages/s, default 400, so the issue outlasts the outage), BENCH_BIN,
# KEEP=1 (keep the work folder with serve.log).
#
# Prints, second by second while the disk is full, what /healthz answered and how many
# messages reached the relay; then how long after the space came back delivery and
# /healthz recovered, and the final count: readers without the digest, duplicates, ledger.
# Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
N="${1:-20000}"
FULL="${2:-30}"
RATE="${RATE:-400}"
PORT=2595
HTTP=2594
METRICS=2593
WORK="$(mktemp -d)"
MNT="$WORK/disk"
cleanup() {
    kill "${PID:-0}" "${SINK:-0}" 2>/dev/null || true
    wait "${PID:-0}" 2>/dev/null || true
    umount "$MNT" 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK (serve.log)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
. bench/lib.sh

truncate -s 256M "$WORK/disk.img"
mkfs.ext4 -q "$WORK/disk.img"
mkdir "$MNT"
mount -o loop "$WORK/disk.img" "$MNT"

chmod 755 "$WORK" && mkdir -p "$WORK/dump" && chmod 777 "$WORK/dump"
smtp-sink -u nobody -d "$WORK/dump/%H%M%S." 127.0.0.1:$PORT 1000 >/dev/null 2>&1 &
SINK=$!
sleep 0.5

reader_list "$N" "$WORK/list.csv"
export HERALD_DATABASE__URL="sqlite:$MNT/herald.db" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" \
    HERALD_LOG=warn HERALD_MAIL__URL="smtp://127.0.0.1:$PORT" HERALD_DELIVERY__RATE_PER_SECOND="$RATE" \
    HERALD_HTTP__LISTEN="127.0.0.1:$HTTP" HERALD_HTTP__METRICS_LISTEN="127.0.0.1:$METRICS"
cd "$WORK"
seed_issue "$ROOT/tests/fixtures/wmd.rss.xml"

delivered() { find "$WORK/dump" -type f | wc -l; }
health() { curl -s -o "$WORK/h" -w '%{http_code}' "http://127.0.0.1:$HTTP/healthz" || echo 000; }
errors() { curl -s "http://127.0.0.1:$METRICS/metrics" | awk '/^herald_job_errors_total/ {s += $2} END {print s + 0}'; }

"$BIN" serve >"$WORK/serve.log" 2>&1 &
PID=$!
sleep 10
echo "readers=$N rate=$RATE/s disk=256M ext4; before the disk fills: $(delivered) delivered, /healthz $(health)"

# Fill every block (root may use the reserved ones too, as herald, running as root, does).
dd if=/dev/zero of="$MNT/filler" bs=1M status=none 2>/dev/null || true
dd if=/dev/zero of="$MNT/filler2" bs=4k status=none 2>/dev/null || true
echo "disk full: $(df --output=avail -B1 "$MNT" | tail -1) bytes free"
e0=$(errors)
for s in $(seq 1 "$FULL"); do
    code=$(health)
    why=$(sed -n 2p "$WORK/h" | cut -c1-110)
    echo "  full +${s}s: delivered $(delivered), /healthz $code ${why}"
    if [ -n "${GDB_AT:-}" ] && [ "$s" = "$GDB_AT" ]; then
        gdb -p "$PID" -batch -ex "thread apply all bt 12" > "$WORK/gdb.txt" 2>&1 || true
    fi
    sleep 1
done
echo "job errors counted while full: $(( $(errors) - e0 ))"

rm -f "$MNT/filler" "$MNT/filler2"
t0=$(date +%s.%N)
before=$(delivered)
while [ "$(delivered)" = "$before" ]; do sleep 0.05; done
t1=$(date +%s.%N)
while [ "$(health)" != 200 ]; do sleep 0.1; done
t2=$(date +%s.%N)
echo "space back: next delivery after $(python3 -c "print(round($t1-$t0, 2))")s, /healthz 200 after $(python3 -c "print(round($t2-$t0, 2))")s"

wait_settled "$BIN" 0.5
kill "$PID"; wait "$PID" 2>/dev/null || true
find "$WORK/dump" -type f -exec grep -a -i -h '^Message-ID:' {} + | sort > "$WORK/ids"
total=$(wc -l < "$WORK/ids")
unique=$(uniq < "$WORK/ids" | wc -l)
echo "readers without the digest: $((N - unique)); duplicates: $((total - unique))"
echo "ledger: $("$BIN" issues list --format json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['counts'])")"
echo "serve log lines while it lasted: $(wc -l < "$WORK/serve.log") (first: $(head -c 200 "$WORK/serve.log" | head -1))"
