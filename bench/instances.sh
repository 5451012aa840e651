#!/usr/bin/env bash
# Several `herald serve` instances on one PostgreSQL database against one: the same
# digest issue each time, every copy counted at the relay by its Message-ID.
#
# Usage (as root; `apt-get install postfix`, its service stopped):
#   bench/instances.sh DATABASE-URL [READERS] [DELAY_MS] [COUNT...]
#     DATABASE-URL  postgres:// URL of an empty database (emptied before each run)
#     READERS       readers of the issue (default 100000)
#     DELAY_MS      how long the relay takes to accept each message: 0 (default) is Postfix's
#                   smtp-sink, as fast as this machine goes; more is bench/slow_sink.py, a
#                   relay that writes or scans each message before it answers
#     COUNT...      instance counts to run, in order (default: 1 3)
# Env: CONN (connections per instance, default 8), BENCH_BIN (another build).
# Prints per run: elapsed from the first start to nothing queued or sending, readers/s,
# readers without the digest, duplicate copies. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DBARG="${1:?a postgres:// URL}"
N="${2:-100000}"
DELAY="${3:-0}"
shift 3 2>/dev/null || shift $#
COUNTS=("$@")
[ "${#COUNTS[@]}" -eq 0 ] && COUNTS=(1 3)
CONN="${CONN:-8}"
PORT=2597
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "${SINK:-0}" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
ROOT="$PWD"
FIX="$ROOT/tests/fixtures/wmd.rss.xml"
. bench/lib.sh

reader_list "$N" "$WORK/list.csv"
chmod 755 "$WORK"

echo "readers=$N relay_delay=${DELAY}ms connections_per_instance=$CONN"
for K in "${COUNTS[@]}"; do
    D="$WORK/k$K"; mkdir -p "$D"; chmod 777 "$D"; cd "$D"
    DB=$(fresh_db "$DBARG" "$D")
    export HERALD_DATABASE__URL="$DB" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" \
        HERALD_LOG=warn HERALD_MAIL__URL="smtp://127.0.0.1:$PORT" HERALD_DELIVERY__CONNECTIONS="$CONN" \
        HERALD_HTTP__LISTEN=127.0.0.1:0
    "$BIN" migrate >/dev/null
    "$BIN" sections add wmd --name "WMD" >/dev/null
    "$BIN" subscribers import "$WORK/list.csv" --sections wmd --preconfirmed >/dev/null
    "$BIN" articles import --section wmd "$FIX" >/dev/null
    "$BIN" schedules add morning --cron "0 7 * * *" --sections wmd >/dev/null
    "$BIN" digests run morning --queue-only >/dev/null
    if [ "$DELAY" = 0 ]; then
        # -D: every accepted message appended to one file (one file per message would
        # make the sink, on the same two cores, the slowest part).
        smtp-sink -u nobody -D "$D/dump" 127.0.0.1:$PORT 1000 >/dev/null 2>&1 &
    else
        python3 "$ROOT/bench/slow_sink.py" $PORT "$D/ids" "$DELAY" >/dev/null 2>&1 &
    fi
    SINK=$!
    sleep 0.5
    PIDS=()
    s=$(date +%s.%N)
    for i in $(seq 1 "$K"); do
        "$BIN" serve >>"$D/serve.log" 2>&1 &
        PIDS+=($!)
    done
    wait_settled "$BIN" 0.2
    e=$(date +%s.%N)
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    kill "$SINK"; wait "$SINK" 2>/dev/null || true
    if [ "$DELAY" = 0 ]; then
        grep -a -i '^Message-ID:' "$D/dump" | awk '{print $2}' | sort > "$D/ids.sorted"
    else
        sort "$D/ids" > "$D/ids.sorted"
    fi
    total=$(wc -l < "$D/ids.sorted")
    unique=$(uniq < "$D/ids.sorted" | wc -l)
    echo "instances=$K elapsed=$(python3 -c "print(f'{$e-$s:.1f}')")s rate=$(python3 -c "print(f'{$N/($e-$s):.0f}')") readers/s without_digest=$((N - unique)) duplicates=$((total - unique))"
    cd "$WORK"
    rm -rf "$D"
done
