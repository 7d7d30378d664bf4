/* SPDX-License-Identifier: Apache-2.0 */
#include "ec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ddsm/derive.h"
#include "ddsm/ossl.h"
#include "ddsm/ecsig.h"
#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "ecop.h"
#include "rv.h"
#include "sesstab.h"
#include "vattr.h"

#define SIG_LEN 64
_Static_assert(DDSM_ECDSA_SIG_LEN == SIG_LEN && DDSM_ED25519_SIG_LEN == SIG_LEN,
               "PKCS#11 raw signatures of 64 bytes");
_Static_assert(DDSM_HD_KEY_LEN == DDSM_KEY_LEN, "an HD key fits the derived-key cache");

/* CK_EDDSA_PARAMS of PKCS#11 3.0 (the system header, v2.40, lacks it): same layout. */
typedef struct eddsa_params {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
} eddsa_params;

/* ------------------------------------------------------------------------------------------ */
/* Variants, key types, paths                                                                  */

uint32_t ddsm_ec_variant(ddsm_curve curve, bool pub)
{
    uint32_t v = ((uint32_t)curve + 1) << DDSM_VK_EC_CURVE_SHIFT;
    return pub ? v | DDSM_VK_EC_PUBLIC | DDSM_VK_VERIFY : v | DDSM_VK_SIGN | DDSM_VK_SENSITIVE;
}

bool ddsm_ec_variant_curve(uint32_t variant, ddsm_curve *curve)
{
    uint32_t c = (variant & DDSM_VK_EC_CURVE_MASK) >> DDSM_VK_EC_CURVE_SHIFT;
    if (c == 0)
        return false;
    *curve = (ddsm_curve)(c - 1);
    return true;
}

bool ddsm_ec_key_type(const char *key_type, ddsm_curve *curve)
{
    return key_type != NULL && ddsm_curve_parse(key_type, curve) == DDSM_OK;
}

bool ddsm_ec_path_ok(ddsm_curve curve, const ddsm_path *path)
{
    if (curve != DDSM_CURVE_ED25519)
        return true;
    for (unsigned i = 0; i < path->depth; i++)
        if ((path->index[i] & DDSM_HARDENED) == 0)
            return false;
    return true;
}

size_t ddsm_ec_found_variants(const char *key_type, bool policy_extractable, const ddsm_path *path,
                              uint32_t out[2])
{
    ddsm_curve curve;
    if (ddsm_ec_key_type(key_type, &curve)) {
        if (path != NULL && !ddsm_ec_path_ok(curve, path))
            return 0;
        out[0] = ddsm_ec_variant(curve, false);
        out[1] = ddsm_ec_variant(curve, true);
        return 2;
    }
    return ddsm_vkey_found_variant(key_type, policy_extractable, &out[0]) ? 1 : 0;
}

static bool is_public(const ddsm_hentry *e)
{
    return (e->variant & DDSM_VK_EC_PUBLIC) != 0;
}

