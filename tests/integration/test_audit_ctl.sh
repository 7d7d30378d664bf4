#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ddsmctl audit verify / reconcile / db maintain end to end (scripts/lib/run-integration): a root
# key in the test token, chained rows written under the audit key the HSM derives (the
# integration_test_batch helper), then tampering with psql as a database administrator would,
# and `ddsmctl audit verify` names every row. Also exit codes, --since, --instance, progress,
# reconcile as a table and as JSON, and maintain.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL DDSM_BUILD_DIR
C=$DDSM_CTL
HELPER=$DDSM_BUILD_DIR/tests/integration_test_batch
scratch_dir auditctl
unset DDSM_PIN

echo "== help and usage errors"
for args in "audit" "audit verify" "reconcile" "db maintain"; do
    # shellcheck disable=SC2086
    expect 0 "$C" $args --help
    out_has "Usage: ddsmctl ${args}"
done
expect 0 "$C" help audit
out_has "verify"
expect 0 "$C" --help
out_has "audit verify"
out_has "db maintain"
expect 2 "$C" audit
expect 2 "$C" audit frobnicate
expect 2 with_pin "$C" audit verify --since yesterday
err_has "--since 'yesterday'"
expect 2 with_pin "$C" audit verify --since 2026-13-01
expect 2 with_pin "$C" audit verify --since "2026-11-01T25:00"
expect 2 "$C" reconcile --since 2026-11-01+02:00
expect 2 "$C" reconcile extra
expect 2 "$C" db maintain --months 121
expect 2 "$C" db maintain --months -1
expect 2 "$C" audit verify --instance ""

echo "== setup: schema, root key, chained rows under the HSM's audit key"
expect 0 "$C" db migrate
out_has "applied 002_audit"
expect 0 with_pin "$C" root create
asset=$(with_pin "$HELPER" write-chain 12)
[[ "$asset" =~ ^[0-9a-f-]{36}$ ]] || fail "helper printed no asset id: $asset"
asset2=$(with_pin "$HELPER" write-chain 5)

echo "== a clean log verifies"
expect 0 with_pin "$C" audit verify
out_has "everything verifies"
out_has "verified 21 chained rows in 4 chains"
[ -z "$ERR" ] || fail "progress or noise on a non-terminal stderr: $ERR"
expect 2 "$C" --pin-file /nonexistent audit verify
expect 2 "$C" audit verify # no PIN, no terminal
expect 1 env DDSM_PIN=999999 "$C" audit verify
err_has "PIN"

echo "== a clean log reconciles"
expect 0 "$C" reconcile
out_has "reconcile: 0 findings"
expect 0 "$C" reconcile --json
[ "$OUT" = '{"findings": [], "count": 0}' ] || fail "clean JSON: $OUT"

echo "== progress on a terminal"
if command -v script >/dev/null 2>&1; then
    DDSM_PIN=$DDSM_TEST_PIN script -qec "$C audit verify" /dev/null >"$T/tty" 2>&1 || true
    grep -q "verifying: " "$T/tty" || fail "no progress shown on a terminal: $(cat "$T/tty")"
fi

echo "== tampering with psql: every row is named"
ids() { sql "SELECT id FROM custody_audit_log WHERE asset_id = '$1' ORDER BY id"; }
mapfile -t A < <(ids "$asset")
[ "${#A[@]}" = 14 ] || fail "expected 14 rows for $asset, got ${#A[@]}"
# A[0] REGISTER, A[1] ACTIVATE (the helper's store chain), A[2..13] DERIVE seq 1..12 (its batch)
sql "UPDATE custody_audit_log SET counter = 1 WHERE id = ${A[4]}"
sql "DELETE FROM custody_audit_log WHERE id = ${A[7]}"
sql "UPDATE custody_audit_log SET requester = 'mallory',
     mac = sha256(mac || convert_to(requester, 'UTF8')) WHERE id = ${A[10]}"
expect 1 with_pin "$C" audit verify
out_has "EDITED           row ${A[4]} "
out_has "DELETED          row ${A[8]} "
out_has "between row ids ${A[6]} and ${A[8]} are missing"
out_has "EDITED           row ${A[10]} "
out_has "does not chain from row id ${A[10]}" # the next row's link to the replaced MAC
out_has "findings (EDITED 3, DELETED 1)"

