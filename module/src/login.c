/* SPDX-License-Identifier: Apache-2.0 */
#include "login.h"

void ddsm_login_note(ddsm_ctx *ctx, CK_USER_TYPE userType, CK_RV rv)
{
    ddsm_login_state st;
    if (userType != CKU_USER && userType != CKU_SO)
        return; /* CKU_CONTEXT_SPECIFIC re-authenticates an operation; the login stays */
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
        st = userType == CKU_USER ? DDSM_LOGIN_USER : DDSM_LOGIN_SO;
    else if (rv == CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
        st = DDSM_LOGIN_UNKNOWN;
    else
        return; /* a wrong PIN, a locked token...: whatever held before still holds */
    atomic_store(&ctx->login_state, (int)st);
}

void ddsm_login_forget(ddsm_ctx *ctx)
{
    /* The epoch first: a check that read the old state and installs an operation afterwards sees
     * the new epoch and backs off (ddsm_login_still). */
    atomic_fetch_add(&ctx->login_epoch, 1);
    atomic_store(&ctx->login_state, (int)DDSM_LOGIN_NONE);
}

void ddsm_login_doubt(ddsm_ctx *ctx)
{
    int user = DDSM_LOGIN_USER;
    atomic_compare_exchange_strong(&ctx->login_state, &user, (int)DDSM_LOGIN_UNKNOWN);
}

CK_RV ddsm_login_require_user(ddsm_ctx *ctx, CK_SESSION_HANDLE h, unsigned *epoch)
{
    unsigned ep = atomic_load(&ctx->login_epoch);
    int st = atomic_load(&ctx->login_state);
    if (st == DDSM_LOGIN_UNKNOWN) {
        CK_SESSION_INFO info;
        CK_RV rv = ctx->be->C_GetSessionInfo(h, &info);
        if (rv != CKR_OK)
            return rv;
        int learnt = DDSM_LOGIN_NONE;
        if (info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS)
            learnt = DDSM_LOGIN_USER;
        else if (info.state == CKS_RW_SO_FUNCTIONS)
            learnt = DDSM_LOGIN_SO;
        /* Remembered only when nothing changed the login meanwhile. */
        int unknown = DDSM_LOGIN_UNKNOWN;
        if (atomic_load(&ctx->login_epoch) == ep)
            atomic_compare_exchange_strong(&ctx->login_state, &unknown, learnt);
        st = learnt;
    }
    if (st != DDSM_LOGIN_USER)
        return CKR_USER_NOT_LOGGED_IN;
    if (epoch != NULL)
        *epoch = ep;
    return CKR_OK;
}

bool ddsm_login_still(ddsm_ctx *ctx, unsigned epoch)
{
    return atomic_load(&ctx->login_epoch) == epoch;
}
