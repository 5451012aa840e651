# Shared by the bench scripts (sourced, not run).

# Start Postfix's smtp-sink on 127.0.0.1:$1 in the background; sets SINK to its pid.
start_sink() {
    smtp-sink -u nobody -c "127.0.0.1:$1" 1000 >/dev/null 2>&1 &
    SINK=$!
    sleep 0.5
}

# Print the database URL for a run: a new SQLite file in folder $2 when $1 is "sqlite",
# else $1 (a postgres:// URL), emptied first.
fresh_db() {
    if [ "$1" = sqlite ]; then
        echo "sqlite:$2/herald.db"
    else
        psql "$1" -qc "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
        echo "$1"
    fi
}

# Whether any send is still queued or being sent, asked of the database in
# $HERALD_DATABASE__URL with one cheap query. (A `herald sends` process per poll costs a
# start-up, migrations check and pool each time, on the same two cores as the run it
# measures: up to a tenth of a 20,000-reader delivery.)
# With an argument, those statuses instead (e.g. "'queued', 'sending', 'retrying'").
unsettled() {
    local st="${1:-'queued', 'sending'}"
    local q="SELECT CASE WHEN EXISTS (SELECT 1 FROM sends WHERE status IN ($st)) THEN 1 ELSE 0 END"
    case "$HERALD_DATABASE__URL" in
        sqlite:*)
            local f="${HERALD_DATABASE__URL#sqlite:}"; f="${f#//}"; f="${f%%\?*}"
            sqlite3 -cmd ".timeout 5000" "$f" "$q" ;;
        *) psql "$HERALD_DATABASE__URL" -Atc "$q" ;;
    esac
}

# Wait until nothing is queued or being sent in $HERALD_DATABASE__URL, polling every $2
# seconds. ($1, the herald binary, is kept for callers that pass it.)
wait_settled() {
    while [ "$(unsettled)" != 0 ]; do
        sleep "$2"
    done
}

# Write a CSV of $1 readers (reader0@example0.com …, over 97 domains) to file $2.
reader_list() {
    python3 - "$1" > "$2" <<'PY'
import sys
print("email")
for i in range(int(sys.argv[1])):
    print(f"reader{i}@example{i % 97}.com")
PY
}

# In the current folder, with HERALD_DATABASE__URL set: one section "wmd" with the readers
# of list.csv, the articles of feed file $1, a schedule "morning", and an issue to all of
# them queued (not delivered).
seed_issue() {
    "$BIN" migrate >/dev/null
    "$BIN" sections add wmd --name "WMD" >/dev/null
    "$BIN" subscribers import list.csv --sections wmd --preconfirmed >/dev/null
    "$BIN" articles import --section wmd "$1" >/dev/null
    "$BIN" schedules add morning --cron "0 7 * * *" --sections wmd >/dev/null
    "$BIN" digests run morning --queue-only >/dev/null
}
