/* SPDX-License-Identifier: Apache-2.0 */
/* EC signing keys (docs/design.md "Signing keys"): virtual CKO_PRIVATE_KEY / CKO_PUBLIC_KEY pairs for
 * assets of key type secp256k1 (BIP-32), ed25519 and p256 (SLIP-10), and their mechanisms.
 *
 * Objects. For such an asset, label "<asset uuid or label>/<path>" finds two objects with the
 * same CKA_LABEL "<uuid>/<canonical path>" and the same CKA_ID (ddsm_key_id, so tools that pair
 * keys by id work):
 *  - CKO_PRIVATE_KEY, CKK_EC (secp256k1, P-256) or CKK_EC_EDWARDS (Ed25519), CKA_EC_PARAMS the DER
 *    OID (secp256k1 1.3.132.0.10, P-256 1.2.840.10045.3.1.7, Ed25519 1.3.101.112 as RFC 8410 names
 *    it), CKA_SIGN true, CKA_SENSITIVE / CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE true,
 *    CKA_EXTRACTABLE / CKA_ALWAYS_AUTHENTICATE false: the policy's `extractable` never applies.
 *  - CKO_PUBLIC_KEY, same key type and CKA_EC_PARAMS, CKA_VERIFY true, CKA_EC_POINT the DER OCTET
 *    STRING of 04 || X || Y (65 bytes) or of the 32-byte Ed25519 key.
 * Both are token objects, CKA_PRIVATE true (finding them needs a login, like every virtual
 * object), not modifiable, copyable nor destroyable. CKA_UNIQUE_ID is "<label>#<counter>" for the
 * private key and "<label>#<counter>.pub" for the public one.
 *
 * Materialisation. The key of (asset, path, counter) is HD(asset seed, path), the asset seed being
 * the KDF of (asset, depth 0, counter) computed in the HSM (docs/design.md "Reserved derivations").
 * Documented choice: it is derived, with its DERIVE audit row (detail "key type <type>"), at first
 * use: C_SignInit on the private key, C_VerifyInit on the public key, or reading the public key's
 * CKA_EC_POINT (which needs the key: a public key is a function of the private one). Finding the
 * objects and reading any other attribute derives nothing. The private HD key is then held in the
 * module's locked key cache like a derived secret key, and rotation and retirement kill it the
 * same way. The asset seed and the HD nodes above the key are wiped as soon as the key is known.
 *
 * Ed25519 (SLIP-10) has hardened children only: a path with a normal index names no key (no
 * object is found; C_DeriveKey answers CKR_MECHANISM_PARAM_INVALID and writes nothing).
 *
 * Mechanisms (C_Sign / C_Verify, signatures in the PKCS#11 raw form, 64 bytes):
 *  - CKM_ECDSA (secp256k1, P-256): the input is a hash of 1..64 bytes, used as SEC1 says
 *    (ddsm_ecdsa_digest_from_hash); other lengths CKR_DATA_LEN_RANGE. Single-part only.
 *  - CKM_ECDSA_SHA256 (secp256k1, P-256): single and multi-part.
 *  - CKM_EDDSA (Ed25519): pure EdDSA, single-part; parameter NULL or a CK_EDDSA_PARAMS with
 *    phFlag false and no context (anything else CKR_MECHANISM_PARAM_INVALID).
 * secp256k1 signatures are deterministic (RFC 6979) and low-S (libsecp256k1). A mechanism of the
 * other key family (HMAC on an EC key, ECDSA on Ed25519, EDDSA on a Weierstrass curve, an EC
 * mechanism on a secret key) is CKR_KEY_TYPE_INCONSISTENT; any other CKR_MECHANISM_INVALID.
 * C_SignUpdate / C_SignFinal (and the verify ones) of a single-part mechanism:
 * CKR_FUNCTION_NOT_SUPPORTED, ending the operation (as SoftHSMv2 answers). */
#ifndef DDSM_EC_H
#define DDSM_EC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/hd.h"
#include "ddsm/path.h"
#include "handles.h"
#include "ladder.h"
#include "vkey.h"

/* Variant bits of EC objects, beside vkey.h's DDSM_VK_*. An EC variant has a curve. */
#define DDSM_VK_EC_PUBLIC 0x80u /* the CKO_PUBLIC_KEY half, else the CKO_PRIVATE_KEY one */
#define DDSM_VK_EC_CURVE_SHIFT 8
#define DDSM_VK_EC_CURVE_MASK (0x3u << DDSM_VK_EC_CURVE_SHIFT) /* curve + 1; 0: a secret key */

/* The variant of the private (pub false) or public key object on curve. */
uint32_t ddsm_ec_variant(ddsm_curve curve, bool pub);
/* Whether variant is an EC object, and its curve. */
bool ddsm_ec_variant_curve(uint32_t variant, ddsm_curve *curve);
static inline bool ddsm_ec_is_ec(uint32_t variant)
{
    return (variant & DDSM_VK_EC_CURVE_MASK) != 0;
}

/* Whether key_type (the registry's) names an EC signing key: "secp256k1", "ed25519", "p256". */
bool ddsm_ec_key_type(const char *key_type, ddsm_curve *curve);

/* Whether path names a key on curve (Ed25519: every index hardened). */
bool ddsm_ec_path_ok(ddsm_curve curve, const ddsm_path *path);

/* The variants C_FindObjects lists for an asset of key_type at path (NULL: any path): one secret
 * key for hmac / aes (ddsm_vkey_found_variant), the private then the public key for EC types
 * (none when path names no key on the curve), none for an unknown type. Returns the count. */
size_t ddsm_ec_found_variants(const char *key_type, bool policy_extractable, const ddsm_path *path,
                              uint32_t out[2]);

