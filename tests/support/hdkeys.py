# SPDX-License-Identifier: Apache-2.0
"""The public key of a signing asset's key, computed without the module, ddsm-core, OpenSSL or
libsecp256k1: the docs/design.md root seed (00 01 .. 1f), the asset seed (the SP 800-108 KDF of
the depth-0 path, docs/design.md "Derivation, version 1"), then BIP-32 (secp256k1) or SLIP-10
(Ed25519, NIST P-256) by the book, with Debian's pure-Python python3-ecdsa for the curve arithmetic.

    python3 hdkeys.py CURVE ASSET-UUID PATH [COUNTER]      CURVE: secp256k1 | p256 | ed25519

prints the public key as a PEM SubjectPublicKeyInfo (named curve; RFC 8410 for Ed25519).
Run it with /usr/bin/python3 (Debian's modules)."""
import hashlib
import hmac
import struct
import sys
import uuid

from ecdsa import NIST256p, SECP256k1, Ed25519, SigningKey

H = 0x80000000
CURVES = {  # name: (python3-ecdsa curve, the HD scheme's master key string)
    "secp256k1": (SECP256k1, b"Bitcoin seed"),
    "p256": (NIST256p, b"Nist256p1 seed"),
    "ed25519": (Ed25519, b"ed25519 seed"),
}


def asset_seed(asset, counter):
    root = bytes(range(32))
    msg = (struct.pack(">I", 1) + b"DDSM-v1" + b"\x00" + uuid.UUID(asset).bytes + b"\x00"
           + struct.pack(">Q", counter) + struct.pack(">I", 256))
    return hmac.new(root, msg, hashlib.sha256).digest()


def parse_path(text):
    parts = text.split("/")
    if parts[0] != "m" or len(parts) < 2:
        sys.exit("bad path " + text)
    out = []
    for p in parts[1:]:
        hard = p[-1:] in ("'", "h", "H")
        out.append(int(p[:-1] if hard else p) | (H if hard else 0))
    return out


def hd_key(curve_name, seed, path):
    curve, master_key = CURVES[curve_name]
    n = curve.order
    edwards = curve_name == "ed25519"
    data = seed
    while True:  # SLIP-10: a master IL of 0 or >= n (never for Ed25519) hashes I again
        I = hmac.new(master_key, data, hashlib.sha512).digest()
        k = int.from_bytes(I[:32], "big")
        if edwards or 0 < k < n:
            break
        data = I
    c = I[32:]
    for i in path:
        if edwards and not i & H:
            sys.exit("Ed25519 has hardened children only")
        if i & H:
            data = b"\x00" + k.to_bytes(32, "big") + struct.pack(">I", i)
        else:
            pub = SigningKey.from_secret_exponent(k, curve=curve).get_verifying_key()
            data = pub.to_string("compressed") + struct.pack(">I", i)
        while True:
            I = hmac.new(c, data, hashlib.sha512).digest()
            il = int.from_bytes(I[:32], "big")
            if edwards:
                child = il
                break
            child = (il + k) % n
            if il < n and child != 0:
                break
            if curve_name == "secp256k1":
                sys.exit("BIP-32: an index without key")
            data = b"\x01" + I[32:] + struct.pack(">I", i)  # SLIP-10's retry
        k, c = child, I[32:]
    return k


def public_pem(curve_name, asset, path, counter=0):
    curve = CURVES[curve_name][0]
    k = hd_key(curve_name, asset_seed(asset, counter), parse_path(path))
    if curve_name == "ed25519":
        sk = SigningKey.from_string(k.to_bytes(32, "big"), curve=curve)
    else:
        sk = SigningKey.from_secret_exponent(k, curve=curve)
    return sk.get_verifying_key().to_pem().decode()


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) not in (3, 4) or a[0] not in CURVES:
        sys.exit(__doc__)
    sys.stdout.write(public_pem(a[0], a[1], a[2], int(a[3]) if len(a) == 4 else 0))
