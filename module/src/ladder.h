/* SPDX-License-Identifier: Apache-2.0 */
/* The one check ladder every entry point runs, in this order:
 *   initialised -> fork generation valid -> session lookup -> NULL pointer arguments
 *   (CKR_ARGUMENTS_BAD) -> login / session state -> operation state -> work.
 * The first two are ddsm_ctx_get(); the session lookup finds our record of the application's
 * session; pointer checks are the entry's own expression; login state is the module's record of
 * it (login.h; ddsm_require_user) for entries that need it; operation state is checked by the
 * family's code.
 *
 * Usage:
 *     DDSM_CALL(c, "C_SignInit");
 *     DDSM_LADDER_SESSION(c, hSession, pMechanism != NULL);
 *     ... work, setting rv, "goto out" on failure ...
 *   out:
 *     return ddsm_call_end(&c, rv);
 */
#ifndef DDSM_LADDER_H
#define DDSM_LADDER_H

#include "ctx.h"
#include "sesstab.h"

typedef struct ddsm_call {
    const char *fn;
    ddsm_ctx *ctx;
    ddsm_sess *sess; /* referenced; released by ddsm_call_end */
    CK_ULONG detail; /* DDSM_DEVERR_* to record in the session on failure */
    unsigned login_epoch; /* set by ddsm_require_user (login.h ddsm_login_still) */
} ddsm_call;

#define DDSM_CALL(c, name)                                                                         \
    ddsm_call c = {.fn = (name), .ctx = NULL, .sess = NULL, .detail = 0, .login_epoch = 0};        \
    CK_RV rv = CKR_OK

/* Initialised and in the right process generation. */
#define DDSM_LADDER(c, args_ok)                                                                    \
    do {                                                                                           \
        (c).ctx = ddsm_ctx_get();                                                                  \
        if ((c).ctx == NULL) {                                                                     \
            rv = CKR_CRYPTOKI_NOT_INITIALIZED;                                                     \
            goto out;                                                                              \
        }                                                                                          \
        if (!(args_ok)) {                                                                          \
            rv = CKR_ARGUMENTS_BAD;                                                                \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* ... plus the session lookup. */
#define DDSM_LADDER_SESSION(c, hs, args_ok)                                                        \
    do {                                                                                           \
        (c).ctx = ddsm_ctx_get();                                                                  \
        if ((c).ctx == NULL) {                                                                     \
            rv = CKR_CRYPTOKI_NOT_INITIALIZED;                                                     \
            goto out;                                                                              \
        }                                                                                          \
        (c).sess = ddsm_sesstab_get((c).ctx->sessions, (hs));                                      \
        if ((c).sess == NULL) {                                                                    \
            rv = CKR_SESSION_HANDLE_INVALID;                                                       \
            goto out;                                                                              \
        }                                                                                          \
        if (!(args_ok)) {                                                                          \
            rv = CKR_ARGUMENTS_BAD;                                                                \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* CKR_OK when the application is logged in as the user (R/O or R/W user functions), from the
 * module's login record (login.h; the backend is asked only while that is unknown): "no PIN, no
 * derivation". CKR_USER_NOT_LOGGED_IN otherwise. Sets c->login_epoch. */
CK_RV ddsm_require_user(ddsm_call *c) DDSM_WUR;
/* Like ddsm_require_user, as a yes/no (backend errors count as no). */
bool ddsm_session_is_user(ddsm_call *c);

/* Release the session, record the detail code of a failure in it, log a non-OK rv by name. */
CK_RV ddsm_call_end(ddsm_call *c, CK_RV rv);

/* Record the CK_RV and detail of a core error in c (see rv.h). */
CK_RV ddsm_call_err(ddsm_call *c, ddsm_err e, int rvctx);
/* Record a backend failure during the module's own work (see rv.h). */
CK_RV ddsm_call_backend(ddsm_call *c, CK_RV backend_rv);

/* CKR_OK when m->mechanism is on the module's allowlist (mechallow.h), else
 * CKR_MECHANISM_INVALID (logged with c->fn). */
CK_RV ddsm_mech_check(ddsm_call *c, const CK_MECHANISM *m) DDSM_WUR;

#endif
