/* SPDX-License-Identifier: Apache-2.0 */
/* The application's login state on the fronted token, tracked by the module so that the hot path
 * (C_SignInit on a virtual key, C_FindObjectsInit) never asks the backend: SoftHSMv2 answers
 * C_GetSessionInfo under a mutex shared by every session, which serialised every thread's sign.
 *
 * PKCS#11 keeps one login per application per token: every session of the application shares it.
 * Every call that changes it goes through the module, which records the outcome:
 *   C_Login / C_LoginUser   CKU_USER: user; CKU_SO: security officer; CKU_CONTEXT_SPECIFIC and
 *                           failures change nothing; CKR_USER_ALREADY_LOGGED_IN confirms the type
 *                           asked; CKR_USER_ANOTHER_ALREADY_LOGGED_IN makes the state unknown
 *   C_Logout, C_CloseSession of the last session, C_CloseAllSessions, C_InitToken: logged out
 * "Unknown" (at C_Initialize, or after the backend contradicted us) is resolved by asking the
 * backend once (C_GetSessionInfo) and remembering its answer. A backend that answers any call with
 * CKR_USER_NOT_LOGGED_IN while we believe the user is logged in makes the state unknown again
 * (ddsm_call_end), so its word is honoured from the next call on.
 *
 * Every change that ends a login bumps an epoch: an operation whose login check passed before a
 * logout is not installed after it (ddsm_login_still). */
#ifndef DDSM_LOGIN_H
#define DDSM_LOGIN_H

#include <stdbool.h>

#include "ctx.h"

typedef enum ddsm_login_state {
    DDSM_LOGIN_UNKNOWN = 0,
    DDSM_LOGIN_NONE,
    DDSM_LOGIN_USER,
    DDSM_LOGIN_SO,
} ddsm_login_state;

/* The outcome of a C_Login (or C_LoginUser) of userType the backend answered with rv. */
void ddsm_login_note(ddsm_ctx *ctx, CK_USER_TYPE userType, CK_RV rv);
/* The login ended (logout, last session closed, all sessions closed, token initialised). */
void ddsm_login_forget(ddsm_ctx *ctx);
/* The backend said CKR_USER_NOT_LOGGED_IN: do not trust a "user" belief any longer. */
void ddsm_login_doubt(ddsm_ctx *ctx);

/* CKR_OK when the application is logged in as the user, CKR_USER_NOT_LOGGED_IN otherwise; asks
 * the backend through session h only while the state is unknown (its errors come back as they
 * are). *epoch (may be NULL) gets the login epoch the answer belongs to. */
CK_RV ddsm_login_require_user(ddsm_ctx *ctx, CK_SESSION_HANDLE h, unsigned *epoch) DDSM_WUR;
/* Whether no login ended since epoch was read. */
bool ddsm_login_still(ddsm_ctx *ctx, unsigned epoch);

#endif
