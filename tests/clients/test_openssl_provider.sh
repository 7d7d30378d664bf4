#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenSSL 3 with pkcs11-provider 1.0 (Debian's bookworm-backports) on top of the module,
# configured by conf/openssl-pkcs11-provider.cnf as the README shows, keys named by the URIs
# `ddsmctl asset uri` prints:
#  - `openssl pkeyutl -sign` of a SHA-256 digest with a secp256k1 key at a path other than its
#    asset's default path, and of a message with an Ed25519 key;
#  - `openssl req -new -x509` (a self-signed certificate) and `openssl req -new` (a CSR) with a
#    P-256 key;
#  - the provider's public key of a URI;
# each checked by plain OpenSSL (no provider, no module) against the public key computed from the
# docs/design.md root alone (tests/support/hdkeys.py), and every openssl run exits 0: no crash
# when OpenSSL winds the provider down at exit, without the provider's no-deinit quirk.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
PY=/usr/bin/python3
[ -f "/usr/lib/$(uname -m)-linux-gnu/ossl-modules/pkcs11.so" ] ||
    fail "pkcs11-provider is not installed (scripts/lib/common.sh installs it from bookworm-backports)"

dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN
# The verifying openssl (and ddsmctl) read no configuration; the provider runs get the README's.
export OPENSSL_CONF=/dev/null
conf=$DDSM_SOURCE_DIR/conf/openssl-pkcs11-provider.cnf
grep -q '^pkcs11-module-quirks' "$conf" && fail "the shipped configuration sets a quirk"
export DDSM_PIN_FILE=$dir/pin
(umask 077; printf '%s' "$DDSM_TEST_PIN" > "$DDSM_PIN_FILE")
# prov CMD...: openssl with the provider; any non-zero exit (a crash at exit included) fails.
prov() {
    local rc=0
    OPENSSL_CONF=$conf openssl "$@" 2>"$dir/prov.err" || rc=$?
    [ "$rc" -eq 0 ] || fail "openssl $1 through the provider exited $rc: $(cat "$dir/prov.err")"
}
# expected CURVE ASSET PATH FILE: the key's public key, computed without the module, as PEM.
expected() {
    $PY "$DDSM_SOURCE_DIR/tests/support/hdkeys.py" "$1" "$(ctl asset show "$2" --json |
        json_get id)" "$3" > "$4"
}
same_key() { # same_key PEM-A PEM-B WHAT
    cmp -s <(openssl pkey -pubin -in "$1" -outform DER) <(openssl pkey -pubin -in "$2" -outform DER) ||
        fail "$3: not the public key computed from the root"
}

import_design_root
asset_active btc-hot --type secp256k1 --default-path "m/44'/0'/0'/0/0"
asset_active sol --type ed25519 --default-path "m/44'/501'/0'/0'"
asset_active tls --type p256 --default-path "m/1'/0'"

printf 'sign me through the provider' > "$dir/msg"
openssl dgst -sha256 -binary "$dir/msg" > "$dir/digest"
printf 'other' | openssl dgst -sha256 -binary > "$dir/other"

# secp256k1, a non-default path: the URI's id= names it.
path="m/44'/0'/0'/0/9"
uri=$(ctl asset uri btc-hot --path "$path" --type private)
echo "secp256k1: $uri"
[[ "$uri" == pkcs11:*id=* ]] || fail "no id in the URI: $uri"
expected secp256k1 btc-hot "$path" "$dir/k1.pem"
prov pkeyutl -sign -inkey "$uri" -in "$dir/digest" -out "$dir/k1.sig"
openssl pkeyutl -verify -pubin -inkey "$dir/k1.pem" -in "$dir/digest" -sigfile "$dir/k1.sig" |
    grep -q 'Signature Verified Successfully' || fail "secp256k1: the signature does not verify"
if openssl pkeyutl -verify -pubin -inkey "$dir/k1.pem" -in "$dir/other" -sigfile "$dir/k1.sig" \
    >/dev/null 2>&1; then fail "secp256k1: the signature verified another digest"; fi
# The default path's key is another key: the signature is not its.
expected secp256k1 btc-hot "m/44'/0'/0'/0/0" "$dir/k1-default.pem"
if openssl pkeyutl -verify -pubin -inkey "$dir/k1-default.pem" -in "$dir/digest" \
    -sigfile "$dir/k1.sig" >/dev/null 2>&1; then fail "secp256k1: signed with the default path"; fi
# The provider's public key of the public URI.
prov pkey -pubin -in "$(ctl asset uri btc-hot --path "$path" --type public)" -pubout \
    -out "$dir/k1-prov.pem"
same_key "$dir/k1-prov.pem" "$dir/k1.pem" "secp256k1 public key through the provider"

# Ed25519: pure EdDSA over the message (-rawin).
uri=$(ctl asset uri sol --type private)
echo "ed25519: $uri"
expected ed25519 sol "m/44'/501'/0'/0'" "$dir/ed.pem"
prov pkeyutl -sign -rawin -inkey "$uri" -in "$dir/msg" -out "$dir/ed.sig"
[ "$(stat -c %s "$dir/ed.sig")" -eq 64 ] || fail "ed25519: the signature is not 64 bytes"
openssl pkeyutl -verify -pubin -inkey "$dir/ed.pem" -rawin -in "$dir/msg" -sigfile "$dir/ed.sig" |
    grep -q 'Signature Verified Successfully' || fail "ed25519: the signature does not verify"

# P-256: a self-signed certificate and a CSR.
uri=$(ctl asset uri tls --type private)
echo "p256: $uri"
expected p256 tls "m/1'/0'" "$dir/p256.pem"
prov req -new -x509 -key "$uri" -subj "/CN=ddsm provider test" -days 2 -sha256 -out "$dir/cert.pem"
openssl x509 -in "$dir/cert.pem" -pubkey -noout > "$dir/cert-pub.pem"
same_key "$dir/cert-pub.pem" "$dir/p256.pem" "the certificate's key"
openssl verify -CAfile "$dir/cert.pem" "$dir/cert.pem" | grep -q ': OK$' ||
    fail "the self-signed certificate does not verify"
openssl x509 -in "$dir/cert.pem" -noout -text | grep -q 'Signature Algorithm: ecdsa-with-SHA256' ||
    fail "the certificate is not signed with ecdsa-with-SHA256"
prov req -new -key "$uri" -subj "/CN=ddsm provider csr" -sha256 -out "$dir/csr.pem"
openssl req -in "$dir/csr.pem" -verify -noout 2>&1 | grep -q 'verify OK' ||
    fail "the CSR's signature does not verify"
openssl req -in "$dir/csr.pem" -pubkey -noout > "$dir/csr-pub.pem"
same_key "$dir/csr-pub.pem" "$dir/p256.pem" "the CSR's key"

# Every key used was derived by the module, with its audit row.
for t in secp256k1 ed25519 p256; do
    n=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND detail = 'key type $t'")
    [ "$n" -ge 1 ] || fail "no DERIVE row for key type $t"
done
"$DDSM_CTL" audit verify >/dev/null || fail "audit verify failed"
echo "openssl provider: ok"
