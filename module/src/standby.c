/* SPDX-License-Identifier: Apache-2.0 */
/* The standby token (standby.h for the contract, docs/standby.md for operators).
 *
 * The standby keeps a session pool of its own (the same bound as the primary's: [backend]
 * workers), its own call pool (a stuck standby call never holds a primary worker), its own
 * cached root handle and login latch. Which token derives is one atomic flag; the pairing state
 * (each token's root fingerprint) is under the standby's lock, never held across an HSM call. */
#include "standby.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "ddsm/names.h"
#include "exiting.h"
#include "pinfile.h"
#include "rv.h"

/* After a refused standby login, no attempt for this long: the HSM counts failed logins. */
#define LOGIN_BACKOFF_MS 30000

enum { PRIMARY = 0, STANDBY = 1 };

struct ddsm_standby {
    const ddsm_config *cfg;
    bool custody; /* the primary's root is on the custody token (its name in the log) */
    const atomic_bool *can_thread;
    ddsm_rootpool *primary;
    ddsm_rootfind *find;
    ddsm_hsm *hsm;
    CK_FUNCTION_LIST_PTR be;
    ddsm_mutex *lock;

    ddsm_sesslist sessions; /* as the primary's (rootpool.h); its gen never moves */

    /* under lock */
    bool have_slot;
    CK_SLOT_ID slot;
    int64_t login_retry_ms; /* no login before this (a refusal is latched) */
    bool fp_known[2];
    char fp[2][DDSM_FINGERPRINT_HEX + 1];

    _Atomic CK_OBJECT_HANDLE root; /* cached root handle on the standby token, 0 = unknown */
    _Atomic(ddsm_hsmcall *) pool;
    atomic_int active;     /* PRIMARY or STANDBY: which token derivations go to */
    atomic_bool verified[2];
    atomic_bool mismatch;  /* latched: every derivation is refused */
    atomic_bool checked;   /* the pairing check of the first derivation has ended */
};

static const char *token_name(const ddsm_standby *sb, int which)
{
    if (which == STANDBY)
        return sb->cfg->backend.standby_token_label;
    return sb->custody ? sb->cfg->backend.root_token_label : sb->cfg->backend.token_label;
}

CK_RV ddsm_standby_open(const ddsm_standby_args *args, ddsm_standby **out)
{
    const ddsm_config *cfg = args->cfg;
    char why[512] = "";
    CK_RV rv;
    ddsm_standby *sb = NULL;

    *out = NULL;
    if (cfg->backend.standby_token_label == NULL)
        return CKR_OK;
    const char *lib =
        cfg->backend.standby_module != NULL ? cfg->backend.standby_module : cfg->backend.module;
    unsigned cap = ddsm_config_hsm_workers(cfg);
    sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return CKR_HOST_MEMORY;
    if ((rv = ddsm_mutex_new(&sb->lock)) != CKR_OK)
        goto out;
    rv = ddsm_hsm_load(lib, &sb->hsm, why, sizeof(why));
    if (rv != CKR_OK) {
        ddsm_log(DDSM_LOG_ERROR, "C_Initialize: standby backend: %s", why);
        rv = rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
        goto out;
    }
    sb->be = ddsm_hsm_functions(sb->hsm);
    if ((rv = ddsm_sesslist_init(&sb->sessions, sb->be, sb->lock, cap)) != CKR_OK)
        goto out;
    sb->cfg = cfg;
    sb->custody = args->custody;
    sb->can_thread = args->can_thread;
    sb->primary = args->primary;
    sb->find = args->find;
    if (ddsm_hsm_find_token(sb->hsm, cfg->backend.standby_token_label, &sb->slot) == CKR_OK)
        sb->have_slot = true;
    else
        ddsm_log(DDSM_LOG_WARN,
                 "standby token \"%s\" not found now: it is looked for again when needed",
                 cfg->backend.standby_token_label);
    ddsm_log(DDSM_LOG_INFO, "standby token \"%s\" (%s)", cfg->backend.standby_token_label, lib);
    *out = sb;
    sb = NULL;
    rv = CKR_OK;
out:
    if (sb != NULL) {
        if (sb->hsm != NULL)
            ddsm_hsm_unload(sb->hsm);
        ddsm_mutex_free(sb->lock);
        free(sb);
    }
    return rv;
}

