#!/usr/bin/env bash
# GnuTLS's p11tool loads the module directly (--provider): it lists the token, lists every object
# after login (the virtual key included, with its PKCS#11 URI), and resolves a URI that names the
# key by "<asset label>/<path>".
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
echo "PASS"
