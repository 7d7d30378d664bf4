/* SPDX-License-Identifier: Apache-2.0 */
/* Session management. Sessions are the backend's, their handles pass through unchanged; we keep a
 * record of each (sesstab.h). Login goes to the backend: the application's PIN reaches the HSM and
 * nowhere else (never logged). When the application logs out or closes its last session, the
 * module closes its own derivation sessions (so they cannot keep the login alive), ends every
 * operation on virtual keys and wipes the derived-key cache: no PIN, no derivation. */
#include <stdlib.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "entry.h"
#include "exiting.h"
#include "guard.h"
#include "handles.h"
#include "ladder.h"
#include "login.h"
#include "metrics.h"
#include "policy.h"
#include "vkey.h"

/* End every virtual operation in every session (logout: the keys are no longer the user's to
 * use) and forget the derived keys. */
static void forget_user_keys(ddsm_ctx *ctx)
{
    CK_SESSION_HANDLE *list = NULL;
    size_t n = 0;
    ddsm_login_forget(ctx); /* first: an operation checked before it is not installed after it */
    ddsm_ctx_drain_sessions(ctx);
    if (ddsm_sesstab_list(ctx->sessions, &list, &n) == CKR_OK) {
        for (size_t i = 0; i < n; i++) {
            ddsm_sess *s = ddsm_sesstab_get(ctx->sessions, list[i]);
            if (s == NULL)
                continue;
            ddsm_mutex_lock(s->lock);
            ddsm_vop_reset(&s->sign);
            ddsm_vop_reset(&s->verify);
            ddsm_vop_reset(&s->encrypt);
            ddsm_vop_reset(&s->decrypt);
            ddsm_mutex_unlock(s->lock);
            ddsm_sess_put(ctx->sessions, s);
        }
        free(list);
    }
    ddsm_vkeys_wipe_all(ctx->vkeys);
    /* The login, and the user C_LoginUser named with it, end together. */
    ddsm_mpolicy_clear_user(ctx->policy);
}

