/* SPDX-License-Identifier: Apache-2.0 */
/* Object management. Backend objects pass through (behind the root guard); virtual objects are
 * read-only token objects:
 *  - C_GetAttributeValue follows PKCS#11 2.40 section 5.7 to the letter: every attribute is
 *    processed; NULL pValue gives the length; too small a buffer, a sensitive value or an unknown
 *    type give CK_UNAVAILABLE_INFORMATION in ulValueLen and the call returns
 *    CKR_BUFFER_TOO_SMALL / CKR_ATTRIBUTE_SENSITIVE / CKR_ATTRIBUTE_TYPE_INVALID (sensitive
 *    first, then type, then size, when several happen). CKA_VALUE of an extractable,
 *    non-sensitive key is derived (and audited) on first read.
 *  - C_SetAttributeValue, C_CopyObject: CKR_ACTION_PROHIBITED (CKA_MODIFIABLE and CKA_COPYABLE
 *    are false; retire keys through ddsmctl).
 *  - C_DestroyObject releases the handle (handles.h), never the key nor its registry row: the old
 *    value is CKR_OBJECT_HANDLE_INVALID from then on, and a find or a derivation gives the key a
 *    new handle. The key cannot be destroyed (CKA_DESTROYABLE false): retire it through ddsmctl.
 *  - C_GetObjectSize: CKR_OK with CK_UNAVAILABLE_INFORMATION (the standard's answer for a size
 *    that is not meaningful; no key material is involved).
 * Backend objects: a template carrying the root's label (C_CopyObject, C_SetAttributeValue) is
 * CKR_ATTRIBUTE_VALUE_INVALID, and a copy of an object carrying it is refused like the root's
 * (guard.h), so nothing gets the root's label through the module.
 * On the root seed key: setting attributes, copying and destroying are refused with
 * CKR_ACTION_PROHIBITED; CKA_VALUE reads as sensitive (CK_UNAVAILABLE_INFORMATION,
 * CKR_ATTRIBUTE_SENSITIVE: section 5.7 lists no other refusal for C_GetAttributeValue) without the
 * backend ever being asked for it; its other attributes read through (tools list it).
 * CK_DDSM_ROOT_HANDLE is no object: CKR_OBJECT_HANDLE_INVALID. */
#include <stdlib.h>
#include <string.h>

#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "ec.h"
#include "entry.h"
#include "guard.h"
#include "handles.h"
#include "ladder.h"
#include "vattr.h"
#include "vkey.h"

/* The common rungs for an existing virtual object: logged in, live handle, current lifecycle.
 * Virtual objects are private: without a user login they do not exist for the session, which is
 * CKR_OBJECT_HANDLE_INVALID (the 2.40 return values of C_GetAttributeValue and C_GetObjectSize
 * have no CKR_USER_NOT_LOGGED_IN). */
static CK_RV virtual_object(ddsm_call *c, CK_OBJECT_HANDLE h, ddsm_hentry *e)
{
    CK_RV rv = ddsm_require_user(c);
    if (rv == CKR_USER_NOT_LOGGED_IN)
        return CKR_OBJECT_HANDLE_INVALID;
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
    if ((rv = ddsm_guard_object(&c, hObject)) != CKR_OK ||
        (rv = ddsm_guard_template(&c, pTemplate, ulCount)) != CKR_OK)
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
    if (is_virtual(hObject)) {
        ddsm_hentry e;
        /* Private objects: without a user login they do not exist for the session. */
        rv = ddsm_require_user(&c);
        if (rv == CKR_USER_NOT_LOGGED_IN)
            rv = CKR_OBJECT_HANDLE_INVALID;
        if (rv != CKR_OK || (rv = ddsm_vkey_lookup(&c, hObject, false, &e)) != CKR_OK)
            goto out;
        /* The handle of a counter rotated away or a retired asset is already no object
         * (CKR_OBJECT_HANDLE_INVALID), but its slot is freed all the same. */
        rv = ddsm_vkey_check(&c, &e, DDSM_USE_OBJECT);
        if (rv == CKR_OK || rv == CKR_OBJECT_HANDLE_INVALID) {
            CK_RV rrv = ddsm_htab_release(c.ctx->handles, hObject);
            rv = rv == CKR_OK ? rrv : rv;
        }
        goto out;
    }
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
    if ((rv = ddsm_guard_object(&c, hObject)) != CKR_OK ||
        (rv = ddsm_guard_template(&c, pTemplate, ulCount)) != CKR_OK)
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

/* Section 5.7 on a virtual object (vattr.h). CKA_VALUE of a readable key is derived (audited)
 * unless cached, and only when its bytes are actually copied out. */
static CK_RV virtual_attributes(ddsm_call *c, const ddsm_hentry *e, CK_ATTRIBUTE *t, CK_ULONG n)
{
    if (ddsm_ec_is_ec(e->variant))
        return ddsm_ec_get_attributes(c, e, t, n); /* CKA_EC_POINT needs the key (ec.h) */
    ddsm_kref *k = NULL;
    if (ddsm_vattr_needs_value(e, t, n)) {
        CK_RV rv = ddsm_vkey_materialise(c, e, DDSM_USE_OBJECT, &k);
        if (rv != CKR_OK)
            return rv; /* not an attribute problem: the call as a whole fails */
    }
    CK_RV rv = ddsm_vattr_get(e, t, n, k != NULL ? ddsm_kref_bytes(k) : NULL);
    ddsm_kref_put(k);
    return rv;
}

/* The root seed key asked for CKA_VALUE (among others): the value is never asked of the backend
 * (whatever its own CKA_SENSITIVE says) and reads as sensitive, per section 5.7; every other
 * attribute of the template reads through in the same call. */
static CK_RV root_attributes(ddsm_call *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = CKR_ATTRIBUTE_SENSITIVE;
    CK_ULONG m = 0;
    CK_ATTRIBUTE *rest = calloc(n, sizeof(*rest));
    if (rest == NULL)
        return CKR_HOST_MEMORY;
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type != CKA_VALUE)
            rest[m++] = t[i];
    if (m > 0) {
        CK_RV brv = c->ctx->be->C_GetAttributeValue(c->sess->h, h, rest, m);
        if (brv != CKR_OK && brv != CKR_ATTRIBUTE_SENSITIVE && brv != CKR_ATTRIBUTE_TYPE_INVALID &&
            brv != CKR_BUFFER_TOO_SMALL) {
            rv = brv; /* not an attribute problem: the call as a whole fails */
            goto out;
        }
    }
    for (CK_ULONG i = 0, j = 0; i < n; i++) {
        if (t[i].type == CKA_VALUE)
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        else
            t[i].ulValueLen = rest[j++].ulValueLen;
    }
out:
    free(rest);
    return rv;
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
    if (!ddsm_handle_is_backend(hObject)) {
        /* CK_DDSM_ROOT_HANDLE included: it names the root for C_DeriveKey, it is no object. */
        rv = CKR_OBJECT_HANDLE_INVALID;
        goto out;
    }
    bool wants_value = false;
    for (CK_ULONG i = 0; i < ulCount; i++)
        wants_value = wants_value || pTemplate[i].type == CKA_VALUE;
    if (wants_value && ddsm_guard_is_root(&c, hObject)) {
        rv = root_attributes(&c, hObject, pTemplate, ulCount);
        goto out;
    }
    rv = c.ctx->be->C_GetAttributeValue(hSession, hObject, pTemplate, ulCount);
out:
    return ddsm_call_end(&c, rv);
}
