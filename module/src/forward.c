/* Generated pass-through forwarders: see forward.h. C_InitPIN and C_SetPIN (the slot/token family)
 * and C_CreateObject are plain forwards too, so they come from the same list: the PINs go to the
 * backend untouched and are never logged. */
#include "forward.h"

#include "guard.h"
#include "ladder.h"

#define DDSM_FWD_DEFINE(name, params, args, key, virt_rv, out1, out2, args_ok)                     \
    CK_RV ddsm_##name params                                                                       \
    {                                                                                              \
        DDSM_CALL(c, #name);                                                                       \
        DDSM_LADDER_SESSION(c, hSession, args_ok);                                                 \
        if (c.ctx->be->name == NULL) {                                                             \
            rv = CKR_FUNCTION_NOT_SUPPORTED;                                                       \
            goto out;                                                                              \
        }                                                                                          \
        if ((virt_rv) != CKR_OK) {                                                                 \
            rv = ddsm_guard_key_as(&c, (key), (virt_rv), (virt_rv));                               \
            if (rv != CKR_OK)                                                                      \
                goto out;                                                                          \
        }                                                                                          \
        rv = c.ctx->be->name args;                                                                 \
        if ((virt_rv) != CKR_OK)                                                                   \
            rv = ddsm_guard_key_rv(rv, CKR_KEY_HANDLE_INVALID);                                    \
        if (rv == CKR_OK)                                                                          \
            rv = ddsm_guard_new_handles(&c, (out1), (out2));                                       \
    out:                                                                                           \
        return ddsm_call_end(&c, rv);                                                              \
    }

DDSM_FORWARDS(DDSM_FWD_DEFINE)
