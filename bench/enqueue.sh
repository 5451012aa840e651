#!/usr/bin/env bash
# Issue creation: how long one digest tick takes to write the issue and one `sends` row
# per reader, for N subscribers (default 1,000,000).
# Usage: bench/enqueue.sh [N] [database-url]   (default: a fresh SQLite file)
# Env: BENCH_BIN (measure another build, e.g. the previous commit's).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
DB="${2:-sqlite:$WORK/herald.db}"
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -q; fi
BIN="${BENCH_BIN:-$PWD/target/release/herald}"
FIX="$PWD/tests/fixtures/wmd.rss.xml"
. bench/lib.sh
export HERALD_DATABASE__URL="$DB" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" HERALD_LOG=warn
reader_list "$N" "$WORK/list.csv"
cd "$WORK"
"$BIN" migrate >/dev/null
"$BIN" sections add wmd --name "WMD" >/dev/null
s=$(date +%s.%N)
"$BIN" subscribers import list.csv --sections wmd --preconfirmed >/dev/null
e=$(date +%s.%N)
echo "import of $N preconfirmed subscribers: $(python3 -c "print(f'{$e-$s:.1f}')") s"
"$BIN" articles import --section wmd "$FIX" >/dev/null
"$BIN" schedules add morning --cron "0 7 * * *" --sections wmd >/dev/null
"$BIN" digests run morning --queue-only
