#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# pkcs11-tool on the module in a process whose OPENSSL_CONF loads pkcs11-provider pointed at this
# same module, once as conf/openssl-pkcs11-provider.cnf ships it (the module loaded at the first
# pkcs11: key) and once with `pkcs11-module-load-behavior = early` (the provider initialises the
# module from inside pkcs11-tool's own C_Initialize): ECDSA, ECDSA-SHA256 and EdDSA signatures,
# each verified by plain OpenSSL with the public key computed from the design root alone.
# Before, the early case never returned from C_Initialize (the provider's nested C_Initialize
# waited for the lock its caller held); `timeout` turns such a hang into a failure here.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
PY=/usr/bin/python3
dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN OPENSSL_CONF=/dev/null
export DDSM_PIN_FILE=$dir/pin
(umask 077; printf '%s' "$DDSM_TEST_PIN" > "$DDSM_PIN_FILE")
shipped=$DDSM_SOURCE_DIR/conf/openssl-pkcs11-provider.cnf
sed 's/^activate = 1$/activate = 1\npkcs11-module-load-behavior = early/' "$shipped" > "$dir/early.cnf"
grep -q '^pkcs11-module-load-behavior = early' "$dir/early.cnf" || fail "no early configuration"

import_design_root
asset_active k1 --type secp256k1 --default-path "m/44'/0'/0'/0/0"
asset_active p2 --type p256 --default-path "m/1'/0'"
asset_active ed --type ed25519 --default-path "m/44'/501'/0'/0'"
declare -A curve=([k1]=secp256k1 [p2]=p256 [ed]=ed25519)
for a in k1 p2 ed; do
    $PY "$DDSM_SOURCE_DIR/tests/support/hdkeys.py" "${curve[$a]}" "$(ctl asset show "$a" --json |
        json_get id)" "$(ctl asset show "$a" --json | json_get default_path)" > "$dir/$a.pem"
done
printf 'pkcs11-tool beside the provider' > "$dir/msg"
openssl dgst -sha256 -binary "$dir/msg" > "$dir/digest"

for conf in "$shipped" "$dir/early.cnf"; do
    for a in k1 p2 ed; do
        id=$(asset_key "$a" id)
        case $a in
            ed) mech=EDDSA in=$dir/msg ;;
            k1) mech=ECDSA in=$dir/digest ;;
            p2) mech=ECDSA-SHA256 in=$dir/msg ;;
        esac
        rc=0
        OPENSSL_CONF=$conf timeout 120 pkcs11-tool --module "$DDSM_MODULE" --login \
            --pin "$DDSM_TEST_PIN" --sign -m "$mech" --id "$id" --signature-format openssl \
            -i "$in" -o "$dir/$a.sig" >"$dir/out" 2>&1 || rc=$?
        [ "$rc" -eq 0 ] || fail "$a with ${conf##*/}: pkcs11-tool exited $rc: $(cat "$dir/out")"
        case $a in
            ed) openssl pkeyutl -verify -pubin -inkey "$dir/ed.pem" -rawin -in "$dir/msg" \
                    -sigfile "$dir/ed.sig" ;;
            k1) openssl pkeyutl -verify -pubin -inkey "$dir/k1.pem" -in "$dir/digest" \
                    -sigfile "$dir/k1.sig" ;;
            p2) openssl dgst -sha256 -verify "$dir/p2.pem" -signature "$dir/p2.sig" "$dir/msg" ;;
        esac >"$dir/verify" 2>&1 || fail "$a with ${conf##*/}: $(cat "$dir/verify")"
        rm -f "$dir/$a.sig"
    done
done
echo "pkcs11-tool with the provider's OPENSSL_CONF: ok"
