#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The root pin and the HSM-enforced attributes, from ddsmctl (docs/root.md):
#  - root import pins the root, with the fingerprint of the reserved message computed here with
#    openssl (the docs' vector);
#  - root info (text and --json) shows the enforced attributes of a new root;
#  - a root made the way ddsmctl made them before (CKA_DERIVE, copyable, no mechanism list) is
#    shown as not HSM-enforced, with the remedy;
#  - an impostor labelled like the root, made on the backend without a login, is ignored by
#    root info once a root is pinned;
#  - create --shares then recover into a new token: same fingerprint, a RECOVER row, one root.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL DDSM_TEST_DIR DDSM_TEST_PIN
C=$DDSM_CTL
PY=/usr/bin/python3
scratch_dir rootpin
export DDSM_PIN=$DDSM_TEST_PIN

# A fresh token labelled "custody" in its own SoftHSM token directory, same database.
new_token() {
    local d=$T/$1
    mkdir -p "$d/tokens"
    printf '%s\n' "directories.tokendir = $d/tokens" "objectstore.backend = file" \
        "log.level = ERROR" "slots.removable = false" >"$d/softhsm2.conf"
    SOFTHSM2_CONF=$d/softhsm2.conf softhsm2-util --init-token --free --label custody \
        --pin "$DDSM_TEST_PIN" --so-pin "$DDSM_TEST_SO_PIN" >/dev/null
}
on() {
    local d=$T/$1
    shift
    SOFTHSM2_CONF=$d/softhsm2.conf "$@"
}
# backend_key PUBLIC|USER HEXVALUE OLDSTYLE: a secret key labelled ddsm-root made directly on the
# backend token of $SOFTHSM2_CONF (never through the module). OLDSTYLE 1: the attributes the
# root had before ddsmctl enforced more (as the old ddsmctl template set them).
backend_key() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import os, sys
import PyKCS11 as P
who, value, old = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3] == "1"
lib = P.PyKCS11Lib()
lib.load("/usr/lib/softhsm/libsofthsm2.so")
slot = [s for s in lib.getSlotList(tokenPresent=True)
        if lib.getTokenInfo(s).label.strip() == "custody"][0]
s = lib.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
if who == "USER":
    s.login(os.environ["DDSM_TEST_PIN"])
t = [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET),
     (P.CKA_TOKEN, True), (P.CKA_PRIVATE, who == "USER"), (P.CKA_SENSITIVE, True),
     (P.CKA_SIGN, True), (P.CKA_LABEL, "ddsm-root"), (P.CKA_VALUE, value)]
if old:
    t += [(P.CKA_EXTRACTABLE, False), (P.CKA_VERIFY, False), (P.CKA_DERIVE, True),
          (P.CKA_MODIFIABLE, False)]
s.createObject(t)
if who == "USER":
    s.logout()
s.closeSession()
EOF
}

expect 0 "$C" db migrate

echo "== root import pins the docs/design.md root with the documented fingerprint"
printf '%s\n' "$DESIGN_ROOT_SEED" >"$T/design.hex"
want_fp=$(printf 'DDSM-v1 root fingerprint' |
    openssl mac -digest SHA256 -macopt "hexkey:$DESIGN_ROOT_SEED" HMAC | tr 'A-F' 'a-f' | cut -c1-32)
same "$want_fp" 5d02c5c109fe45418ef5953cf6b4788e "openssl's fingerprint of the docs/design.md root"
expect 0 "$C" root import --hex-file "$T/design.hex"
same "$(fingerprint)" "$want_fp" "imported root's fingerprint"
out_has "pinned: fingerprint $want_fp recorded in the store"
same "$(sql "SELECT event || ' ' || token_label || ' ' || key_label || ' ' || not_enforced
             FROM custody_root_pins WHERE fingerprint = '$want_fp'")" "IMPORT custody ddsm-root " \
    "pin row"

echo "== root info: the HSM-enforced attributes of a new root"
expect 0 "$C" root info
for line in "sensitive:         true" "extractable:       false" \
    "modifiable:        false" "copyable:          false" "destroyable:       true" \
    "mechanisms:        CKM_SHA256_HMAC" "hsm-enforced:      yes" "pinned:            yes"; do
    out_has "$line"
done
[[ "$OUT" == *$'usage:             sign\n'* ]] || fail "the root has usages besides sign: $OUT"
[ -z "$ERR" ] || fail "root info warned about a new root: $ERR"
expect 0 "$C" root info --json
"$PY" - "$OUT" "$want_fp" <<'EOF' || fail "root info --json: $OUT"
import json, sys
d = json.loads(sys.argv[1])
want = {"sensitive": True, "extractable": False, "modifiable": False,
        "copyable": False, "destroyable": True, "derive": False, "private": True,
        "allowed_mechanisms": ["CKM_SHA256_HMAC"], "usage": "sign", "hsm_enforced": True,
        "not_enforced": "", "pinned": True, "fingerprint": sys.argv[2], "label": "ddsm-root",
        "key_type": "CKK_GENERIC_SECRET", "value_length": 32}
