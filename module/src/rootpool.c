/* SPDX-License-Identifier: Apache-2.0 */
#include "rootpool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "exiting.h"
#include "pinfile.h"
#include "rv.h"

struct ddsm_rootpool {
    const ddsm_config *cfg;
    ddsm_hsm *hsm;
    CK_FUNCTION_LIST_PTR be;
    CK_SLOT_ID slot;
    bool custody;
    ddsm_mutex *lock; /* the context's: guards what is marked "under lock" */
    const atomic_bool *can_thread;
    ddsm_rootfind *find;

    ddsm_sesslist sessions; /* at most ddsm_config_hsm_workers idle; under lock */

    _Atomic CK_OBJECT_HANDLE root; /* cached root seed key handle, 0 = unknown */
    _Atomic(ddsm_hsmcall *) calls;

    /* The custody login with root_pin_file, under lock: a refusal latches until retry_ms. */
    struct {
        bool trying;        /* one thread is logging in now: the others wait for its answer */
        CK_RV refused;      /* the latched refusal; CKR_OK: none */
        unsigned refusals;  /* in a row */
        int64_t at_ms;      /* when it was refused */
        int64_t retry_ms;   /* no attempt before this (unless the PIN file changed) */
        int64_t backoff_ms; /* the wait after the next refusal: doubles up to a bound */
        char file_id[128];  /* the PIN file's identity (inode, size, times) when refused */
    } latch;
};

CK_RV ddsm_rootpool_new(const ddsm_rootpool_args *args, ddsm_rootpool **out)
{
    ddsm_rootpool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CKR_HOST_MEMORY;
    p->cfg = args->cfg;
    p->hsm = args->hsm;
    p->be = ddsm_hsm_functions(args->hsm);
    if (ddsm_sesslist_init(&p->sessions, p->be, args->lock, ddsm_config_hsm_workers(args->cfg)) !=
        CKR_OK) {
        free(p);
        return CKR_HOST_MEMORY;
    }
    p->slot = args->slot;
    p->custody = args->custody;
    p->lock = args->lock;
    p->can_thread = args->can_thread;
    p->find = args->find;
    *out = p;
    return CKR_OK;
}

void ddsm_rootpool_close(ddsm_rootpool *p)
{
    if (p != NULL)
        ddsm_sesslist_close(&p->sessions);
}

bool ddsm_rootpool_free(ddsm_rootpool *p)
{
    if (p == NULL)
        return true;
    /* HSM calls stuck past their bound get one more bound to return. */
    bool gone = ddsm_hsmcall_free(atomic_load(&p->calls), p->cfg->backend.call_timeout_ms + 1000);
    free(p);
    return gone;
}

ddsm_hsm *ddsm_rootpool_hsm(const ddsm_rootpool *p)
{
    return p->hsm;
}

