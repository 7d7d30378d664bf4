/* SPDX-License-Identifier: Apache-2.0 */
#include "ladder.h"

#include "ddsm/log.h"
#include "ddsm/names.h"
#include "login.h"
#include "mechallow.h"
#include "rv.h"

CK_RV ddsm_require_user(ddsm_call *c)
{
    return ddsm_login_require_user(c->ctx, c->sess->h, &c->login_epoch);
}

bool ddsm_session_is_user(ddsm_call *c)
{
    return ddsm_require_user(c) == CKR_OK;
}

CK_RV ddsm_call_err(ddsm_call *c, ddsm_err e, int rvctx)
{
    CK_ULONG detail = 0;
    CK_RV rv = ddsm_rv_from_err(e, (ddsm_rvctx)rvctx, &detail);
    if (detail != 0)
        c->detail = detail;
    return rv;
}

CK_RV ddsm_call_backend(ddsm_call *c, CK_RV backend_rv)
{
    CK_ULONG detail = 0;
    CK_RV rv = ddsm_rv_from_backend(backend_rv, &detail);
    if (detail != 0)
        c->detail = detail;
    return rv;
}

static bool rv_is_routine(CK_RV rv)
{
    switch (rv) {
    case CKR_BUFFER_TOO_SMALL:
    case CKR_SIGNATURE_INVALID:
    case CKR_USER_ALREADY_LOGGED_IN:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_ATTRIBUTE_SENSITIVE:
    case CKR_ATTRIBUTE_TYPE_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return true;
    default:
        return false;
    }
}

CK_RV ddsm_call_end(ddsm_call *c, CK_RV rv)
{
    if (c->sess != NULL) {
        if (rv != CKR_OK && c->detail != 0) {
            ddsm_mutex_lock(c->sess->lock);
            c->sess->dev_err = c->detail;
            ddsm_mutex_unlock(c->sess->lock);
        }
        ddsm_sess_put(c->ctx->sessions, c->sess);
        c->sess = NULL;
    }
    if (rv == CKR_USER_NOT_LOGGED_IN && c->ctx != NULL)
        ddsm_login_doubt(c->ctx); /* the backend's word wins (login.h) */
    if (rv != CKR_OK) {
        bool serious = rv == CKR_DEVICE_ERROR || rv == CKR_FUNCTION_FAILED ||
                       rv == CKR_GENERAL_ERROR || rv == CKR_HOST_MEMORY;
        ddsm_log_level lvl = serious ? DDSM_LOG_WARN : DDSM_LOG_DEBUG;
        if (!serious && !rv_is_routine(rv))
            lvl = DDSM_LOG_INFO;
        if (ddsm_log_enabled(lvl)) {
            if (c->detail != 0)
                ddsm_log(lvl, "%s: %s (detail 0x%lx)", c->fn, ddsm_rv_name(rv),
                         (unsigned long)c->detail);
            else
                ddsm_log(lvl, "%s: %s", c->fn, ddsm_rv_name(rv));
        }
    }
    return rv;
}

CK_RV ddsm_mech_check(ddsm_call *c, const CK_MECHANISM *m)
{
    if (ddsm_mech_allowed(&c->ctx->mechs, m->mechanism))
        return CKR_OK;
    ddsm_log(DDSM_LOG_INFO, "%s: %s refused: not on the module's mechanism allowlist", c->fn,
             ddsm_mech_name(m->mechanism));
    return CKR_MECHANISM_INVALID;
}
