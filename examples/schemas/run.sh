#!/bin/sh
# run.sh EVSTORE DIR — the schema registry from the command line, step by step,
# on a fresh store in DIR (removed first).  Every step's outcome is checked:
# the script exits non-zero when one differs from what the comment says.
set -u
B=${1:?usage: run.sh EVSTORE DIR}
D=${2:?usage: run.sh EVSTORE DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$D"
fail() { echo "run.sh: $*" >&2; exit 1; }
step() { echo; echo "## $*"; }

step "register version 1 of OrderPlaced"
"$B" schema register -d "$D" OrderPlaced "$HERE/order-placed-v1.json" || fail "register v1"

step "a valid order is stored"
"$B" append -d "$D" order-1 '{"event_type":"OrderPlaced","data":{"order_id":"0190a4e2-7b1c-7cc0-8000-000000000001","customer":"Ada","total":2500,"lines":[{"sku":"ABC-1234","qty":1}]}}' \
  || fail "valid append"

step "an invalid one is refused with the JSON pointer and the rule (exit 4), nothing stored"
"$B" append -d "$D" order-2 '{"event_type":"OrderPlaced","data":{"order_id":"0190a4e2-7b1c-7cc0-8000-000000000002","customer":"Bob","total":100,"lines":[{"sku":"abc","qty":1}]}}'
[ $? -eq 4 ] || fail "the invalid append was not refused with exit 4"
"$B" read -d "$D" order-2 2>/dev/null && fail "order-2 exists"

step "version 2 makes the currency required: not backward compatible (exit 3)"
"$B" schema check -d "$D" OrderPlaced "$HERE/order-placed-v2.json"
[ $? -eq 3 ] || fail "check did not refuse"

step "a deliberate break: compatibility none for this registration, an upcaster for old events"
"$B" schema compat -d "$D" OrderPlaced none || fail "compat"
"$B" schema register -d "$D" OrderPlaced "$HERE/order-placed-v2.json" \
  --migration-path "version 1 orders were in EUR" || fail "register v2"
"$B" schema compat -d "$D" OrderPlaced backward || fail "compat back"
"$B" schema upcaster -d "$D" OrderPlaced 1 "$HERE/order-placed-v1-to-v2.lua" || fail "upcaster"

step "version 1 is deprecated: still accepted with a warning, or refused by policy"
"$B" schema deprecate -d "$D" OrderPlaced 1 || fail "deprecate"
"$B" schema policy -d "$D" stream-type order --deprecated refuse || fail "policy"
"$B" append -d "$D" order-3 '{"event_type":"OrderPlaced","event_version":1,"data":{"order_id":"0190a4e2-7b1c-7cc0-8000-000000000003","customer":"Cy","total":1}}'
[ $? -eq 4 ] || fail "a deprecated version was not refused"
"$B" append -d "$D" order-3 '{"event_type":"OrderPlaced","event_version":2,"data":{"order_id":"0190a4e2-7b1c-7cc0-8000-000000000003","customer":"Cy","total":1,"currency":"GBP"}}' \
  || fail "version 2 append"

step "what the registry holds"
"$B" schema list -d "$D" || fail "list"
"$B" schema show -d "$D" OrderPlaced 2 >/dev/null || fail "show"
echo '{"order_id":"0190a4e2-7b1c-7cc0-8000-000000000004","customer":"Di","total":5,"currency":"CHF"}' |
  "$B" schema validate -d "$D" OrderPlaced 2 -
[ $? -eq 4 ] || fail "validate did not refuse CHF"
echo
echo "run.sh: every step behaved as described"
