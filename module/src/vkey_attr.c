/* SPDX-License-Identifier: Apache-2.0 */
/* The attribute and template code of virtual keys: what a found key may do, its CKA_ID and
 * CKA_LABEL, the attributes C_GetAttributeValue reports, and C_DeriveKey's template.
 *
 * Invariants: nothing here locks, touches the store or the HSM, or sees key bytes; the only shared
 * state read is a record's (counter, state) word, atomically. */
#include "vkey_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ec.h"

bool ddsm_vkey_found_variant(const char *key_type, bool policy_extractable, uint32_t *variant)
{
    uint32_t v = policy_extractable ? DDSM_VK_EXTRACTABLE | DDSM_VK_KEY_READABLE : DDSM_VK_SENSITIVE;
    if (strcmp(key_type, "hmac") == 0)
        v |= DDSM_VK_SIGN | DDSM_VK_VERIFY;
    else if (strcmp(key_type, "aes") == 0)
        v |= DDSM_VK_AES | DDSM_VK_ENCRYPT | DDSM_VK_DECRYPT;
    else
        return false;
    *variant = v;
    return true;
}

CK_RV ddsm_vkey_template_parse_typed(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                                     const char *canon_path, const char *key_type,
                                     bool policy_extractable, uint32_t *variant)
{
    bool want_aes;
    if (strcmp(key_type, "aes") == 0)
        want_aes = true;
    else if (strcmp(key_type, "hmac") == 0)
        want_aes = false;
    else
        return CKR_TEMPLATE_INCONSISTENT; /* not a secret-key asset: no secret key of it */
    if (n > 0 && tmpl == NULL)
        return CKR_ARGUMENTS_BAD;
    bool typed = false;
    for (CK_ULONG i = 0; i < n; i++)
        typed = typed || tmpl[i].type == CKA_KEY_TYPE;
    uint32_t v = 0;
    CK_RV rv;
    if (typed || !want_aes) {
        rv = ddsm_vkey_template_parse(tmpl, n, asset, canon_path, policy_extractable, &v);
    } else {
        /* An aes asset's keys are AES keys when the template does not say: the parser's default
         * (a generic secret) would be refused below. */
        CK_KEY_TYPE aes = CKK_AES;
        CK_ATTRIBUTE *t = calloc((size_t)n + 1, sizeof(*t));
        if (t == NULL)
            return CKR_HOST_MEMORY;
        t[0] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &aes, sizeof(aes)};
        if (n > 0)
            memcpy(&t[1], tmpl, (size_t)n * sizeof(*t));
        rv = ddsm_vkey_template_parse(t, n + 1, asset, canon_path, policy_extractable, &v);
        free(t);
    }
    if (rv != CKR_OK)
        return rv;
    /* The same 32 bytes must never serve as an HMAC key and as an AES key. */
    if (((v & DDSM_VK_AES) != 0) != want_aes)
        return CKR_TEMPLATE_INCONSISTENT;
    *variant = v;
    return CKR_OK;
}

size_t ddsm_vkey_id(const ddsm_uuid *asset, const char *canon_path, uint8_t out[DDSM_KEY_ID_MAX])
{
    size_t len = 0;
    if (ddsm_key_id(asset, canon_path, out, &len) != DDSM_OK) {
        /* Only for a path no table entry can hold: an empty id names nothing. */
        ddsm_log(DDSM_LOG_ERROR, "CKA_ID of an over-long path");
        return 0;
    }
    return len;
}

bool ddsm_vkey_id_names(const void *id, CK_ULONG len, const ddsm_uuid *asset,
                        const char *canon_path)
{
    ddsm_uuid a;
    ddsm_path p;
    char canon[DDSM_PATH_TEXT_MAX];
    if (id == NULL || ddsm_key_id_parse(id, len, &a, &p) != DDSM_OK)
        return false;
    ddsm_path_format(&p, canon);
    return memcmp(a.b, asset->b, sizeof(a.b)) == 0 && strcmp(canon, canon_path) == 0;
}

