/* SPDX-License-Identifier: Apache-2.0 */
#include "roots.h"

#include <string.h>

#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "rv.h"

/* ------------------------------------------------------------------------------------------ */
/* Which pool a session belongs to                                                             */

CK_RV ddsm_roots_acquire(const ddsm_roots *r, ddsm_rootsess *out, CK_ULONG *detail)
{
    if (r->standby != NULL)
        return ddsm_standby_root_acquire(r->standby, out, detail);
    return ddsm_rootpool_acquire(r->primary, out, detail);
}

void ddsm_roots_release(const ddsm_roots *r, const ddsm_rootsess *rs, bool broken)
{
    if (rs->standby)
        ddsm_standby_release(r->standby, rs, broken);
    else
        ddsm_rootpool_release(r->primary, rs, broken);
}

void ddsm_roots_disown(const ddsm_roots *r, ddsm_rootsess *rs)
{
    if (rs->standby)
        ddsm_standby_disown(r->standby, rs);
    else
        ddsm_rootpool_disown(r->primary, rs);
}

CK_RV ddsm_roots_refresh(const ddsm_roots *r, ddsm_rootsess *rs, CK_ULONG *detail)
{
    if (rs->standby)
        return ddsm_standby_root_refresh(r->standby, rs, detail);
    return ddsm_rootpool_refresh(r->primary, rs, detail);
}

ddsm_hsmcall *ddsm_roots_calls(const ddsm_roots *r, const ddsm_rootsess *rs)
{
    return rs->standby ? ddsm_standby_calls(r->standby) : ddsm_rootpool_calls(r->primary);
}

void ddsm_roots_prf_init(const ddsm_roots *r, const ddsm_rootsess *rs, ddsm_hsmcall_prf_ctx *pctx,
                         ddsm_prf *prf)
{
    ddsm_hsm *h = rs->standby ? ddsm_standby_hsm(r->standby) : ddsm_rootpool_hsm(r->primary);
    ddsm_hsmcall_prf_init(pctx, ddsm_roots_calls(r, rs), h, rs->s, rs->root, prf);
}

/* ------------------------------------------------------------------------------------------ */
/* Derivation                                                                                  */

