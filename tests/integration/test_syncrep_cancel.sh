#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A commit whose wait for the synchronous standby is cancelled is not a durable commit.
# PostgreSQL answers such a commit with success and a WARNING ("canceling wait for synchronous
# replication ... committed locally, but might not have been replicated to the standby"): the row
# is on the primary only, and a failover would lose it. A key must not be handed out on such a
# commit, and an admin change must not be reported as done (docs/deployment.md "Synchronous
# replication"). (A standby that is merely slow is the client-side bound's business: the module
# waits statement_timeout_ms + 2 s, then calls the outcome unknown; the server's statement_timeout
# does not cancel the wait.)
# The cluster is this test's own (scripts/lib/services on $DDSM_TEST_DIR/pg): it is configured to
# wait at every commit for a synchronous standby that never connects.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
scratch_dir syncrep_cancel
export DDSM_PIN=$DDSM_TEST_PIN

svc=$DDSM_SOURCE_DIR/scripts/lib/services
pg=$DDSM_TEST_DIR/pg
trap '"$svc" stop "$pg" >/dev/null 2>&1 || true' EXIT
"$svc" start "$pg" >/dev/null
# psql (sql) and the configuration on the private cluster.
. "$pg/env.sh"
export PGDATABASE=postgres
conf_variant "$T/pg.conf" "s|^conninfo = .*|conninfo = $(cat "$pg/conninfo") dbname=postgres|"
export DDSM_CONF=$T/pg.conf

ASSET=6f9619ff-8b86-d011-b42d-00c04fc964ff
KEYPATH="m/44'/0'/0'/0/0"
import_design_root
asset_active syncrep --id "$ASSET" --default-path "$KEYPATH"
asset_active syncrep-2
id=$(cka_id "$ASSET" "$KEYPATH")
printf 'to be signed' >"$T/data"
sign() { p11_user --sign -m SHA256-HMAC --id "$id" -i "$T/data" -o "$T/$1"; }
derive_rows() { sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'"; }

expect 0 sign sig0
same "$(derive_rows)" 1 "DERIVE rows before the standby is required"

standby_required() {
    sql "ALTER SYSTEM SET synchronous_standby_names = '$1'" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
}
standby_required ddsm_absent_standby

# cancel_waits PID: pg_cancel_backend every backend waiting for the standby until PID exits;
# prints how many it cancelled. Each process here waits at every commit until cancelled, so the
# number only says the cancel happened, and PID's own exit status says what it made of it.
cancel_waits() {
    local n=0 c
    while kill -0 "$1" 2>/dev/null; do
        c=$(sql "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                 WHERE wait_event = 'SyncRep'")
        n=$((n + c))
        sleep 0.05
    done
    echo "$n"
}
# in_background NAME CMD...: run CMD with its outputs in $T/NAME.{out,err,rc}.
in_background() {
    local name=$1
    shift
    (set +e; "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err"; echo $? >"$T/$name.rc") &
}
# rc_of NAME: the exit status in_background recorded.
rc_of() { [ -s "$T/$1.rc" ] || fail "$1 left no exit status"; cat "$T/$1.rc"; }

echo "== pg_cancel_backend while the derivation's commit waits for the standby: no key"
in_background sign1 sign sig1
cancelled=$(cancel_waits $!)
wait
[ "$cancelled" -ge 1 ] || fail "no backend waited for the standby"
rc=$(rc_of sign1)
[ "$rc" != 0 ] || fail "a key was used on a commit the standby may not have:
$(cat "$T/sign1.out" "$T/sign1.err")"
grep -q CKR_DEVICE_ERROR "$T/sign1.err" || fail "sign: $(cat "$T/sign1.err")"
[ ! -s "$T/sig1" ] || fail "a signature was written"
# The row did commit on this node: a DERIVE row whose key nobody received (docs/audit.md).
same "$(derive_rows)" 2 "DERIVE rows after the cancelled wait"

echo "== an admin change whose commit wait is cancelled is not reported as done"
in_background rotate ctl asset rotate syncrep-2
cancelled=$(cancel_waits $!)
wait
[ "$cancelled" -ge 1 ] || fail "no backend waited for the standby"
rc=$(rc_of rotate)
[ "$rc" != 0 ] || fail "rotate reported success: $(cat "$T/rotate.out")"
grep -q "outcome unknown" "$T/rotate.err" || fail "rotate: $(cat "$T/rotate.err")"

echo "== the standby is no longer required: signing works again and the audit verifies"
standby_required ''
expect 0 sign sig3
cmp -s "$T/sig0" "$T/sig3" || fail "the key changed"
expect 0 ctl audit verify
out_has "everything verifies"
echo "PASS"
