#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# GnuTLS's p11tool loads the module directly (--provider): it lists the token, lists every object
# after login (the virtual key included, with its PKCS#11 URI), and resolves a URI that names the
# key by "<asset label>/<path>", and takes the URIs ddsmctl prints unchanged: each finds exactly
# its object, at default and other paths, secret and EC keys alike.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL
tool() { p11tool --provider "$DDSM_MODULE" "$@"; }

ASSET=6f9619ff-8b86-d011-b42d-00c04fc964ff
PATH_A="m/44'/0'/0'/0/0"
export DDSM_PIN=$DDSM_TEST_PIN

import_design_root
asset_active vec-a --id "$ASSET" --default-path "$PATH_A"

out=$(tool --list-tokens)
echo "$out"
[ "$(grep -c '^Token ' <<<"$out")" -eq 1 ] || fail "expected exactly one token"
grep -q 'Label: custody' <<<"$out" || fail "token custody not listed"

# Without login the private objects (root and virtual keys) stay hidden.
out=$(tool --list-all "pkcs11:token=custody" 2>&1 || true)
grep -q "$ASSET" <<<"$out" && fail "virtual object listed without login"

out=$(GNUTLS_PIN=$DDSM_TEST_PIN tool --login --list-all 2>&1)
echo "$out"
grep -q 'Label: ddsm-root' <<<"$out" || fail "root key not listed"
grep -q "Label: $ASSET/m/44'/0'/0'/0/0" <<<"$out" || fail "virtual key not listed"
grep -q "object=$ASSET%2Fm%2F44%27%2F0%27%2F0%27%2F0%2F0;type=secret-key" <<<"$out" ||
    fail "virtual key URI missing"
grep -q 'CKA_NEVER_EXTRACTABLE; CKA_SENSITIVE' <<<"$out" || fail "virtual key flags missing"

# A URI naming the key by the asset's label and a differently spelled path finds it too.
out=$(GNUTLS_PIN=$DDSM_TEST_PIN tool --login --list-all \
      "pkcs11:token=custody;object=vec-a%2Fm%2F44h%2F0h%2F0h%2F0%2F0" 2>&1)
echo "$out"
[ "$(grep -c '^Object ' <<<"$out")" -eq 1 ] || fail "URI by asset label did not find one object"
grep -q "Label: $ASSET/m/44'/0'/0'/0/0" <<<"$out" || fail "URI by asset label found another key"

[ "$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'")" -eq 0 ] ||
    fail "listing objects derived something"

# The URIs `ddsmctl asset show`, `asset list` and `asset uri` print, unchanged. (Listing an EC
# public key reads its point, which derives the key: after the check above.)
asset_active k1 --type secp256k1 --default-path "m/44'/0'/0'/0/0"
# finds_one URI LABEL TYPE-LINE: p11tool finds exactly one object, with that label and type.
finds_one() {
    local out
    out=$(GNUTLS_PIN=$DDSM_TEST_PIN tool --login --list-all "$1" 2>&1)
    echo "$out"
    [ "$(grep -c '^Object ' <<<"$out")" -eq 1 ] || fail "URI $1 did not find exactly one object"
    grep -q "Label: $2\$" <<<"$out" || fail "URI $1 found another object than $2"
    grep -q "Type: $3" <<<"$out" || fail "URI $1 found no $3"
}
uri=$("$DDSM_CTL" asset show vec-a --json | json_get key uris secret-key)
finds_one "$uri" "$ASSET/$PATH_A" "Secret key"
uri=$("$DDSM_CTL" asset uri vec-a --path "m/7h/1/2H")
finds_one "$uri" "$ASSET/m/7'/1/2'" "Secret key"
k1=$("$DDSM_CTL" asset show k1 --json | json_get id)
uri=$("$DDSM_CTL" asset show k1 --path m/3/4 | sed -n 's/^private uri: *//p')
finds_one "$uri" "$k1/m/3/4" "Private key"
uri=$("$DDSM_CTL" asset uri k1 --path m/3/4 --type public)
finds_one "$uri" "$k1/m/3/4" "Public key"
uri=$("$DDSM_CTL" asset list | awk -v l=k1 '$2 == l {print $NF}')
finds_one "$uri" "$k1/m/44'/0'/0'/0/0" "Private key"
# The URI names the module: another library's name finds nothing here.
other=${uri/library-manufacturer=ddsm-pkcs11/library-manufacturer=SoftHSM}
[ "$other" != "$uri" ] || fail "no library-manufacturer in $uri"
out=$(GNUTLS_PIN=$DDSM_TEST_PIN tool --login --list-all "$other" 2>&1 || true)
[ "$(grep -c '^Object ' <<<"$out")" -eq 0 ] || fail "a URI of another library found objects"
echo "PASS"
