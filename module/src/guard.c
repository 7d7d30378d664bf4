#include "guard.h"

#include <string.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "handles.h"
#include "names.h"

#define LABEL_MAX 256

typedef enum { KIND_UNKNOWN, KIND_ROOT, KIND_OTHER } key_kind;

static key_kind classify(ddsm_call *c, CK_OBJECT_HANDLE h)
{
    ddsm_ctx *ctx = c->ctx;
    if (h == CK_DDSM_ROOT_HANDLE)
        return KIND_ROOT;
    if (h == CK_INVALID_HANDLE || !ddsm_handle_is_backend(h))
        return KIND_UNKNOWN;
    if (h == atomic_load(&ctx->app_root))
        return KIND_ROOT;

    CK_OBJECT_CLASS cls = (CK_OBJECT_CLASS)-1;
    char label[LABEL_MAX];
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, label, sizeof(label)},
    };
    CK_RV rv = ctx->be->C_GetAttributeValue(c->sess->h, h, t, 2);
    if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_SENSITIVE ||
        rv == CKR_ATTRIBUTE_TYPE_INVALID)
        return KIND_OTHER; /* a label too long to be the root's, or not a key at all */
    if (rv != CKR_OK) {
        /* Unknown to the backend (the call will fail there). */
        if (!ctx->custody && h == atomic_load(&ctx->root))
            return KIND_ROOT; /* fail safe: the derivation sessions know it as the root */
        return KIND_UNKNOWN;
    }
    const char *want = ctx->cfg->backend.root_key_label;
    bool is_root = cls == CKO_SECRET_KEY && t[1].ulValueLen == strlen(want) &&
                   memcmp(label, want, t[1].ulValueLen) == 0;
    if (is_root) {
        atomic_store(&ctx->app_root, h);
        ddsm_log(DDSM_LOG_DEBUG, "object 0x%lx is the root seed key", (unsigned long)h);
    }
    return is_root ? KIND_ROOT : KIND_OTHER;
}

/* A virtual handle: CKR_OK while its object lives; else CKR_KEY_HANDLE_INVALID (key_ctx) or
 * CKR_OBJECT_HANDLE_INVALID for a forged or reused handle and for one whose counter was rotated
 * away or retired (DESIGN.md "Lifecycle"): a refusal must not tell a dead key from a live one.
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
    return classify(c, h) == KIND_ROOT;
}

CK_RV ddsm_guard_root_base(ddsm_call *c, CK_OBJECT_HANDLE h)
{
    if (ddsm_handle_is_virtual(h) && h != CK_DDSM_ROOT_HANDLE) {
        CK_RV rv = virtual_live(c, h, true);
        return rv != CKR_OK ? rv : CKR_KEY_TYPE_INCONSISTENT;
    }
    switch (classify(c, h)) {
    case KIND_ROOT:
        return CKR_OK;
    case KIND_OTHER:
        return CKR_KEY_TYPE_INCONSISTENT;
    default:
        return CKR_KEY_HANDLE_INVALID;
    }
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
    if (!ddsm_handle_is_backend(h) && h != CK_DDSM_ROOT_HANDLE)
        return CKR_KEY_HANDLE_INVALID;
    if (ddsm_guard_is_root(c, h))
        return root_rv;
    return CKR_OK;
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
    if (!ddsm_handle_is_backend(h) && h != CK_DDSM_ROOT_HANDLE)
        return CKR_OBJECT_HANDLE_INVALID;
    if (ddsm_guard_is_root(c, h))
        return CKR_ACTION_PROHIBITED;
    return CKR_OK;
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
