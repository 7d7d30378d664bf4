/* SPDX-License-Identifier: Apache-2.0 */
/* The policy gate's state (policy.h). It reaches the rest of the module only through what its
 * owner handed to ddsm_mpolicy_new (the store pool, whether threads are allowed); the answers to
 * a call, with their refusal, are policy_call.c's. */
#include "policy.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/utf8.h"
#include "lock.h"

#define USER_MAX 64
_Static_assert(DDSM_MPOLICY_APP_CAP == DDSM_REQUESTER_MAX - USER_MAX, "app + user fit");
#define ZONE_BUCKETS 256
/* Lease requests the refill thread makes per round, and how often it looks. */
#define REFILL_BATCH 32
#define REFILL_TICK_MS 10
/* A derivation waits this long for another thread's lease before leasing itself. */
#define LEASE_WAIT_MARGIN_MS 2000

/* What the store told us about an asset's zone (a read after a notification named the asset, a
 * re-validation, a refusal); a notification's own payload is never believed. */
struct zentry {
    ddsm_uuid asset;
    bool off;
    char zone[DDSM_ZONE_NAME_MAX + 1];
    struct zentry *next;
};

struct ddsm_mpolicy {
    char app[DDSM_MPOLICY_APP_CAP]; /* room for "/<user>" */
    ddsm_mutex *req_lock;           /* user */
    char user[USER_MAX + 1];

    CK_MECHANISM_TYPE mechs[DDSM_POLICY_MAX_MECHANISMS];
    size_t n_mechs;

    ddsm_ratelimit *rl; /* NULL: no rate limit configured */
    ddsm_rate rate[DDSM_RATE__SCOPES];
    int lease_wait_ms;

    /* The DENY-row bucket (ddsm_mpolicy_deny_row) */
    ddsm_mutex *deny_lock;
    double deny_tokens;
    int64_t deny_at_ms; /* last refill */
    unsigned deny_burst, deny_per_minute;
    uint64_t deny_left_out; /* rows left out since the last one written */
    uint64_t deny_left_out_total;

    ddsm_mutex *zone_lock; /* zones[] */
    struct zentry *zones[ZONE_BUCKETS];
    atomic_uint n_off; /* entries with off set: 0 lets key uses skip the lookup */

    /* the refill thread, and the owner's store pool for leases */
    ddsm_storepool pool;
    bool can_thread;
    pthread_mutex_t thr_lock;
    pthread_cond_t thr_cond;
    bool thr_started, thr_stop;
    pthread_t thr;
};

CK_RV ddsm_mpolicy_new(const ddsm_config *cfg, const char *app, const ddsm_storepool *pool,
                       bool can_thread, ddsm_mpolicy **out)
{
    CK_RV rv = CKR_HOST_MEMORY;
    ddsm_mpolicy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return rv;
    p->pool = *pool;
    p->can_thread = can_thread;
    snprintf(p->app, sizeof(p->app), "%s", app != NULL && app[0] != '\0' ? app : "unknown");
    pthread_mutex_init(&p->thr_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->thr_cond, &ca);
    pthread_condattr_destroy(&ca);
    if ((rv = ddsm_mutex_new(&p->req_lock)) != CKR_OK ||
        (rv = ddsm_mutex_new(&p->zone_lock)) != CKR_OK ||
        (rv = ddsm_mutex_new(&p->deny_lock)) != CKR_OK)
        goto fail;
    p->deny_burst = cfg->policy.deny_burst;
    p->deny_per_minute = cfg->policy.deny_per_minute;
    p->deny_tokens = (double)p->deny_burst;
    p->deny_at_ms = ddsm_now_ms();
    for (size_t i = 0; i < cfg->policy.n_mechanisms; i++) {
        if (!ddsm_mech_from_name(cfg->policy.mechanisms[i], &p->mechs[p->n_mechs])) {
            ddsm_log(DDSM_LOG_ERROR,
                     "C_Initialize: %s: [policy] mechanism %s is not a mechanism "
                     "the module knows",
                     cfg->file, cfg->policy.mechanisms[i]);
            rv = CKR_FUNCTION_FAILED;
            goto fail;
        }
        p->n_mechs++;
    }
    p->rate[DDSM_RATE_ASSET] = cfg->policy.rate_per_requester_asset;
    p->rate[DDSM_RATE_REQUESTER] = cfg->policy.rate_per_requester;
    p->lease_wait_ms =
        (int)(cfg->store.statement_timeout_ms ? cfg->store.statement_timeout_ms : 5000) +
        LEASE_WAIT_MARGIN_MS;
    if (p->rate[0].limit > 0 || p->rate[1].limit > 0) {
        ddsm_err e = ddsm_ratelimit_new(&p->rate[DDSM_RATE_ASSET], &p->rate[DDSM_RATE_REQUESTER],
                                        65536, &p->rl);
        if (e != DDSM_OK) {
            rv = e == DDSM_E_NOMEM ? CKR_HOST_MEMORY : CKR_FUNCTION_FAILED;
            goto fail;
        }
    }
    *out = p;
    return CKR_OK;
fail:
    ddsm_mpolicy_free(p);
    return rv;
}

