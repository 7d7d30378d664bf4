#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Security: files the tools write get restrictive modes, whatever the umask, and a
# configuration writable by group or others is refused by ddsmctl (the module's C_Initialize is
# checked in test_secrets.c).
#  - `ddsmctl root create --shares` writes each share 0400 in a directory it creates 0700, even
#    under umask 000, and never replaces an existing file;
#  - ddsmctl refuses a config of mode 0666, 0620, 0602 (exit 2 or 1, the reason named) and accepts
#    0600, 0640 and 0644 (readable is the operator's choice; writable is a takeover).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL
mode_of() { stat -c %a "$1"; }

"$DDSM_CTL" db migrate >/dev/null

echo "== share files under umask 000"
shares=$DDSM_TEST_DIR/shares
(umask 000 && ctl root create --shares 3 --threshold 2 --out "$shares" >/dev/null)
[ "$(mode_of "$shares")" = 700 ] || fail "share directory has mode $(mode_of "$shares")"
n=0
for f in "$shares"/*; do
    n=$((n + 1))
    [ "$(mode_of "$f")" = 400 ] || fail "$f has mode $(mode_of "$f")"
    [ "$(stat -c %U "$f")" = "$(id -un)" ] || fail "$f is not owned by the ceremony's user"
done
[ "$n" = 3 ] || fail "expected 3 share files, found $n"

echo "== an existing share file is never replaced"
first=$(ls "$shares" | head -n 1)
sum=$(sha256sum "$shares/$first")
# A second ceremony into the same directory: refused (a root exists, or the files do).
if (umask 000 && ctl root create --shares 3 --threshold 2 --out "$shares" >/dev/null 2>&1); then
    fail "a second ceremony wrote into $shares"
fi
[ "$(sha256sum "$shares/$first")" = "$sum" ] || fail "$first was modified"
[ "$(ls "$shares" | wc -l)" = 3 ] || fail "files appeared in $shares"

echo "== a config writable by group or others is refused"
conf=$DDSM_TEST_DIR/modes.conf
cp "$DDSM_CONF" "$conf"
for mode in 666 620 602 660; do
    chmod "$mode" "$conf"
    if out=$(DDSM_CONF=$conf "$DDSM_CTL" asset list 2>&1); then
        fail "ddsmctl ran with a config of mode $mode: $out"
    fi
    grep -q "writable by group or others" <<<"$out" || fail "mode $mode: reason not named: $out"
done
for mode in 600 640 644 400; do
    chmod "$mode" "$conf"
    DDSM_CONF=$conf "$DDSM_CTL" asset list >/dev/null || fail "ddsmctl refused a config of mode $mode"
done
echo "PASS"
