#!/usr/bin/env bash
# Import N generated addresses (default 100,000) into a fresh database and time it.
# Usage: bench/import.sh [N] [database-url]   (default: a fresh SQLite file in a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
WORK="$(mktemp -d)"
DB="${2:-sqlite:$WORK/herald.db}"
cargo build --release -q
BIN="$PWD/target/release/herald"
export HERALD_DATABASE__URL="$DB" HERALD_SECRET_KEY="bench-secret-bench-secret-bench-secret-0" HERALD_LOG=warn
python3 - "$N" > "$WORK/list.csv" <<'PY'
import sys
n = int(sys.argv[1])
print("email,name")
for i in range(n):
    print(f"reader{i}@example{i % 97}.com,Reader {i}")
PY
cd "$WORK"
"$BIN" migrate >/dev/null
"$BIN" sections add wmd --name "WMD" >/dev/null
run() {
    local label="$1"; shift
    local start end
    start=$(date +%s.%N)
    "$BIN" subscribers import list.csv --sections wmd "$@"
    end=$(date +%s.%N)
    echo "$label: $(python3 -c "print(f'{$end-$start:.2f}')") s for $N rows"
}
# New addresses, double opt-in: a subscriber, a token and a queued confirmation mail each.
run "import with confirmations"
# The same file again: every row merges.
run "re-import (all merge)" --preconfirmed
rm -rf "$WORK"