echo "== swapped rows, a truncated tail, --instance"
inst2=$(sql "SELECT DISTINCT instance_id FROM custody_audit_log WHERE asset_id = '$asset2'
             AND event = 'DERIVE'")
mapfile -t B < <(sql "SELECT id FROM custody_audit_log WHERE instance_id = '$inst2' ORDER BY seq")
[ "${#B[@]}" = 5 ] || fail "expected 5 batch rows for $asset2, got ${#B[@]}"
sql "UPDATE custody_audit_log l SET seq = x.seq, mac = x.mac, ts = x.ts
     FROM (SELECT ${B[2]} AS target, seq, mac, ts FROM custody_audit_log WHERE id = ${B[1]}
           UNION ALL
           SELECT ${B[1]}, seq, mac, ts FROM custody_audit_log WHERE id = ${B[2]}) x
     WHERE l.id = x.target"
sql "DELETE FROM custody_audit_log WHERE id = ${B[4]}"
expect 1 with_pin "$C" audit verify --instance "$inst2"
out_has "REORDERED        row ${B[1]} "
out_has "is stored before row id ${B[2]}"
out_has "TRUNCATED        row ${B[3]} "
out_has "rows seq 5..5 after row id ${B[3]} are missing"
out_lacks "row ${A[4]} "
out_has "verified 4 chained rows in 1 chains"

echo "== rows without a MAC"
sql "INSERT INTO custody_audit_log (event, detail) VALUES ('DENY', 'written by hand')"
unauth=$(sql "SELECT max(id) FROM custody_audit_log")
expect 1 with_pin "$C" audit verify
out_has "UNAUTHENTICATED  row $unauth "

echo "== --since skips what is older"
sql "UPDATE custody_audit_log SET ts = '2020-01-01 00:00:00+00' WHERE id = $unauth"
expect 1 with_pin "$C" audit verify --since 1d
out_lacks "UNAUTHENTICATED"
expect 1 with_pin "$C" audit verify --since 2019-12-31
out_has "UNAUTHENTICATED  row $unauth "
# Nothing in the window, but a checkpoint outside it still proves its chain's deleted last row.
expect 1 with_pin "$C" audit verify --since 2099-01-01T00:00:00Z
out_has "verified 0 chained rows"
out_has "TRUNCATED"
out_lacks "EDITED"
sql "DELETE FROM custody_audit_log WHERE id = $unauth"

echo "== reconcile"
sql "UPDATE custody_keys SET derivation_counter = derivation_counter + 1 WHERE asset_id = '$asset'"
rogue=$(sql "INSERT INTO custody_audit_log (asset_id, derivation_path, counter,
             state_at_derivation, event) VALUES ('$asset2', 'm/0', 3, 'ACTIVE', 'DERIVE')
             RETURNING id")
expect 1 "$C" reconcile
out_has "KIND"
out_has "COUNTER_DRIFT"
out_has "MISSING_AUDIT_ENTRY"
out_has "$asset"
out_has "DERIVE row $rogue has counter 3, above the registry counter 0"
out_has "3 findings"
expect 1 "$C" reconcile --json
python3 - "$T/out" "$asset" "$rogue" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["count"] == 3 == len(doc["findings"]), doc
kinds = sorted(f["kind"] for f in doc["findings"])
assert kinds == ["COUNTER_DRIFT", "COUNTER_DRIFT", "MISSING_AUDIT_ENTRY"], kinds
assert any(f["asset"] == sys.argv[2] and f["row_id"] is None for f in doc["findings"])
assert any(f["row_id"] == int(sys.argv[3]) for f in doc["findings"])
EOF
expect 1 "$C" reconcile --since 2099-01-01 # the registry-level findings stay
out_lacks "DERIVE row $rogue"
out_has "2 findings"

echo "== db maintain"
expect 0 "$C" db maintain
out_has "monthly partitions ready from $(date -u +%Y-%m) "
out_has "0 created, 4 already there"
expect 0 "$C" db maintain --months 6
out_has "3 created, 4 already there"
out_has "the default partition is empty"
[ -z "$ERR" ] || fail "maintain wrote to stderr: $ERR"
expect 0 "$C" db maintain --months 6
out_has "0 created, 7 already there"
sql "INSERT INTO custody_audit_log (ts, event) VALUES ('2099-05-01 00:00:00+00', 'DENY')"
expect 0 "$C" db maintain
err_has "warning: the default partition holds 1 row of 2099-05"
out_has "1 row in the default partition"

echo "== store unavailable"
cat >"$T/down.conf" <<EOT
[backend]
module = /usr/lib/softhsm/libsofthsm2.so
token_label = custody

[store]
conninfo = host=/nonexistent port=1 dbname=x connect_timeout=2
EOT
chmod 600 "$T/down.conf"
expect 3 "$C" --conf "$T/down.conf" reconcile
expect 3 "$C" --conf "$T/down.conf" db maintain
expect 3 with_pin "$C" --conf "$T/down.conf" audit verify

echo "OK"