static bool session_lost(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

static bool root_handle_stale(CK_RV rv)
{
    return rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
}

CK_RV ddsm_roots_derive_secret(const ddsm_roots *r, ddsm_rootsess *rs, const ddsm_uuid *asset,
                               const ddsm_path *path, uint64_t counter, uint8_t key[DDSM_KEY_LEN],
                               CK_ULONG *detail, bool *broken, ddsm_hsmcall_ahead *ahead)
{
    ddsm_hsmcall_prf_ctx pctx;
    ddsm_prf prf;
    bool refreshed = false, reopened = false, failed_over = false;
    ddsm_err e;

    *broken = false;
    *detail = DDSM_DEVERR_NONE;
    for (;;) {
        ddsm_roots_prf_init(r, rs, &pctx, &prf);
        /* The first attempt collects the call started ahead (on this very session). */
        pctx.ahead = ahead != NULL && ahead->job != NULL ? ahead : NULL;
        e = ddsm_derive_secret(&prf, asset, path, counter, key);
        if (e == DDSM_OK)
            return CKR_OK;
        if (e == DDSM_E_HSM && !failed_over && !(session_lost(pctx.last_rv) && !reopened) &&
            ddsm_standby_may_fail_over(r->standby, pctx.status == DDSM_HSMCALL_ANSWERED,
                                       pctx.last_rv)) {
            /* The other token holds the same root: the same message gives the same key, under
             * the audit row already written. Tried once per derivation. */
            failed_over = true;
            bool answered = pctx.status == DDSM_HSMCALL_ANSWERED;
            if (pctx.status == DDSM_HSMCALL_QUARANTINED)
                ddsm_roots_disown(r, rs);
            if (ddsm_standby_fail_over(r->standby, rs, answered, pctx.last_rv) == CKR_OK) {
                refreshed = reopened = false;
                continue;
            }
            /* rs is gone (CK_INVALID_HANDLE): report the first failure. */
            *broken = true;
            if (!answered) {
                *detail = DDSM_DEVERR_TIMEOUT;
                return CKR_DEVICE_ERROR;
            }
            return ddsm_rv_from_backend(pctx.last_rv, detail);
        }
        if (e != DDSM_E_HSM || pctx.status != DDSM_HSMCALL_ANSWERED)
            break;
        if (root_handle_stale(pctx.last_rv) && !refreshed) {
            /* The root's handle changed under us (a new login, a re-import): once more. */
            refreshed = true;
            CK_ULONG d = DDSM_DEVERR_NONE;
            if (ddsm_roots_refresh(r, rs, &d) == CKR_OK)
                continue;
            break;
        }
        if (session_lost(pctx.last_rv) && !reopened) {
            /* The backend forgot our session (it restarted, or closed it): a fresh one. */
            reopened = true;
            ddsm_log(DDSM_LOG_WARN, "the HSM lost a derivation session (%s): reopening",
                     ddsm_rv_name(pctx.last_rv));
            ddsm_roots_release(r, rs, true);
            rs->s = CK_INVALID_HANDLE;
            CK_ULONG d = DDSM_DEVERR_NONE;
            CK_RV rv = ddsm_roots_acquire(r, rs, &d);
            if (rv != CKR_OK) {
                rs->s = CK_INVALID_HANDLE;
                *broken = true;
                *detail = d != DDSM_DEVERR_NONE ? d : DDSM_DEVERR_HSM_FAILED;
                return rv;
            }
            continue;
        }
        break;
    }
    /* Whatever the failure left behind in that session (an operation still active, a closed
     * session), it is not reused. */
    *broken = true;
    if (pctx.status != DDSM_HSMCALL_ANSWERED) {
        ddsm_log(DDSM_LOG_ERROR, "HSM derivation after the audit row: no answer within %u ms",
                 r->cfg->backend.call_timeout_ms);
        if (pctx.status == DDSM_HSMCALL_QUARANTINED)
            ddsm_roots_disown(r, rs);
        *detail = DDSM_DEVERR_TIMEOUT;
        return CKR_DEVICE_ERROR;
    }
    ddsm_log(DDSM_LOG_ERROR, "HSM derivation failed after the audit row: %s / %s", ddsm_err_str(e),
             ddsm_rv_name(pctx.last_rv));
    if (e == DDSM_E_HSM)
        return ddsm_rv_from_backend(pctx.last_rv, detail);
    return ddsm_rv_from_err(e, DDSM_RVCTX_GENERAL, detail);
}

void ddsm_roots_derive_ahead(const ddsm_roots *r, ddsm_rootsess *rs, const ddsm_uuid *asset,
                             const ddsm_path *path, uint64_t counter, ddsm_hsmcall_ahead *out)
{
    memset(out, 0, sizeof(*out));
    out->pool = ddsm_roots_calls(r, rs);
    if (out->pool == NULL || rs->s == CK_INVALID_HANDLE)
        return;
    out->len = ddsm_derive_message(asset, path, counter, out->msg);
    if (out->len > 0)
        out->job = ddsm_hsmcall_start(out->pool, rs->s, rs->root, out->msg, out->len);
}

void ddsm_roots_ahead_drop(const ddsm_roots *r, ddsm_rootsess *rs, ddsm_hsmcall_ahead *ahead,
                           bool *broken)
{
    if (ahead->job == NULL)
        return;
    ddsm_hsmcall_status st;
    CK_RV rv = ddsm_hsmcall_collect(ahead->pool, ahead->job, NULL, &st, NULL);
    ahead->job = NULL;
    if (st == DDSM_HSMCALL_QUARANTINED) {
        ddsm_roots_disown(r, rs);
        *broken = true;
    } else if (st == DDSM_HSMCALL_ANSWERED && rv != CKR_OK) {
        *broken = true; /* whatever the failure left in the session, it is not reused */
    }
}
