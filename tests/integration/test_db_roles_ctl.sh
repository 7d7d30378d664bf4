#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ddsmctl under the database roles of sql/006_roles.sql (docs/audit.md "Database roles"): the
# owner migrates and `db migrate` prints what the roles were granted; lifecycle commands
# (register, activate, rotate, retire, zones) work as a ddsm_admin member; audit verify,
# reconcile, status and metrics work as a ddsm_auditor member; lifecycle as the auditor or the
# module role, and verify as the admin, exit 3 naming the role and the privilege it lacks, and
# write nothing; a role that does not exist exits 3 naming it.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL
C=$DDSM_CTL
scratch_dir dbroles
unset DDSM_PIN

echo "== the owner migrates; migrate prints the grants"
printf '%s\n' "$DESIGN_ROOT_SEED" >"$T/root.hex"
expect 0 "$C" db migrate
out_has "applied 006_roles"
out_has "granted ddsm_module INSERT on table custody_audit_log"
out_has "granted ddsm_module SELECT on table custody_keys"
out_has "granted ddsm_admin EXECUTE on function ddsm_asset_transition("
out_has "granted ddsm_auditor SELECT on table custody_audit_log"
out_lacks "granted ddsm_module UPDATE on table custody_audit_log"
out_lacks "granted ddsm_module DELETE"
# The admin inserts nothing but root pins (ddsmctl root create/import/recover/pin).
[ "$(grep -c '^granted ddsm_admin INSERT' <<<"$OUT")" = 1 ] || fail "admin INSERT grants: $OUT"
out_has "granted ddsm_admin INSERT on table custody_root_pins"
out_lacks "granted ddsm_admin UPDATE"
out_lacks "granted ddsm_auditor INSERT"
expect 0 with_pin "$C" root import --hex-file "$T/root.hex"

# Login roles of this test, members of the group roles (cluster-wide: named after the database).
db=$(sql "SELECT current_database()")
adm=${db}_adm aud=${db}_aud mod=${db}_mod
for r in "$adm:ddsm_admin" "$aud:ddsm_auditor" "$mod:ddsm_module"; do
    sql "SET client_min_messages = warning; DROP ROLE IF EXISTS \"${r%%:*}\"" >/dev/null
    sql "CREATE ROLE \"${r%%:*}\" LOGIN IN ROLE ${r#*:}" >/dev/null
done
cleanup() { for r in "$adm" "$aud" "$mod"; do sql "DROP ROLE IF EXISTS \"$r\"" >/dev/null || true; done; }
trap cleanup EXIT
as_role() { # as_role ROLE: a configuration connecting as ROLE, in $T/ROLE.conf
    conf_variant "$T/$1.conf" "s/^conninfo = \(.*\)$/conninfo = \1 user=$1/"
}
for r in "$adm" "$aud" "$mod" ghost_of_a_role; do as_role "$r"; done

echo "== lifecycle as ddsm_admin"
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset register --label roles-1 --zone z1
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset activate roles-1
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset rotate roles-1
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset rotate roles-1 --grace 1h
expect 0 with_pin "$C" --conf "$T/$adm.conf" zone disable z1
expect 0 with_pin "$C" --conf "$T/$adm.conf" zone enable z1
expect 0 with_pin "$C" --conf "$T/$adm.conf" zone assign roles-1 z2
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset register --label roles-2
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset activate roles-2
expect 0 with_pin "$C" --conf "$T/$adm.conf" asset retire roles-2
expect 0 "$C" --conf "$T/$adm.conf" db maintain
same "$(sql "SELECT derivation_counter || ' ' || state || ' ' || zone FROM custody_keys
             WHERE label = 'roles-1'")" "2 ROTATING z2" "roles-1 after the admin's commands"
same "$(sql "SELECT count(*) FROM custody_rotations WHERE committed_at IS NOT NULL")" 2 \
    "rotations stamped as committed"

echo "== verify, reconcile, status, metrics as ddsm_auditor"
expect 0 with_pin "$C" --conf "$T/$aud.conf" audit verify
expect 0 "$C" --conf "$T/$aud.conf" reconcile
expect 0 "$C" --conf "$T/$aud.conf" status
expect 0 "$C" --conf "$T/$aud.conf" metrics

echo "== refusals name the role and the privilege, and write nothing"
rows=$(sql "SELECT count(*) FROM custody_audit_log")
state=$(sql "SELECT string_agg(label || derivation_counter || state || zone, ',' ORDER BY label)
             FROM custody_keys")
expect 3 with_pin "$C" --conf "$T/$aud.conf" asset rotate roles-1
err_has "role \"$aud\" lacks EXECUTE on function ddsm_asset_register"
err_has "ddsm_admin"
expect 3 with_pin "$C" --conf "$T/$aud.conf" zone disable z2
err_has "role \"$aud\" lacks EXECUTE on function"
expect 3 with_pin "$C" --conf "$T/$mod.conf" asset retire roles-1
err_has "role \"$mod\" lacks EXECUTE on function ddsm_asset_register"
expect 3 with_pin "$C" --conf "$T/$mod.conf" asset register --label roles-3
err_has "role \"$mod\" lacks EXECUTE"
expect 3 with_pin "$C" --conf "$T/$adm.conf" audit verify
err_has "role \"$adm\" lacks SELECT on table custody_audit_log"
expect 3 "$C" --conf "$T/$mod.conf" reconcile
err_has "role \"$mod\" lacks SELECT on table custody_rotations"
expect 3 with_pin "$C" --conf "$T/ghost_of_a_role.conf" asset rotate roles-1
err_has "ghost_of_a_role"
same "$(sql "SELECT count(*) FROM custody_audit_log")" "$rows" "audit rows after the refusals"
same "$(sql "SELECT string_agg(label || derivation_counter || state || zone, ',' ORDER BY label)
             FROM custody_keys")" "$state" "assets after the refusals"

echo "PASS"
