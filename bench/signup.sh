#!/usr/bin/env bash
# Signups under load: wrk posts real signups (distinct addresses, one section) to
# `herald serve` at a fixed rate; herald mails every confirmation into Postfix's smtp-sink.
# Reports requests/s and wrk's latency percentiles, then waits until every confirmation is
# delivered and counts them.
#
# Usage (as root; `apt-get install wrk postfix`, its service stopped):
#   bench/signup.sh [RATE] [SECONDS] [DATABASE]   defaults: 1000 20 sqlite
#   DATABASE: sqlite or a postgres:// URL of an empty database (it is emptied first)
# Env: CONN (wrk connections, default 50); BENCH_BIN (measure another build, e.g. the
# previous commit's). Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-1000}"
SECS="${2:-20}"
DBARG="${3:-sqlite}"
CONN="${CONN:-50}"
PORT=2597
HTTP=127.0.0.1:18087
WORK="$(mktemp -d)"
trap 'kill ${SINK:-0} ${PID:-0} 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
. bench/lib.sh
start_sink $PORT
DB=$(fresh_db "$DBARG" "$WORK")
export HERALD_DATABASE__URL="$DB" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" \
    HERALD_LOG=warn HERALD_MAIL__URL="smtp://127.0.0.1:$PORT" HERALD_HTTP__LISTEN="$HTTP" \
    HERALD_HTTP__PUBLIC_URL="http://$HTTP" HERALD_SUBSCRIPTIONS__RATE_LIMIT_PER_IP=100000000
cd "$WORK"
"$BIN" migrate >/dev/null
"$BIN" sections add wmd --name "WMD" >/dev/null
"$BIN" serve >serve.log 2>&1 &
PID=$!
for _ in $(seq 1 50); do curl -sf "http://$HTTP/healthz" >/dev/null && break; sleep 0.1; done
# Two wrk threads, each sending one request every 2000/RATE ms (see signup.lua).
INTERVAL_MS=$(python3 -c "print(2000 / $RATE)") wrk -t2 -c"$CONN" -d"${SECS}s" --latency \
    -s "$OLDPWD/bench/signup.lua" "http://$HTTP" > wrk.txt
rps=$(awk '/Requests\/sec/ {print $2}' wrk.txt)
p50=$(awk '$1 == "50%" {print $2}' wrk.txt)
p99=$(awk '$1 == "99%" {print $2}' wrk.txt)
errors=$(awk '/Non-2xx/ {print $5}' wrk.txt)
# Every accepted signup's confirmation goes out.
wait_settled "$BIN" 0.5
sent=$("$BIN" sends --status sent --limit 100000000 | wc -l)
pending=$("$BIN" subscribers list --status pending | wc -l)
echo "database=${DBARG%%:*} target=${RATE}/s connections=$CONN: ${rps} requests/s, p50 ${p50}, p99 ${p99}, non-2xx ${errors:-0}; pending subscribers ${pending}, confirmations sent ${sent}"
