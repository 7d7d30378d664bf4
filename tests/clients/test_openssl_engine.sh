#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenSSL 3 with Debian's PKCS#11 engine (libengine-pkcs11-openssl, libp11 0.4.12) on top of the
# module, configured by conf/openssl-pkcs11.cnf exactly as the README shows: `openssl pkeyutl
# -engine pkcs11 -keyform engine -sign` signs a SHA-256 digest with secp256k1 and P-256 keys named
# by PKCS#11 URI (pkcs11:token=custody;object=<percent-encoded label>;type=private), and
# `openssl pkeyutl -verify` accepts each signature with the public key read out through the
# module (pkcs11-tool --read-object, DER SubjectPublicKeyInfo).
#
# libp11 0.4.12 enumerates the token's private keys (a find by class alone) and matches the URI's
# object= against their CKA_LABEL itself: the key must be one the module lists, i.e. its asset's
# default path, and object= must be its CKA_LABEL "<asset uuid>/<path>".
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
# RFC 3986 percent-encoding of a URI path attribute value (keeps unreserved characters only).
pct() {
    /usr/bin/python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$1"
}

dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN
# The configuration the README shows (it reads $DDSM_MODULE), for the engine commands only: other
# OpenSSL programs (pkcs11-tool, the verifying openssl) must not load the engine.
conf=$DDSM_SOURCE_DIR/conf/openssl-pkcs11.cnf
export OPENSSL_CONF=/dev/null
[ -f "/usr/lib/$(uname -m)-linux-gnu/engines-3/pkcs11.so" ] ||
    fail "libengine-pkcs11-openssl is not installed (scripts/lib/common.sh installs it)"

import_design_root
asset_active btc-hot --type secp256k1 --default-path "m/44'/0'/0'/0/0"
asset_active tls-p256 --type p256 --default-path "m/1'/0'"

printf 'sign me through the engine' > "$dir/msg"
openssl dgst -sha256 -binary "$dir/msg" > "$dir/digest"

for a in btc-hot tls-p256; do
    label=$(asset_key "$a" label)
    id=$(asset_key "$a" id)
    uri="pkcs11:token=custody;object=$(pct "$label");type=private"
    echo "$a: $uri"

    OPENSSL_CONF=$conf openssl pkeyutl -engine pkcs11 -keyform engine -sign \
        -inkey "$uri;pin-value=$DDSM_TEST_PIN" -in "$dir/digest" -out "$dir/$a.sig" ||
        fail "$a: openssl pkeyutl -sign failed"
    # The engine returns DER (SEQUENCE of r and s).
    openssl asn1parse -inform DER -in "$dir/$a.sig" | grep -q 'INTEGER' || fail "$a: not DER"

    p11_user --read-object --type pubkey --id "$id" -o "$dir/$a.der" >/dev/null
    openssl pkey -pubin -inform DER -in "$dir/$a.der" -out "$dir/$a.pem"
    # Plain openssl from here on: no engine, no module.
    openssl pkeyutl -verify -pubin -inkey "$dir/$a.pem" \
        -in "$dir/digest" -sigfile "$dir/$a.sig" | grep -q 'Signature Verified Successfully' ||
        fail "$a: openssl rejects the signature made through the engine"
    # The same signature does not verify another digest.
    printf 'other' | openssl dgst -sha256 -binary > "$dir/other"
    if openssl pkeyutl -verify -pubin -inkey "$dir/$a.pem" \
        -in "$dir/other" -sigfile "$dir/$a.sig" >/dev/null 2>&1; then
        fail "$a: the signature verified another digest"
    fi
done

# The public key of the URI's key is the one read by id: the engine can load it too.
label=$(asset_key btc-hot label)
OPENSSL_CONF=$conf openssl pkey -engine pkcs11 -inform engine \
    -pubin -in "pkcs11:token=custody;object=$(pct "$label");type=public;pin-value=$DDSM_TEST_PIN" \
    -pubout -out "$dir/engine-pub.pem" 2>/dev/null || fail "the engine cannot load the public key"
cmp -s <(openssl pkey -pubin -in "$dir/engine-pub.pem" -outform DER) \
    <(openssl pkey -pubin -in "$dir/btc-hot.pem" -outform DER) ||
    fail "the engine's public key differs from pkcs11-tool's"

n=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'
          AND detail IN ('key type secp256k1', 'key type p256')")
[ "$n" -ge 2 ] || fail "expected audited derivations, found $n"
echo "openssl engine: ok"
