#!/usr/bin/env bash
# The PKCS#11 3.0 interface as a client sees it: pkcs11-tool --list-interfaces shows both
# interfaces named "PKCS 11" (3.0 first, then 2.40), and pkcs11-tool — which takes the default
# interface through C_GetInterface, i.e. the 3.0 list — still lists, logs in and finds the
# virtual key. C_LoginUser itself is exercised in test_policy.c.
set -euo pipefail

: "${DDSM_MODULE:?run through scripts/lib/run-integration via ctest}"
: "${DDSM_CTL:?}" "${DDSM_TEST_DIR:?}" "${DDSM_TEST_PIN:?}"
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
p11() { pkcs11-tool --module "$DDSM_MODULE" "$@"; }
export DDSM_PIN=$DDSM_TEST_PIN
printf '%s\n' 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
    >"$DDSM_TEST_DIR/seed.hex"
"$DDSM_CTL" db migrate >/dev/null
"$DDSM_CTL" root import --hex-file "$DDSM_TEST_DIR/seed.hex" >/dev/null
"$DDSM_CTL" asset register --label vec-b --id 00000000-0000-4000-8000-000000000001 >/dev/null
"$DDSM_CTL" asset activate vec-b >/dev/null

out=$(p11 --list-interfaces 2>&1)
echo "$out"
[ "$(grep -c "^Interface 'PKCS 11'" <<<"$out")" -eq 2 ] || fail "not two PKCS 11 interfaces"
versions=$(sed -n 's/^ *version: //p' <<<"$out" | tr '\n' ' ')
[ "$versions" = "3.0 2.40 " ] || fail "interface versions: $versions"
grep -q 'flags=0x0' <<<"$out" || fail "interface flags"

out=$(p11 --login --pin "$DDSM_TEST_PIN" -O 2>&1)
grep -q "label: *00000000-0000-4000-8000-000000000001/m/0" <<<"$out" ||
    fail "pkcs11-tool over the 3.0 list does not find the virtual key: $out"
echo ok