static ddsm_curve curve_of(const ddsm_hentry *e)
{
    ddsm_curve c = DDSM_CURVE_SECP256K1;
    (void)ddsm_ec_variant_curve(e->variant, &c);
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* DER forms                                                                                   */

size_t ddsm_ec_params_der(ddsm_curve curve, uint8_t out[DDSM_EC_PARAMS_MAX])
{
    static const uint8_t secp256k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
    static const uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const uint8_t ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    switch (curve) {
    case DDSM_CURVE_SECP256K1:
        memcpy(out, secp256k1, sizeof(secp256k1));
        return sizeof(secp256k1);
    case DDSM_CURVE_P256:
        memcpy(out, p256, sizeof(p256));
        return sizeof(p256);
    default:
        memcpy(out, ed25519, sizeof(ed25519));
        return sizeof(ed25519);
    }
}

size_t ddsm_ec_point_der_len(ddsm_curve curve)
{
    return 2 +
           (curve == DDSM_CURVE_ED25519 ? DDSM_HD_ED25519_PUB_LEN : DDSM_HD_PUB_UNCOMPRESSED_LEN);
}

CK_RV ddsm_ec_point_der_secret(ddsm_curve curve, const uint8_t priv_secret[DDSM_HD_KEY_LEN],
                               uint8_t out[DDSM_EC_POINT_DER_MAX], size_t *len)
{
    uint8_t pub[DDSM_HD_PUB_MAX];
    size_t plen = 0;
    if (ddsm_ec_public_from_secret(curve, priv_secret, true, pub, &plen) != DDSM_OK ||
        plen + 2 != ddsm_ec_point_der_len(curve))
        return CKR_FUNCTION_FAILED; /* our own HD key is always in range: a bug */
    out[0] = 0x04;                  /* OCTET STRING, short-form length */
    out[1] = (uint8_t)plen;
    memcpy(out + 2, pub, plen);
    *len = plen + 2;
    return CKR_OK;
}

ddsm_err ddsm_ec_key_from_seed_secret(ddsm_curve curve, const ddsm_path *path,
                                      uint8_t seed_key_secret[DDSM_HD_KEY_LEN])
{
    const char *why = NULL;
    ddsm_hd_node *node = ddsm_secure_alloc(sizeof(*node));
    if (node == NULL) {
        ddsm_wipe(seed_key_secret, DDSM_HD_KEY_LEN);
        return DDSM_E_NOMEM;
    }
    ddsm_err err =
        ddsm_hd_derive_path_secret(curve, seed_key_secret, DDSM_KEY_LEN, path, node, &why);
    if (err == DDSM_OK) {
        memcpy(seed_key_secret, node->secret_key, DDSM_HD_KEY_LEN);
    } else {
        ddsm_log(DDSM_LOG_WARN, "%s key derivation refused: %s", ddsm_curve_name(curve),
                 why != NULL ? why : ddsm_err_str(err));
        ddsm_wipe(seed_key_secret, DDSM_HD_KEY_LEN);
    }
    ddsm_secure_free(node, sizeof(*node));
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Attributes                                                                                  */

static CK_RV put_ulong(uint8_t *buf, CK_ULONG *len, CK_ULONG v)
{
    memcpy(buf, &v, sizeof(v));
    *len = sizeof(v);
    return CKR_OK;
}

static CK_RV put_bool(uint8_t *buf, CK_ULONG *len, bool v)
{
    buf[0] = v ? CK_TRUE : CK_FALSE;
    *len = 1;
    return CKR_OK;
}

CK_RV ddsm_ec_attr(const ddsm_hentry *e, CK_ATTRIBUTE_TYPE t, uint8_t buf[DDSM_VKEY_ATTR_MAX],
                   CK_ULONG *len, bool *handled)
{
    bool pub = is_public(e);
    ddsm_curve curve = curve_of(e);
    *handled = true;

    switch (t) {
    case CKA_CLASS:
        return put_ulong(buf, len, pub ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY);
    case CKA_KEY_TYPE:
        return put_ulong(buf, len, curve == DDSM_CURVE_ED25519 ? CKK_EC_EDWARDS : CKK_EC);
    case CKA_EC_PARAMS:
        *len = ddsm_ec_params_der(curve, buf);
        return CKR_OK;
    case CKA_SUBJECT:
        *len = 0;
        return CKR_OK;
    case CKA_ALLOWED_MECHANISMS: {
        CK_MECHANISM_TYPE m[2];
        size_t n = 0;
        if (curve == DDSM_CURVE_ED25519) {
            m[n++] = CKM_EDDSA;
        } else {
            m[n++] = CKM_ECDSA;
            m[n++] = CKM_ECDSA_SHA256;
        }
        memcpy(buf, m, n * sizeof(m[0]));
        *len = n * sizeof(m[0]);
        return CKR_OK;
    }
    case CKA_UNIQUE_ID: {
        char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
        ddsm_vkey_label(&e->asset, e->path, label);
        int n = snprintf((char *)buf, DDSM_VKEY_ATTR_MAX, "%s#%" PRIu64 "%s", label, e->counter,
                         pub ? ".pub" : "");
        *len = (CK_ULONG)n;
        return CKR_OK;
    }
    /* Private key attributes (PKCS#11 2.40 section 4.9) */
    case CKA_SIGN:
        return pub ? CKR_ATTRIBUTE_TYPE_INVALID : put_bool(buf, len, true);
    case CKA_SENSITIVE:
    case CKA_ALWAYS_SENSITIVE:
    case CKA_NEVER_EXTRACTABLE:
        return pub ? CKR_ATTRIBUTE_TYPE_INVALID : put_bool(buf, len, true);
    case CKA_EXTRACTABLE:
    case CKA_DECRYPT:
    case CKA_SIGN_RECOVER:
    case CKA_UNWRAP:
    case CKA_WRAP_WITH_TRUSTED:
    case CKA_ALWAYS_AUTHENTICATE:
        return pub ? CKR_ATTRIBUTE_TYPE_INVALID : put_bool(buf, len, false);
    case CKA_VALUE:
        return pub ? CKR_ATTRIBUTE_TYPE_INVALID : CKR_ATTRIBUTE_SENSITIVE;
    /* Public key attributes (section 4.8) */
    case CKA_VERIFY:
        return pub ? put_bool(buf, len, true) : CKR_ATTRIBUTE_TYPE_INVALID;
    case CKA_ENCRYPT:
    case CKA_VERIFY_RECOVER:
    case CKA_WRAP:
    case CKA_TRUSTED:
        return pub ? put_bool(buf, len, false) : CKR_ATTRIBUTE_TYPE_INVALID;
    case CKA_EC_POINT:
        return pub ? CKR_KEY_NEEDED : CKR_ATTRIBUTE_TYPE_INVALID;
    /* Secret-key attributes these objects do not have */
    case CKA_VALUE_LEN:
        return CKR_ATTRIBUTE_TYPE_INVALID;
    default:
        *handled = false; /* common to every virtual object: the caller answers */
        return CKR_OK;
    }
}

CK_RV ddsm_ec_get_attributes(ddsm_call *c, const ddsm_hentry *e, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = CKR_OK, worst = CKR_OK;
    ddsm_kref *k = NULL;
    CK_ATTRIBUTE *rest = NULL;
    CK_ULONG m = 0;
    bool pub = is_public(e), need_key = false;
    ddsm_curve curve = curve_of(e);
    size_t plen = ddsm_ec_point_der_len(curve);
    uint8_t point[DDSM_EC_POINT_DER_MAX];

    if (n == 0)
        return CKR_OK;
    rest = calloc(n, sizeof(*rest));
    if (rest == NULL)
        return CKR_HOST_MEMORY;
    for (CK_ULONG i = 0; i < n; i++) {
        if (pub && t[i].type == CKA_EC_POINT)
            need_key = need_key || (t[i].pValue != NULL && t[i].ulValueLen >= plen);
        else
            rest[m++] = t[i];
    }
    if (need_key) {
        /* The derivation and its audit row, unless the key is cached: before any value is
         * written, so that a failure leaves the template as it was. */
        rv = ddsm_vkey_materialise(c, e, DDSM_USE_OBJECT, &k);
        if (rv != CKR_OK)
            goto out;
        rv = ddsm_ec_point_der_secret(curve, ddsm_kref_bytes(k), point, &plen);
        if (rv != CKR_OK)
            goto out;
    }
    if (m > 0)
        worst = ddsm_vattr_get(e, rest, m, NULL);
    for (CK_ULONG i = 0, j = 0; i < n; i++) {
        if (pub && t[i].type == CKA_EC_POINT) {
            worst = ddsm_vattr_worse(worst, ddsm_vattr_give(&t[i], point, plen));
        } else {
            t[i].ulValueLen = rest[j++].ulValueLen;
        }
    }
    rv = worst;
out:
    ddsm_kref_put(k);
    free(rest);
    return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* C_DeriveKey templates                                                                       */

static bool is_bool_attr(CK_ATTRIBUTE_TYPE t)
{
    switch (t) {
    case CKA_TOKEN:
    case CKA_PRIVATE:
    case CKA_MODIFIABLE:
    case CKA_COPYABLE:
    case CKA_DESTROYABLE:
    case CKA_DERIVE:
    case CKA_SIGN:
    case CKA_SIGN_RECOVER:
    case CKA_DECRYPT:
    case CKA_UNWRAP:
    case CKA_SENSITIVE:
    case CKA_EXTRACTABLE:
    case CKA_WRAP_WITH_TRUSTED:
    case CKA_ALWAYS_AUTHENTICATE:
    case CKA_VERIFY:
    case CKA_VERIFY_RECOVER:
    case CKA_ENCRYPT:
    case CKA_WRAP:
    case CKA_TRUSTED:
        return true;
    default:
        return false;
    }
}

/* Attributes the module alone decides. */
static bool is_read_only(CK_ATTRIBUTE_TYPE t)
{
    switch (t) {
    case CKA_VALUE:
    case CKA_EC_POINT:
    case CKA_UNIQUE_ID:
    case CKA_LOCAL:
    case CKA_KEY_GEN_MECHANISM:
    case CKA_ALWAYS_SENSITIVE:
    case CKA_NEVER_EXTRACTABLE:
    case CKA_ALLOWED_MECHANISMS:
    case CKA_DDSM_COUNTER:
    case CKA_DDSM_STATE:
        return true;
    default:
        return false;
    }
}

CK_RV ddsm_ec_template_parse(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                             const char *canon_path, ddsm_curve curve, uint32_t *variant)
{
    ddsm_hentry e;
    bool pub = false;

    if (n > 0 && tmpl == NULL)
        return CKR_ARGUMENTS_BAD;
    /* The class picks the object; every other attribute is then held against that object. */
    for (CK_ULONG i = 0; i < n; i++) {
        if (tmpl[i].type != CKA_CLASS)
            continue;
        CK_OBJECT_CLASS cls;
        if (tmpl[i].pValue == NULL || tmpl[i].ulValueLen != sizeof(cls))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        memcpy(&cls, tmpl[i].pValue, sizeof(cls));
        if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY)
            return CKR_TEMPLATE_INCONSISTENT;
        pub = cls == CKO_PUBLIC_KEY;
        break;
    }
    memset(&e, 0, sizeof(e));
    e.asset = *asset;
    snprintf(e.path, sizeof(e.path), "%s", canon_path);
    e.variant = ddsm_ec_variant(curve, pub);
    /* CKA_TOKEN false asks for a session object, as for secret keys (vkey.h DDSM_VK_SESSION);
     * the loop below then holds every attribute, CKA_TOKEN included, against that object. */
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type == CKA_TOKEN && tmpl[i].pValue != NULL &&
            tmpl[i].ulValueLen == sizeof(CK_BBOOL) && *(const CK_BBOOL *)tmpl[i].pValue == CK_FALSE)
            e.variant |= DDSM_VK_SESSION;

    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &tmpl[i];
        if (is_read_only(a->type))
            return CKR_ATTRIBUTE_READ_ONLY;
        if (a->type == CKA_DDSM_PATH) {
            ddsm_path p;
            char canon[DDSM_PATH_TEXT_MAX];
            if (a->pValue == NULL || ddsm_path_parse(a->pValue, a->ulValueLen, &p, NULL) != DDSM_OK)
                return CKR_ATTRIBUTE_VALUE_INVALID;
            ddsm_path_format(&p, canon);
            if (strcmp(canon, canon_path) != 0)
                return CKR_TEMPLATE_INCONSISTENT;
            continue;
        }
        if (a->type == CKA_ID) {
            /* Any hardening spelling of the path inside the id names the same key. */
            if (!ddsm_vkey_id_names(a->pValue, a->ulValueLen, asset, canon_path))
                return CKR_TEMPLATE_INCONSISTENT;
            continue;
        }
        uint8_t want[DDSM_VKEY_ATTR_MAX];
        CK_ULONG wlen = 0;
        CK_RV r = ddsm_vkey_attr(&e, a->type, want, &wlen);
        if (r == CKR_ATTRIBUTE_TYPE_INVALID)
            return r;
        if (r != CKR_OK)
            return CKR_ATTRIBUTE_READ_ONLY; /* a value nobody may set */
        if (is_bool_attr(a->type)) {
            if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL) ||
                (*(const CK_BBOOL *)a->pValue != CK_TRUE &&
                 *(const CK_BBOOL *)a->pValue != CK_FALSE))
                return CKR_ATTRIBUTE_VALUE_INVALID;
        } else if ((a->type == CKA_CLASS || a->type == CKA_KEY_TYPE) &&
                   (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))) {
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
        /* The one value this object has: repeating it is fine, anything else contradicts it. */
        if (a->ulValueLen != wlen ||
            (wlen > 0 && (a->pValue == NULL || memcmp(a->pValue, want, wlen) != 0)))
            return CKR_TEMPLATE_INCONSISTENT;
    }
    *variant = e.variant;
    return CKR_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Mechanisms                                                                                  */

