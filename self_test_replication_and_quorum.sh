#!/usr/bin/env bash
# Self-test of replication to a node that is down, heartbeats and the quorum (the seed's V3
# flow), on a fresh cluster started from this directory with `docker-compose up --build`.
# Takes secondaries down with `docker-compose pause` and brings them back with `unpause`.
# Prints every step, checks every expectation and exits non-zero at the first one that fails;
# whatever happens, it unpauses what it paused.
#
#   ./self_test_replication_and_quorum.sh
#
# Works with the shipped settings (1 s heartbeats, suspected after 2 failures, unhealthy
# after 5, quorum 2). Environment (defaults in brackets): MASTER_URL [http://0.0.0.0:8000],
# SECONDARY1_URL [:8001], SECONDARY2_URL [:8002], APP_LOG [./log/app.log], COMPOSE
# [docker-compose]; COMPOSE_PROJECT_NAME and COMPOSE_FILE pick the compose project.
# See e2e/lib.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/e2e/lib.sh"

# Deadlines (seconds) for what heartbeats decide: generous against 1 s heartbeats.
HB_S=${HB_S:-30}

echo "replog self-test: replication, heartbeats and quorum with paused nodes"
echo "master $MASTER_URL, secondary1 $SECONDARY1_URL, secondary2 $SECONDARY2_URL, log $APP_LOG"
echo "compose: $COMPOSE${COMPOSE_PROJECT_NAME:+ (project $COMPOSE_PROJECT_NAME)}"

for svc in master secondary1 secondary2; do
    [ -n "$(compose ps -q "$svc" 2>/dev/null)" ] \
        || fail "'$COMPOSE ps -q $svc' finds no container: run this from the compose project (docker-compose up --build)"
done

fresh_cluster
log_mark

step "Add Msg1 with write_concern 3: it is on every node when the answer comes"
append Msg1 3
expect_code 201 "POST Msg1 w=3"
expect_values "$MASTER_URL" '["Msg1"]'
expect_values "$SECONDARY1_URL" '["Msg1"]'
expect_values "$SECONDARY2_URL" '["Msg1"]'

step "Take secondary1 down: $COMPOSE pause secondary1"
on_exit 'compose unpause secondary1 >/dev/null 2>&1'
compose pause secondary1 || fail "$COMPOSE pause secondary1 failed"
ok "secondary1 paused"

step "Add Msg2 with write_concern 2: the master and secondary2 are enough"
append Msg2 2 10
expect_code 201 "POST Msg2 w=2"
expect_fast "POST Msg2 w=2"
expect_values "$MASTER_URL" '["Msg1","Msg2"]'
wait_values "$SECONDARY2_URL" '["Msg1","Msg2"]' 5
expect_unreachable "$SECONDARY1_URL"

step "Heartbeats find secondary1 down: suspected, then unhealthy; replication to it waits"
wait_log "master: heartbeat status change: secondary1 healthy -> suspected" "$HB_S"
wait_log "master: heartbeat status change: secondary1 suspected -> unhealthy" "$HB_S"
wait_health 'node(j, "secondary1")["status"]' unhealthy 5
health_is '[node(j, "secondary1")["acked_key"], node(j, "secondary1")["lag"]]' '[1,1]'
health_is '[j["mode"], j["available"], j["quorum"]]' '["read-write",2,2]'
wait_log "master: replication sent keys 2..=2 to secondary1" 1
expect_no_log "replication acknowledged keys 2..=2 by secondary1"
info "the last 10 lines of $APP_LOG:"
tail -n 10 "$APP_LOG" | sed 's/^/      | /'

step "Take secondary2 down too: $COMPOSE pause secondary2"
on_exit 'compose unpause secondary2 >/dev/null 2>&1'
compose pause secondary2 || fail "$COMPOSE pause secondary2 failed"
ok "secondary2 paused"

step "With one node of the quorum of 2 left, the master turns read-only within seconds"
wait_log "master: heartbeat status change: secondary2 healthy -> suspected" "$HB_S"
wait_log "master: heartbeat status change: secondary2 suspected -> unhealthy" "$HB_S"
wait_log "master: mode change: read-write -> read-only" 5
wait_health '[j["mode"], j["available"], j["quorum"]]' '["read-only",1,2]' 5
health_is '[n["status"] for n in j["nodes"]]' '["unhealthy","unhealthy"]'
expect_values "$MASTER_URL" '["Msg1","Msg2"]'
expect_unreachable "$SECONDARY1_URL"
expect_unreachable "$SECONDARY2_URL"

step "Add Msg3 with write_concern 1: refused with 503 (read-only), nothing appended"
append Msg3 1 10
expect_code 503 "POST Msg3 w=1 on a read-only master"
printf '%s' "$HDRS" | grep -qi '^retry-after:' || fail "the 503 answer has no Retry-After header (headers: $HDRS)"
ok "the 503 answer has $(printf '%s' "$HDRS" | grep -i '^retry-after:' | tr -d '\r')"
[ "$(printf '%s' "$BODY" | pyjson '"error" in j')" = true ] || fail "the 503 body has no \"error\": $BODY"
ok "the 503 body says why: $(printf '%s' "$BODY" | pyjson 'j["error"]')"
expect_values "$MASTER_URL" '["Msg1","Msg2"]'
health_is 'j["last_key"]' 2

step "Bring both secondaries back: $COMPOSE unpause secondary1 secondary2"
compose unpause secondary1 || fail "$COMPOSE unpause secondary1 failed"
compose unpause secondary2 || fail "$COMPOSE unpause secondary2 failed"
ok "both unpaused"
wait_log "master: heartbeat status change: secondary1 unhealthy -> healthy" "$HB_S"
wait_log "master: heartbeat status change: secondary2 unhealthy -> healthy" "$HB_S"
wait_log "master: mode change: read-only -> read-write" 5
wait_health '[j["mode"], j["available"]]' '["read-write",3]' 5

step "Every node converges to [Msg1, Msg2]; Msg3 was refused, so it is nowhere"
all_show '["Msg1","Msg2"]' 15
wait_health '[(n["name"], n["status"], n["acked_key"], n["lag"]) for n in j["nodes"]]' \
    '[["secondary1","healthy",2,0],["secondary2","healthy",2,0]]' 10

step "Appends work again: Msg3 with write_concern 3"
append Msg3 3 15
expect_code 201 "POST Msg3 w=3"
[ "$(printf '%s' "$BODY" | pyjson 'j["key"]')" = 3 ] || fail "Msg3 got key $(printf '%s' "$BODY" | pyjson 'j["key"]'), expected 3"
ok "Msg3 has key 3"
all_show '["Msg1","Msg2","Msg3"]' 5
info "the last 10 lines of $APP_LOG:"
tail -n 10 "$APP_LOG" | sed 's/^/      | /'

echo
echo "$(ts) self_test_replication_and_quorum.sh: all checks passed"