/* CKA_EC_PARAMS of curve: the DER OBJECT IDENTIFIER. Returns its length. */
#define DDSM_EC_PARAMS_MAX 10
size_t ddsm_ec_params_der(ddsm_curve curve, uint8_t out[DDSM_EC_PARAMS_MAX]);

/* CKA_EC_POINT: DER OCTET STRING of 04 || X || Y (67 bytes) or of the Ed25519 key (34 bytes). */
#define DDSM_EC_POINT_DER_MAX (2 + DDSM_HD_PUB_UNCOMPRESSED_LEN)
size_t ddsm_ec_point_der_len(ddsm_curve curve);
/* The point of the private key priv (reads it) in that form. */
CK_RV ddsm_ec_point_der_secret(ddsm_curve curve, const uint8_t priv_secret[DDSM_HD_KEY_LEN],
                               uint8_t out[DDSM_EC_POINT_DER_MAX], size_t *len) DDSM_WUR;

/* The key of (asset seed, path) on curve, in place: seed_key holds the 32-byte asset seed on
 * entry and the HD private key on success (wiped on failure). Every intermediate node is wiped.
 * DDSM_E_PATH when the path names no key (an Ed25519 normal index, a BIP-32 index without key). */
ddsm_err ddsm_ec_key_from_seed_secret(ddsm_curve curve, const ddsm_path *path,
                                      uint8_t seed_key_secret[DDSM_HD_KEY_LEN]) DDSM_WUR;

/* ---- attributes ---- */

/* The EC-specific attributes of ddsm_vkey_attr: *handled false for the attributes every virtual
 * object answers the same way (CKA_TOKEN, CKA_LABEL, CKA_ID, CKA_DDSM_*, ...), which the caller
 * then answers. CKA_EC_POINT of a public key is CKR_KEY_NEEDED (it needs the key: see
 * ddsm_ec_get_attributes); CKA_VALUE of a private key CKR_ATTRIBUTE_SENSITIVE. */
CK_RV ddsm_ec_attr(const ddsm_hentry *e, CK_ATTRIBUTE_TYPE t, uint8_t buf[DDSM_VKEY_ATTR_MAX],
                   CK_ULONG *len, bool *handled) DDSM_WUR;

/* C_GetAttributeValue on a checked EC object, section 5.7 (as ddsm_vattr_get): CKA_EC_POINT's
 * length is known without the key; its value materialises the key (audited, at first use) only
 * when a buffer large enough asks for it. A materialisation failure fails the whole call. */
CK_RV ddsm_ec_get_attributes(ddsm_call *c, const ddsm_hentry *e, CK_ATTRIBUTE *t,
                             CK_ULONG n) DDSM_WUR;

/* C_DeriveKey(CKM_DDSM_DERIVE) template for an EC asset on curve: the variant asked for.
 * CKA_CLASS CKO_PRIVATE_KEY (default) or CKO_PUBLIC_KEY picks the object. Anything that
 * contradicts the objects above (another class or key type, other CKA_EC_PARAMS, extractable,
 * not sensitive, a usage the class cannot have, a label or id that is not the key's) is
 * CKR_TEMPLATE_INCONSISTENT; attributes only the module sets CKR_ATTRIBUTE_READ_ONLY; attributes
 * such keys do not have CKR_ATTRIBUTE_TYPE_INVALID; malformed values CKR_ATTRIBUTE_VALUE_INVALID.
 */
CK_RV ddsm_ec_template_parse(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                             const char *canon_path, ddsm_curve curve, uint32_t *variant) DDSM_WUR;

/* ---- mechanisms ---- */

/* Whether m is one of the EC signature mechanisms above. */
bool ddsm_ec_is_mech(CK_MECHANISM_TYPE m);
/* Check mechanism m against EC object e and set op up (out_len 64, op->ec). */
CK_RV ddsm_ec_mech(const CK_MECHANISM *m, const ddsm_hentry *e, ddsm_vop *op) DDSM_WUR;

/* Whether the operation's mechanism is single-part only (CKM_ECDSA, CKM_EDDSA). */
bool ddsm_ec_single_part(const ddsm_vop *op);

/* Per-operation state (op->ec): ecop.h. */

/* The steps, with the session lock held and op->kref materialised. They read the private key in
 * op->kref (a secret), never copy it, and leave no copy on their stack; signatures are 64 bytes. */
CK_RV ddsm_ec_sign_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *data, CK_ULONG len,
                          uint8_t sig[64]) DDSM_WUR;
CK_RV ddsm_ec_update_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *part, CK_ULONG len) DDSM_WUR;
CK_RV ddsm_ec_sign_final_locked(ddsm_call *c, ddsm_vop *op, uint8_t sig[64]) DDSM_WUR;
/* CKR_OK, CKR_SIGNATURE_INVALID or CKR_SIGNATURE_LEN_RANGE (or an error). */
CK_RV ddsm_ec_verify_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *data, CK_ULONG len,
                            const CK_BYTE *sig, CK_ULONG sig_len) DDSM_WUR;
CK_RV ddsm_ec_verify_final_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *sig,
                                  CK_ULONG sig_len) DDSM_WUR;

/* ---- the mechanism list ---- */

/* The EC mechanisms the module adds to the backend's list. */
#define DDSM_EC_MECHS 3
extern const CK_MECHANISM_TYPE ddsm_ec_mechs[DDSM_EC_MECHS];
/* Our C_GetMechanismInfo for one of them, merged with the backend's answer for the same
 * mechanism when it has one (be may be NULL): the union of the flags, the widest key sizes. */
void ddsm_ec_mech_info(CK_MECHANISM_TYPE m, const CK_MECHANISM_INFO *be, CK_MECHANISM_INFO *out);

#endif
