#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `ddsmctl status` on a healthy installation and on broken ones: exit 0 healthy, 1 findings
# (reconcile drift, rows in the default partition, no root key, an unmigrated database), 3 the
# store or the HSM unavailable; every line names what it checked; red only on a terminal.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL
scratch_dir status
unset DDSM_PIN

# status ARGS...: `ddsmctl ARGS status`, output in $T/out, exit status in $RC
status() { run "$DDSM_CTL" "$@" status; }
has() { grep -Eq -- "$1" "$T/out" || fail "status output lacks /$1/:
$(cat "$T/out" "$T/err")"; }
red='\x1b\[1;31m'

import_design_root
asset_active vec-a --id 6f9619ff-8b86-d011-b42d-00c04fc964ff
ctl asset rotate vec-a >/dev/null
ctl asset register --label idle >/dev/null
fp=$(ctl root info | sed -n 's/.*fingerprint[^0-9a-f]*\([0-9a-f]\{32\}\).*/\1/p')
[ -n "$fp" ] || fail "root info shows no fingerprint"

echo "== healthy, with the PIN: exit 0, the root fingerprint, no colour off a terminal"
DDSM_PIN=$DDSM_TEST_PIN status
cat "$T/out"
[ "$RC" -eq 0 ] || fail "healthy: exit $RC: $(cat "$T/err")"
# Every migration of the source tree is built into ddsmctl.
n=$(find "$(dirname "${BASH_SOURCE[0]}")/../../sql" -name '[0-9][0-9][0-9]_*.sql' | wc -l)
has "^store +OK +PostgreSQL [0-9]+.*$n of $n migrations applied"
has "^hsm +OK +token \"custody\" present; root key \"ddsm-root\", fingerprint $fp"
has '^assets +2: ACTIVE 1, ROTATING 0, INITIALIZED 1, RETIRED 0'
has '^zones +1, 0 disabled'
has '^rotation +last .*: vec-a, counter 0 -> 1; 1 in all'
has '^audit +[0-9]+ chains?; longest at seq [0-9]+'
has '^ +ddsmctl/'
has '^partitions +OK +current month present, [1-9][0-9]* months? ahead, 0 rows'
has '^reconcile +OK +0 findings'
grep -q $'\x1b' "$T/out" && fail "colour codes while stdout is not a terminal"

echo "== healthy, no PIN: the root is not checked, never prompted for"
status </dev/null
[ "$RC" -eq 0 ] || fail "no PIN: exit $RC"
has '^hsm +OK +token "custody" present; root key not checked \(no PIN'

echo "== on a terminal: nothing red while healthy"
script -qec "'$DDSM_CTL' status" /dev/null </dev/null >"$T/tty.out" 2>&1 || true
grep -q '^store' "$T/tty.out" || fail "no output on the terminal: $(cat "$T/tty.out")"
grep -Pq "$red" "$T/tty.out" && fail "red while healthy"

echo "== findings: drift, a stray audit row, missing partitions: exit 1, red on a terminal"
sql "UPDATE custody_keys SET derivation_counter = derivation_counter + 1 WHERE label = 'vec-a'"
status
[ "$RC" -eq 1 ] || fail "drift: exit $RC, expected 1"
has '^reconcile +FAIL +[1-9][0-9]* findings?'
has '^partitions +OK'
sql "INSERT INTO custody_audit_log (ts, event, detail) VALUES
     ('2001-02-03 04:05:06+00', 'DENY', 'a stray row of 2001')"
status
[ "$RC" -eq 1 ] || fail "stray row: exit $RC"
has '^partitions +FAIL +current month present, .* 1 row in the default partition \(run `ddsmctl db maintain`\)'
script -qec "'$DDSM_CTL' status" /dev/null </dev/null >"$T/tty.out" 2>&1 || true
grep -Pq "${red}FAIL +[0-9]+ findings?" "$T/tty.out" || fail "the reconcile finding is not red"
grep -Pq "${red}FAIL +current month" "$T/tty.out" || fail "the partition finding is not red"
grep -Pq "${red}.*ACTIVE" "$T/tty.out" && fail "a healthy line is red"

echo "== no root key on the token (with a PIN): exit 1"
softhsm2-util --init-token --free --label empty --pin "$DDSM_TEST_PIN" \
    --so-pin "$DDSM_TEST_SO_PIN" >/dev/null
conf_variant "$T/empty.conf" 's/^token_label = .*/token_label = empty/'
DDSM_PIN=$DDSM_TEST_PIN status --conf "$T/empty.conf"
[ "$RC" -eq 1 ] || fail "no root key: exit $RC"
has '^hsm +FAIL +token "empty" present; no root key "ddsm-root" on it'

echo "== the HSM unavailable: exit 3"
conf_variant "$T/notoken.conf" 's/^token_label = .*/token_label = nowhere/'
status --conf "$T/notoken.conf"
[ "$RC" -eq 3 ] || fail "no such token: exit $RC"
has '^hsm +FAIL +no token "nowhere"'
has '^store +OK'
conf_variant "$T/nolib.conf" 's#^module = .*#module = /nonexistent/libnothing.so#'
status --conf "$T/nolib.conf"
[ "$RC" -eq 3 ] || fail "module does not load: exit $RC"
has '^hsm +FAIL +/nonexistent/libnothing.so does not load'

echo "== the store unreachable: exit 3, the HSM still checked"
conf_store_unreachable "$T/down.conf"
status --conf "$T/down.conf"
[ "$RC" -eq 3 ] || fail "store down: exit $RC"
has '^store +FAIL'
has '^hsm +OK'

echo "== a database never migrated: exit 1, and what to do"
db=${PGDATABASE}_empty
"$DDSM_TEST_PGBIN/dropdb" --if-exists "$db"
"$DDSM_TEST_PGBIN/createdb" "$db"
conf_variant "$T/fresh.conf" "s/dbname=$PGDATABASE/dbname=$db/"
status --conf "$T/fresh.conf"
"$DDSM_TEST_PGBIN/dropdb" "$db"
[ "$RC" -eq 1 ] || fail "unmigrated: exit $RC"
has '^store +FAIL +the database is not migrated \(run `ddsmctl db migrate`\)'

echo "== usage"
run "$DDSM_CTL" status --reconcile-since 3x
[ "$RC" -eq 2 ] || fail "bad duration: exit $RC"
echo ok