ddsm_hsmcall *ddsm_rootpool_calls(ddsm_rootpool *p)
{
    ddsm_hsmcall *c = atomic_load(&p->calls);
    if (c != NULL || !atomic_load(p->can_thread))
        return c;
    /* As many workers as derivation sessions: each running call holds one. */
    unsigned workers = ddsm_config_hsm_workers(p->cfg);
    ddsm_hsmcall *made = NULL;
    if (ddsm_hsmcall_new(p->be, workers, p->cfg->backend.call_timeout_ms, &made) != CKR_OK) {
        ddsm_log(DDSM_LOG_WARN, "cannot set up the HSM call pool: HSM calls are unbounded");
        return NULL;
    }
    ddsm_mutex_lock(p->lock);
    c = atomic_load(&p->calls);
    if (c == NULL) {
        atomic_store(&p->calls, made);
        c = made;
        made = NULL;
    }
    ddsm_mutex_unlock(p->lock);
    (void)ddsm_hsmcall_free(made, 0); /* lost the race: it never started a thread */
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* The custody login                                                                           */

/* After a refused custody login: the first wait, and its bound as it doubles. */
#define CUSTODY_BACKOFF_MIN_MS 1000
#define CUSTODY_BACKOFF_MAX_MS 300000

/* The PIN file's identity: a change (rewritten, replaced, touched) ends the latch's wait early. */
static void pin_file_id(const char *file, char out[128])
{
    struct stat st;
    if (stat(file, &st) != 0) {
        snprintf(out, 128, "errno %d", errno);
        return;
    }
    snprintf(out, 128, "%llu:%llu:%lld:%lld.%ld:%lld.%ld", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

/* Log in to the custody token with the PIN from root_pin_file (pinfile.h). Touches a secret
 * (through pinfile.c). CKR_DEVICE_ERROR when the file is unusable. */
static CK_RV custody_login_secret(ddsm_rootpool *p, CK_SESSION_HANDLE s)
{
    size_t len;
    CK_RV rv =
        ddsm_pinfile_login_secret(p->hsm, s, p->cfg->backend.root_pin_file, "root_pin_file", &len);
    if (rv != CKR_OK && len > 0)
        ddsm_log(DDSM_LOG_DEBUG, "custody token login refused: %s (PIN of %zu bytes)",
                 ddsm_rv_name(rv), len);
    return rv;
}

/* The custody login behind its latch. A refusal (wrong or locked PIN, unusable file) is latched:
 * until the back-off ends (1 s, doubling up to 5 min) every derivation fails with
 * CKR_DEVICE_ERROR and DDSM_DEVERR_CUSTODY_LOGIN without touching the token, so nothing burns its
 * PIN retry counter; a change of the PIN file ends the wait early (at most one attempt a second),
 * so fixing the file recovers without a restart. One attempt at a time: other threads wait for
 * its answer. Logged once per change. */
static CK_RV custody_login(ddsm_rootpool *p, CK_SESSION_HANDLE s)
{
    const char *file = p->cfg->backend.root_pin_file;
    char id[128];
    for (;;) {
        bool latched = false;
        int64_t now = ddsm_now_ms();
        ddsm_mutex_lock(p->lock);
        if (!p->latch.trying) {
            latched = p->latch.refused != CKR_OK && now < p->latch.retry_ms;
            if (!latched) {
                p->latch.trying = true;
                ddsm_mutex_unlock(p->lock);
                break;
            }
        }
        ddsm_mutex_unlock(p->lock);
        if (latched) {
            /* Still refused, unless the file changed since (then, at most once a second). */
            pin_file_id(file, id);
            ddsm_mutex_lock(p->lock);
            if (strcmp(id, p->latch.file_id) != 0 &&
                now - p->latch.at_ms >= CUSTODY_BACKOFF_MIN_MS && p->latch.retry_ms > now) {
                p->latch.retry_ms = now;
                ddsm_mutex_unlock(p->lock);
                continue;
            }
            ddsm_mutex_unlock(p->lock);
            return CKR_DEVICE_ERROR;
        }
        ddsm_sleep_us(1000); /* another thread's attempt: take its answer */
    }

    CK_RV rv = custody_login_secret(p, s);
    pin_file_id(file, id);
    int64_t now = ddsm_now_ms();
    ddsm_mutex_lock(p->lock);
    CK_RV before = p->latch.refused;
    unsigned refusals = p->latch.refusals;
    int64_t wait_ms = 0;
    p->latch.trying = false;
    if (rv == CKR_OK || rv == CKR_HOST_MEMORY) {
        p->latch.refused = CKR_OK;
        p->latch.refusals = 0;
        p->latch.backoff_ms = 0;
    } else {
        wait_ms = p->latch.backoff_ms > 0 ? p->latch.backoff_ms : CUSTODY_BACKOFF_MIN_MS;
        p->latch.backoff_ms =
            wait_ms * 2 > CUSTODY_BACKOFF_MAX_MS ? CUSTODY_BACKOFF_MAX_MS : wait_ms * 2;
        p->latch.refused = rv;
        p->latch.refusals++;
        p->latch.at_ms = now;
        p->latch.retry_ms = now + wait_ms;
        snprintf(p->latch.file_id, sizeof(p->latch.file_id), "%s", id);
    }
    ddsm_mutex_unlock(p->lock);

    if (rv != CKR_OK && rv != CKR_HOST_MEMORY && rv != before)
        ddsm_log(DDSM_LOG_ERROR,
                 "custody token \"%s\": login with root_pin_file %s refused: %s; "
                 "derivations fail (CKR_DEVICE_ERROR, DDSM_DEVERR_CUSTODY_LOGIN) and the next "
                 "attempt waits %lld ms, or for a change of the file",
                 p->cfg->backend.root_token_label, file, ddsm_rv_name(rv), (long long)wait_ms);
    else if (rv != CKR_OK && rv != CKR_HOST_MEMORY)
        ddsm_log(DDSM_LOG_DEBUG,
                 "custody token login refused again (%u in a row); next attempt "
                 "in %lld ms",
                 refusals + 1, (long long)wait_ms);
    else if (rv == CKR_OK && before != CKR_OK)
        ddsm_log(DDSM_LOG_WARN, "custody token \"%s\": logged in after %u refused attempt(s)",
                 p->cfg->backend.root_token_label, refusals);
    return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions                                                                                    */

/* Find the root seed key through rs->s (by label and pinned fingerprint) and cache its handle. */
static CK_RV root_lookup(ddsm_rootpool *p, ddsm_rootsess *rs, CK_ULONG *detail)
{
    bool quarantined = false;
    CK_RV rv = ddsm_root_find(p->find, p->hsm, ddsm_rootpool_calls(p), rs->s, &rs->root,
                              &quarantined, detail);
    if (quarantined)
        ddsm_rootpool_disown(p, rs);
    if (rv != CKR_OK)
        return rv;
    atomic_store(&p->root, rs->root);
    return CKR_OK;
}

CK_RV ddsm_rootpool_refresh(ddsm_rootpool *p, ddsm_rootsess *rs, CK_ULONG *detail)
{
    CK_OBJECT_HANDLE stale = rs->root;
    atomic_compare_exchange_strong(&p->root, &stale, 0);
    *detail = DDSM_DEVERR_NONE;
    return root_lookup(p, rs, detail);
}

CK_RV ddsm_rootpool_acquire(ddsm_rootpool *p, ddsm_rootsess *out, CK_ULONG *detail)
{
    CK_RV rv = CKR_OK;
    ddsm_rootsess rs = {0, 0, 0, false};
    bool fresh = false;

    *detail = DDSM_DEVERR_NONE;
    ddsm_sesslist *l = &p->sessions;
    ddsm_mutex_lock(p->lock);
    rs.gen = l->gen;
    if (l->n_idle > 0) {
        rs.s = l->idle[--l->n_idle];
    } else {
        l->n_open++;
        fresh = true;
    }
    ddsm_mutex_unlock(p->lock);

    if (fresh) {
        rv = p->be->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rs.s);
        if (rv != CKR_OK) {
            ddsm_log(DDSM_LOG_WARN, "cannot open a derivation session: %s", ddsm_rv_name(rv));
            ddsm_sesslist_uncount(l);
            rv = ddsm_rv_from_backend(rv, detail);
            return rv;
        }
        if (p->custody) {
            rv = custody_login(p, rs.s);
            if (rv != CKR_OK) {
                ddsm_rootpool_release(p, &rs, true);
                *detail = DDSM_DEVERR_CUSTODY_LOGIN;
                return rv == CKR_HOST_MEMORY ? rv : CKR_DEVICE_ERROR;
            }
        }
    }

    rs.root = atomic_load(&p->root);
    if (rs.root == 0 && (rv = root_lookup(p, &rs, detail)) != CKR_OK) {
        /* A session whose only fault is the token's content (or the store's pin) is kept. */
        bool kept = *detail == DDSM_DEVERR_ROOT_MISSING || *detail == DDSM_DEVERR_ROOT_AMBIGUOUS ||
                    *detail == DDSM_DEVERR_ROOT_UNPINNED || *detail == DDSM_DEVERR_ROOT_MISMATCH ||
                    *detail == DDSM_DEVERR_STORE_DOWN || *detail == DDSM_DEVERR_STORE_FAILED;
        ddsm_rootpool_release(p, &rs, !kept);
        return rv;
    }
    *out = rs;
    return CKR_OK;
}

void ddsm_rootpool_release(ddsm_rootpool *p, const ddsm_rootsess *rs, bool broken)
{
    ddsm_sesslist_release(&p->sessions, rs, broken);
}

void ddsm_rootpool_disown(ddsm_rootpool *p, ddsm_rootsess *rs)
{
    ddsm_sesslist_disown(&p->sessions, rs);
}

void ddsm_rootpool_drain(ddsm_rootpool *p)
{
    if (p->custody)
        return;
    atomic_store(&p->root, 0);
    ddsm_sesslist_drain(&p->sessions);
}

/* ------------------------------------------------------------------------------------------ */
/* A token's session list (rootpool.h)                                                         */

CK_RV ddsm_sesslist_init(ddsm_sesslist *l, CK_FUNCTION_LIST_PTR be, ddsm_mutex *lock, unsigned cap)
{
    memset(l, 0, sizeof(*l));
    l->idle = calloc(cap, sizeof(*l->idle));
    if (l->idle == NULL)
        return CKR_HOST_MEMORY;
    l->be = be;
    l->lock = lock;
    l->cap = cap;
    return CKR_OK;
}

void ddsm_sesslist_close(ddsm_sesslist *l)
{
    if (!ddsm_exiting())
        for (unsigned i = 0; i < l->n_idle; i++)
            (void)l->be->C_CloseSession(l->idle[i]);
    l->n_idle = 0;
    free(l->idle);
    l->idle = NULL;
}

void ddsm_sesslist_release(ddsm_sesslist *l, const ddsm_rootsess *rs, bool broken)
{
    bool keep = false;
    if (rs->s == CK_INVALID_HANDLE)
        return; /* disowned: quarantined by the HSM call pool */
    ddsm_mutex_lock(l->lock);
    if (!broken && rs->gen == l->gen && l->n_idle < l->cap) {
        l->idle[l->n_idle++] = rs->s;
        keep = true;
    } else {
        l->n_open--;
    }
    ddsm_mutex_unlock(l->lock);
    if (!keep)
        (void)l->be->C_CloseSession(rs->s);
}

void ddsm_sesslist_disown(ddsm_sesslist *l, ddsm_rootsess *rs)
{
    if (rs->s == CK_INVALID_HANDLE)
        return;
    ddsm_sesslist_uncount(l);
    rs->s = CK_INVALID_HANDLE;
}

void ddsm_sesslist_uncount(ddsm_sesslist *l)
{
    ddsm_mutex_lock(l->lock);
    l->n_open--;
    ddsm_mutex_unlock(l->lock);
}

void ddsm_sesslist_drain(ddsm_sesslist *l)
{
    ddsm_mutex_lock(l->lock);
    l->gen++;
    ddsm_mutex_unlock(l->lock);
    for (;;) {
        CK_SESSION_HANDLE idle[64];
        unsigned n = 0;
        ddsm_mutex_lock(l->lock);
        while (l->n_idle > 0 && n < 64) {
            idle[n++] = l->idle[--l->n_idle];
            l->n_open--;
        }
        ddsm_mutex_unlock(l->lock);
        if (n == 0)
            break;
        for (unsigned i = 0; i < n && !ddsm_exiting(); i++)
            (void)l->be->C_CloseSession(idle[i]);
    }
}
