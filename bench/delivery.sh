#!/usr/bin/env bash
# Delivery throughput: herald vs Postfix's smtp-source, both into the same smtp-sink.
# Usage (as root, Postfix installed and its service stopped):
#   bench/delivery.sh [MESSAGES] [CONNECTIONS] [ROUNDS]
# Needs: postfix (smtp-sink, smtp-source), python3, sqlite3. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
CONN="${2:-8}"
ROUNDS="${3:-3}"
PORT=2599
WORK="$(mktemp -d)"
trap 'kill $SINK 2>/dev/null || true; rm -rf "$WORK"' EXIT

# BENCH_BIN: measure another build (e.g. the previous commit's) against the same sink.
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"

. bench/lib.sh
start_sink $PORT

reader_list "$N" "$WORK/list.csv"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
rate() { python3 -c "print(f'{$1/$2:.0f}')"; }

echo "messages=$N connections=$CONN rounds=$ROUNDS"
src_rates=(); herald_rates=()
for r in $(seq 1 "$ROUNDS"); do
    # smtp-source: N messages of ~5 KB over CONN parallel sessions.
    s=$(date +%s.%N)
    smtp-source -s "$CONN" -m "$N" -l 5000 -f bench@herald.example -t reader@example.com 127.0.0.1:$PORT
    e=$(date +%s.%N)
    src_rates+=("$(rate "$N" "$(python3 -c "print($e-$s)")")")

    # herald: one digest issue to N subscribers, delivered by CONN workers.
    DB="$WORK/r$r"; mkdir -p "$DB"
    export HERALD_DATABASE__URL="sqlite:$DB/herald.db" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" \
        HERALD_LOG=warn HERALD_MAIL__URL="smtp://127.0.0.1:$PORT" HERALD_DELIVERY__CONNECTIONS="$CONN" \
        HERALD_DELIVERY__BATCH_SIZE="${BATCH:-200}" HERALD_HTTP__LISTEN=127.0.0.1:0
    (cd "$DB" && "$BIN" migrate >/dev/null && "$BIN" sections add wmd --name "Weapons of Mass Destruction (WMD)" >/dev/null \
        && "$BIN" subscribers import "$WORK/list.csv" --sections wmd --preconfirmed >/dev/null \
        && "$BIN" articles import --section wmd "$OLDPWD/tests/fixtures/wmd.rss.xml" >/dev/null \
        && "$BIN" schedules add morning --cron "0 7 * * *" --sections wmd >/dev/null)
    (cd "$DB" && "$BIN" digests run morning --queue-only)
    s=$(date +%s.%N)
    (cd "$DB" && timeout 600 "$BIN" serve >"$DB/serve.log" 2>&1 &
     echo $! > "$DB/pid")
    wait_settled "$BIN" 0.1
    e=$(date +%s.%N)
    pkill -TERM -P "$(cat "$DB/pid")" 2>/dev/null || true; kill "$(cat "$DB/pid")" 2>/dev/null || true
    sent=$(cd "$DB" && "$BIN" issues list --format json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['counts'].get('sent',0))")
    herald_rates+=("$(rate "$sent" "$(python3 -c "print($e-$s)")")")
    echo "round $r: smtp-source ${src_rates[-1]} msg/s, herald ${herald_rates[-1]} msg/s ($sent sent)"
done
ms=$(printf '%s\n' "${src_rates[@]}" | median)
mh=$(printf '%s\n' "${herald_rates[@]}" | median)
echo "median: smtp-source $ms msg/s, herald $mh msg/s, ratio herald/smtp-source $(python3 -c "print(f'{$mh/$ms:.2f}')")"
