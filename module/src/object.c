/* Object management. Backend objects pass through (behind the root guard); virtual objects are
 * read-only token objects:
 *  - C_GetAttributeValue follows PKCS#11 2.40 section 5.7 to the letter: every attribute is
 *    processed; NULL pValue gives the length; too small a buffer, a sensitive value or an unknown
 *    type give CK_UNAVAILABLE_INFORMATION in ulValueLen and the call returns
 *    CKR_BUFFER_TOO_SMALL / CKR_ATTRIBUTE_SENSITIVE / CKR_ATTRIBUTE_TYPE_INVALID (sensitive
 *    first, then type, then size, when several happen). CKA_VALUE of an extractable,
 *    non-sensitive key is derived (and audited) on first read.
 *  - C_SetAttributeValue, C_CopyObject, C_DestroyObject: CKR_ACTION_PROHIBITED (CKA_MODIFIABLE,
 *    CKA_COPYABLE and CKA_DESTROYABLE are false; retire keys through ddsmctl).
 *  - C_GetObjectSize: CKR_OK with CK_UNAVAILABLE_INFORMATION (the standard's answer for a size
 *    that is not meaningful; no key material is involved).
 * On the root seed key: reading CKA_VALUE, setting attributes, copying and destroying are refused
 * with CKR_ACTION_PROHIBITED; its other attributes read through (tools list it). */
#include <string.h>

#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "entry.h"
#include "guard.h"
#include "handles.h"
#include "ladder.h"
#include "vkey.h"

/* The common rungs for an existing virtual object: logged in, live handle, current lifecycle. */
static CK_RV virtual_object(ddsm_call *c, CK_OBJECT_HANDLE h, ddsm_hentry *e)
{
    CK_RV rv = ddsm_require_user(c);
    if (rv != CKR_OK)
        return rv;
    if ((rv = ddsm_vkey_lookup(c, h, false, e)) != CKR_OK)
        return rv;
    return ddsm_vkey_check(c, e, DDSM_USE_OBJECT);
}

static bool is_virtual(CK_OBJECT_HANDLE h)
{
    return ddsm_handle_is_virtual(h) && h != CK_DDSM_ROOT_HANDLE;
}

CK_RV ddsm_C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                        CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                        CK_OBJECT_HANDLE_PTR phNewObject)
{
    DDSM_CALL(c, "C_CopyObject");
    DDSM_LADDER_SESSION(c, hSession, phNewObject != NULL && (pTemplate != NULL || ulCount == 0));
    if ((rv = ddsm_guard_object(&c, hObject)) != CKR_OK)
        goto out;
    rv = c.ctx->be->C_CopyObject(hSession, hObject, pTemplate, ulCount, phNewObject);
    if (rv == CKR_OK)
        rv = ddsm_guard_new_handles(&c, phNewObject, NULL);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
    DDSM_CALL(c, "C_DestroyObject");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if ((rv = ddsm_guard_object(&c, hObject)) != CKR_OK)
        goto out;
    rv = c.ctx->be->C_DestroyObject(hSession, hObject);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                               CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    DDSM_CALL(c, "C_SetAttributeValue");
    DDSM_LADDER_SESSION(c, hSession, pTemplate != NULL || ulCount == 0);
    if ((rv = ddsm_guard_object(&c, hObject)) != CKR_OK)
        goto out;
    rv = c.ctx->be->C_SetAttributeValue(hSession, hObject, pTemplate, ulCount);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                           CK_ULONG_PTR pulSize)
{
    ddsm_hentry e;
    DDSM_CALL(c, "C_GetObjectSize");
    DDSM_LADDER_SESSION(c, hSession, pulSize != NULL);
    if (is_virtual(hObject)) {
        if ((rv = virtual_object(&c, hObject, &e)) == CKR_OK)
            *pulSize = CK_UNAVAILABLE_INFORMATION;
        goto out;
    }
    if (!ddsm_handle_is_backend(hObject)) {
        rv = CKR_OBJECT_HANDLE_INVALID;
        goto out;
    }
    rv = c.ctx->be->C_GetObjectSize(hSession, hObject, pulSize);
out:
    return ddsm_call_end(&c, rv);
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

/* Copy one value out per section 5.7; returns the attribute's own outcome. */
static CK_RV give(CK_ATTRIBUTE *a, const void *val, CK_ULONG len)
{
    if (a->pValue == NULL) {
        a->ulValueLen = len;
        return CKR_OK;
    }
    if (a->ulValueLen < len) {
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(a->pValue, val, len);
    a->ulValueLen = len;
    return CKR_OK;
}

static CK_RV virtual_attributes(ddsm_call *c, const ddsm_hentry *e, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV worst = CKR_OK;
    ddsm_kref *k = NULL;

    for (CK_ULONG i = 0; i < n; i++) {
        uint8_t buf[DDSM_VKEY_ATTR_MAX];
        CK_ULONG len = 0;
        CK_RV r = ddsm_vkey_attr(e, t[i].type, buf, &len);
        if (r == CKR_KEY_NEEDED) {
            /* CKA_VALUE of a readable key: derive it (audited) unless cached. */
            if (k == NULL) {
                CK_RV mr = ddsm_vkey_materialise(c, e, DDSM_USE_OBJECT, &k);
                if (mr != CKR_OK) {
                    /* Not an attribute problem: the call as a whole fails. */
                    worst = mr;
                    goto out;
                }
            }
            r = give(&t[i], ddsm_kref_bytes(k), DDSM_KEY_LEN);
        } else if (r == CKR_OK) {
            r = give(&t[i], buf, len);
        } else {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        }
        if (err_rank(r) > err_rank(worst))
            worst = r;
    }
out:
    ddsm_kref_put(k);
    return worst;
}

CK_RV ddsm_C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                               CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    ddsm_hentry e;
    DDSM_CALL(c, "C_GetAttributeValue");
    DDSM_LADDER_SESSION(c, hSession, pTemplate != NULL || ulCount == 0);
    if (is_virtual(hObject)) {
        if ((rv = virtual_object(&c, hObject, &e)) == CKR_OK)
            rv = virtual_attributes(&c, &e, pTemplate, ulCount);
        goto out;
    }
    if (!ddsm_handle_is_backend(hObject) && hObject != CK_DDSM_ROOT_HANDLE) {
        rv = CKR_OBJECT_HANDLE_INVALID;
        goto out;
    }
    bool wants_value = false;
    for (CK_ULONG i = 0; i < ulCount; i++)
        wants_value = wants_value || pTemplate[i].type == CKA_VALUE;
    if (hObject == CK_DDSM_ROOT_HANDLE || (wants_value && ddsm_guard_is_root(&c, hObject))) {
        for (CK_ULONG i = 0; i < ulCount; i++)
            if (pTemplate[i].type == CKA_VALUE || hObject == CK_DDSM_ROOT_HANDLE)
                pTemplate[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    rv = c.ctx->be->C_GetAttributeValue(hSession, hObject, pTemplate, ulCount);
out:
    return ddsm_call_end(&c, rv);
}
