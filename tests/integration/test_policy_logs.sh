#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Logs at [log] level = debug, from the module (driven by PyKCS11 and pkcs11-tool) and from
# ddsmctl: one line per event in the documented shape, and never a PIN nor key bytes: the root
# seed, a derived key and the audit key of the docs/design.md vectors are known here, and neither
# they (hex, either case, or any 16-digit piece of them) nor the user PIN appear anywhere.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL
scratch_dir logs
unset DDSM_PIN

SEED=$DESIGN_ROOT_SEED
KEY_B0=b9cdad6de8b43ceecb5682cfe617d2d0bd885ed4d8152c3e8d0375e012c473af # vec-b, m/0, counter 0
AUDIT_KEY=bda64921dc9cd76526ffcd8c3d314e5d160dd46e0e4cc334293c49c538cf53d2
VEC_B=00000000-0000-4000-8000-000000000001
# A PIN no log line could contain by chance (unlike 123456 in a pid or a sequence number).
PIN=Qv7pinXk2Lw9
softhsm_user --change-pin --new-pin "$PIN" >/dev/null 2>&1 || fail "cannot change the token PIN"

conf=$T/ddsm.conf
sed '/^\[log\]/,$d' "$DDSM_CONF" >"$conf"
printf '\n[policy]\nmechanism = CKM_SHA256_HMAC\n\n[log]\nlevel = debug\n' >>"$conf"
chmod 600 "$conf"
export DDSM_CONF=$conf
printf '%s\n' "$SEED" >"$T/seed.hex"

echo "== ddsmctl at debug level"
{
    export DDSM_PIN=$PIN
    "$DDSM_CTL" db migrate
    "$DDSM_CTL" root import --hex-file "$T/seed.hex"
    "$DDSM_CTL" root info
    "$DDSM_CTL" asset register --label vec-b --id $VEC_B --default-path m/0 --zone logs
    "$DDSM_CTL" asset activate vec-b
    "$DDSM_CTL" zone disable logs
    "$DDSM_CTL" zone enable logs
    "$DDSM_CTL" audit verify
    "$DDSM_CTL" status
    "$DDSM_CTL" --pin-file /dev/stdin asset show vec-b <<<"$PIN"
    unset DDSM_PIN
} >"$T/ctl.out" 2>"$T/ctl.err" || fail "ddsmctl failed: $(cat "$T/ctl.err")"

echo "== the module at debug level: PyKCS11 (derive, sign, refusals) and pkcs11-tool"
cat >"$T/drive.py" <<EOF
import os, struct, uuid
import PyKCS11
lib = PyKCS11.PyKCS11Lib()
lib.load("$DDSM_MODULE")
s = lib.openSession(0, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
try:
    s.login("wrong-pin-0")
except PyKCS11.PyKCS11Error:
    pass
s.login("$PIN")
root = s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_LABEL, "ddsm-root")])[0]
k = s.deriveKey(root, [], PyKCS11.Mechanism(0xC4530001, uuid.UUID("$VEC_B").bytes + b"m/0"))
mac = s.sign(k, b"hello", PyKCS11.Mechanism(PyKCS11.CKM_SHA256_HMAC, None))
s.getAttributeValue(k, [PyKCS11.CKA_VALUE, PyKCS11.CKA_LABEL])  # CKA_VALUE: sensitive
try:  # refused by [policy] mechanism
    s.sign(k, b"x", PyKCS11.Mechanism(PyKCS11.CKM_SHA256_HMAC_GENERAL, struct.pack("=Q", 16)))
except PyKCS11.PyKCS11Error:
    pass
try:
    s.deriveKey(root, [], PyKCS11.Mechanism(0xC4530001, uuid.UUID("$VEC_B").bytes + b"m/01"))
except PyKCS11.PyKCS11Error:
    pass
try:
    s.deriveKey(root, [], PyKCS11.Mechanism(0xC4530001, uuid.uuid4().bytes + b"m/0"))
except PyKCS11.PyKCS11Error:
    pass
s.logout()
s.closeSession()
print(bytes(mac).hex(), flush=True)
# C_Finalize, then leave without unloading the module: an unload at interpreter exit races the
# module's detached HSM worker threads (module/src/hsmcall.c), which is not what this tests.
lib.lib.C_Finalize()
os._exit(0)
EOF
"${DDSM_PYTHON:-/usr/bin/python3}" "$T/drive.py" >"$T/py.out" 2>"$T/py.err" || fail "driver: $(cat "$T/py.err")"
want=$(printf 'hello' | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY_B0 | awk '{print $2}')
[ "$(cat "$T/py.out")" = "$want" ] || fail "the derived key signed wrongly"
p11 --login --pin "$PIN" -O >"$T/tool.out" 2>"$T/tool.err" ||
    fail "pkcs11-tool: $(cat "$T/tool.err")"
grep -q "$VEC_B/m/0" "$T/tool.out" || fail "pkcs11-tool does not list the derived key"

logs=("$T/ctl.err" "$T/py.err" "$T/tool.err")
echo "== debug level was in force"
grep -hq ': DEBUG: ' "${logs[@]}" || fail "no DEBUG line at all: the test would prove nothing"
grep -hq ': INFO: .*login as user type 1 (PIN of 12 bytes)' "${logs[@]}" ||
    fail "the login line is missing"
grep -hq ': INFO: .*refused' "${logs[@]}" || fail "no refusal was logged"

echo "== one line per event, in the documented shape"
bad=$(grep -Ev '^ddsm\[[0-9]+\]: (ERROR|WARN|INFO|DEBUG): [^[:cntrl:]]+$' "$T/py.err" || true)
[ -z "$bad" ] || fail "module lines not in the log shape: $bad"
# pkcs11-tool prints lines of its own; the module's are whole ones among them.
bad=$(grep -E '^ddsm' "$T/tool.err" |
    grep -Ev '^ddsm\[[0-9]+\]: (ERROR|WARN|INFO|DEBUG): [^[:cntrl:]]+$' || true)
[ -z "$bad" ] || fail "module lines under pkcs11-tool not in the log shape: $bad"
grep -Eq '^ddsm\[[0-9]+\]: INFO: login as user type 1 \(PIN of 12 bytes\)$' "$T/tool.err" ||
    fail "the module's login line under pkcs11-tool is missing"
bad=$(grep -Ev '^ddsm\[[0-9]+\]: (ERROR|WARN|INFO|DEBUG): |^ddsmctl: ' "$T/ctl.err" || true)
[ -z "$bad" ] || fail "ddsmctl lines not in the log shape: $bad"

echo "== no PIN, no key bytes"
secrets=("$PIN")
for hex in $SEED $KEY_B0 $AUDIT_KEY; do
    for ((i = 0; i + 16 <= ${#hex}; i += 8)); do
        secrets+=("${hex:i:16}" "$(tr a-f A-F <<<"${hex:i:16}")")
    done
done
for s in "${secrets[@]}"; do
    if grep -Fq -- "$s" "${logs[@]}" "$T/ctl.out"; then
        fail "a secret appears in the output: $s ($(grep -lF -- "$s" "${logs[@]}" "$T/ctl.out"))"
    fi
done
echo "$(cat "${logs[@]}" | wc -l) log lines checked"
echo ok
