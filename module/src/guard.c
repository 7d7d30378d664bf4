/* SPDX-License-Identifier: Apache-2.0 */
#include "guard.h"

#include <string.h>

#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "handles.h"

#define LABEL_MAX 256 /* longer than any root_key_label the config accepts */

typedef enum { KIND_ROOT, KIND_OTHER } key_kind;

static bool is_root_label(const ddsm_ctx *ctx, const void *label, CK_ULONG len)
{
    const char *want = ctx->cfg->backend.root_key_label;
    return len == strlen(want) && (len == 0 || memcmp(label, want, len) == 0);
}

/* Fail closed: KIND_OTHER only when the backend, asked through the application's own session,
 * shows the object's label and it is not the root's (any class: a data object or a public key
 * carrying the root's label is treated like the root). Every other answer refuses the call:
 * CKR_OBJECT_HANDLE_INVALID when the backend does not know the handle in this session (a private
 * object while logged out is such a handle: after a login it may name the root, and a forwarded
 * call would then run on it), the backend's own error otherwise. So the answer does not depend
 * on the login state at the time of the forwarded call: a label, once read, is what the object
 * carries, and nothing through the module can give an object the root's label (guard.h). What it
 * does rely on: the backend does not hand a live handle number to another object between the
 * check and the call (SoftHSM numbers handles in sequence and never reuses one). */
static CK_RV classify(ddsm_call *c, CK_OBJECT_HANDLE h, key_kind *kind)
{
    ddsm_ctx *ctx = c->ctx;
    *kind = KIND_ROOT;
    if (h == CK_DDSM_ROOT_HANDLE)
        return CKR_OK;
    if (h == CK_INVALID_HANDLE || !ddsm_handle_is_backend(h))
        return CKR_OBJECT_HANDLE_INVALID;
    if (h == atomic_load(&ctx->app_root))
        return CKR_OK;

    char label[LABEL_MAX];
    CK_ATTRIBUTE t = {CKA_LABEL, label, sizeof(label)};
    CK_RV rv = ctx->be->C_GetAttributeValue(c->sess->h, h, &t, 1);
    switch (rv) {
    case CKR_OK:
        if (t.ulValueLen > sizeof(label))
            return ddsm_call_backend(c, CKR_DEVICE_ERROR); /* it overran our buffer */
        if (!is_root_label(ctx, label, t.ulValueLen))
            *kind = KIND_OTHER;
        break;
    case CKR_BUFFER_TOO_SMALL:
        /* Longer than any root label (config.c caps it far below LABEL_MAX). */
        if (strlen(ctx->cfg->backend.root_key_label) < sizeof(label))
            *kind = KIND_OTHER;
        break;
    case CKR_ATTRIBUTE_TYPE_INVALID:
        *kind = KIND_OTHER; /* no label at all: not a storage object, not the root */
        break;
    case CKR_ATTRIBUTE_SENSITIVE:
        break; /* a hidden label proves nothing: the root */
    default:
        ddsm_log(DDSM_LOG_INFO,
                 "%s: object 0x%lx cannot be told from the root seed key (%s): "
                 "refused",
                 c->fn, (unsigned long)h, ddsm_rv_name(rv));
        return rv == CKR_OBJECT_HANDLE_INVALID ? rv : ddsm_call_backend(c, rv);
    }
    if (*kind == KIND_ROOT) {
        atomic_store(&ctx->app_root, h);
        ddsm_log(DDSM_LOG_DEBUG, "object 0x%lx is the root seed key (it carries its label)",
                 (unsigned long)h);
    }
    return CKR_OK;
}

/* A virtual handle: CKR_OK while its object lives; else CKR_KEY_HANDLE_INVALID (key_ctx) or
 * CKR_OBJECT_HANDLE_INVALID for a forged or reused handle and for one whose counter was rotated
 * away or retired (docs/design.md "Lifecycle"): a refusal must not tell a dead key from a live one.
 * Virtual objects are private: a session that is not logged in as the user gets the same answer
 * as for a handle that names nothing (as C_GetAttributeValue does), before anything else is
 * looked at, so that the refusal of a live object does not confirm that it exists. */
static CK_RV virtual_live(ddsm_call *c, CK_OBJECT_HANDLE h, bool key_ctx)
{
    ddsm_hentry e;
    CK_RV rv = ddsm_require_user(c);
    if (rv == CKR_USER_NOT_LOGGED_IN)
        return key_ctx ? CKR_KEY_HANDLE_INVALID : CKR_OBJECT_HANDLE_INVALID;
    if (rv != CKR_OK)
        return rv;
    rv = ddsm_vkey_lookup(c, h, key_ctx, &e);
    if (rv == CKR_OK)
        rv = ddsm_vkey_check(c, &e, key_ctx ? DDSM_USE_VERIFY : DDSM_USE_OBJECT);
    return rv;
}

