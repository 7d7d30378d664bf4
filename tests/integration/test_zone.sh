#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ddsmctl zone: list / enable / disable / assign / of and `asset register --zone`; every change
# is one chained audit row (ZONE_ENABLE, ZONE_DISABLE, ZONE_ASSIGN) that `audit verify` accepts,
# and one NOTIFY per asset on channel ddsm_zone (seen by a psql LISTEN); bad input changes
# nothing (exit 2), unknown zones and assets exit 1, no PIN no change.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL
scratch_dir zone
unset DDSM_PIN

import_design_root

echo "== register into a zone: created enabled, the asset in it, audited"
out=$(ctl asset register --label pay-1 --zone eu-west)
grep -q '^zone eu-west$' <<<"$out" || fail "register --zone: $out"
ctl asset activate pay-1 >/dev/null
ctl asset register --label pay-2 >/dev/null
[ "$(ctl zone of pay-1)" = "eu-west enabled" ] || fail "zone of pay-1"
[ "$(ctl zone of pay-2)" = "default enabled" ] || fail "zone of pay-2"
[ "$(sql "SELECT detail FROM custody_audit_log WHERE event = 'ZONE_ASSIGN'")" = \
    "zone default -> eu-west" ] || fail "no ZONE_ASSIGN row"

echo "== list: table and JSON"
ctl zone list >"$T/list"
grep -Eq '^default +enabled +1 +0 ' "$T/list" || fail "list: $(cat "$T/list")"
grep -Eq '^eu-west +enabled +1 +1 .* ddsmctl:' "$T/list" || fail "list: $(cat "$T/list")"
ctl zone list --json | /usr/bin/python3 -c '
import json, sys
z = {x["zone"]: x for x in json.load(sys.stdin)}
assert z["eu-west"] == {**z["eu-west"], "enabled": True, "assets": 1, "derivable": 1}, z
assert z["default"]["updated_by"] is None, z' || fail "zone list --json"

echo "== disable: one NOTIFY per asset of the zone, one audit row; enable again"
# A listener on the channel the module listens on, while the zone changes.
# Deterministic: the listener is known to be listening (it is in its sleep, after LISTEN) before
# the change, and is woken by a cancel after it: the NOTIFY is queued at the change's commit and
# delivered when the listener goes idle. No sleep decides anything.
(psql -XAtq -c "LISTEN ddsm_zone" -c "SELECT pg_sleep(300)" >"$T/notify" 2>&1) &
listener=$!
listening="SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)'"
until [ "$(sql "$listening AND state = 'active'")" = 1 ]; do sleep 0.05; done
out=$(ctl zone disable eu-west)
grep -q '^zone eu-west disabled (1 asset)' <<<"$out" || fail "disable: $out"
sql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)'" \
    >/dev/null
wait $listener || true
id=$(sql "SELECT asset_id FROM custody_keys WHERE label = 'pay-1'")
grep -q "\"ddsm_zone\" with payload \"$id off eu-west\"" "$T/notify" ||
    fail "no NOTIFY for the asset: $(cat "$T/notify")"
[ "$(ctl zone of pay-1)" = "eu-west disabled" ] || fail "not disabled"
[ "$(sql "SELECT count(*) FROM custody_zones WHERE zone = 'eu-west' AND NOT enabled")" = 1 ] ||
    fail "custody_zones not updated"
[ "$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'ZONE_DISABLE' AND
          detail = 'zone eu-west' AND mac IS NOT NULL AND requester LIKE 'ddsmctl:%'")" = 1 ] ||
    fail "no chained ZONE_DISABLE row"
ctl zone enable eu-west >/dev/null
ctl zone enable brand-new >/dev/null # created
[ "$(sql "SELECT count(*) FROM custody_zones WHERE zone = 'brand-new' AND enabled")" = 1 ] ||
    fail "enable did not create the zone"

echo "== assign moves an asset between zones"
out=$(ctl zone assign pay-2 brand-new)
grep -q "zone default -> brand-new" <<<"$out" || fail "assign: $out"
[ "$(ctl zone of pay-2)" = "brand-new enabled" ] || fail "not moved"

echo "== refusals: nothing changes"
rows=$(sql "SELECT count(*) FROM custody_audit_log")
expect 1 ctl zone disable nope
err_has 'no zone "nope"'
expect 1 ctl zone assign no-such-asset eu-west
expect 1 ctl zone of no-such-asset
for bad in "zone enable -x" "zone enable a/b" "zone disable" "zone enable x y" "zone frobnicate" \
    "zone assign pay-1" "asset register --label p3 --zone bad/zone"; do
    # shellcheck disable=SC2086
    expect 2 ctl $bad
done
expect 2 ctl zone enable "$(printf 'z%.0s' $(seq 64))"
# Writing commands need the PIN (the audit chain): without it, exit 2 and nothing written.
run "$DDSM_CTL" zone disable eu-west
[ "$RC" -eq 2 ] || fail "no PIN: exit $RC"
[ "$(sql "SELECT count(*) FROM custody_audit_log")" = "$rows" ] || fail "a refusal wrote a row"
[ "$(sql "SELECT count(*) FROM custody_zones WHERE NOT enabled")" = 0 ] ||
    fail "a refusal changed a zone"

echo "== the zone rows are part of the audit chains"
ctl audit verify >/dev/null || fail "audit verify fails with zone rows"
# Editing a zone row is caught like any other.
sql "UPDATE custody_audit_log SET detail = 'zone elsewhere' WHERE event = 'ZONE_DISABLE'"
expect 1 ctl audit verify
grep -q EDITED "$T/out" "$T/err" || fail "an edited zone row is not reported"
echo ok