void ddsm_standby_free(ddsm_standby *sb)
{
    if (sb == NULL)
        return;
    /* As the primary's: no call into a backend whose exit-time destructors may have run
     * (exiting.h), nor under a worker still inside it. */
    ddsm_sesslist_close(&sb->sessions);
    if (ddsm_hsmcall_free(atomic_load(&sb->pool), sb->cfg->backend.call_timeout_ms + 1000) &&
        !ddsm_exiting())
        ddsm_hsm_unload(sb->hsm);
    else
        ddsm_hsm_abandon(sb->hsm);
    ddsm_mutex_free(sb->lock);
    free(sb);
}

void ddsm_standby_abandon(ddsm_standby *sb)
{
    if (sb != NULL)
        ddsm_hsm_abandon(sb->hsm);
}

ddsm_hsm *ddsm_standby_hsm(const ddsm_standby *sb)
{
    return sb->hsm;
}

ddsm_hsmcall *ddsm_standby_calls(ddsm_standby *sb)
{
    ddsm_hsmcall *p = atomic_load(&sb->pool);
    if (p != NULL || !atomic_load(sb->can_thread))
        return p;
    unsigned workers = ddsm_config_hsm_workers(sb->cfg);
    ddsm_hsmcall *made = NULL;
    if (ddsm_hsmcall_new(sb->be, workers, sb->cfg->backend.call_timeout_ms, &made) != CKR_OK) {
        ddsm_log(DDSM_LOG_WARN, "cannot set up the standby's HSM call pool: its calls are "
                                "unbounded");
        return NULL;
    }
    ddsm_hsmcall *expect = NULL;
    if (!atomic_compare_exchange_strong(&sb->pool, &expect, made)) {
        (void)ddsm_hsmcall_free(made, 0); /* lost the race: it never started a thread */
        return expect;
    }
    return made;
}

/* Sessions of either token: the standby's own, or the primary's (its pool's). */
static void sess_prf_init(ddsm_standby *sb, const ddsm_rootsess *rs, ddsm_hsmcall_prf_ctx *pctx,
                          ddsm_prf *prf)
{
    if (rs->standby)
        ddsm_hsmcall_prf_init(pctx, ddsm_standby_calls(sb), sb->hsm, rs->s, rs->root, prf);
    else
        ddsm_hsmcall_prf_init(pctx, ddsm_rootpool_calls(sb->primary),
                              ddsm_rootpool_hsm(sb->primary), rs->s, rs->root, prf);
}

static void sess_release(ddsm_standby *sb, const ddsm_rootsess *rs, bool broken)
{
    if (rs->standby)
        ddsm_standby_release(sb, rs, broken);
    else
        ddsm_rootpool_release(sb->primary, rs, broken);
}

static void sess_disown(ddsm_standby *sb, ddsm_rootsess *rs)
{
    if (rs->standby)
        ddsm_standby_disown(sb, rs);
    else
        ddsm_rootpool_disown(sb->primary, rs);
}

/* ------------------------------------------------------------------------------------------ */
/* The standby's sessions                                                                      */

/* Log in with standby_root_pin_file (pinfile.h), as root_pin_file is read. Touches a secret
 * (through pinfile.c). */
static CK_RV login_secret(ddsm_standby *sb, CK_SESSION_HANDLE s)
{
    const char *file = sb->cfg->backend.standby_root_pin_file;
    size_t len;
    CK_RV rv = ddsm_pinfile_login_secret(sb->hsm, s, file, "standby_root_pin_file", &len);
    if (rv != CKR_OK && len > 0)
        ddsm_log(DDSM_LOG_ERROR,
                 "standby token \"%s\": login with standby_root_pin_file %s refused: %s (PIN of "
                 "%zu bytes); no attempt for %d s",
                 sb->cfg->backend.standby_token_label, file, ddsm_rv_name(rv), len,
                 LOGIN_BACKOFF_MS / 1000);
    return rv;
}

void ddsm_standby_release(ddsm_standby *sb, const ddsm_rootsess *rs, bool broken)
{
    ddsm_sesslist_release(&sb->sessions, rs, broken);
}

void ddsm_standby_disown(ddsm_standby *sb, ddsm_rootsess *rs)
{
    ddsm_sesslist_disown(&sb->sessions, rs);
}