const CK_MECHANISM_TYPE ddsm_ec_mechs[DDSM_EC_MECHS] = {CKM_ECDSA, CKM_ECDSA_SHA256, CKM_EDDSA};

bool ddsm_ec_is_mech(CK_MECHANISM_TYPE m)
{
    return m == CKM_ECDSA || m == CKM_ECDSA_SHA256 || m == CKM_EDDSA;
}

/* Whether the parameter of CKM_EDDSA asks for pure Ed25519: none, or CK_EDDSA_PARAMS with phFlag
 * false and no context. */
static bool eddsa_param_ok(const CK_MECHANISM *m)
{
    if (m->pParameter == NULL)
        return m->ulParameterLen == 0;
    if (m->ulParameterLen != sizeof(eddsa_params))
        return false;
    eddsa_params p;
    memcpy(&p, m->pParameter, sizeof(p));
    return p.phFlag == CK_FALSE && p.ulContextDataLen == 0;
}

CK_RV ddsm_ec_mech(const CK_MECHANISM *m, const ddsm_hentry *e, ddsm_vop *op)
{
    ddsm_curve curve;
    if (!ddsm_ec_variant_curve(e->variant, &curve))
        return ddsm_ec_is_mech(m->mechanism) ? CKR_KEY_TYPE_INCONSISTENT : CKR_MECHANISM_INVALID;
    switch (m->mechanism) {
    case CKM_ECDSA:
    case CKM_ECDSA_SHA256:
        if (curve == DDSM_CURVE_ED25519)
            return CKR_KEY_TYPE_INCONSISTENT;
        if (m->pParameter != NULL || m->ulParameterLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        break;
    case CKM_EDDSA:
        if (curve != DDSM_CURVE_ED25519)
            return CKR_KEY_TYPE_INCONSISTENT;
        if (!eddsa_param_ok(m))
            return CKR_MECHANISM_PARAM_INVALID;
        break;
    case CKM_SHA256_HMAC:
    case CKM_SHA256_HMAC_GENERAL:
    case CKM_AES_GCM:
        return CKR_KEY_TYPE_INCONSISTENT; /* a secret-key mechanism the module has */
    default:
        return CKR_MECHANISM_INVALID;
    }
    op->ec = calloc(1, sizeof(*op->ec));
    if (op->ec == NULL)
        return CKR_HOST_MEMORY;
    op->out_len = SIG_LEN;
    return CKR_OK;
}

bool ddsm_ec_single_part(const ddsm_vop *op)
{
    return op->mech != CKM_ECDSA_SHA256;
}

static CK_RV crypto_fail(ddsm_call *c, ddsm_err e)
{
    return ddsm_call_err(c, e, DDSM_RVCTX_KEY);
}

/* The 32-byte ECDSA input of a single-part operation. */
static CK_RV ecdsa_digest(ddsm_call *c, const ddsm_vop *op, const CK_BYTE *data, CK_ULONG len,
                          uint8_t digest[DDSM_ECDSA_DIGEST_LEN])
{
    if (op->mech == CKM_ECDSA) {
        /* The caller's hash as is (SEC1: its leftmost 256 bits); no hash is shorter than a byte
         * or longer than SHA-512. */
        if (ddsm_ecdsa_digest_from_hash(data, len, digest) != DDSM_OK)
            return CKR_DATA_LEN_RANGE;
        return CKR_OK;
    }
    unsigned int dlen = 0;
    if (EVP_Digest(data, len, digest, &dlen, ddsm_ossl_sha256(), NULL) != 1 ||
        dlen != DDSM_ECDSA_DIGEST_LEN)
        return crypto_fail(c, ddsm_err_openssl("SHA-256"));
    return CKR_OK;
}

/* ECDSA of a 32-byte digest with the operation's private key (reads the secret). */
static CK_RV sign_digest(ddsm_call *c, const ddsm_vop *op, const uint8_t *digest,
                         uint8_t sig[SIG_LEN])
{
    ddsm_err e = ddsm_ecdsa_sign_secret(curve_of(&op->key), ddsm_kref_bytes(op->kref), digest, sig);
    return e == DDSM_OK ? CKR_OK : crypto_fail(c, e);
}

CK_RV ddsm_ec_sign_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *data, CK_ULONG len,
                          uint8_t sig[SIG_LEN])
{
    uint8_t digest[DDSM_ECDSA_DIGEST_LEN];
    CK_RV rv;
    if (op->mech == CKM_EDDSA) {
        ddsm_err e = ddsm_ed25519_sign_secret(ddsm_kref_bytes(op->kref), data, len, sig);
        return e == DDSM_OK ? CKR_OK : crypto_fail(c, e);
    }
    if ((rv = ecdsa_digest(c, op, data, len, digest)) == CKR_OK)
        rv = sign_digest(c, op, digest, sig);
    return rv;
}

