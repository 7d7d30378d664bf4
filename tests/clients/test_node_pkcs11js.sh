#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Node.js (Debian 12's nodejs or NodeSource's 20) through pkcs11js, the PKCS#11 binding that
# graphene-pk11 builds on, from the npm registry: installed once under the build directory
# ($DDSM_BUILD_DIR/node-clients, never globally; its native addon is compiled there), it loads the
# module, logs in, finds a P-256 key at a non-default path and an Ed25519 key by CKA_ID, signs
# with CKM_ECDSA_SHA256 and CKM_EDDSA, and Node's own crypto verifies each signature with the
# public key computed from the design root alone (tests/support/hdkeys.py).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR DDSM_BUILD_DIR
PY=/usr/bin/python3
PKCS11JS_VERSION=2.1.7
command -v node >/dev/null || fail "nodejs is not installed (scripts/lib/common.sh installs it)"
command -v npm >/dev/null || fail "npm is not installed (scripts/lib/common.sh installs it)"
dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN OPENSSL_CONF=/dev/null

nm=$DDSM_BUILD_DIR/node-clients
if [ ! -f "$nm/node_modules/pkcs11js/package.json" ] ||
    [ "$(node -p "require('$nm/node_modules/pkcs11js/package.json').version")" != "$PKCS11JS_VERSION" ]; then
    mkdir -p "$nm"
    npm install --prefix "$nm" --no-audit --no-fund --no-save --silent "pkcs11js@$PKCS11JS_VERSION" \
        >"$dir/npm.log" 2>&1 || fail "npm install pkcs11js failed: $(tail -20 "$dir/npm.log")"
fi

import_design_root
asset_active tls --type p256 --default-path "m/443'/0'"
asset_active sol --type ed25519 --default-path "m/44'/501'/0'/0'"
p256_path="m/443'/7'"
p256_uuid=$(ctl asset show tls --json | json_get id)
ed_uuid=$(ctl asset show sol --json | json_get id)
$PY "$DDSM_SOURCE_DIR/tests/support/hdkeys.py" p256 "$p256_uuid" "$p256_path" > "$dir/p256.pem"
$PY "$DDSM_SOURCE_DIR/tests/support/hdkeys.py" ed25519 "$ed_uuid" "m/44'/501'/0'/0'" > "$dir/ed.pem"

NODE_PATH=$nm/node_modules node - "$DDSM_MODULE" "$DDSM_TEST_PIN" \
    "$(cka_id "$p256_uuid" "$p256_path")" "$dir/p256.pem" \
    "$(cka_id "$ed_uuid" "m/44'/501'/0'/0'")" "$dir/ed.pem" <<'EOF_JS'
const fs = require("fs");
const crypto = require("crypto");
const pkcs11js = require("pkcs11js");
const [module, pin, p256Id, p256Pem, edId, edPem] = process.argv.slice(2);
const CKM_EDDSA = 0x1057; // PKCS#11 3.0
const fail = (msg) => { console.error("FAIL: " + msg); process.exit(1); };

const p11 = new pkcs11js.PKCS11();
p11.load(module);
p11.C_Initialize();
try {
    const info = p11.C_GetInfo();
    if (!info.libraryDescription.startsWith("DDSM")) fail("not the module: " + info.libraryDescription);
    const slots = p11.C_GetSlotList(true);
    const s = p11.C_OpenSession(slots[0], pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p11.C_Login(s, pkcs11js.CKU_USER, pin);
    const find = (idHex) => {
        p11.C_FindObjectsInit(s, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
            { type: pkcs11js.CKA_ID, value: Buffer.from(idHex, "hex") },
        ]);
        const found = p11.C_FindObjects(s, 2);
        p11.C_FindObjectsFinal(s);
        if (found.length !== 1) fail("expected one key of id " + idHex + ", found " + found.length);
        return found[0];
    };
    const msg = Buffer.from("signed from Node through pkcs11js");

    p11.C_SignInit(s, { mechanism: pkcs11js.CKM_ECDSA_SHA256 }, find(p256Id));
    const ecSig = p11.C_Sign(s, msg, Buffer.alloc(64));
    const p256 = crypto.createPublicKey(fs.readFileSync(p256Pem));
    if (!crypto.verify("sha256", msg, { key: p256, dsaEncoding: "ieee-p1363" }, ecSig))
        fail("the P-256 signature does not verify");
    if (crypto.verify("sha256", Buffer.from("other"), { key: p256, dsaEncoding: "ieee-p1363" }, ecSig))
        fail("the P-256 signature verified another message");

    p11.C_SignInit(s, { mechanism: CKM_EDDSA }, find(edId));
    const edSig = p11.C_Sign(s, msg, Buffer.alloc(64));
    if (!crypto.verify(null, msg, crypto.createPublicKey(fs.readFileSync(edPem)), edSig))
        fail("the Ed25519 signature does not verify");

    p11.C_Logout(s);
    p11.C_CloseSession(s);
} finally {
    p11.C_Finalize();
}
console.log("pkcs11js: P-256 (non-default path) and Ed25519 signatures verify");
EOF_JS
echo "node pkcs11js: ok"