/* The root looked up on the standby token through rs->s (rootfind.h). */
static CK_RV standby_root_find(ddsm_standby *sb, ddsm_rootsess *rs, CK_ULONG *detail)
{
    bool quarantined = false;
    CK_RV rv = ddsm_root_find(sb->find, sb->hsm, ddsm_standby_calls(sb), rs->s, &rs->root,
                              &quarantined, detail);
    if (quarantined)
        ddsm_standby_disown(sb, rs);
    return rv;
}

CK_RV ddsm_standby_root_refresh(ddsm_standby *sb, ddsm_rootsess *rs, CK_ULONG *detail)
{
    CK_OBJECT_HANDLE stale = rs->root;
    atomic_compare_exchange_strong(&sb->root, &stale, 0);
    *detail = DDSM_DEVERR_NONE;
    CK_RV rv = standby_root_find(sb, rs, detail);
    if (rv == CKR_OK)
        atomic_store(&sb->root, rs->root);
    return rv;
}

static void log_mismatch_once(ddsm_standby *sb, const char *what)
{
    if (atomic_exchange(&sb->mismatch, true))
        return;
    ddsm_log(DDSM_LOG_ERROR,
             "the roots of token \"%s\" and standby token \"%s\" are not the same root: %s; "
             "every derivation is refused (CKR_DEVICE_ERROR, DDSM_DEVERR_STANDBY_MISMATCH) until "
             "the module is initialised again (docs/standby.md)",
             token_name(sb, PRIMARY), token_name(sb, STANDBY), what);
}

/* The root of rs's token, fingerprinted inside its HSM once per process, must be the root the
 * other token has (when known). */
static CK_RV verify(ddsm_standby *sb, ddsm_rootsess *rs, CK_ULONG *detail)
{
    int me = rs->standby ? STANDBY : PRIMARY;
    char fp[DDSM_FINGERPRINT_HEX + 1];
    char what[160];
    if (atomic_load(&sb->verified[me]))
        return CKR_OK;
    ddsm_hsmcall_prf_ctx pctx;
    ddsm_prf prf;
    sess_prf_init(sb, rs, &pctx, &prf);
    ddsm_err e = ddsm_root_fingerprint(&prf, fp);
    if (e != DDSM_OK) {
        if (pctx.status != DDSM_HSMCALL_ANSWERED) {
            if (pctx.status == DDSM_HSMCALL_QUARANTINED)
                sess_disown(sb, rs);
            *detail = DDSM_DEVERR_TIMEOUT;
            return CKR_DEVICE_ERROR;
        }
        return e == DDSM_E_HSM ? ddsm_rv_from_backend(pctx.last_rv, detail)
                               : ddsm_rv_from_err(e, DDSM_RVCTX_GENERAL, detail);
    }
    bool differ = false;
    ddsm_mutex_lock(sb->lock);
    sb->fp_known[me] = true;
    memcpy(sb->fp[me], fp, sizeof(fp));
    if (sb->fp_known[!me] && memcmp(sb->fp[!me], fp, DDSM_FINGERPRINT_HEX) != 0) {
        differ = true;
        snprintf(what, sizeof(what), "fingerprints %s (\"%s\") and %s (\"%s\")",
                 sb->fp[PRIMARY], token_name(sb, PRIMARY), sb->fp[STANDBY],
                 token_name(sb, STANDBY));
    }
    ddsm_mutex_unlock(sb->lock);
    if (differ) {
        log_mismatch_once(sb, what);
        *detail = DDSM_DEVERR_STANDBY_MISMATCH;
        return CKR_DEVICE_ERROR;
    }
    atomic_store(&sb->verified[me], true);
    return CKR_OK;
}

