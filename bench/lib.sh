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
        psql "$1" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
        echo "$1"
    fi
}

# Wait until herald ($1, run in the current folder's database) has nothing queued or being
# sent, polling every $2 seconds.
wait_settled() {
    while :; do
        left=$("$1" sends --status queued --limit 1 | wc -l)
        sending=$("$1" sends --status sending --limit 1 | wc -l)
        [ "$left" = 0 ] && [ "$sending" = 0 ] && break
        sleep "$2"
    done
}