void ddsm_vkey_label(const ddsm_uuid *asset, const char *canon_path,
                     char out[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX])
{
    char id[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(asset, id);
    snprintf(out, DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX, "%s/%s", id, canon_path);
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

static CK_RV put_bytes(uint8_t *buf, CK_ULONG *len, const void *p, size_t n)
{
    memcpy(buf, p, n);
    *len = n;
    return CKR_OK;
}

static CK_ULONG state_code(ddsm_state st)
{
    switch (st) {
    case DDSM_STATE_ACTIVE:
        return CK_DDSM_STATE_ACTIVE;
    case DDSM_STATE_ROTATING:
        return CK_DDSM_STATE_ROTATING;
    case DDSM_STATE_RETIRED:
        return CK_DDSM_STATE_RETIRED;
    default:
        return CK_DDSM_STATE_INITIALIZED;
    }
}

CK_RV ddsm_vkey_attr(const ddsm_hentry *e, CK_ATTRIBUTE_TYPE t, uint8_t buf[DDSM_VKEY_ATTR_MAX],
                     CK_ULONG *len)
{
    uint32_t v = e->variant;
    if (ddsm_ec_is_ec(v)) {
        /* EC private and public keys (ec.h); the attributes every object shares are below. */
        bool handled = false;
        CK_RV erv = ddsm_ec_attr(e, t, buf, len, &handled);
        if (handled)
            return erv;
    }
    bool aes = (v & DDSM_VK_AES) != 0;
    char text[DDSM_VKEY_ATTR_MAX];

    switch (t) {
    case CKA_CLASS:
        return put_ulong(buf, len, CKO_SECRET_KEY);
    case CKA_KEY_TYPE:
        return put_ulong(buf, len, aes ? CKK_AES : CKK_GENERIC_SECRET);
    case CKA_TOKEN:
    case CKA_PRIVATE:
        return put_bool(buf, len, true);
    case CKA_MODIFIABLE:
    case CKA_COPYABLE:
    case CKA_DESTROYABLE:
    case CKA_DERIVE:
    case CKA_WRAP:
    case CKA_UNWRAP:
    case CKA_LOCAL:
    case CKA_TRUSTED:
    case CKA_WRAP_WITH_TRUSTED:
        return put_bool(buf, len, false);
    case CKA_SIGN:
        return put_bool(buf, len, (v & DDSM_VK_SIGN) != 0);
    case CKA_VERIFY:
        return put_bool(buf, len, (v & DDSM_VK_VERIFY) != 0);
    case CKA_ENCRYPT:
        return put_bool(buf, len, (v & DDSM_VK_ENCRYPT) != 0);
    case CKA_DECRYPT:
        return put_bool(buf, len, (v & DDSM_VK_DECRYPT) != 0);
    case CKA_SENSITIVE:
        return put_bool(buf, len, (v & DDSM_VK_SENSITIVE) != 0);
    case CKA_EXTRACTABLE:
        return put_bool(buf, len, (v & DDSM_VK_EXTRACTABLE) != 0);
    case CKA_ALWAYS_SENSITIVE:
        /* Properties of the key, not of this handle: true only while no handle of the key can
         * ever reveal its value (DDSM_VK_KEY_READABLE). */
        return put_bool(buf, len,
                        (v & DDSM_VK_SENSITIVE) != 0 && (v & DDSM_VK_KEY_READABLE) == 0);
    case CKA_NEVER_EXTRACTABLE:
        return put_bool(buf, len,
                        (v & DDSM_VK_EXTRACTABLE) == 0 && (v & DDSM_VK_KEY_READABLE) == 0);
    case CKA_VALUE_LEN:
        return put_ulong(buf, len, DDSM_KEY_LEN);
    case CKA_KEY_GEN_MECHANISM:
        return put_ulong(buf, len, CKM_DDSM_DERIVE);
    case CKA_START_DATE:
    case CKA_END_DATE:
        *len = 0;
        return CKR_OK;
    case CKA_LABEL:
        ddsm_vkey_label(&e->asset, e->path, text);
        return put_bytes(buf, len, text, strlen(text));
    case CKA_ID: {
        uint8_t id[DDSM_KEY_ID_MAX];
        size_t n = ddsm_vkey_id(&e->asset, e->path, id);
        return put_bytes(buf, len, id, n);
    }
    case CKA_UNIQUE_ID: {
        char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
        ddsm_vkey_label(&e->asset, e->path, label);
        int n = snprintf(text, sizeof(text), "%s#%" PRIu64, label, e->counter);
        return put_bytes(buf, len, text, (size_t)n);
    }
    case CKA_ALLOWED_MECHANISMS: {
        CK_MECHANISM_TYPE m[2];
        size_t n = 0;
        if (aes) {
            m[n++] = CKM_AES_GCM;
        } else {
            m[n++] = CKM_SHA256_HMAC;
            m[n++] = CKM_SHA256_HMAC_GENERAL;
        }
        return put_bytes(buf, len, m, n * sizeof(m[0]));
    }
    case CKA_DDSM_ASSET_ID:
        return put_bytes(buf, len, e->asset.b, 16);
    case CKA_DDSM_PATH:
        return put_bytes(buf, len, e->path, strlen(e->path));
    case CKA_DDSM_COUNTER:
        return put_ulong(buf, len, (CK_ULONG)e->counter);
    case CKA_DDSM_STATE: {
        uint64_t counter;
        ddsm_state st;
        cs_unpack(atomic_load(&((const ddsm_asset_rec *)e->aux)->cs), &counter, &st);
        return put_ulong(buf, len, state_code(st));
    }
    case CKA_VALUE:
        return (v & DDSM_VK_SENSITIVE) != 0 || (v & DDSM_VK_EXTRACTABLE) == 0
                   ? CKR_ATTRIBUTE_SENSITIVE
                   : CKR_KEY_NEEDED;
    default:
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* C_DeriveKey templates                                                                       */

typedef struct tmpl_val {
    bool seen;
    CK_ULONG ul;
    bool b;
} tmpl_val;

/* A CK_BBOOL attribute value: one byte, 0 or 1. */
static CK_RV read_bool(const CK_ATTRIBUTE *a, bool *out)
{
    if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    CK_BBOOL b = *(const CK_BBOOL *)a->pValue;
    if (b != CK_TRUE && b != CK_FALSE)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *out = b == CK_TRUE;
    return CKR_OK;
}

static CK_RV read_ulong(const CK_ATTRIBUTE *a, CK_ULONG *out)
{
    if (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    memcpy(out, a->pValue, sizeof(*out));
    return CKR_OK;
}

/* Record a value; the same attribute twice with different values is contradictory. */
static CK_RV note(tmpl_val *slot, CK_ULONG ul, bool b)
{
    if (slot->seen && (slot->ul != ul || slot->b != b))
        return CKR_TEMPLATE_INCONSISTENT;
    slot->seen = true;
    slot->ul = ul;
    slot->b = b;
    return CKR_OK;
}

enum { T_CLASS, T_KEYTYPE, T_LEN, T_SIGN, T_VERIFY, T_ENC, T_DEC, T_EXTR, T_SENS, T__N };

CK_RV ddsm_vkey_template_parse(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                               const char *canon_path, bool policy_extractable, uint32_t *variant)
{
    tmpl_val v[T__N];
    char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
    CK_RV rv = CKR_OK;

    memset(v, 0, sizeof(v));
    ddsm_vkey_label(asset, canon_path, label);
    if (n > 0 && tmpl == NULL)
        return CKR_ARGUMENTS_BAD;

    for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++) {
        const CK_ATTRIBUTE *a = &tmpl[i];
        CK_ULONG ul = 0;
        bool b = false;
        switch (a->type) {
        case CKA_CLASS:
            if ((rv = read_ulong(a, &ul)) == CKR_OK)
                rv = ul != CKO_SECRET_KEY ? CKR_TEMPLATE_INCONSISTENT : note(&v[T_CLASS], ul, 0);
            break;
        case CKA_KEY_TYPE:
            if ((rv = read_ulong(a, &ul)) == CKR_OK)
                rv = ul != CKK_GENERIC_SECRET && ul != CKK_AES ? CKR_ATTRIBUTE_VALUE_INVALID
                                                               : note(&v[T_KEYTYPE], ul, 0);
            break;
        case CKA_VALUE_LEN:
            if ((rv = read_ulong(a, &ul)) == CKR_OK)
                rv = ul != DDSM_KEY_LEN ? CKR_ATTRIBUTE_VALUE_INVALID : note(&v[T_LEN], ul, 0);
            break;
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
        case CKA_EXTRACTABLE:
        case CKA_SENSITIVE: {
            int which = a->type == CKA_SIGN          ? T_SIGN
                        : a->type == CKA_VERIFY      ? T_VERIFY
                        : a->type == CKA_ENCRYPT     ? T_ENC
                        : a->type == CKA_DECRYPT     ? T_DEC
                        : a->type == CKA_EXTRACTABLE ? T_EXTR
                                                     : T_SENS;
            if ((rv = read_bool(a, &b)) == CKR_OK)
                rv = note(&v[which], 0, b);
            break;
        }
        case CKA_TOKEN:
        case CKA_PRIVATE:
            /* Derived keys are token objects (the registry is persistent) and private. */
            if ((rv = read_bool(a, &b)) == CKR_OK && !b)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_MODIFIABLE:
        case CKA_COPYABLE:
        case CKA_DESTROYABLE:
        case CKA_DERIVE:
        case CKA_WRAP:
        case CKA_UNWRAP:
        case CKA_TRUSTED:
        case CKA_WRAP_WITH_TRUSTED:
            if ((rv = read_bool(a, &b)) == CKR_OK && b)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_LABEL:
            if (a->ulValueLen != strlen(label) ||
                (a->ulValueLen > 0 &&
                 (a->pValue == NULL || memcmp(a->pValue, label, a->ulValueLen) != 0)))
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_ID:
            /* Any hardening spelling of the path names the same key. */
            if (!ddsm_vkey_id_names(a->pValue, a->ulValueLen, asset, canon_path))
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_DDSM_ASSET_ID:
            if (a->ulValueLen != 16 || a->pValue == NULL || memcmp(a->pValue, asset->b, 16) != 0)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_DDSM_PATH: {
            ddsm_path p;
            char canon[DDSM_PATH_TEXT_MAX];
            if (a->pValue == NULL ||
                ddsm_path_parse(a->pValue, a->ulValueLen, &p, NULL) != DDSM_OK) {
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
                break;
            }
            ddsm_path_format(&p, canon);
            if (strcmp(canon, canon_path) != 0)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        }
        case CKA_VALUE:
        case CKA_UNIQUE_ID:
        case CKA_LOCAL:
        case CKA_KEY_GEN_MECHANISM:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_DDSM_COUNTER:
        case CKA_DDSM_STATE:
            rv = CKR_ATTRIBUTE_READ_ONLY;
            break;
        default:
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
            break;
        }
    }
    if (rv != CKR_OK)
        return rv;

    bool aes = v[T_KEYTYPE].seen && v[T_KEYTYPE].ul == CKK_AES;
    bool extractable = v[T_EXTR].seen ? v[T_EXTR].b : policy_extractable;
    bool sensitive = v[T_SENS].seen ? v[T_SENS].b : !extractable;
    bool sign = v[T_SIGN].seen ? v[T_SIGN].b : !aes;
    bool verify = v[T_VERIFY].seen ? v[T_VERIFY].b : !aes;
    bool enc = v[T_ENC].seen ? v[T_ENC].b : aes;
    bool dec = v[T_DEC].seen ? v[T_DEC].b : aes;

    if (extractable && !policy_extractable)
        return CKR_TEMPLATE_INCONSISTENT; /* the policy keeps derived keys in the module */
    if (!sensitive && !extractable)
        return CKR_TEMPLATE_INCONSISTENT; /* a readable value is an extraction */
    if (aes && (sign || verify))
        return CKR_TEMPLATE_INCONSISTENT; /* HMAC takes generic secret keys */
    if (!aes && (enc || dec))
        return CKR_TEMPLATE_INCONSISTENT; /* only AES keys encrypt */

    *variant = (aes ? DDSM_VK_AES : 0) | (sign ? DDSM_VK_SIGN : 0) | (verify ? DDSM_VK_VERIFY : 0) |
               (enc ? DDSM_VK_ENCRYPT : 0) | (dec ? DDSM_VK_DECRYPT : 0) |
               (extractable ? DDSM_VK_EXTRACTABLE : 0) | (sensitive ? DDSM_VK_SENSITIVE : 0) |
               (policy_extractable ? DDSM_VK_KEY_READABLE : 0);
    return CKR_OK;
}