/* A session on the standby token, logged in, its root found through the pin and verified. */
static CK_RV standby_acquire(ddsm_standby *sb, ddsm_rootsess *out, CK_ULONG *detail)
{
    ddsm_rootsess rs = {CK_INVALID_HANDLE, 0, 0, true};
    bool fresh = false, need_slot = false;
    CK_SLOT_ID slot = 0;
    CK_RV rv;

    *detail = DDSM_DEVERR_NONE;
    int64_t now = ddsm_now_ms();
    ddsm_sesslist *l = &sb->sessions;
    ddsm_mutex_lock(sb->lock);
    if (l->n_idle > 0) {
        rs.s = l->idle[--l->n_idle];
    } else if (now < sb->login_retry_ms) {
        ddsm_mutex_unlock(sb->lock);
        *detail = DDSM_DEVERR_CUSTODY_LOGIN;
        return CKR_DEVICE_ERROR;
    } else {
        l->n_open++;
        fresh = true;
        need_slot = !sb->have_slot;
        slot = sb->slot;
    }
    ddsm_mutex_unlock(sb->lock);

    if (fresh) {
        if (need_slot) {
            rv = ddsm_hsm_find_token(sb->hsm, sb->cfg->backend.standby_token_label, &slot);
            if (rv != CKR_OK) {
                ddsm_log(DDSM_LOG_WARN, "standby token \"%s\": %s",
                         sb->cfg->backend.standby_token_label, ddsm_rv_name(rv));
                goto fail_fresh;
            }
            ddsm_mutex_lock(sb->lock);
            sb->slot = slot;
            sb->have_slot = true;
            ddsm_mutex_unlock(sb->lock);
        }
        rv = sb->be->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rs.s);
        if (rv != CKR_OK) {
            ddsm_log(DDSM_LOG_WARN, "cannot open a session on the standby token: %s",
                     ddsm_rv_name(rv));
            goto fail_fresh;
        }
        rv = login_secret(sb, rs.s);
        if (rv != CKR_OK) {
            ddsm_mutex_lock(sb->lock);
            sb->login_retry_ms = ddsm_now_ms() + LOGIN_BACKOFF_MS;
            ddsm_mutex_unlock(sb->lock);
            ddsm_standby_release(sb, &rs, true);
            *detail = DDSM_DEVERR_CUSTODY_LOGIN;
            return rv == CKR_HOST_MEMORY ? rv : CKR_DEVICE_ERROR;
        }
    }
    rs.root = atomic_load(&sb->root);
    if (rs.root == 0) {
        rv = standby_root_find(sb, &rs, detail);
        if (rv != CKR_OK) {
            if (*detail == DDSM_DEVERR_ROOT_MISSING || *detail == DDSM_DEVERR_ROOT_MISMATCH ||
                *detail == DDSM_DEVERR_ROOT_AMBIGUOUS) {
                char what[96];
                snprintf(what, sizeof(what), "the standby token holds no pinned root (%s)",
                         *detail == DDSM_DEVERR_ROOT_MISSING ? "none labelled"
                         : *detail == DDSM_DEVERR_ROOT_MISMATCH ? "none pinned"
                                                                : "two different");
                log_mismatch_once(sb, what);
                *detail = DDSM_DEVERR_STANDBY_MISMATCH;
            }
            ddsm_standby_release(sb, &rs, *detail != DDSM_DEVERR_STANDBY_MISMATCH);
            return rv;
        }
        atomic_store(&sb->root, rs.root);
    }
    rv = verify(sb, &rs, detail);
    if (rv != CKR_OK) {
        ddsm_standby_release(sb, &rs, *detail != DDSM_DEVERR_STANDBY_MISMATCH);
        return rv;
    }
    *out = rs;
    return CKR_OK;

fail_fresh:
    ddsm_sesslist_uncount(l);
    return ddsm_rv_from_backend(rv, detail);
}

/* ------------------------------------------------------------------------------------------ */
/* Which token derives                                                                         */

static bool device_class(CK_RV rv)
{
    switch (rv) {
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_COUNT:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return true;
    default:
        return false;
    }
}

bool ddsm_standby_may_fail_over(ddsm_standby *sb, bool answered, CK_RV last_rv)
{
    if (sb == NULL || atomic_load(&sb->mismatch))
        return false;
    /* Anything that says "these inputs, this login" rather than "this device" stays an answer:
     * a login the application lost is never replaced by the module's own standby login. */
    return !answered || device_class(last_rv);
}

/* A failure of a session acquisition (rv, detail) that another token may answer instead. */
static bool acquire_may_fail_over(ddsm_standby *sb, CK_RV rv, CK_ULONG detail)
{
    if (rv == CKR_HOST_MEMORY || atomic_load(&sb->mismatch))
        return false;
    return detail == DDSM_DEVERR_HSM_FAILED || detail == DDSM_DEVERR_TIMEOUT;
}

static void switch_to(ddsm_standby *sb, int to, const char *why)
{
    int from = !to;
    if (atomic_compare_exchange_strong(&sb->active, &from, to))
        ddsm_log(DDSM_LOG_WARN, "derivations fail over from token \"%s\" to token \"%s\": %s",
                 token_name(sb, !to), token_name(sb, to), why);
}

/* The pairing check at the first derivation: the standby is looked at once while the primary
 * answers; a standby that is down then is checked again when a failover needs it. */