bool ddsm_guard_is_root(ddsm_call *c, CK_OBJECT_HANDLE h)
{
    key_kind k;
    return classify(c, h, &k) != CKR_OK || k == KIND_ROOT;
}

CK_RV ddsm_guard_root_base(ddsm_call *c, CK_OBJECT_HANDLE h)
{
    if (ddsm_handle_is_virtual(h) && h != CK_DDSM_ROOT_HANDLE) {
        CK_RV rv = virtual_live(c, h, true);
        return rv != CKR_OK ? rv : CKR_KEY_TYPE_INCONSISTENT;
    }
    key_kind k;
    CK_RV rv = classify(c, h, &k);
    if (rv != CKR_OK)
        return ddsm_guard_key_rv(rv, CKR_KEY_HANDLE_INVALID);
    return k == KIND_ROOT ? CKR_OK : CKR_KEY_TYPE_INCONSISTENT;
}

CK_RV ddsm_guard_key(ddsm_call *c, CK_OBJECT_HANDLE h, CK_RV virt_rv)
{
    return ddsm_guard_key_as(c, h, virt_rv, CKR_KEY_FUNCTION_NOT_PERMITTED);
}

CK_RV ddsm_guard_key_as(ddsm_call *c, CK_OBJECT_HANDLE h, CK_RV virt_rv, CK_RV root_rv)
{
    if (ddsm_handle_is_virtual(h) && h != CK_DDSM_ROOT_HANDLE) {
        CK_RV rv = virtual_live(c, h, true);
        return rv != CKR_OK ? rv : virt_rv;
    }
    key_kind k;
    CK_RV rv = classify(c, h, &k);
    if (rv != CKR_OK)
        return ddsm_guard_key_rv(rv, CKR_KEY_HANDLE_INVALID);
    return k == KIND_ROOT ? root_rv : CKR_OK;
}

CK_RV ddsm_guard_key_rv(CK_RV backend_rv, CK_RV key_invalid_rv)
{
    return backend_rv == CKR_OBJECT_HANDLE_INVALID ? key_invalid_rv : backend_rv;
}

CK_RV ddsm_guard_object(ddsm_call *c, CK_OBJECT_HANDLE h)
{
    if (ddsm_handle_is_virtual(h) && h != CK_DDSM_ROOT_HANDLE) {
        CK_RV rv = virtual_live(c, h, false);
        return rv != CKR_OK ? rv : CKR_ACTION_PROHIBITED;
    }
    key_kind k;
    CK_RV rv = classify(c, h, &k);
    if (rv != CKR_OK)
        return rv;
    return k == KIND_ROOT ? CKR_ACTION_PROHIBITED : CKR_OK;
}

CK_RV ddsm_guard_template(ddsm_call *c, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].type != CKA_LABEL)
            continue;
        if (t[i].pValue == NULL && t[i].ulValueLen > 0)
            return CKR_ATTRIBUTE_VALUE_INVALID; /* a label nobody can compare */
        if (is_root_label(c->ctx, t[i].pValue, t[i].ulValueLen)) {
            ddsm_log(DDSM_LOG_WARN, "%s: refused: the template carries the root seed key's label",
                     c->fn);
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
    }
    return CKR_OK;
}

CK_RV ddsm_guard_templates(ddsm_call *c, const CK_ATTRIBUTE *a, CK_ULONG na, const CK_ATTRIBUTE *b,
                           CK_ULONG nb)
{
    CK_RV rv = ddsm_guard_template(c, a, na);
    return rv != CKR_OK ? rv : ddsm_guard_template(c, b, nb);
}

CK_RV ddsm_guard_new_handles(ddsm_call *c, CK_OBJECT_HANDLE_PTR a, CK_OBJECT_HANDLE_PTR b)
{
    bool bad =
        (a != NULL && !ddsm_handle_is_backend(*a)) || (b != NULL && !ddsm_handle_is_backend(*b));
    if (!bad)
        return CKR_OK;
    ddsm_log(DDSM_LOG_ERROR, "the backend returned an object handle with the top bit set");
    if (a != NULL) {
        (void)c->ctx->be->C_DestroyObject(c->sess->h, *a);
        *a = CK_INVALID_HANDLE;
    }
    if (b != NULL) {
        (void)c->ctx->be->C_DestroyObject(c->sess->h, *b);
        *b = CK_INVALID_HANDLE;
    }
    return ddsm_call_backend(c, CKR_DEVICE_ERROR);
}