bad = {k: (d.get(k), v) for k, v in want.items() if d.get(k) != v}
assert not bad, bad
EOF

echo "== an impostor made on the backend without a login is ignored once a root is pinned"
backend_key PUBLIC "$(printf '%064d' 7)" 0
expect 0 "$C" root info
same "$(fingerprint)" "$want_fp" "root info fingerprint with an impostor on the token"
err_has "ignoring 1 secret key labelled \"ddsm-root\" on token \"custody\""
# A public object is never a candidate: root pin finds the one root without being told.
expect 0 "$C" root pin
out_has "already pinned: fingerprint $want_fp"
expect 1 "$C" root pin --fingerprint 0123456789abcdef0123456789abcdef
err_has "holds no key labelled \"ddsm-root\" with fingerprint 0123456789abcdef0123456789abcdef"
expect 2 "$C" root pin --fingerprint 0123
err_has "--fingerprint takes 32 lower-case hex digits"
same "$(sql "SELECT count(*) FROM custody_root_pins")" 1 "pin rows after pinning a pinned root"

echo "== a root made the old way is shown as not HSM-enforced, with the remedy"
new_token old
on old backend_key USER "$DESIGN_ROOT_SEED" 1
expect 0 on old "$C" root info
same "$(fingerprint)" "$want_fp" "old-style root's fingerprint"
out_has "hsm-enforced:      no"
out_has "pinned:            yes"
err_has "the root lacks HSM-enforced limits (copyable, CKA_DERIVE, mechanisms not limited to CKM_SHA256_HMAC)"
err_has "recover it from its shares into a new token"
expect 0 on old "$C" root info --json
same "$(json_get hsm_enforced <<<"$OUT")" False "old-style root hsm_enforced"

echo "== create --shares, then recover into a new token: the same fingerprint, the same root"
new_token orig
expect 0 on orig "$C" root create --shares 3 --threshold 2 --out "$T/shares"
fp=$(fingerprint)
out_has "pinned: fingerprint $fp recorded in the store"
new_token copy
expect 0 on copy "$C" root recover --share "$T/shares/ddsm-share-3-of-3.txt" \
    --share "$T/shares/ddsm-share-1-of-3.txt"
same "$(fingerprint)" "$fp" "recovered fingerprint"
out_has "pinned: fingerprint $fp recorded in the store"
same "$(sql "SELECT string_agg(event, ',' ORDER BY id) FROM custody_root_pins
             WHERE fingerprint = '$fp'")" "CREATE,RECOVER" "pin history of the recovered root"
same "$(sql "SELECT count(DISTINCT fingerprint) FROM custody_root_pins")" 2 "roots pinned"
expect 0 on copy "$C" root info
out_has "hsm-enforced:      yes"
out_has "pinned:            yes"

echo "== a backend that does not know CKA_ALLOWED_MECHANISMS: the root is made without it, said so"
# The fault wrapper stands for such a backend: templates naming the attribute are refused as an
# unknown attribute type, every other call reaches SoftHSM.
new_token weak
sed "s|^module *=.*|module = $DDSM_FAULTP11|" "$DDSM_CONF" >"$T/weak.conf"
printf '%s\n' "C_GenerateKey attr=0x40000600 rv=0x12" "C_CreateObject attr=0x40000600 rv=0x12" \
    >"$T/weak.ctl"
weak() {
    DDSM_CONF=$T/weak.conf DDSM_FAULT_CTL=$T/weak.ctl DDSM_FAULT_TARGET=/usr/lib/softhsm/libsofthsm2.so \
        on weak "$@"
}
printf '%s\n' "$(printf '%064d' 5)" >"$T/weak.hex"
expect 0 weak "$C" root import --hex-file "$T/weak.hex"
err_has "the backend does not accept CKA_ALLOWED_MECHANISMS: the root key is made without it"
weak_fp=$(fingerprint)
same "$(sql "SELECT not_enforced FROM custody_root_pins WHERE fingerprint = '$weak_fp'")" \
    CKA_ALLOWED_MECHANISMS "not_enforced recorded with the pin"
expect 0 weak "$C" root info
out_has "hsm-enforced:      no"
out_has "copyable:          false"
out_has "mechanisms:        any (not restricted)"
err_has "mechanisms not limited to CKM_SHA256_HMAC"
expect 0 weak "$C" root info --json
same "$(json_get not_enforced <<<"$OUT")" "mechanisms not limited to CKM_SHA256_HMAC" \
    "root info --json not_enforced of the weak root"

echo "== the pin history is append-only"
if sql "DELETE FROM custody_root_pins" 2>/dev/null; then
    fail "a pin row could be deleted"
fi

echo "PASS: test_root_pin"
