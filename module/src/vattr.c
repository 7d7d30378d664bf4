/* SPDX-License-Identifier: Apache-2.0 */
#include "vattr.h"

#include <string.h>

#include "ddsm/derive.h"
#include "ddsm/pkcs11-ddsm.h"
#include "vkey.h"

bool ddsm_vattr_needs_value(const ddsm_hentry *e, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        uint8_t buf[DDSM_VKEY_ATTR_MAX];
        CK_ULONG len = 0;
        if (t[i].type == CKA_VALUE && t[i].pValue != NULL && t[i].ulValueLen >= DDSM_KEY_LEN &&
            ddsm_vkey_attr(e, CKA_VALUE, buf, &len) == CKR_KEY_NEEDED)
            return true;
    }
    return false;
}

/* Rank of an attribute error when several attributes fail: the most telling one wins. */
static int err_rank(CK_RV rv)
{
    switch (rv) {
    case CKR_ATTRIBUTE_SENSITIVE:
        return 3;
    case CKR_ATTRIBUTE_TYPE_INVALID:
        return 2;
    case CKR_BUFFER_TOO_SMALL:
        return 1;
    default:
        return 0;
    }
}

CK_RV ddsm_vattr_worse(CK_RV worst, CK_RV r)
{
    return err_rank(r) > err_rank(worst) ? r : worst;
}

CK_RV ddsm_vattr_give(CK_ATTRIBUTE *a, const void *val, CK_ULONG len)
{
    if (a->pValue == NULL) {
        a->ulValueLen = len;
        return CKR_OK;
    }
    if (a->ulValueLen < len) {
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (len > 0)
        memcpy(a->pValue, val, len);
    a->ulValueLen = len;
    return CKR_OK;
}

CK_RV ddsm_vattr_get(const ddsm_hentry *e, CK_ATTRIBUTE *t, CK_ULONG n, const uint8_t *value_secret)
{
    CK_RV worst = CKR_OK;
    for (CK_ULONG i = 0; i < n; i++) {
        uint8_t buf[DDSM_VKEY_ATTR_MAX];
        CK_ULONG len = 0;
        CK_RV r = ddsm_vkey_attr(e, t[i].type, buf, &len);
        if (r == CKR_KEY_NEEDED) {
            /* CKA_VALUE of a readable key: its length needs no key; its bytes come from the
             * caller, who derived them (audited) because ddsm_vattr_needs_value said so. */
            if (t[i].pValue == NULL) {
                t[i].ulValueLen = DDSM_KEY_LEN;
                r = CKR_OK;
            } else if (t[i].ulValueLen < DDSM_KEY_LEN) {
                t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                r = CKR_BUFFER_TOO_SMALL;
            } else if (value_secret != NULL)
                r = ddsm_vattr_give(&t[i], value_secret, DDSM_KEY_LEN);
            else
                r = CKR_ATTRIBUTE_SENSITIVE;
        } else if (r == CKR_OK) {
            r = ddsm_vattr_give(&t[i], buf, len);
        }
        if (r != CKR_OK && r != CKR_BUFFER_TOO_SMALL)
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        worst = ddsm_vattr_worse(worst, r);
    }
    return worst;
}

bool ddsm_vattr_match(const ddsm_hentry *e, const CK_ATTRIBUTE *t, CK_ULONG n, bool skip_label)
{
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &t[i];
        if (a->type == CKA_LABEL && skip_label)
            continue;
        if (a->type == CKA_DDSM_PATH) {
            /* Any hardening spelling names the same path: compare canonical forms. */
            ddsm_path p;
            char canon[DDSM_PATH_TEXT_MAX];
            if (a->pValue == NULL || ddsm_path_parse(a->pValue, a->ulValueLen, &p, NULL) != DDSM_OK)
                return false;
            ddsm_path_format(&p, canon);
            if (strcmp(canon, e->path) != 0)
                return false;
            continue;
        }
        if (a->type == CKA_ID) {
            /* Likewise for the path inside an id: the object reports the canonical one. */
            if (!ddsm_vkey_id_names(a->pValue, a->ulValueLen, &e->asset, e->path))
                return false;
            continue;
        }
        uint8_t buf[DDSM_VKEY_ATTR_MAX];
        CK_ULONG len = 0;
        if (ddsm_vkey_attr(e, a->type, buf, &len) != CKR_OK)
            return false; /* no such attribute, or a value that is never compared */
        if (a->ulValueLen != len ||
            (len > 0 && (a->pValue == NULL || memcmp(a->pValue, buf, len) != 0)))
            return false;
    }
    return true;
}