CK_RV ddsm_ec_update_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *part, CK_ULONG len)
{
    if (ddsm_ec_single_part(op))
        return CKR_FUNCTION_NOT_SUPPORTED; /* CKM_ECDSA and CKM_EDDSA are single-part */
    op->updated = true;
    if (op->ec->md == NULL) {
        op->ec->md = EVP_MD_CTX_new();
        if (op->ec->md == NULL || EVP_DigestInit_ex2(op->ec->md, ddsm_ossl_sha256(), NULL) != 1)
            return crypto_fail(c, ddsm_err_openssl("SHA-256 init"));
    }
    if (len > 0 && EVP_DigestUpdate(op->ec->md, part, len) != 1)
        return crypto_fail(c, ddsm_err_openssl("SHA-256 update"));
    return CKR_OK;
}

/* The SHA-256 of everything the updates gave (of nothing when there was no update). */
static CK_RV final_digest(ddsm_call *c, ddsm_vop *op, uint8_t digest[DDSM_ECDSA_DIGEST_LEN])
{
    if (ddsm_ec_single_part(op))
        return CKR_FUNCTION_NOT_SUPPORTED;
    if (op->ec->md == NULL)
        return ecdsa_digest(c, op, NULL, 0, digest);
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(op->ec->md, digest, &dlen) != 1 || dlen != DDSM_ECDSA_DIGEST_LEN)
        return crypto_fail(c, ddsm_err_openssl("SHA-256 final"));
    return CKR_OK;
}