static CK_RV check_pairing(ddsm_standby *sb, ddsm_rootsess *primary, CK_ULONG *detail)
{
    CK_RV rv = verify(sb, primary, detail);
    if (rv != CKR_OK)
        return rv;
    if (atomic_load(&sb->checked) || atomic_load(&sb->verified[STANDBY]))
        return CKR_OK;
    /* Every derivation that starts before the first check has ended runs one itself: none
     * proceeds on a pairing nobody has checked. */
    ddsm_rootsess rs;
    CK_ULONG d = DDSM_DEVERR_NONE;
    rv = standby_acquire(sb, &rs, &d);
    atomic_store(&sb->checked, true);
    if (rv == CKR_OK) {
        ddsm_standby_release(sb, &rs, false);
        ddsm_log(DDSM_LOG_INFO, "standby token \"%s\" holds the same root as token \"%s\"",
                 token_name(sb, STANDBY), token_name(sb, PRIMARY));
        return CKR_OK;
    }
    if (d == DDSM_DEVERR_STANDBY_MISMATCH) {
        *detail = d;
        return rv;
    }
    ddsm_log(DDSM_LOG_WARN,
             "standby token \"%s\" cannot be checked now (%s): deriving on token \"%s\"; the "
             "standby is checked again before a failover uses it",
             token_name(sb, STANDBY), ddsm_rv_name(rv), token_name(sb, PRIMARY));
    return CKR_OK;
}

static CK_RV acquire_on(ddsm_standby *sb, int which, ddsm_rootsess *out, CK_ULONG *detail)
{
    if (which == STANDBY)
        return standby_acquire(sb, out, detail);
    if (ddsm_hsmcall_saturated(ddsm_rootpool_calls(sb->primary))) {
        /* Every primary worker is stuck in a call that never came back. */
        *detail = DDSM_DEVERR_TIMEOUT;
        return CKR_DEVICE_ERROR;
    }
    ddsm_rootsess rs;
    CK_RV rv = ddsm_rootpool_acquire(sb->primary, &rs, detail);
    if (rv != CKR_OK)
        return rv;
    rs.standby = false;
    rv = check_pairing(sb, &rs, detail);
    if (rv != CKR_OK) {
        ddsm_rootpool_release(sb->primary, &rs, *detail != DDSM_DEVERR_STANDBY_MISMATCH);
        return rv;
    }
    *out = rs;
    return CKR_OK;
}

CK_RV ddsm_standby_root_acquire(ddsm_standby *sb, ddsm_rootsess *out, CK_ULONG *detail)
{
    if (atomic_load(&sb->mismatch)) {
        *detail = DDSM_DEVERR_STANDBY_MISMATCH;
        return CKR_DEVICE_ERROR;
    }
    int which = atomic_load(&sb->active);
    CK_RV rv = acquire_on(sb, which, out, detail);
    if (rv == CKR_OK || !acquire_may_fail_over(sb, rv, *detail))
        return rv;
    CK_RV first_rv = rv;
    CK_ULONG first_detail = *detail;
    rv = acquire_on(sb, !which, out, detail);
    if (rv == CKR_OK) {
        switch_to(sb, !which, first_detail == DDSM_DEVERR_TIMEOUT ? "no answer in time"
                                                                   : "a device error");
        return CKR_OK;
    }
    if (*detail == DDSM_DEVERR_STANDBY_MISMATCH)
        return rv;
    *detail = first_detail;
    return first_rv;
}

CK_RV ddsm_standby_fail_over(ddsm_standby *sb, ddsm_rootsess *rs, bool answered, CK_RV last_rv)
{
    if (!ddsm_standby_may_fail_over(sb, answered, last_rv))
        return CKR_FUNCTION_FAILED;
    int to = rs->standby ? PRIMARY : STANDBY;
    /* Whatever the failure left in that session, it is not reused. */
    sess_release(sb, rs, true);
    rs->s = CK_INVALID_HANDLE;
    ddsm_rootsess other;
    CK_ULONG d = DDSM_DEVERR_NONE;
    if (acquire_on(sb, to, &other, &d) != CKR_OK)
        return CKR_FUNCTION_FAILED;
    char why[96];
    snprintf(why, sizeof(why), "%s", answered ? ddsm_rv_name(last_rv) : "no answer in time");
    switch_to(sb, to, why);
    *rs = other;
    return CKR_OK;
}
