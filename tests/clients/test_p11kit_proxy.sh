#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# p11-kit-proxy.so with the module's p11-kit registration (conf/ddsm-pkcs11.module.in) installed:
# p11-kit's registration directory is redirected for this test's p11-kit programs only (a private
# mount namespace, unshare -m), so nothing under /etc or /usr changes.
#  - `p11-kit list-modules` lists the module;
#  - through the proxy (once the registration enables the module in the program that loads it),
#    the backend's raw token shows a second time (SoftHSM's own registration,
#    /usr/share/p11-kit/modules/softhsm2.module): two tokens labelled "custody";
#  - a user registration of the same name (softhsm2.module) with `disable-in: p11-kit-proxy`
#    hides the raw token from proxy users: one "custody" token is left, the module's, whose
#    derived P-256 key signs through the proxy and verifies against the key computed from the
#    design root alone.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
PY=/usr/bin/python3
dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN OPENSSL_CONF=/dev/null
proxy=/usr/lib/$(uname -m)-linux-gnu/p11-kit-proxy.so
[ -f "$proxy" ] || fail "p11-kit-proxy.so is not installed (p11-kit-modules, with libp11-kit-dev)"
softhsm_reg=/usr/share/p11-kit/modules/softhsm2.module
[ -f "$softhsm_reg" ] || fail "SoftHSM's p11-kit registration is missing"

import_design_root
asset_active tls --type p256 --default-path "m/443'/0'"

# p11-kit reads no user configuration as root, so the test gives its p11-kit programs a
# registration directory of their own in a private mount namespace: a copy of the system's
# (/usr/share/p11-kit/modules) plus the module's registration as the package installs it, bind-
# mounted over the system's for those programs only. Nothing on the machine changes.
regs=$dir/p11-kit-modules
mkdir -p "$regs"
cp /usr/share/p11-kit/modules/*.module "$regs/"
sed "s|@DDSM_P11_MODULE_NAME@|$DDSM_MODULE|" "$DDSM_SOURCE_DIR/conf/ddsm-pkcs11.module.in" \
    > "$regs/ddsm-pkcs11.module"
[ ! -d /etc/pkcs11/modules ] || fail "/etc/pkcs11/modules exists: this test redirects only /usr/share"
with_regs() {
    unshare -m sh -c 'mount --bind "$0" /usr/share/p11-kit/modules && exec "$@"' "$regs" "$@"
}
with_regs p11-kit list-modules > "$dir/modules" 2>&1 || fail "p11-kit list-modules: $(cat "$dir/modules")"
grep -q "^ddsm-pkcs11: $DDSM_MODULE\$" "$dir/modules" || fail "the module is not listed: $(cat "$dir/modules")"
grep -q 'library-description: DDSM derived keys over an HSM' "$dir/modules" ||
    fail "the module's library description is missing"

custody_tokens() {
    with_regs pkcs11-tool --module "$proxy" -L 2>&1 | grep -c 'token label *: custody$' || true
}
# p11-kit 0.24 matches enable-in against the name of the program that loaded p11-kit-proxy.so
# (here pkcs11-tool), not against "p11-kit-proxy": as shipped, the module stays out of the proxy
# (only SoftHSM's raw token is there). A site enables it for its proxy users by naming their
# programs in a copy of the registration (README "p11-kit-proxy").
same "$(custody_tokens)" 1 "custody tokens through the proxy with the registration as shipped"
sed -i 's/^enable-in: .*/&, pkcs11-tool/' "$regs/ddsm-pkcs11.module"
same "$(custody_tokens)" 2 "custody tokens through the proxy with SoftHSM's own registration"

# Hide the backend's raw token from proxy users (README "p11-kit-proxy").
{ grep -v '^#' "$softhsm_reg"; echo 'disable-in: p11-kit-proxy'; } > "$regs/softhsm2.module"
same "$(custody_tokens)" 1 "custody tokens through the proxy with SoftHSM hidden"

# The one left is the module's: its derived key signs.
id=$(asset_key tls id)
$PY "$DDSM_SOURCE_DIR/tests/support/hdkeys.py" p256 "$(ctl asset show tls --json | json_get id)" \
    "m/443'/0'" > "$dir/want.pem"
printf 'through p11-kit-proxy' | openssl dgst -sha256 -binary > "$dir/digest"
with_regs pkcs11-tool --module "$proxy" --token-label custody --login --pin "$DDSM_TEST_PIN" --sign \
    -m ECDSA --id "$id" --signature-format openssl -i "$dir/digest" -o "$dir/sig" \
    >"$dir/out" 2>&1 || fail "signing through the proxy failed: $(cat "$dir/out")"
openssl pkeyutl -verify -pubin -inkey "$dir/want.pem" -in "$dir/digest" -sigfile "$dir/sig" |
    grep -q 'Signature Verified Successfully' || fail "the proxy's signature does not verify"
echo "p11-kit-proxy: ok"