CK_RV ddsm_ec_sign_final_locked(ddsm_call *c, ddsm_vop *op, uint8_t sig[SIG_LEN])
{
    uint8_t digest[DDSM_ECDSA_DIGEST_LEN];
    CK_RV rv = final_digest(c, op, digest);
    if (rv == CKR_OK)
        rv = sign_digest(c, op, digest, sig);
    return rv;
}

/* The public key of the operation's key, computed once (reads the private key). */
static CK_RV op_public(ddsm_call *c, ddsm_vop *op)
{
    if (op->ec->pub_len != 0)
        return CKR_OK;
    ddsm_err e = ddsm_ec_public_from_secret(curve_of(&op->key), ddsm_kref_bytes(op->kref), true,
                                            op->ec->pub, &op->ec->pub_len);
    return e == DDSM_OK ? CKR_OK : crypto_fail(c, e);
}

static CK_RV verify_digest(ddsm_call *c, ddsm_vop *op, const uint8_t *digest, const CK_BYTE *sig)
{
    bool valid = false;
    CK_RV rv = op_public(c, op);
    if (rv != CKR_OK)
        return rv;
    ddsm_err e =
        ddsm_ecdsa_verify(curve_of(&op->key), op->ec->pub, op->ec->pub_len, digest, sig, &valid);
    if (e != DDSM_OK)
        return crypto_fail(c, e);
    return valid ? CKR_OK : CKR_SIGNATURE_INVALID;
}

