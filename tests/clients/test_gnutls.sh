#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# GnuTLS's certtool with a derived P-256 key named by the URI `ddsmctl asset uri` prints (PIN in
# GNUTLS_PIN, the module given with --provider): a self-signed certificate
# (--generate-self-signed) and a CSR (--generate-request), each verified by plain OpenSSL, with
# the certificate's and the request's public key compared to the key computed from the design
# root alone (tests/support/hdkeys.py). (p11tool --list-all with the printed URIs: test_p11tool.)
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
PY=/usr/bin/python3
dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN OPENSSL_CONF=/dev/null GNUTLS_PIN=$DDSM_TEST_PIN

import_design_root
asset_active tls --type p256 --default-path "m/443'/1'"
path="m/443'/2'" # not the default path: the URI's id= names it
uri=$(ctl asset uri tls --path "$path" --type private)
echo "$uri"
$PY "$DDSM_SOURCE_DIR/tests/support/hdkeys.py" p256 "$(ctl asset show tls --json | json_get id)" \
    "$path" > "$dir/want.pem"
same_key() {
    cmp -s <(openssl pkey -pubin -in "$1" -outform DER) <(openssl pkey -pubin -in "$dir/want.pem" -outform DER) ||
        fail "$2: not the public key computed from the root"
}

cat > "$dir/cert.tmpl" <<EOT
cn = "ddsm certtool test"
expiration_days = 2
ca
signing_key
cert_signing_key
EOT
certtool --provider "$DDSM_MODULE" --generate-self-signed --load-privkey "$uri" \
    --template "$dir/cert.tmpl" --outfile "$dir/cert.pem" </dev/null >"$dir/out" 2>&1 ||
    fail "certtool --generate-self-signed failed: $(cat "$dir/out")"
openssl verify -CAfile "$dir/cert.pem" "$dir/cert.pem" | grep -q ': OK$' ||
    fail "the self-signed certificate does not verify"
openssl x509 -in "$dir/cert.pem" -pubkey -noout > "$dir/cert-pub.pem"
same_key "$dir/cert-pub.pem" "the certificate's key"

cat > "$dir/req.tmpl" <<EOT
cn = "ddsm certtool request"
EOT
certtool --provider "$DDSM_MODULE" --generate-request --load-privkey "$uri" \
    --template "$dir/req.tmpl" --outfile "$dir/req.pem" </dev/null >"$dir/out" 2>&1 ||
    fail "certtool --generate-request failed: $(cat "$dir/out")"
openssl req -in "$dir/req.pem" -verify -noout 2>&1 | grep -q 'verify OK' ||
    fail "the request's signature does not verify"
openssl req -in "$dir/req.pem" -pubkey -noout > "$dir/req-pub.pem"
same_key "$dir/req-pub.pem" "the request's key"
echo "gnutls certtool: ok"
