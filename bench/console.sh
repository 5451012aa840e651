#!/usr/bin/env bash
# The console's pages on a large ledger: N readers (default 1,000,000), one issue to all of
# them, its sends settled as a real run leaves them (mostly sent, 1% failed, 0.5% bounced,
# changed over three hours), then the median time of each page over 15 requests, first page
# and deep pages alike (keyset pagination: a deep page should cost what the first does).
# Env: KEEP=1 keeps the work folder (and its database) to look into afterwards.
# Usage: bench/console.sh [DATABASE] [N]     DATABASE: sqlite (default) or a postgres:// URL
#                                             (its public schema is emptied first).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DBARG="${1:-sqlite}"
N="${2:-1000000}"
WORK="$(mktemp -d)"
PORT=18391
cleanup() {
    [ -n "${SERVE:-}" ] && kill "$SERVE" 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
DB="$(fresh_db "$DBARG" "$WORK")"
export HERALD_DATABASE__URL="$DB" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" HERALD_LOG=warn
export HERALD_HTTP__LISTEN="127.0.0.1:$PORT" HERALD_HTTP__PUBLIC_URL="http://127.0.0.1:$PORT"
# Nothing is left to deliver, but point mail where nothing answers all the same.
export HERALD_MAIL__URL="smtp://127.0.0.1:9"
reader_list "$N" "$WORK/list.csv"
cd "$WORK"
seed_issue "$OLDPWD/tests/fixtures/wmd.rss.xml"
# Settle every send as a run would: outcome by id, changed times spread over 3 hours.
SETTLE="UPDATE sends SET attempts = 1,
  status = CASE WHEN id % 200 = 3 THEN 'bounced' WHEN id % 100 = 7 THEN 'failed' ELSE 'sent' END,
  last_reply = CASE WHEN id % 200 = 3 THEN '550 5.1.1 <x@example.com>: user unknown'
                    WHEN id % 100 = 7 THEN '554 5.7.1 rejected by policy' ELSE '250 2.0.0 Ok: queued as 4FqXz' END"
case "$DB" in
    sqlite:*)
        sqlite3 "${DB#sqlite:}" "$SETTLE, updated_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', '2026-12-01 07:00:00', '+' || (id * 10800 / $N) || ' seconds'), sent_at = updated_at;" ;;
    *)
        psql "$DB" -qc "$SETTLE, updated_at = TIMESTAMPTZ '2026-12-01 07:00:00+00' + make_interval(secs => id * 10800.0 / $N), sent_at = TIMESTAMPTZ '2026-12-01 07:00:00+00' + make_interval(secs => id * 10800.0 / $N);"
        psql "$DB" -qc "VACUUM ANALYZE sends" -c "VACUUM ANALYZE subscribers" ;;
esac
echo "password for the bench only" | "$BIN" users add bench --role operator --password-stdin >/dev/null
"$BIN" serve >serve.log 2>&1 &
SERVE=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
# Log in as a browser would: the login form's token and cookie, then the session cookie.
B="http://127.0.0.1:$PORT/admin"
csrf=$(curl -s -c jar "$B/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -b jar -c jar -o /dev/null --data-urlencode "name=bench" \
    --data-urlencode "password=password for the bench only" --data-urlencode "csrf=$csrf" "$B/login"
# The session works and the log shows a full page: otherwise every figure below is wrong.
rows=$(curl -s -b jar "$B/log" | grep -c '<td class="status-')
[ "$rows" = 50 ] || { echo "the log shows $rows rows, not 50: is the login right?" >&2; exit 1; }
MID=$((N / 2))
OLD=$((N / 50))
FIND="reader$((N / 3))@example$(((N / 3) % 97)).com"
median() {
    local url="$1" t
    for _ in $(seq 1 15); do
        t=$(curl -s -b jar -o page.html -w '%{http_code} %{time_total}' "$B$url")
        [ "${t%% *}" = 200 ] || { echo "$url answered ${t%% *}" >&2; echo fail; return; }
        echo "${t#* }"
    done | sort -n | sed -n 8p
}
echo "backend: ${DB%%:*}, $N readers, one issue of $N sends (median of 15 requests, seconds)"
printf '%-58s %s\n' page median
for url in \
    "/log" \
    "/log?before=$MID" \
    "/log?before=$OLD" \
    "/log?status=failed" \
    "/log?status=failed&before=$MID" \
    "/log?status=bounced&before=$OLD" \
    "/log?status=retrying" \
    "/log?issue=1&status=sent&before=$MID" \
    "/log?address=$FIND" \
    "/log?since=2026-12-01T08:30&until=2026-12-01T08:31" \
    "/log?since=2026-12-01T08:30&until=2026-12-01T08:31&status=failed" \
    "/issues" \
    "/issues/1" \
    "/subscribers" \
    "/subscribers?before=$MID" \
    "/subscribers?q=reader$((N / 3))@" \
    "" ; do
    m="$(median "$url")"
    [ "$m" != fail ] || exit 1
    printf '%-58s %s\n' "${url:-/ (dashboard)}" "$m"
done
