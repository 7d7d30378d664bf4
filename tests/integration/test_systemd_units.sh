#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The operations files in conf/: every systemd unit and timer passes `systemd-analyze verify`
# (which needs no systemd running) without a word, the jobs that must not fail quietly name an
# existing failure notifier in OnFailure=, every timer has its service, and each service's
# ExecStart, run here with the built ddsmctl against this test's database and token, does its
# job. sysusers.d and tmpfiles.d, applied to a scratch root, give the user, group and modes.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL DDSM_BUILD_DIR DDSM_SOURCE_DIR
scratch_dir units
src=$DDSM_SOURCE_DIR/conf
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (the systemd package)"

# The units as installed, but running the ddsmctl of this build.
mkdir "$T/units"
cp "$src"/systemd/* "$T/units/"
sed -i "s|/usr/sbin/ddsmctl|$DDSM_CTL|g" "$T/units"/*
man_opt=--man=no
if [ -s "$DDSM_BUILD_DIR/docs/man/ddsmctl.8" ]; then
    # Documentation=man:ddsmctl(8) is looked up: the build's pages stand in for the installed
    # (MANPATH ending in ":" keeps the system's pages too: man:p11-kit(8)).
    mkdir -p "$T/man/man8"
    cp "$DDSM_BUILD_DIR/docs/man/ddsmctl.8" "$T/man/man8/"
    man_opt=--man=yes
fi

echo "== systemd-analyze verify: the check itself speaks up on a broken unit"
mkdir "$T/broken"
printf '[Unit]\nDescription=x\n[Service]\nExecStart=%s status\nNoSuchKey=1\n' "$DDSM_CTL" \
    >"$T/broken/x.service"
run systemd-analyze verify --man=no "$T/broken/x.service"
[[ "$ERR" == *"NoSuchKey"* ]] || fail "systemd-analyze verify did not report an unknown key: $ERR"

echo "== systemd-analyze verify: every unit and timer, silently"
units=$(cd "$T/units" && ls)
[ -n "$units" ] || fail "no units in conf/systemd"
# shellcheck disable=SC2086
(cd "$T/units" && MANPATH=$T/man: SYSTEMD_LOG_LEVEL=notice \
    systemd-analyze verify $man_opt $units) >"$T/verify.out" 2>&1 ||
    fail "systemd-analyze verify failed: $(cat "$T/verify.out")"
[ -s "$T/verify.out" ] && fail "systemd-analyze verify warns: $(cat "$T/verify.out")"

echo "== timers have services; the jobs that must not fail quietly notify"
for t in "$T"/units/*.timer; do
    [ -f "${t%.timer}.service" ] || fail "${t##*/} has no service"
done
for s in ddsm-maintain ddsm-audit-verify ddsm-reconcile; do
    of=$(sed -n 's/^OnFailure=//p' "$T/units/$s.service")
    [ -n "$of" ] || fail "$s.service has no OnFailure="
    tmpl=$(sed 's/@.*/@.service/' <<<"$of")
    [ -f "$T/units/$tmpl" ] || fail "$s.service: OnFailure=$of, but no $tmpl in conf/systemd"
done
grep -q '^User=ddsm$' "$T"/units/ddsm-maintain.service || fail "jobs do not run as ddsm"

echo "== each job's ExecStart does its job (built ddsmctl, this test's store and token)"
expect 0 "$DDSM_CTL" db migrate
expect 0 ctl root create
mkdir -m 700 "$T/cred" "$T/metrics"
printf '%s\n' "$DDSM_TEST_PIN" >"$T/cred/pin"
chmod 400 "$T/cred/pin"
# job UNIT: its ExecStart with systemd's expansions ($$ is $, ${CREDENTIALS_DIRECTORY}) done.
job() {
    local line
    line=$(sed -n 's/^ExecStart=//p' "$T/units/$1.service" |
        sed -e 's/\$\$/$/g' -e "s|\${CREDENTIALS_DIRECTORY}|$T/cred|g" \
            -e "s|/var/lib/ddsm/metrics|$T/metrics|g")
    eval "set -- $line"
    run env -u DDSM_PIN "$@"
}
job ddsm-maintain
[ "$RC" = 0 ] || fail "ddsm-maintain: exit $RC: $ERR"
out_has "monthly partitions ready"
job ddsm-reconcile
[ "$RC" = 0 ] || fail "ddsm-reconcile: exit $RC: $OUT $ERR"
job ddsm-audit-verify
[ "$RC" = 0 ] || fail "ddsm-audit-verify: exit $RC: $OUT $ERR"
out_has "everything verifies"
job ddsm-metrics
[ "$RC" = 0 ] || fail "ddsm-metrics: exit $RC: $ERR"
grep -qx 'ddsm_db_up 1' "$T/metrics/ddsm-db.prom" || fail "no ddsm_db_up 1 in the textfile"
[ ! -e "$T/metrics/ddsm-db.prom.tmp" ] || fail "the metrics job left its temporary file"
# The store down: the textfile still says so, and the job's exit says it too.
conf_store_unreachable "$T/down.conf"
DDSM_CONF=$T/down.conf job ddsm-metrics
same "$RC" 3 "ddsm-metrics exit with the store down"
grep -qx 'ddsm_db_up 0' "$T/metrics/ddsm-db.prom" || fail "no ddsm_db_up 0 with the store down"

echo "== sysusers.d and tmpfiles.d, applied to a scratch root"
root=$T/root
mkdir -p "$root/etc"
expect 0 systemd-sysusers --root="$root" "$src/sysusers.d/ddsm.conf"
grep -q '^ddsm:x:[0-9]*:[0-9]*:ddsm-pkcs11 custody service:/var/lib/ddsm:/usr/sbin/nologin$' \
    "$root/etc/passwd" || fail "sysusers: $(cat "$root/etc/passwd")"
gid=$(awk -F: '$1 == "ddsm" { print $3 }' "$root/etc/group")
[ -n "$gid" ] || fail "sysusers made no group ddsm: $(cat "$root/etc/group")"
# /etc/ddsm is the packages' (z: its mode fixed when present, never created here).
mkdir -m 0755 "$root/etc/ddsm"
expect 0 systemd-tmpfiles --root="$root" --create "$src/tmpfiles.d/ddsm.conf"
same "$(stat -c '%a %u %g' "$root/etc/ddsm")" "750 0 $gid" "/etc/ddsm"
uid=$(awk -F: '$1 == "ddsm" { print $3 }' "$root/etc/passwd")
same "$(stat -c '%a %u %g' "$root/var/lib/ddsm/metrics")" "755 $uid $gid" "/var/lib/ddsm/metrics"
echo "ok: units verify and their jobs run; user, group and directories"