CK_RV ddsm_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
                         CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    DDSM_CALL(c, "C_OpenSession");
    DDSM_LADDER(c, 1);
    if (slotID != DDSM_SLOT_ID) {
        rv = CKR_SLOT_ID_INVALID;
        goto out;
    }
    if (phSession == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    rv = c.ctx->be->C_OpenSession(c.ctx->slot, flags, pApplication, Notify, &h);
    if (rv != CKR_OK)
        goto out;
    rv = ddsm_sesstab_add(c.ctx->sessions, h);
    if (rv != CKR_OK) {
        (void)c.ctx->be->C_CloseSession(h);
        goto out;
    }
    *phSession = h;
    ddsm_metrics_start(c.ctx->metrics); /* once: the [metrics] textfile writer */
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_CloseSession(CK_SESSION_HANDLE hSession)
{
    DDSM_CALL(c, "C_CloseSession");
    DDSM_LADDER_SESSION(c, hSession, 1);
    /* exiting.h: at exit, the session ends with the process, not in the backend. */
    rv = ddsm_exiting() ? CKR_OK : c.ctx->be->C_CloseSession(hSession);
    if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
        ddsm_sesstab_remove(c.ctx->sessions, hSession);
        ddsm_htab_release_owner(c.ctx->handles, hSession); /* its session objects */
        if (ddsm_sesstab_count(c.ctx->sessions) == 0)
            forget_user_keys(c.ctx);
    }
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_CloseAllSessions(CK_SLOT_ID slotID)
{
    CK_SESSION_HANDLE *list = NULL;
    size_t n = 0;
    DDSM_CALL(c, "C_CloseAllSessions");
    DDSM_LADDER(c, 1);
    if (slotID != DDSM_SLOT_ID) {
        rv = CKR_SLOT_ID_INVALID;
        goto out;
    }
    /* Not the backend's C_CloseAllSessions: it would close the module's own sessions too. */
    rv = ddsm_sesstab_list(c.ctx->sessions, &list, &n);
    if (rv != CKR_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        CK_RV r = ddsm_exiting() ? CKR_OK : c.ctx->be->C_CloseSession(list[i]);
        if (r != CKR_OK && r != CKR_SESSION_HANDLE_INVALID && r != CKR_SESSION_CLOSED)
            rv = r;
        ddsm_sesstab_remove(c.ctx->sessions, list[i]);
        ddsm_htab_release_owner(c.ctx->handles, list[i]);
    }
    forget_user_keys(c.ctx);
out:
    free(list);
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
    DDSM_CALL(c, "C_GetSessionInfo");
    DDSM_LADDER_SESSION(c, hSession, pInfo != NULL);
    rv = c.ctx->be->C_GetSessionInfo(hSession, pInfo);
    if (rv != CKR_OK)
        goto out;
    pInfo->slotID = DDSM_SLOT_ID;
    ddsm_mutex_lock(c.sess->lock);
    if (c.sess->dev_err != DDSM_DEVERR_NONE)
        pInfo->ulDeviceError = c.sess->dev_err;
    ddsm_mutex_unlock(c.sess->lock);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                               CK_ULONG_PTR pulOperationStateLen)
{
    DDSM_CALL(c, "C_GetOperationState");
    DDSM_LADDER_SESSION(c, hSession, pulOperationStateLen != NULL);
    ddsm_mutex_lock(c.sess->lock);
    bool ours = c.sess->sign.active || c.sess->verify.active || c.sess->encrypt.active ||
                c.sess->decrypt.active || (c.sess->find.active && c.sess->find.n_virt > 0);
    ddsm_mutex_unlock(c.sess->lock);
    if (ours) {
        /* Key bytes of a virtual operation never leave the module. */
        rv = CKR_STATE_UNSAVEABLE;
        goto out;
    }
    rv = c.ctx->be->C_GetOperationState(hSession, pOperationState, pulOperationStateLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                               CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                               CK_OBJECT_HANDLE hAuthenticationKey)
{
    DDSM_CALL(c, "C_SetOperationState");
    DDSM_LADDER_SESSION(c, hSession, pOperationState != NULL || ulOperationStateLen == 0);
    /* No state saved by the backend can need one of our keys, nor the root: CKR_KEY_NOT_NEEDED
     * (the 2.40 return values of C_SetOperationState have no CKR_KEY_HANDLE_INVALID nor
     * CKR_KEY_FUNCTION_NOT_PERMITTED), dead or forged handles of ours included. */
    if (hEncryptionKey != CK_INVALID_HANDLE &&
        (rv = ddsm_guard_key_as(&c, hEncryptionKey, CKR_KEY_NOT_NEEDED, CKR_KEY_NOT_NEEDED)) !=
            CKR_OK) {
        rv = rv == CKR_KEY_HANDLE_INVALID ? CKR_KEY_NOT_NEEDED : rv;
        goto out;
    }
    if (hAuthenticationKey != CK_INVALID_HANDLE &&
        (rv = ddsm_guard_key_as(&c, hAuthenticationKey, CKR_KEY_NOT_NEEDED, CKR_KEY_NOT_NEEDED)) !=
            CKR_OK) {
        rv = rv == CKR_KEY_HANDLE_INVALID ? CKR_KEY_NOT_NEEDED : rv;
        goto out;
    }
    rv = c.ctx->be->C_SetOperationState(hSession, pOperationState, ulOperationStateLen,
                                        hEncryptionKey, hAuthenticationKey);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                   CK_ULONG ulPinLen)
{
    DDSM_CALL(c, "C_Login");
    DDSM_LADDER_SESSION(c, hSession, pPin != NULL || ulPinLen == 0);
    rv = c.ctx->be->C_Login(hSession, userType, pPin, ulPinLen);
    ddsm_login_note(c.ctx, userType, rv);
    if (rv == CKR_OK)
        ddsm_log(DDSM_LOG_INFO, "login as user type %lu (PIN of %lu bytes)",
                 (unsigned long)userType, (unsigned long)ulPinLen);
out:
    return ddsm_call_end(&c, rv);
}

/* PKCS#11 3.0: C_Login that names the user. The backend gets a plain C_Login (SoftHSMv2 and
 * other 2.40 tokens have no C_LoginUser): the name is the module's, for the audit rows of every
 * derivation until the logout ("<requester>/<user>", policy.h). A malformed name (empty, longer
 * than 64 bytes, control characters, not UTF-8) is CKR_ARGUMENTS_BAD and nothing is sent. */
CK_RV ddsm_C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                       CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
    DDSM_CALL(c, "C_LoginUser");
    DDSM_LADDER_SESSION(c, hSession,
                        (pPin != NULL || ulPinLen == 0) && (pUsername != NULL || ulUsernameLen == 0));
    if ((rv = ddsm_mpolicy_check_user(pUsername, ulUsernameLen)) != CKR_OK)
        goto out;
    rv = c.ctx->be->C_Login(hSession, userType, pPin, ulPinLen);
    ddsm_login_note(c.ctx, userType, rv);
    if (rv != CKR_OK)
        goto out;
    if (userType == CKU_USER)
        ddsm_mpolicy_set_user(c.ctx->policy, pUsername, ulUsernameLen);
    ddsm_log(DDSM_LOG_INFO, "login as user type %lu, user \"%.*s\" (PIN of %lu bytes)",
             (unsigned long)userType, (int)ulUsernameLen, (const char *)pUsername,
             (unsigned long)ulPinLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_Logout(CK_SESSION_HANDLE hSession)
{
    CK_SESSION_INFO si;
    DDSM_CALL(c, "C_Logout");
    DDSM_LADDER_SESSION(c, hSession, 1);
    /* Not every backend says so itself (SoftHSM 2.6 answers CKR_OK). */
    if ((rv = c.ctx->be->C_GetSessionInfo(hSession, &si)) != CKR_OK)
        goto out;
    if (si.state == CKS_RO_PUBLIC_SESSION || si.state == CKS_RW_PUBLIC_SESSION) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    rv = c.ctx->be->C_Logout(hSession);
    if (rv == CKR_OK)
        forget_user_keys(c.ctx);
out:
    return ddsm_call_end(&c, rv);
}
