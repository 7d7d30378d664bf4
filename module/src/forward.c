/* SPDX-License-Identifier: Apache-2.0 */
/* Generated pass-through forwarders: see forward.h. C_InitPIN and C_SetPIN (the slot/token family)
 * and C_CreateObject are plain forwards too, so they come from the same list: the PINs go to the
 * backend untouched and are never logged. */
#include "forward.h"

#include "guard.h"
#include "ladder.h"

/* C_GenerateKey (b NULL) and C_GenerateKeyPair: an allowed mechanism, no template carrying the
 * root's label. */
static CK_RV ddsm_fwd_generate(ddsm_call *c, const CK_MECHANISM *m, const CK_ATTRIBUTE *a,
                               CK_ULONG na, const CK_ATTRIBUTE *b, CK_ULONG nb)
{
    CK_RV rv = ddsm_mech_check(c, m);
    return rv != CKR_OK ? rv : ddsm_guard_templates(c, a, na, b, nb);
}

#define DDSM_FWD_DEFINE(name, params, args, key, virt_rv, out1, out2, args_ok, pre)                \
    CK_RV ddsm_##name params                                                                       \
    {                                                                                              \
        DDSM_CALL(c, #name);                                                                       \
        DDSM_LADDER_SESSION(c, hSession, args_ok);                                                 \
        if (c.ctx->be->name == NULL) {                                                             \
            rv = CKR_FUNCTION_NOT_SUPPORTED;                                                       \
            goto out;                                                                              \
        }                                                                                          \
        if ((rv = (pre)) != CKR_OK)                                                                \
            goto out;                                                                              \
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
