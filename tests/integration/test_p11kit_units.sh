#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The files of the out-of-process deployment (docs/deployment-p11kit.md) as systemd reads them:
#  - the p11-kit server's unit passes `systemd-analyze verify` (which also checks that the
#    program it runs exists), and a copy with a broken line does not (the check can fail); the
#    other units are test_systemd_units' (they run the installed ddsmctl);
#  - conf/sysusers.d and conf/tmpfiles.d applied to an empty root directory (--root) make the
#    user ddsm, the groups ddsm and ddsm-clients, /run/ddsm 2750 ddsm:ddsm-clients and
#    /var/lib/ddsm 0711 ddsm:ddsm, the owners checked by number against that root's passwd.
# No systemd needs to run (PID 1 may be anything).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_SOURCE_DIR
CONF=$DDSM_SOURCE_DIR/conf
scratch_dir units
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (Debian package systemd)"

u=$CONF/systemd/ddsm-p11-kit-server.service
expect 0 systemd-analyze verify "$u"
[ -z "$ERR" ] || fail "systemd-analyze verify $u warned: $ERR"
# The check is real: a misspelt setting and a missing program are reported.
sed -e 's/^Type=simple/Type=simpel/' -e 's#^ExecStart=/usr/libexec/p11-kit/#ExecStart=/nonexistent/#' \
    "$CONF/systemd/ddsm-p11-kit-server.service" >"$T/broken.service"
run systemd-analyze verify "$T/broken.service"
[ "$RC" -ne 0 ] || fail "systemd-analyze verify accepted a broken unit"
err_has "simpel"

R=$T/root
mkdir -p "$R/etc"
touch "$R/etc/passwd" "$R/etc/group" "$R/etc/shadow" "$R/etc/gshadow"
expect 0 systemd-sysusers --root="$R" "$CONF"/sysusers.d/*.conf
expect 0 systemd-tmpfiles --create --root="$R" "$CONF"/tmpfiles.d/*.conf
uid() { awk -F: -v n="$1" '$1 == n { print $3 }' "$R/etc/passwd"; }
gid() { awk -F: -v n="$1" '$1 == n { print $3 }' "$R/etc/group"; }
[ -n "$(uid ddsm)" ] && [ -n "$(gid ddsm)" ] && [ -n "$(gid ddsm-clients)" ] ||
    fail "sysusers.d made: $(cat "$R/etc/passwd" "$R/etc/group")"
same "$(awk -F: '$1 == "ddsm" { print $4 ":" $7 }' "$R/etc/passwd")" "$(gid ddsm):/usr/sbin/nologin" \
    "ddsm's primary group and shell"
same "$(stat -c '%u:%g %a' "$R/run/ddsm")" "$(uid ddsm):$(gid ddsm-clients) 2750" "/run/ddsm"
same "$(stat -c '%u:%g %a' "$R/var/lib/ddsm")" "$(uid ddsm):$(gid ddsm) 711" "/var/lib/ddsm"
# /etc/ddsm is the packages' (z: adjusted when present, never created here).
[ ! -e "$R/etc/ddsm" ] || fail "tmpfiles.d created /etc/ddsm"
mkdir -m 0755 "$R/etc/ddsm"
expect 0 systemd-tmpfiles --create --root="$R" "$CONF"/tmpfiles.d/*.conf
same "$(stat -c '%u:%g %a' "$R/etc/ddsm")" "0:$(gid ddsm) 750" "/etc/ddsm"
echo "PASS"
