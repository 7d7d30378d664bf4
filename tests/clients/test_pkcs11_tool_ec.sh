#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenSC's pkcs11-tool with the module's virtual EC signing keys (module/src/ec.h): the
# mechanisms, the private and public key objects of secp256k1, P-256 and Ed25519 assets,
# --read-object --type pubkey, --sign -m ECDSA / ECDSA-SHA256 / EDDSA, every signature verified
# by openssl with the public key read out through the module, and one audit row per key.
#
# pkcs11-tool 0.23 (Debian 12) selects keys by CKA_ID only (it ignores --label for --sign), so
# keys are named by their CKA_ID, which `ddsmctl asset show --json` prints. A lookup by id alone
# lists each asset at its default path, so each key is its asset's default path.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL

dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN
import_design_root
asset_active k1 --type secp256k1 --default-path "m/44'/0'/0'/0/0"
asset_active p2 --type p256 --default-path "m/1'/2/3"
asset_active ed --type ed25519 --default-path "m/44'/501'/0'/0'"

# -M: ECDSA, ECDSA-SHA256 and EDDSA, for signing and verifying.
out=$(p11 -M)
for m in ECDSA ECDSA-SHA256 EDDSA; do
    grep -Eq "^ +$m, .*sign, verify" <<<"$out" || fail "$m not listed for sign and verify: $out"
done

# -O: each asset's private and public key, same label and id. pkcs11-tool shows the public keys'
# CKA_EC_POINT, which derives (and audits) each key: the public key is a function of the private.
out=$(p11_user -O 2>&1)
echo "$out"
for a in k1 p2 ed; do
    label=$(asset_key "$a" label)
    id=$(asset_key "$a" id)
    [ "$(grep -c "label: *$label\$" <<<"$out")" -eq 2 ] || fail "$a: expected two objects $label"
    [ "$(grep -c "ID: *$id\$" <<<"$out")" -eq 2 ] || fail "$a: expected two objects with id $id"
done
grep -q 'Private Key Object; EC_EDWARDS' <<<"$out" || fail "no Edwards private key listed"
grep -q 'Public Key Object; EC_EDWARDS' <<<"$out" || fail "no Edwards public key listed"
[ "$(grep -c 'Private Key Object; EC$' <<<"$out")" -eq 2 ] || fail "expected two EC private keys"
grep -q 'EC_PARAMS: *06052b8104000a' <<<"$out" || fail "secp256k1 OID missing"
grep -q 'EC_PARAMS: *06082a8648ce3d030107' <<<"$out" || fail "P-256 OID missing"
grep -q 'Access: *sensitive, always sensitive, never extractable' <<<"$out" ||
    fail "private keys are not sensitive and never extractable"

printf 'pkcs11-tool signs with a derived key' > "$dir/msg"
openssl dgst -sha256 -binary "$dir/msg" > "$dir/digest"

for a in k1 p2; do
    id=$(asset_key "$a" id)
    # The public key, read out through the module: DER SubjectPublicKeyInfo.
    p11_user --read-object --type pubkey --id "$id" -o "$dir/$a.der"
    openssl pkey -pubin -inform DER -in "$dir/$a.der" -out "$dir/$a.pem"
    openssl pkey -pubin -in "$dir/$a.pem" -text -noout | grep -q 'Public-Key: (256 bit)' ||
        fail "$a: not a 256-bit EC public key"

    # CKM_ECDSA over the digest: raw r || s by default, DER with --signature-format openssl.
    p11_user --sign -m ECDSA --id "$id" -i "$dir/digest" -o "$dir/$a.raw"
    [ "$(stat -c %s "$dir/$a.raw")" -eq 64 ] || fail "$a: raw ECDSA signature is not 64 bytes"
    p11_user --sign -m ECDSA --id "$id" --signature-format openssl -i "$dir/digest" -o "$dir/$a.sig"
    openssl pkeyutl -verify -pubin -inkey "$dir/$a.pem" -in "$dir/digest" \
        -sigfile "$dir/$a.sig" | grep -q 'Signature Verified Successfully' ||
        fail "$a: openssl rejects the ECDSA signature"
    # ... and it verifies through the module too (the public key object).
    p11_user --verify -m ECDSA --id "$id" -i "$dir/digest" --signature-file "$dir/$a.raw" |
        grep -q 'Signature is valid' || fail "$a: the module rejects its own signature"

    # CKM_ECDSA_SHA256 over the message.
    p11_user --sign -m ECDSA-SHA256 --id "$id" --signature-format openssl -i "$dir/msg" \
        -o "$dir/$a.sha.sig"
    openssl dgst -sha256 -verify "$dir/$a.pem" -signature "$dir/$a.sha.sig" "$dir/msg" |
        grep -q 'Verified OK' || fail "$a: openssl rejects the ECDSA-SHA256 signature"
    # A tampered message does not verify.
    printf 'x' >> "$dir/msg.bad"; cat "$dir/msg" >> "$dir/msg.bad"
    if openssl dgst -sha256 -verify "$dir/$a.pem" -signature "$dir/$a.sha.sig" "$dir/msg.bad" \
        >/dev/null 2>&1; then fail "$a: a tampered message verified"; fi
    rm -f "$dir/msg.bad"
done

# Ed25519: pure EdDSA over the message. pkcs11-tool 0.23 writes Edwards public keys as PEM.
id=$(asset_key ed id)
p11_user --read-object --type pubkey --id "$id" -o "$dir/ed.out"
openssl pkey -pubin -in "$dir/ed.out" -out "$dir/ed.pem"
openssl pkey -pubin -in "$dir/ed.pem" -text -noout | grep -q 'ED25519 Public-Key' ||
    fail "not an Ed25519 public key"
p11_user --sign -m EDDSA --id "$id" -i "$dir/msg" -o "$dir/ed.sig"
[ "$(stat -c %s "$dir/ed.sig")" -eq 64 ] || fail "Ed25519 signature is not 64 bytes"
openssl pkeyutl -verify -pubin -inkey "$dir/ed.pem" -rawin -in "$dir/msg" \
    -sigfile "$dir/ed.sig" | grep -q 'Signature Verified Successfully' ||
    fail "openssl rejects the Ed25519 signature"
# A mechanism of the other family is refused by the module.
if p11_user --sign -m ECDSA --id "$id" -i "$dir/digest" -o "$dir/bad.sig" 2>"$dir/err"; then
    fail "ECDSA with an Ed25519 key succeeded"
fi
grep -q 'CKR_KEY_TYPE_INCONSISTENT' "$dir/err" ||
    fail "expected CKR_KEY_TYPE_INCONSISTENT: $(cat "$dir/err")"

# Every pkcs11-tool run is a process of its own: each one that used a key derived it, and every
# derivation is a DERIVE row naming the key type.
for t in secp256k1 p256 ed25519; do
    n=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'
              AND detail = 'key type $t'")
    [ "$n" -ge 2 ] || fail "expected DERIVE rows with key type $t, found $n"
done
n=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'
          AND (detail IS NULL OR detail NOT LIKE 'key type %')")
[ "$n" -eq 0 ] || fail "$n DERIVE rows without their key type"
"$DDSM_CTL" audit verify >/dev/null || fail "audit verify failed"
echo "pkcs11-tool EC: ok"