CK_RV ddsm_ec_verify_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *data, CK_ULONG len,
                            const CK_BYTE *sig, CK_ULONG sig_len)
{
    uint8_t digest[DDSM_ECDSA_DIGEST_LEN];
    CK_RV rv;
    if (op->mech == CKM_EDDSA) {
        bool valid = false;
        if (sig_len != SIG_LEN)
            return CKR_SIGNATURE_LEN_RANGE;
        if ((rv = op_public(c, op)) != CKR_OK)
            return rv;
        ddsm_err e = ddsm_ed25519_verify(op->ec->pub, data, len, sig, &valid);
        if (e != DDSM_OK)
            return crypto_fail(c, e);
        return valid ? CKR_OK : CKR_SIGNATURE_INVALID;
    }
    if ((rv = ecdsa_digest(c, op, data, len, digest)) != CKR_OK)
        return rv;
    if (sig_len != SIG_LEN)
        return CKR_SIGNATURE_LEN_RANGE;
    return verify_digest(c, op, digest, sig);
}

CK_RV ddsm_ec_verify_final_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *sig, CK_ULONG sig_len)
{
    uint8_t digest[DDSM_ECDSA_DIGEST_LEN];
    CK_RV rv = final_digest(c, op, digest);
    if (rv != CKR_OK)
        return rv;
    if (sig_len != SIG_LEN)
        return CKR_SIGNATURE_LEN_RANGE;
    return verify_digest(c, op, digest, sig);
}

void ddsm_ec_mech_info(CK_MECHANISM_TYPE m, const CK_MECHANISM_INFO *be, CK_MECHANISM_INFO *out)
{
    CK_MECHANISM_INFO ours;
    ours.flags = CKF_SIGN | CKF_VERIFY;
    if (m == CKM_EDDSA) {
        ours.ulMinKeySize = ours.ulMaxKeySize = 255; /* bits of the Edwards25519 field */
    } else {
        ours.ulMinKeySize = ours.ulMaxKeySize = 256;
        ours.flags |= CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
    }
    if (be != NULL) {
        /* The backend's own keys of this mechanism keep working (they are forwarded). */
        ours.flags |= be->flags;
        if (be->ulMinKeySize < ours.ulMinKeySize)
            ours.ulMinKeySize = be->ulMinKeySize;
        if (be->ulMaxKeySize > ours.ulMaxKeySize)
            ours.ulMaxKeySize = be->ulMaxKeySize;
    }
    *out = ours;
}
