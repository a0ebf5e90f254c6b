#!/usr/bin/env bash
# Self-test of write concerns and a one-time replication delay (the seed's V2 flow), on a
# fresh cluster started with `docker-compose up --build` (or `replog cluster`): no node is
# stopped. Prints every step, checks every expectation and exits non-zero at the first one
# that fails.
#
#   ./self_test_delay.sh
#
# Environment (defaults in brackets): MASTER_URL [http://0.0.0.0:8000], SECONDARY1_URL [:8001],
# SECONDARY2_URL [:8002], APP_LOG [./log/app.log], DELAY_S [5] the injected delay, FAST_S [2]
# what "answers at once" means. See e2e/lib.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/e2e/lib.sh"

DELAY_S=${DELAY_S:-5}
lt "$FAST_S" "$DELAY_S" || fail "DELAY_S ($DELAY_S) must be larger than FAST_S ($FAST_S)"
# How long convergence may take once a delay is over.
SETTLE_S=$((${DELAY_S%.*} + 15))

echo "replog self-test: write concern and delayed replication"
echo "master $MASTER_URL, secondary1 $SECONDARY1_URL, secondary2 $SECONDARY2_URL, log $APP_LOG"

fresh_cluster
log_mark

step "Add Msg1 with write_concern 3: it is on every node when the answer comes"
append Msg1 3
expect_code 201 "POST Msg1 w=3"
[ "$(printf '%s' "$BODY" | pyjson 'j["key"]')" = 1 ] || fail "Msg1 got key $(printf '%s' "$BODY" | pyjson 'j["key"]'), expected 1"
ok "Msg1 has key 1"
expect_values "$MASTER_URL" '["Msg1"]'
expect_values "$SECONDARY1_URL" '["Msg1"]'
expect_values "$SECONDARY2_URL" '["Msg1"]'

step "Delay the next replication request on secondary1 by $DELAY_S s"
req POST "$SECONDARY1_URL/delay" "{\"value\": $DELAY_S}"
expect_code 200 "POST /delay on secondary1"
wait_log "secondary1: delay armed" 5

step "Add Msg2 with write_concern 3 in the background: it waits for the delayed secondary1"
append_bg msg2 Msg2 3
wait_values "$SECONDARY2_URL" '["Msg1","Msg2"]' 5
expect_values "$MASTER_URL" '["Msg1","Msg2"]'
expect_values "$SECONDARY1_URL" '["Msg1"]'
wait_log "secondary1: delaying" 5
! bg_done msg2 || fail "the w=3 append of Msg2 answered ($(cat "$_TMP/msg2")) while secondary1 was still delayed"
ok "the w=3 append of Msg2 is still waiting"

step "Add Msg3 with write_concern 3: this request is not delayed, so it answers at once"
append Msg3 3
expect_code 201 "POST Msg3 w=3"
expect_fast "POST Msg3 w=3"
[ "$(printf '%s' "$BODY" | pyjson 'j["key"]')" = 3 ] || fail "Msg3 got key $(printf '%s' "$BODY" | pyjson 'j["key"]'), expected 3"
ok "Msg3 has key 3"
expect_values "$MASTER_URL" '["Msg1","Msg2","Msg3"]'
expect_values "$SECONDARY2_URL" '["Msg1","Msg2","Msg3"]'
info "secondary1 holds keys 1 and 3; it shows only its contiguous prefix until key 2 arrives:"
expect_values "$SECONDARY1_URL" '["Msg1"]'
! bg_done msg2 || fail "the w=3 append of Msg2 answered ($(cat "$_TMP/msg2")) while secondary1 was still delayed"
ok "the w=3 append of Msg2 is still waiting"

step "After the delay: Msg2's append answers and every node holds Msg1, Msg2, Msg3"
bg_wait msg2 "$SETTLE_S"
expect_code 201 "POST Msg2 w=3 (background)"
lt "$(awk -v d="$DELAY_S" 'BEGIN { print d - 1 }')" "$SECS" \
    || fail "the w=3 append of Msg2 answered after ${SECS}s; it should have waited for the ${DELAY_S}s delay"
ok "the w=3 append of Msg2 waited ${SECS}s for the delay"
[ "$(printf '%s' "$BODY" | pyjson 'j["key"]')" = 2 ] || fail "Msg2 got key $(printf '%s' "$BODY" | pyjson 'j["key"]'), expected 2"
ok "Msg2 has key 2"
all_show '["Msg1","Msg2","Msg3"]' "$SETTLE_S"

step "Delay secondary1 again; add Msg4 with write_concern 2: it does not wait for secondary1"
req POST "$SECONDARY1_URL/delay" "{\"value\": $DELAY_S}"
expect_code 200 "POST /delay on secondary1"
append Msg4 2
expect_code 201 "POST Msg4 w=2"
expect_fast "POST Msg4 w=2"
expect_values "$MASTER_URL" '["Msg1","Msg2","Msg3","Msg4"]'
wait_values "$SECONDARY2_URL" '["Msg1","Msg2","Msg3","Msg4"]' 5
expect_values "$SECONDARY1_URL" '["Msg1","Msg2","Msg3"]'

step "After the delay every node holds Msg1..Msg4"
all_show '["Msg1","Msg2","Msg3","Msg4"]' "$SETTLE_S"

step "Delay both secondaries; add Msg5 with write_concern 1: only the master is needed"
req POST "$SECONDARY1_URL/delay" "{\"value\": $DELAY_S}"
expect_code 200 "POST /delay on secondary1"
req POST "$SECONDARY2_URL/delay" "{\"value\": $DELAY_S}"
expect_code 200 "POST /delay on secondary2"
append Msg5 1
expect_code 201 "POST Msg5 w=1"
expect_fast "POST Msg5 w=1"
expect_values "$MASTER_URL" '["Msg1","Msg2","Msg3","Msg4","Msg5"]'
expect_values "$SECONDARY1_URL" '["Msg1","Msg2","Msg3","Msg4"]'
expect_values "$SECONDARY2_URL" '["Msg1","Msg2","Msg3","Msg4"]'

step "After the delays every node holds Msg1..Msg5, in the same order, under keys 1..5"
all_show '["Msg1","Msg2","Msg3","Msg4","Msg5"]' "$SETTLE_S"
wait_health 'j["last_key"]' 5 5
wait_health '[(n["name"], n["status"], n["acked_key"], n["lag"]) for n in j["nodes"]]' \
    '[["secondary1","healthy",5,0],["secondary2","healthy",5,0]]' 10
health_is 'j["mode"]' read-write
wait_log "secondary2: delay armed" 1
info "log lines of this run about the delays:"
log_since | grep -F -e "delay armed" -e "delaying" | sed 's/^/      | /'

echo
echo "$(ts) self_test_delay.sh: all checks passed"