void ddsm_mpolicy_free(ddsm_mpolicy *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->thr_lock);
    bool started = p->thr_started;
    p->thr_stop = true;
    pthread_cond_broadcast(&p->thr_cond);
    pthread_mutex_unlock(&p->thr_lock);
    if (started)
        pthread_join(p->thr, NULL);
    for (int b = 0; b < ZONE_BUCKETS; b++) {
        struct zentry *z = p->zones[b];
        while (z != NULL) {
            struct zentry *next = z->next;
            free(z);
            z = next;
        }
    }
    ddsm_ratelimit_free(p->rl);
    ddsm_mutex_free(p->req_lock);
    ddsm_mutex_free(p->zone_lock);
    ddsm_mutex_free(p->deny_lock);
    pthread_cond_destroy(&p->thr_cond);
    pthread_mutex_destroy(&p->thr_lock);
    free(p);
}

ddsm_ratelimit *ddsm_mpolicy_ratelimit(const ddsm_mpolicy *p)
{
    return p != NULL ? p->rl : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The requester                                                                               */

void ddsm_mpolicy_requester(ddsm_mpolicy *p, char out[DDSM_REQUESTER_MAX + 1])
{
    ddsm_mutex_lock(p->req_lock);
    if (p->user[0] != '\0')
        snprintf(out, DDSM_REQUESTER_MAX + 1, "%s/%s", p->app, p->user);
    else
        snprintf(out, DDSM_REQUESTER_MAX + 1, "%s", p->app);
    ddsm_mutex_unlock(p->req_lock);
}

CK_RV ddsm_mpolicy_check_user(const CK_UTF8CHAR *name, CK_ULONG len)
{
    if (name == NULL || len < 1 || len > USER_MAX)
        return CKR_ARGUMENTS_BAD;
    for (CK_ULONG i = 0; i < len; i++)
        if (name[i] < 0x20 || name[i] == 0x7f)
            return CKR_ARGUMENTS_BAD; /* one line in logs and audit rows */
    /* Well-formed UTF-8: the name goes into audit rows as text. */
    for (CK_ULONG i = 0, n; i < len; i += n)
        if ((n = ddsm_utf8_seq(name + i, len - i)) == 0)
            return CKR_ARGUMENTS_BAD;
    return CKR_OK;
}

void ddsm_mpolicy_set_user(ddsm_mpolicy *p, const CK_UTF8CHAR *name, CK_ULONG len)
{
    if (ddsm_mpolicy_check_user(name, len) != CKR_OK)
        return;
    ddsm_mutex_lock(p->req_lock);
    memcpy(p->user, name, len);
    p->user[len] = '\0';
    ddsm_mutex_unlock(p->req_lock);
}

void ddsm_mpolicy_clear_user(ddsm_mpolicy *p)
{
    if (p == NULL)
        return;
    ddsm_mutex_lock(p->req_lock);
    p->user[0] = '\0';
    ddsm_mutex_unlock(p->req_lock);
}

/* ------------------------------------------------------------------------------------------ */
/* The DENY-row bucket                                                                         */

bool ddsm_mpolicy_deny_row(ddsm_mpolicy *p, uint64_t *left_out)
{
    bool ok;
    ddsm_mutex_lock(p->deny_lock);
    int64_t now = ddsm_now_ms();
    if (now > p->deny_at_ms) {
        p->deny_tokens += (double)(now - p->deny_at_ms) * p->deny_per_minute / 60000.0;
        if (p->deny_tokens > p->deny_burst)
            p->deny_tokens = p->deny_burst;
        p->deny_at_ms = now;
    }
    ok = p->deny_tokens >= 1.0;
    if (ok) {
        p->deny_tokens -= 1.0;
        *left_out = p->deny_left_out;
        p->deny_left_out = 0;
    } else {
        /* Logged at the first row left out and then once per 1000: the log is bounded too. */
        if (p->deny_left_out_total % 1000 == 0)
            ddsm_log(DDSM_LOG_WARN, "policy: DENY rows beyond [policy] deny_burst / "
                                    "deny_per_minute are left out (%" PRIu64 " so far)",
                     p->deny_left_out_total + 1);
        p->deny_left_out++;
        p->deny_left_out_total++;
    }
    ddsm_mutex_unlock(p->deny_lock);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Rate limits                                                                                 */

static const char *unit_of(unsigned window_s)
{
    switch (window_s) {
    case 1:
        return "s";
    case 60:
        return "min";
    case 3600:
        return "h";
    default:
        return "d";
    }
}

/* One lease through a pooled store connection; the answer (or the failure) goes to the buckets. */
static ddsm_err lease_now(ddsm_mpolicy *p, const ddsm_rate_lease_req *req)
{
    ddsm_store *st = NULL;
    ddsm_rate_lease_ans ans;
    ddsm_err e = p->pool.acquire(p->pool.owner, &st);
    if (e == DDSM_OK) {
        e = ddsm_rate_lease(st, req, &ans);
        if (e != DDSM_OK)
            ddsm_log(DDSM_LOG_WARN, "rate limit: lease failed: %s", ddsm_store_errmsg(st));
        p->pool.release(p->pool.owner, st);
    } else {
        ddsm_log(DDSM_LOG_WARN, "rate limit: no store connection for a lease: %s", ddsm_err_str(e));
    }
    if (e == DDSM_OK)
        ddsm_ratelimit_apply(p->rl, req, &ans, ddsm_now_ms());
    else
        ddsm_ratelimit_apply_failed(p->rl, req);
    return e;
}

static void *refill_main(void *arg)
{
    ddsm_mpolicy *p = arg;
    ddsm_rate_lease_req reqs[REFILL_BATCH];

    pthread_mutex_lock(&p->thr_lock);
    while (!p->thr_stop) {
        pthread_mutex_unlock(&p->thr_lock);
        size_t n = ddsm_ratelimit_wanted(p->rl, ddsm_now_ms(), reqs, REFILL_BATCH);
        for (size_t i = 0; i < n; i++)
            (void)lease_now(p, &reqs[i]);
        pthread_mutex_lock(&p->thr_lock);
        if (n == REFILL_BATCH)
            continue; /* more may be waiting */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += REFILL_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!p->thr_stop)
            (void)pthread_cond_timedwait(&p->thr_cond, &p->thr_lock, &ts);
    }
    pthread_mutex_unlock(&p->thr_lock);
    return NULL;
}

static void refill_start(ddsm_mpolicy *p)
{
    pthread_mutex_lock(&p->thr_lock);
    if (!p->thr_started && !p->thr_stop && p->can_thread) {
        if (pthread_create(&p->thr, NULL, refill_main, p) == 0)
            p->thr_started = true;
        else
            ddsm_log(DDSM_LOG_WARN, "rate limit: cannot start the refill thread: every empty "
                                    "bucket is leased by the derivation that finds it");
        p->thr_stop = !p->thr_started; /* never try again */
    }
    pthread_mutex_unlock(&p->thr_lock);
}

ddsm_mpolicy_verdict ddsm_mpolicy_rate_take(ddsm_mpolicy *p, const ddsm_uuid *asset,
                                            const char *requester, ddsm_deny_reason *why,
                                            char reason[DDSM_MPOLICY_REASON_MAX], ddsm_err *err)
{
    if (!ddsm_ratelimit_active(p->rl))
        return DDSM_MPOLICY_PASS;
    refill_start(p);
    /* At most one lease per scope is needed; one more round covers a window that ended while
     * the first lease was on its way. */
    for (int round = 0; round < 2 * DDSM_RATE__SCOPES + 1; round++) {
        ddsm_rate_scope scope = DDSM_RATE_ASSET;
        ddsm_rate_lease_req req;
        ddsm_rate_verdict v = ddsm_ratelimit_take(p->rl, requester, asset, ddsm_now_ms(),
                                                  p->lease_wait_ms, &scope, &req);
        if (v == DDSM_RATE_ALLOW)
            return DDSM_MPOLICY_PASS;
        if (v == DDSM_RATE_DENY) {
            snprintf(reason, DDSM_MPOLICY_REASON_MAX, "rate limit %" PRIu64 "/%s per %s reached",
                     p->rate[scope].limit, unit_of(p->rate[scope].window_s),
                     scope == DDSM_RATE_ASSET ? "requester and asset" : "requester");
            *why = scope == DDSM_RATE_ASSET ? DDSM_DENY_RATE_ASSET : DDSM_DENY_RATE_REQUESTER;
            return DDSM_MPOLICY_REFUSE;
        }
        ddsm_err e = lease_now(p, &req);
        if (e != DDSM_OK) {
            *err = e;
            return DDSM_MPOLICY_FAIL;
        }
    }
    snprintf(reason, DDSM_MPOLICY_REASON_MAX, "rate limit: no token could be leased");
    *why = DDSM_DENY_RATE_REQUESTER;
    return DDSM_MPOLICY_REFUSE;
}

/* ------------------------------------------------------------------------------------------ */
/* Mechanisms                                                                                  */

bool ddsm_mpolicy_mech_allowed(const ddsm_mpolicy *p, CK_MECHANISM_TYPE m)
{
    if (p->n_mechs == 0)
        return true;
    for (size_t i = 0; i < p->n_mechs; i++)
        if (p->mechs[i] == m)
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Zones                                                                                       */

static unsigned zbucket(const ddsm_uuid *a)
{
    return ((unsigned)a->b[15] | (unsigned)a->b[14] << 8) % ZONE_BUCKETS;
}

bool ddsm_mpolicy_zone_off(ddsm_mpolicy *p, const ddsm_uuid *asset,
                           char zone[DDSM_ZONE_NAME_MAX + 1])
{
    bool off = false;
    if (atomic_load(&p->n_off) == 0)
        return false;
    ddsm_mutex_lock(p->zone_lock);
    for (struct zentry *z = p->zones[zbucket(asset)]; z != NULL; z = z->next) {
        if (memcmp(z->asset.b, asset->b, 16) == 0) {
            off = z->off;
            snprintf(zone, DDSM_ZONE_NAME_MAX + 1, "%s", z->zone);
            break;
        }
    }
    ddsm_mutex_unlock(p->zone_lock);
    return off;
}

void ddsm_mpolicy_zone_set(ddsm_mpolicy *p, const ddsm_uuid *asset, bool enabled,
                           const char *zone)
{
    bool was_off = false, known = false;
    ddsm_mutex_lock(p->zone_lock);
    struct zentry **link = &p->zones[zbucket(asset)];
    while (*link != NULL && memcmp((*link)->asset.b, asset->b, 16) != 0)
        link = &(*link)->next;
    if (*link != NULL) {
        known = true;
        was_off = (*link)->off;
        if (enabled) {
            /* Back to the common case: nothing to remember. */
            struct zentry *gone = *link;
            *link = gone->next;
            free(gone);
        } else {
            snprintf((*link)->zone, sizeof((*link)->zone), "%s", zone != NULL ? zone : "?");
        }
    } else if (!enabled) {
        struct zentry *z = calloc(1, sizeof(*z));
        if (z != NULL) {
            z->asset = *asset;
            z->off = true;
            snprintf(z->zone, sizeof(z->zone), "%s", zone != NULL ? zone : "?");
            z->next = p->zones[zbucket(asset)];
            p->zones[zbucket(asset)] = z;
            known = true;
        } else {
            ddsm_log(DDSM_LOG_ERROR, "zone: out of memory recording a disabled zone: keys of the "
                                     "asset are refused by the store only");
        }
    }
    if (!enabled && !was_off && known)
        atomic_fetch_add(&p->n_off, 1);
    else if (enabled && was_off)
        atomic_fetch_sub(&p->n_off, 1);
    ddsm_mutex_unlock(p->zone_lock);
}
