#!/usr/bin/env bash
# Delivery at list sizes: one digest issue to N readers into Postfix's smtp-sink, for each N
# given, in one run: delivery rate, enqueue time and herald serve's peak RSS (VmHWM).
# The rate should not fall with N (claims cost O(batch)) and RSS should stay flat.
#
# Usage (as root; `apt-get install postfix`, its service stopped):
#   bench/scale.sh [DATABASE] [N...]      DATABASE: sqlite (default) or a postgres:// URL of
#                                          an empty database (it is emptied between sizes)
#   e.g. bench/scale.sh sqlite 20000 1000000
# Env: CONN (connections, default 8), BATCH (batch size, default 200), BENCH_BIN (measure
# another build, e.g. an A/B of one setting, against the same sink).
# Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DBARG="${1:-sqlite}"
shift || true
SIZES=("${@:-20000 1000000}")
[ "$#" -eq 0 ] && SIZES=(20000 1000000)
CONN="${CONN:-8}"
PORT=2596
WORK="$(mktemp -d)"
trap 'kill ${SINK:-0} ${PID:-0} 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
FIX="$PWD/tests/fixtures/wmd.rss.xml"
. bench/lib.sh
start_sink $PORT

echo "database=${DBARG%%:*} connections=$CONN batch=${BATCH:-200}"
for N in "${SIZES[@]}"; do
    D="$WORK/n$N"; mkdir -p "$D"; cd "$D"
    DB=$(fresh_db "$DBARG" "$D")
    export HERALD_DATABASE__URL="$DB" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" \
        HERALD_LOG=warn HERALD_MAIL__URL="smtp://127.0.0.1:$PORT" HERALD_DELIVERY__CONNECTIONS="$CONN" \
        HERALD_DELIVERY__BATCH_SIZE="${BATCH:-200}" HERALD_HTTP__LISTEN=127.0.0.1:0
    reader_list "$N" list.csv
    "$BIN" migrate >/dev/null
    "$BIN" sections add wmd --name "Weapons of Mass Destruction (WMD)" >/dev/null
    "$BIN" subscribers import list.csv --sections wmd --preconfirmed >/dev/null
    "$BIN" articles import --section wmd "$FIX" >/dev/null
    "$BIN" schedules add morning --cron "0 7 * * *" --sections wmd >/dev/null
    s=$(date +%s.%N)
    "$BIN" digests run morning --queue-only >/dev/null
    e=$(date +%s.%N)
    enqueue=$(python3 -c "print(f'{$e-$s:.1f}')")
    s=$(date +%s.%N)
    "$BIN" serve >serve.log 2>&1 &
    PID=$!
    wait_settled "$BIN" 0.5
    e=$(date +%s.%N)
    rss=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
    kill "$PID"; wait "$PID" 2>/dev/null || true
    sent=$("$BIN" issues list --format json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['counts'].get('sent',0))")
    echo "readers=$N enqueue=${enqueue}s sent=$sent rate=$(python3 -c "print(f'{$sent/($e-$s):.0f}')") msg/s peak_rss=$((rss / 1024)) MiB"
    cd "$OLDPWD"
    rm -rf "$D"
done
