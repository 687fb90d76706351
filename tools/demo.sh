#!/bin/sh
# demo.sh BIN DATA_DIR — the guided tour behind `make run`.
#
# Walks through the evstore command on a fresh store: an order's events
# appended (two of them in one atomic append guarded by an expected
# version), read back by stream and from the global log filtered by type,
# a concurrency conflict, an idempotent retry, then info and check.  Every
# command is printed before it runs, so the output doubles as a tutorial.
#
# Re-runnable and safe with user data: each run creates its own store
# DATA_DIR/demo-<timestamp> and never deletes anything; older demo stores are
# listed at the end so the user can remove them.  Any unexpected result stops
# the demo with exit status 1 (it is also run by tests/integration).
set -u

if [ $# -lt 1 ]; then
    echo "usage: sh tools/demo.sh BIN [DATA_DIR]" >&2
    exit 1
fi
BIN=$1
DATA=${2:-./data}

if [ ! -x "$BIN" ]; then
    echo "demo: $BIN is not an executable (run 'make build' first)" >&2
    exit 1
fi
mkdir -p "$DATA" || exit 1
STORE="$DATA/demo-$(date +%Y%m%d-%H%M%S)"
# Two runs within one second: keep them apart rather than share a store.
[ -e "$STORE" ] && STORE="$STORE-$$"

step() { printf '\n== %s\n' "$*"; }

fail() {
    echo "demo: unexpected result: $*" >&2
    exit 1
}

# Print a command the way one would type it, then run it.
quote_args() {
    for a in "$@"; do
        case $a in
            '' | *[!A-Za-z0-9_./=:,-]*) printf " '%s'" "$a" ;;
            *) printf ' %s' "$a" ;;
        esac
    done
}
show() {
    printf '$ evstore%s\n' "$(quote_args "$@")"
    "$BIN" "$@"
}
# The same for a command fed JSON lines on stdin: show them as a printf.
show_stdin() {
    lines=$1
    shift
    printf "\$ printf '%%s\\\\n'"
    printf '%s\n' "$lines" | while IFS= read -r l; do printf " '%s'" "$l"; done
    printf ' | evstore%s\n' "$(quote_args "$@")"
    printf '%s\n' "$lines" | "$BIN" "$@"
}

echo "evstore demo: $("$BIN" --version)"
echo "store: $STORE"

step "1. Place an order: the stream order-1 must not exist yet (--expected no-stream)"
show append -d "$STORE" order-1 --expected no-stream \
    '{"event_type":"OrderPlaced","data":{"order_id":"order-1","customer":"c-42"}}' ||
    fail "first append"

step "2. Add two items in ONE atomic append, only if order-1 is still at version 1"
ITEMS='{"event_type":"ItemAdded","data":{"sku":"A-100","qty":2,"price":"9.90"}}
{"event_type":"ItemAdded","data":{"sku":"B-200","qty":1,"price":"24.50"}}'
show_stdin "$ITEMS" append -d "$STORE" order-1 --expected 1 || fail "batch append"

step "3. Another order, so the global log has more than one stream"
show append -d "$STORE" order-2 \
    '{"event_type":"OrderPlaced","data":{"order_id":"order-2","customer":"c-7"}}' \
    '{"event_type":"ItemAdded","data":{"sku":"C-300","qty":5,"price":"1.20"}}' ||
    fail "order-2 append"

step "4. Read the stream order-1 (positions 1..3)"
show read -d "$STORE" order-1 || fail "read order-1"

step "5. Read the global log, only ItemAdded events"
# shellcheck disable=SC2016 # $all is the literal name of the global log
show read -d "$STORE" '$all' --type ItemAdded || fail "read \$all"

step "6. A writer that still believes order-1 is at version 1 gets a conflict (exit status 3)"
# (stderr joins stdout here so the message shows in order even when piped)
show append -d "$STORE" order-1 --expected 1 '{"event_type":"OrderCancelled","data":{}}' 2>&1
rc=$?
echo "exit status: $rc"
[ "$rc" -eq 3 ] || fail "expected exit status 3 for a conflict, got $rc"

step "7. Pay with a client-chosen event_id; the retry after a lost reply is idempotent"
PAY='{"event_type":"PaymentReceived","event_id":"0190f2a4-5e1d-7c3a-9b2f-0d6e8a4c1b27","data":{"amount":"44.30"}}'
show append -d "$STORE" order-1 --expected 3 "$PAY" || fail "payment"
echo "(the same request again:)"
show append -d "$STORE" order-1 --expected 3 "$PAY" || fail "idempotent retry"

step "8. Store statistics, one stream's info, the list of streams"
show info -d "$STORE" || fail "info"
show info -d "$STORE" order-1 || fail "info order-1"
show streams -d "$STORE" || fail "streams"

step "9. Verify every record of the log and the index"
show check -d "$STORE" || fail "check"

older=$(find "$DATA" -mindepth 1 -maxdepth 1 -type d -name 'demo-*' ! -path "$STORE" | wc -l)
printf '\nDone.  The demo store is %s; explore it with e.g.\n' "$STORE"
printf "  %s tail -d %s     (Ctrl-C to stop)\n" "$BIN" "$STORE"
if [ "$older" -gt 0 ]; then
    printf '%s older demo store(s) are in %s (demo-*); remove them when no longer needed.\n' \
        "$older" "$DATA"
fi
exit 0
