#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# python3-ecdsa (Debian's, pure Python: independent of libsecp256k1, OpenSSL and ddsm-core)
# checks the module's secp256k1 keys end to end:
#  - it recomputes, from the docs/design.md root seed alone, the asset seed (the SP 800-108 KDF of the
#    depth-0 path) and the BIP-32 key of the path, and finds the public key the module exposes;
#  - it verifies ECDSA signatures made through the module (pkcs11-tool -m ECDSA, raw r || s) and
#    checks they are low-S;
#  - it checks `ddsmctl asset xpub` (chain code and key of the node) and derives, watch-only from
#    that xpub, the public key the module exposes for a normal child.
# /usr/bin/python3: the python3 first on PATH may be one without Debian's modules.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL
PY=${DDSM_PYTHON:-/usr/bin/python3}
$PY -c 'import ecdsa' 2>/dev/null ||
    fail "python3-ecdsa is not installed (scripts/lib/common.sh installs it)"

ASSET=ec000000-0000-4000-8000-0000000000e1
dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN
import_design_root
asset_active wallet --id "$ASSET" --type secp256k1 --default-path "m/44'/0'/0'/0/7"
id=$(asset_key wallet id)

p11_user --read-object --type pubkey --id "$id" -o "$dir/pub.der" >/dev/null
"$DDSM_CTL" asset xpub wallet --path "m/44'/0'/0'" > "$dir/xpub"

for i in 1 2 3 4 5; do
    printf 'transaction %s' "$i" | openssl dgst -sha256 -binary > "$dir/digest$i"
    p11_user --sign -m ECDSA --id "$id" -i "$dir/digest$i" -o "$dir/sig$i" >/dev/null
done

$PY - "$dir" "$ASSET" <<'EOF'
import hashlib, hmac, struct, sys, uuid
from ecdsa import SECP256k1, SigningKey, VerifyingKey, BadSignatureError
from ecdsa.util import sigdecode_string

d, asset = sys.argv[1], sys.argv[2]
n, G = SECP256k1.order, SECP256k1.generator
def fail(msg):
    sys.exit("FAIL: " + msg)

# docs/design.md "Derivation, version 1" with depth 0: the asset seed.
root = bytes(range(32))
msg = (struct.pack(">I", 1) + b"DDSM-v1" + b"\x00" + uuid.UUID(asset).bytes + b"\x00"
       + struct.pack(">Q", 0) + struct.pack(">I", 256))
seed = hmac.new(root, msg, hashlib.sha256).digest()

# BIP-32, by the book.
def pub_of(k):
    return SigningKey.from_secret_exponent(k, curve=SECP256k1).get_verifying_key()
def ckd_priv(k, c, i):
    data = (b"\x00" + k.to_bytes(32, "big") if i & 0x80000000 else
            pub_of(k).to_string("compressed")) + struct.pack(">I", i)
    I = hmac.new(c, data, hashlib.sha512).digest()
    il = int.from_bytes(I[:32], "big")
    if il >= n or (il + k) % n == 0:
        fail("an index without key")
    return (il + k) % n, I[32:]
I = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
master = (int.from_bytes(I[:32], "big"), I[32:])
H = 0x80000000
def derive(path):
    k, c = master
    for i in path:
        k, c = ckd_priv(k, c, i)
    return k, c

k7, _ = derive([44 | H, 0 | H, 0 | H, 0, 7])
vk = VerifyingKey.from_der(open(d + "/pub.der", "rb").read())
if vk.to_string("uncompressed") != pub_of(k7).to_string("uncompressed"):
    fail("the module's public key is not BIP-32 of the asset seed")

# ECDSA signatures made through the module: valid, low-S, and nothing else verifies.
for i in range(1, 6):
    digest = open(d + "/digest%d" % i, "rb").read()
    sig = open(d + "/sig%d" % i, "rb").read()
    if len(sig) != 64:
        fail("signature %d is %d bytes" % (i, len(sig)))
    if not vk.verify_digest(sig, digest, sigdecode=sigdecode_string):
        fail("signature %d does not verify" % i)
    if int.from_bytes(sig[32:], "big") > n // 2:
        fail("signature %d is not low-S" % i)
    try:
        vk.verify_digest(sig, hashlib.sha256(digest).digest(), sigdecode=sigdecode_string)
        fail("signature %d verified another digest" % i)
    except BadSignatureError:
        pass

# The xpub of m/44'/0'/0': Base58Check, version, depth, chain code and key.
alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
text = open(d + "/xpub").read().strip()
num = 0
for ch in text:
    num = num * 58 + alphabet.index(ch)
raw = num.to_bytes(82, "big")
payload, check = raw[:78], raw[78:]
if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
    fail("xpub checksum")
k3, c3 = derive([44 | H, 0 | H, 0 | H])
if payload[:4] != bytes.fromhex("0488b21e") or payload[4] != 3:
    fail("xpub version or depth")
if payload[13:45] != c3 or payload[45:78] != pub_of(k3).to_string("compressed"):
    fail("xpub chain code or key is not the node's")

# Watch-only: CKD_pub from the xpub alone down to .../0/7 gives the module's key.
def ckd_pub(K, c, i):
    I = hmac.new(c, K.to_string("compressed") + struct.pack(">I", i), hashlib.sha512).digest()
    point = G * int.from_bytes(I[:32], "big") + K.pubkey.point
    return VerifyingKey.from_public_point(point, curve=SECP256k1), I[32:]
K = VerifyingKey.from_string(payload[45:78], curve=SECP256k1)
K, c = ckd_pub(K, payload[13:45], 0)
K, c = ckd_pub(K, c, 7)
if K.to_string("uncompressed") != vk.to_string("uncompressed"):
    fail("the watch-only derivation differs from the module's public key")
print("python3-ecdsa: module key, 5 signatures, xpub and watch-only child all check")
EOF
echo "ecdsa python: ok"
