/* SPDX-License-Identifier: Apache-2.0 */
#include "ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ddsm/ecsig.h"
#include "ddsm/log.h"
#include "ddsm/mac.h"
#include "ddsm/names.h"
#include "ddsm/ossl.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "exiting.h"
#include "ossl_host.h"
#include "fence.h"
#include "handles.h"
#include "mechallow.h"
#include "metrics.h"
#include "peer.h"
#include "policy.h"
#include "rv.h"
#include "sesstab.h"
#include "vkey.h"

/* ------------------------------------------------------------------------------------------ */
/* Process-wide state and fork                                                                 */

static _Atomic(ddsm_ctx *) g_ctx;
static atomic_uint g_fork_gen;
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static ddsm_ctx *g_inherited; /* parents' states abandoned in this fork child, newest first */

static void atfork_child(void)
{
    /* Everything inherited is void in the child: every entry point now sees "not initialised"
     * until C_Initialize builds fresh state. The init lock may have been held by a parent thread
     * that does not exist here. */
    atomic_fetch_add(&g_fork_gen, 1);
    pthread_mutex_init(&g_init_lock, NULL);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

ddsm_ctx *ddsm_ctx_get(void)
{
    ddsm_ctx *c = atomic_load_explicit(&g_ctx, memory_order_acquire);
    if (c != NULL && c->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed))
        return NULL;
    return c;
}

/* A parent's state seen from a fork child: wipe its keys, touch nothing else (no PQfinish, no
 * C_CloseSession, no unlock), leak the rest deliberately. */
static void ctx_abandon(ddsm_ctx *ctx)
{
    ddsm_vkeys_abandon(ctx->vkeys);
    /* Our copy of the audit key (the batcher's chains keep theirs: freeing the batcher would
     * close the parent's connections). */
    ddsm_audit_key_free(ctx->audit_key);
    ctx->audit_key = NULL;
    ddsm_standby_abandon(ctx->roots.standby);
    ddsm_hsm_abandon(ctx->hsm);
    ddsm_log(DDSM_LOG_INFO, "fork child: abandoned the parent's module state");
}

static void ctx_free(ddsm_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->listener_started) {
        atomic_store(&ctx->listener_stop, true);
        pthread_join(ctx->listener, NULL);
    }
    ddsm_fence_free(ctx->fence);
    /* Their threads use the pools and the batcher below: stopped first (the metrics writer
     * reads the policy's counters: before the policy). */
    ddsm_metrics_free(ctx->metrics);
    ctx->metrics = NULL;
    ddsm_mpolicy_free(ctx->policy);
    ctx->policy = NULL;
    ddsm_batcher *b = atomic_load(&ctx->batcher);
    if (b != NULL && ddsm_log_enabled(DDSM_LOG_INFO)) {
        ddsm_batch_stats bs;
        ddsm_batcher_stats(b, &bs);
        ddsm_log(DDSM_LOG_INFO,
                 "audit batching: %llu requests in %llu batches (%llu of more than one, largest "
                 "%llu), %llu round trips, %llu failed",
                 (unsigned long long)bs.requests, (unsigned long long)bs.batches,
                 (unsigned long long)bs.multi_row_batches, (unsigned long long)bs.max_batch,
                 (unsigned long long)bs.round_trips, (unsigned long long)bs.failed_batches);
    }
    ddsm_batcher_free(b);
    ddsm_audit_key_free(ctx->audit_key);
    for (unsigned i = 0; i < ctx->n_store_free; i++)
        ddsm_store_close(ctx->store_free[i]);
    free(ctx->store_free);
    ddsm_rootpool_close(ctx->roots.primary);
    ddsm_sesstab_free(ctx->sessions);
    ddsm_vkeys_free(ctx->vkeys);
    ddsm_htab_free(ctx->handles);
    /* before the primary backend: they may share one library */
    ddsm_standby_free(ctx->roots.standby);
    /* HSM calls stuck past their bound get one more bound to return; if they still do not, the
     * backend stays loaded (never finalised or unmapped under a thread inside it). */
    if (ddsm_rootpool_free(ctx->roots.primary) &&
        !ddsm_exiting()) /* exiting.h: the backend may be half destroyed */
        ddsm_hsm_unload(ctx->hsm);
    else
        ddsm_hsm_abandon(ctx->hsm);
    ddsm_mutex_free(ctx->lock);
    ddsm_config_free(ctx->cfg);
    free(ctx);
}

CK_RV ddsm_ctx_initialize(const CK_C_INITIALIZE_ARGS *args)
{
    CK_RV rv = CKR_OK;
    ddsm_ctx *ctx = NULL;
    char why[512] = "";

    pthread_once(&g_once, register_atfork);
    ddsm_ossl_load_host_config();
    if (!ddsm_ossl_ready())
        return CKR_GENERAL_ERROR; /* ddsm/ossl.h: never the host's default OpenSSL context */
    pthread_mutex_lock(&g_init_lock);
    ddsm_ctx *old = atomic_load(&g_ctx);
    if (old != NULL) {
        if (old->fork_gen == atomic_load(&g_fork_gen)) {
            rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
            goto out;
        }
        ctx_abandon(old);
        atomic_store(&g_ctx, NULL);
        /* Deliberately leaked, but kept reachable (by the next state, or here if C_Initialize
         * fails) so that leak checkers tell it from a real leak. */
        old->inherited = g_inherited;
        g_inherited = old;
    }

    bool app_locks =
        args != NULL && args->CreateMutex != NULL && (args->flags & CKF_OS_LOCKING_OK) == 0;
    ddsm_mutex_use_app(app_locks ? args : NULL);

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    ctx->fork_gen = atomic_load(&g_fork_gen);
    atomic_init(&ctx->listen_fd, -1);
    atomic_init(&ctx->listen_clear_ns, 0);
    atomic_init(&ctx->can_thread,
                args == NULL || (args->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS) == 0);

    const char *file = ddsm_config_default_path();
    ddsm_err e = ddsm_config_load(file, &ctx->cfg, why, sizeof(why));
    if (e != DDSM_OK) {
        ddsm_log(DDSM_LOG_ERROR, "C_Initialize: configuration: %s", why);
        rv = ddsm_rv_from_err(e, DDSM_RVCTX_INIT, NULL);
        goto out;
    }
    ddsm_log_setup(ctx->cfg->log.level, ctx->cfg->log.syslog, "ddsm-pkcs11");
    /* Before any store is opened (they are opened lazily, at first use). */
    ddsm_store_set_transaction_pooler(ctx->cfg->store.transaction_pooler);
    if ((rv = ddsm_mutex_new(&ctx->lock)) != CKR_OK)
        goto out;

    rv = ddsm_hsm_load(ctx->cfg->backend.module, &ctx->hsm, why, sizeof(why));
    if (rv != CKR_OK) {
        ddsm_log(DDSM_LOG_ERROR, "C_Initialize: backend: %s", why);
        if (rv != CKR_HOST_MEMORY)
            rv = CKR_FUNCTION_FAILED;
        goto out;
    }
    ctx->be = ddsm_hsm_functions(ctx->hsm);
    ddsm_exiting_watch();
    rv = ddsm_hsm_find_token(ctx->hsm, ctx->cfg->backend.token_label, &ctx->slot);
    if (rv != CKR_OK) {
        ddsm_log(DDSM_LOG_ERROR, "C_Initialize: backend token \"%s\": %s",
                 ctx->cfg->backend.token_label, ddsm_rv_name(rv));
        rv = rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
        goto out;
    }
    ctx->root_slot = ctx->slot;
    if (ctx->cfg->backend.root_token_label != NULL) {
        ctx->custody = true;
        rv = ddsm_hsm_find_token(ctx->hsm, ctx->cfg->backend.root_token_label, &ctx->root_slot);
        if (rv != CKR_OK) {
            ddsm_log(DDSM_LOG_ERROR, "C_Initialize: custody token \"%s\": %s",
                     ctx->cfg->backend.root_token_label, ddsm_rv_name(rv));
            rv = rv == CKR_HOST_MEMORY ? rv : CKR_FUNCTION_FAILED;
            goto out;
        }
    }
    /* The module's own root sessions: on root_slot, and on the standby token when configured. */
    ctx->rootfind.label = ctx->cfg->backend.root_key_label;
    ctx->rootfind.timeout_ms = ctx->cfg->backend.call_timeout_ms;
    ddsm_ctx_store_pool(ctx, &ctx->rootfind.pins);
    ctx->roots.cfg = ctx->cfg;
    ddsm_rootpool_args pa = {.cfg = ctx->cfg,
                             .hsm = ctx->hsm,
                             .slot = ctx->root_slot,
                             .custody = ctx->custody,
                             .lock = ctx->lock,
                             .can_thread = &ctx->can_thread,
                             .find = &ctx->rootfind};
    if ((rv = ddsm_rootpool_new(&pa, &ctx->roots.primary)) != CKR_OK)
        goto out;
    ddsm_standby_args sa = {.cfg = ctx->cfg,
                            .custody = ctx->custody,
                            .can_thread = &ctx->can_thread,
                            .primary = ctx->roots.primary,
                            .find = &ctx->rootfind};
    if ((rv = ddsm_standby_open(&sa, &ctx->roots.standby)) != CKR_OK)
        goto out;

    e = ddsm_audit_instance_id(NULL, ctx->instance, sizeof(ctx->instance));
    if (e != DDSM_OK) {
        ddsm_log(DDSM_LOG_ERROR, "C_Initialize: no instance id: %s", ddsm_err_str(e));
        rv = CKR_FUNCTION_FAILED;
        goto out;
    }
    const char *app = ctx->cfg->policy.requester != NULL ? ctx->cfg->policy.requester
                                                         : program_invocation_short_name;
    /* Behind p11-kit server, the client's uid (peer.h). */
    char peer_app[DDSM_MPOLICY_APP_CAP];
    if (ddsm_peer_requester(app, program_invocation_short_name, STDIN_FILENO, peer_app,
                            sizeof(peer_app))) {
        app = peer_app;
        ddsm_log(DDSM_LOG_INFO, "C_Initialize: behind p11-kit server: requester %s", app);
    }
    snprintf(ctx->requester, sizeof(ctx->requester), "%.*s", (int)sizeof(ctx->requester) - 1, app);
    ddsm_storepool policy_pool;
    ddsm_ctx_store_pool(ctx, &policy_pool);
    ddsm_vkeys_link vkeys_link;
    ddsm_ctx_vkeys_link(ctx, &vkeys_link);

    if ((rv = ddsm_mech_extra_load(ctx->cfg, &ctx->mechs)) != CKR_OK ||
        (rv = ddsm_htab_new(ctx->cfg->cache.handles, &ctx->handles)) != CKR_OK ||
        (rv = ddsm_vkeys_new(ctx->cfg, &vkeys_link, &ctx->vkeys)) != CKR_OK ||
        (rv = ddsm_sesstab_new(&ctx->sessions)) != CKR_OK ||
        (rv = ddsm_mpolicy_new(ctx->cfg, app, &policy_pool, atomic_load(&ctx->can_thread),
                               &ctx->policy)) != CKR_OK ||
        (rv = ddsm_metrics_new(ctx->cfg, ctx->instance, atomic_load(&ctx->can_thread),
                               ddsm_ctx_metrics_view, ctx, &ctx->metrics)) != CKR_OK)
        goto out;
    /* The fences run on the LISTEN thread: without threads there is none to run them. */
    if (ctx->cfg->cache.rotation_fence && atomic_load(&ctx->can_thread) &&
        (rv = ddsm_fence_new(&ctx->fence)) != CKR_OK)
        goto out;
    unsigned pool = ctx->cfg->store.pool_size ? ctx->cfg->store.pool_size : 8;
    ctx->store_free = calloc(pool, sizeof(*ctx->store_free));
    if (ctx->store_free == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    ddsm_log(DDSM_LOG_INFO, "initialised: instance %s, token \"%s\"%s", ctx->instance,
             ctx->cfg->backend.token_label, ctx->custody ? ", root on a custody token" : "");
    atomic_store_explicit(&g_ctx, ctx, memory_order_release);
    ctx = NULL;
out:
    if (ctx != NULL) {
        ctx_free(ctx);
        ddsm_mutex_use_app(NULL);
    }
    pthread_mutex_unlock(&g_init_lock);
    return rv;
}

CK_RV ddsm_ctx_finalize(void)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&g_init_lock);
    ddsm_ctx *ctx = ddsm_ctx_get();
    if (ctx == NULL) {
        rv = CKR_CRYPTOKI_NOT_INITIALIZED;
        goto out;
    }
    atomic_store(&g_ctx, NULL);
    ctx_free(ctx);
    ddsm_mutex_use_app(NULL);
    /* The host may dlclose us next: release every thread's keyed HMAC context and the
     * secp256k1 context, so nothing of ours outlives the code. */
    ddsm_mac_shutdown();
    ddsm_ec_shutdown();
out:
    pthread_mutex_unlock(&g_init_lock);
    return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* The LISTEN thread                                                                           */

#define LISTEN_WAIT_MS 100

static void store_opts(const ddsm_ctx *ctx, ddsm_store_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_s = ctx->cfg->store.connect_timeout_s;
    o->statement_timeout_ms = ctx->cfg->store.statement_timeout_ms;
    o->application_name = "ddsm-pkcs11";
    o->role = DDSM_ROLE_MODULE;
}

/* Any role that can connect may NOTIFY on our channels, so a payload is never believed: a
 * notification only names an asset this process holds something of, and the LISTEN thread then
 * reads that asset (registry row and zone) from the store and acts on what the store says. The
 * names heard in one round are collected first (one read per asset, however often it was named),
 * then read on a connection of the LISTEN thread's own, one at a time; the reads are budgeted
 * (a token bucket), so a flood costs at most HINT_READ_BURST + HINT_READS_PER_S per second. A
 * name the budget cannot answer at once distrusts the asset's record instead: every use of its
 * keys then asks the store itself, so a real rotation hidden in a flood still takes effect before
 * the next use. Everything here runs on the LISTEN thread only. */
#define HINT_READ_BURST 64
#define HINT_READS_PER_S 64
#define HINT_ROUND_MAX 256

struct ddsm_hints {
    ddsm_asset_rec *named[HINT_ROUND_MAX]; /* this round's, each once */
    ddsm_uuid ids[HINT_ROUND_MAX];
    unsigned n;
    double tokens;
    int64_t refill_ms;
    ddsm_store *st; /* opened at the first read */
    bool failing;   /* the last read failed: log the next failure at debug level only */
};

static void hint(ddsm_ctx *ctx, const ddsm_uuid *asset)
{
    struct ddsm_hints *h = ctx->hints; /* set while the LISTEN thread (our caller) runs */
    atomic_fetch_add(&ctx->hints_heard, 1);
    ddsm_asset_rec *r = ddsm_vkeys_asset_known(ctx->vkeys, asset);
    if (r == NULL) {
        /* No record: no key, handle or zone state of it here, nothing a read could correct. */
        atomic_fetch_add(&ctx->hints_ignored, 1);
        return;
    }
    for (unsigned i = 0; i < h->n; i++)
        if (h->named[i] == r)
            return;
    if (h->n < HINT_ROUND_MAX) {
        h->named[h->n] = r;
        h->ids[h->n] = *asset;
        h->n++;
        return;
    }
    ddsm_asset_rec_distrust(r);
    atomic_fetch_add(&ctx->hints_deferred, 1);
}

static void on_notify(const ddsm_uuid *asset, uint64_t counter, ddsm_state state, void *arg)
{
    (void)counter;
    (void)state; /* claims, not facts: the store is asked */
    hint(arg, asset);
}

static void on_zone_notify(const ddsm_uuid *asset, bool enabled, const char *zone, void *arg)
{
    (void)enabled;
    (void)zone;
    hint(arg, asset);
}

static bool hint_budget(struct ddsm_hints *h)
{
    int64_t now = ddsm_now_ms();
    h->tokens += (double)(now - h->refill_ms) * HINT_READS_PER_S / 1000.0;
    h->refill_ms = now;
    if (h->tokens > HINT_READ_BURST)
        h->tokens = HINT_READ_BURST;
    if (h->tokens < 1.0)
        return false;
    h->tokens -= 1.0;
    return true;
}

/* Read one named asset from the store and fold in what the store says. */
static ddsm_err hint_read(ddsm_ctx *ctx, struct ddsm_hints *h, ddsm_asset_rec *r,
                          const ddsm_uuid *id)
{
    ddsm_err err = DDSM_OK;
    ddsm_asset a;
    uint64_t gen = ddsm_asset_rec_hint_gen(r);
    if (h->st == NULL) {
        ddsm_store_opts opts;
        store_opts(ctx, &opts);
        err = ddsm_store_open(ctx->cfg->store.conninfo, &opts, &h->st);
        if (err != DDSM_OK)
            return err;
    }
    atomic_fetch_add(&ctx->hints_reread, 1);
    err = ddsm_store_asset_get(h->st, id, &a);
    if (err == DDSM_OK)
        err = ddsm_mpolicy_zone_revalidate(ctx, h->st, id);
    if (err == DDSM_OK) {
        ddsm_asset_rec_update(ctx->vkeys, r, &a);
        ddsm_asset_rec_trust_from(r, gen);
    } else if (err == DDSM_E_NOT_FOUND) {
        ddsm_vkeys_kill_asset(ctx->vkeys, id); /* the store no longer has it */
    }
    ddsm_batcher *b = atomic_load(&ctx->batcher);
    if (b != NULL)
        ddsm_batcher_invalidate(b, id);
    return err;
}

/* Answer this round's names (inside the LISTEN thread's busy window, before a fence ends). */
static void hints_answer(ddsm_ctx *ctx)
{
    struct ddsm_hints *h = ctx->hints;
    for (unsigned i = 0; i < h->n; i++) {
        ddsm_asset_rec *r = h->named[i];
        if (!hint_budget(h)) {
            ddsm_asset_rec_distrust(r);
            atomic_fetch_add(&ctx->hints_deferred, 1);
            continue;
        }
        ddsm_err err = hint_read(ctx, h, r, &h->ids[i]);
        if (err != DDSM_OK && err != DDSM_E_NOT_FOUND) {
            /* Uses ask the store themselves (and fail closed while it is down). */
            ddsm_asset_rec_distrust(r);
            ddsm_log(h->failing ? DDSM_LOG_DEBUG : DDSM_LOG_WARN,
                     "re-reading an asset a notification named failed: %s (its keys re-validate "
                     "at their next use)",
                     ddsm_err_str(err));
        }
        h->failing = err != DDSM_OK && err != DDSM_E_NOT_FOUND;
    }
    h->n = 0;
}

/* One round of the LISTEN loop. The thread waits on the socket itself and flags the time it
 * spends consuming and delivering what arrived, so that other threads can tell whether the server
 * has sent something not yet processed (ddsm_ctx_listener_catch_up). */
static ddsm_err listen_round(ddsm_ctx *ctx, ddsm_listener *l)
{
    int fd = ddsm_listener_socket(l);
    atomic_store(&ctx->listen_fd, fd);
    if (fd < 0) {
        /* Not listening: fences cannot run. This call (re)connects and LISTENs, and waits. */
        if (ctx->fence != NULL)
            ddsm_fence_end(ctx->fence, ddsm_fence_begin(ctx->fence), false);
        ddsm_err e = ddsm_listener_wait(l, LISTEN_WAIT_MS, on_notify, ctx);
        hints_answer(ctx);
        atomic_store(&ctx->listen_fd, e == DDSM_OK ? ddsm_listener_socket(l) : -1);
        return e;
    }
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN, .revents = 0},
                          {.fd = ctx->fence != NULL ? ddsm_fence_wakefd(ctx->fence) : -1,
                           .events = POLLIN,
                           .revents = 0}};
    int n = poll(p, 2, LISTEN_WAIT_MS);
    if (n == 0 || (n < 0 && errno == EINTR))
        return DDSM_OK;
    ddsm_err e = DDSM_OK;
    /* Set before the bytes are consumed (inside the wait or the fence), cleared once they are
     * delivered. */
    atomic_store(&ctx->listen_busy, true);
    if (p[1].revents != 0) {
        uint64_t target = ddsm_fence_begin(ctx->fence);
        if (target != 0) {
            e = ddsm_listener_fence(l, on_notify, ctx);
            hints_answer(ctx);
            ddsm_fence_end(ctx->fence, target, e == DDSM_OK);
        }
    }
    if (e == DDSM_OK && (n < 0 || p[0].revents != 0)) {
        e = ddsm_listener_wait(l, 1, on_notify, ctx);
        hints_answer(ctx);
    }
    if (e != DDSM_OK)
        atomic_store(&ctx->listen_fd, -1);
    atomic_store(&ctx->listen_busy, false);
    return e;
}

static void *listener_main(void *arg)
{
    ddsm_ctx *ctx = arg;
    ddsm_listener *l = NULL;
    ddsm_store_opts opts;
    const char *ci = ctx->cfg->store.listen_conninfo != NULL ? ctx->cfg->store.listen_conninfo
                                                             : ctx->cfg->store.conninfo;
    long backoff_ms = 0;
    struct ddsm_hints *hints = calloc(1, sizeof(*hints));
    store_opts(ctx, &opts);
    if (hints == NULL) {
        /* Without a way to answer notifications the link must not count as up. */
        ddsm_log(DDSM_LOG_WARN, "out of memory for the LISTEN thread: re-validating instead");
        return NULL;
    }
    hints->tokens = HINT_READ_BURST;
    hints->refill_ms = ddsm_now_ms();
    ctx->hints = hints;

    while (!atomic_load(&ctx->listener_stop)) {
        ddsm_err e = DDSM_E_STORE_DOWN;
        if (l == NULL) {
            e = ddsm_listener_open(ci, &opts, &l);
            ctx->link = l;
            ddsm_listener_on_zone(l, on_zone_notify, ctx);
        }
        if (l != NULL)
            e = listen_round(ctx, l);
        if (e == DDSM_OK) {
            if (!atomic_load(&ctx->link_up)) {
                /* Records validated before now may have missed a NOTIFY. */
                atomic_store(&ctx->link_up_since_ms, ddsm_now_ms());
                atomic_store(&ctx->link_up, true);
                ddsm_log(DDSM_LOG_INFO, "LISTEN link up");
            }
            backoff_ms = 0;
        } else {
            if (atomic_exchange(&ctx->link_up, false))
                ddsm_log(DDSM_LOG_WARN, "LISTEN link down (%s): re-validating after %u ms",
                         ddsm_err_str(e), ctx->cfg->cache.staleness_ms);
            backoff_ms = backoff_ms == 0 ? 50 : (backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2);
            for (long waited = 0; waited < backoff_ms && !atomic_load(&ctx->listener_stop);
                 waited += 25)
                ddsm_sleep_us(25000);
        }
        ddsm_vkeys_sweep(ctx->vkeys);
    }
    atomic_store(&ctx->link_up, false);
    atomic_store(&ctx->listen_fd, -1);
    ctx->link = NULL;
    ddsm_listener_close(l);
    ctx->hints = NULL;
    ddsm_store_close(hints->st);
    free(hints);
    ddsm_mac_thread_cleanup();
    return NULL;
}

bool ddsm_ctx_listener_covers(ddsm_ctx *ctx, int64_t validated_ms)
{
    return atomic_load(&ctx->link_up) && validated_ms >= atomic_load(&ctx->link_up_since_ms);
}

#define CATCH_UP_MAX_MS 20
/* A look at the socket that found nothing pending answers for every operation that starts within
 * this long after it: one poll() per operation cost a third of a cached C_Sign. The LISTEN thread
 * waits on the same socket and wakes as soon as bytes arrive, usually well within this. */
#define CATCH_UP_REUSE_NS 50000

bool ddsm_ctx_rotation_fence(ddsm_ctx *ctx)
{
    if (ctx->fence == NULL || !atomic_load(&ctx->link_up) || atomic_load(&ctx->listen_fd) < 0)
        return false;
    /* The fence's own statement is bounded by the store's timeouts; so is this wait. */
    return ddsm_fence_wait(ctx->fence, ctx->cfg->store.statement_timeout_ms + 3000);
}

bool ddsm_ctx_listener_catch_up(ddsm_ctx *ctx)
{
    int fd = atomic_load(&ctx->listen_fd);
    int64_t deadline = 0;
    if (fd < 0)
        return true; /* no link: nothing to catch up with (records are re-validated by age) */
    for (;;) {
        /* The socket first, then the flag: bytes consumed before our poll were consumed with the
         * flag already set, and it stays set until they are delivered. */
        int64_t looked_ns = ddsm_metrics_now_ns();
        bool pending;
        if (looked_ns - atomic_load_explicit(&ctx->listen_clear_ns, memory_order_acquire) <
            CATCH_UP_REUSE_NS) {
            pending = false;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
            pending = poll(&p, 1, 0) > 0;
            if (!pending)
                atomic_store_explicit(&ctx->listen_clear_ns, looked_ns, memory_order_release);
        }
        pending = pending || atomic_load(&ctx->listen_busy);
        if (!pending)
            return true;
        int64_t now = ddsm_now_ms();
        if (deadline == 0)
            deadline = now + CATCH_UP_MAX_MS;
        else if (now > deadline || atomic_load(&ctx->listen_fd) != fd)
            return false;
        ddsm_sleep_us(100);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The store pool                                                                              */

#define POOL_WAIT_MS 10000

ddsm_err ddsm_ctx_store_acquire(ddsm_ctx *ctx, ddsm_store **out)
{
    unsigned pool = ctx->cfg->store.pool_size ? ctx->cfg->store.pool_size : 8;
    int64_t deadline = ddsm_now_ms() + POOL_WAIT_MS;
    long nap = 50;

    for (;;) {
        ddsm_mutex_lock(ctx->lock);
        if (!ctx->listener_started && atomic_load(&ctx->can_thread)) {
            if (pthread_create(&ctx->listener, NULL, listener_main, ctx) == 0)
                ctx->listener_started = true;
            else
                ddsm_log(DDSM_LOG_WARN, "cannot start the LISTEN thread: re-validating instead");
            atomic_store(&ctx->can_thread, ctx->listener_started);
        }
        if (ctx->n_store_free > 0) {
            *out = ctx->store_free[--ctx->n_store_free];
            ddsm_mutex_unlock(ctx->lock);
            return DDSM_OK;
        }
        if (ctx->n_store < pool) {
            ctx->n_store++;
            ddsm_mutex_unlock(ctx->lock);
            ddsm_store_opts opts;
            store_opts(ctx, &opts);
            ddsm_err e = ddsm_store_open(ctx->cfg->store.conninfo, &opts, out);
            if (e != DDSM_OK) {
                ddsm_mutex_lock(ctx->lock);
                ctx->n_store--;
                ddsm_mutex_unlock(ctx->lock);
            }
            return e;
        }
        ddsm_mutex_unlock(ctx->lock);
        if (ddsm_now_ms() > deadline)
            return DDSM_E_TIMEOUT;
        ddsm_sleep_us(nap);
        nap = nap < 2000 ? nap * 2 : nap;
    }
}

void ddsm_ctx_store_release(ddsm_ctx *ctx, ddsm_store *st)
{
    if (st == NULL)
        return;
    ddsm_mutex_lock(ctx->lock);
    ctx->store_free[ctx->n_store_free++] = st;
    ddsm_mutex_unlock(ctx->lock);
}

/* ------------------------------------------------------------------------------------------ */
/* The module's own backend sessions on the root token                                         */

/* This writer's audit key (docs/audit.md "The audit keys"): the reserved derivation of
 * docs/design.md for its instance id, computed by the HSM through the root. */
static CK_RV audit_key_secret(ddsm_ctx *ctx, ddsm_rootsess *rs, ddsm_audit_key **out,
                              CK_ULONG *detail)
{
    ddsm_hsmcall_prf_ctx pctx;
    ddsm_prf prf;
    ddsm_roots_prf_init(&ctx->roots, rs, &pctx, &prf);
    ddsm_err e = ddsm_audit_writer_key_derive(&prf, ctx->instance, out);
    if (e == DDSM_E_HSM && pctx.status == DDSM_HSMCALL_ANSWERED &&
        (pctx.last_rv == CKR_KEY_HANDLE_INVALID || pctx.last_rv == CKR_OBJECT_HANDLE_INVALID) &&
        ddsm_roots_refresh(&ctx->roots, rs, detail) == CKR_OK) {
        ddsm_roots_prf_init(&ctx->roots, rs, &pctx, &prf);
        e = ddsm_audit_writer_key_derive(&prf, ctx->instance, out);
    }
    if (e == DDSM_OK)
        return CKR_OK;
    if (pctx.status != DDSM_HSMCALL_ANSWERED) {
        ddsm_log(DDSM_LOG_ERROR, "cannot derive the audit key: the HSM did not answer in %u ms",
                 ctx->cfg->backend.call_timeout_ms);
        if (pctx.status == DDSM_HSMCALL_QUARANTINED)
            ddsm_roots_disown(&ctx->roots, rs);
        *detail = DDSM_DEVERR_TIMEOUT;
        return CKR_DEVICE_ERROR;
    }
    ddsm_log(DDSM_LOG_ERROR, "cannot derive the audit key: %s / %s", ddsm_err_str(e),
             ddsm_rv_name(pctx.last_rv));
    return e == DDSM_E_HSM ? ddsm_rv_from_backend(pctx.last_rv, detail)
                           : ddsm_rv_from_err(e, DDSM_RVCTX_GENERAL, detail);
}

CK_RV ddsm_ctx_batcher(ddsm_ctx *ctx, ddsm_rootsess *rs, ddsm_batcher **out, CK_ULONG *detail)
{
    ddsm_audit_key *key = NULL;
    ddsm_batcher *b = atomic_load(&ctx->batcher);
    *detail = DDSM_DEVERR_NONE;
    if (b != NULL) {
        *out = b;
        return CKR_OK;
    }
    /* Built with no lock held (an HSM round trip); a concurrent builder's result may win. */
    CK_RV rv = audit_key_secret(ctx, rs, &key, detail);
    if (rv != CKR_OK)
        return rv;
    /* Sized for grouping, apart from the read pool ([audit] connections, batch.h). */
    unsigned conns = ctx->cfg->audit.connections ? ctx->cfg->audit.connections : 2;
    if (conns > DDSM_BATCH_CONNECTIONS_LIMIT)
        conns = DDSM_BATCH_CONNECTIONS_LIMIT;
    ddsm_store_opts opts;
    store_opts(ctx, &opts);
    ddsm_err e = ddsm_batcher_new(ctx->cfg->store.conninfo, &opts,
                                  ctx->cfg->audit.batch_max ? ctx->cfg->audit.batch_max : 64,
                                  ctx->cfg->audit.batch_wait_us, conns, key, ctx->instance, &b);
    if (e != DDSM_OK) {
        ddsm_log(DDSM_LOG_ERROR, "cannot set up audit batching: %s", ddsm_batcher_errmsg());
        ddsm_audit_key_free(key);
        return ddsm_rv_from_err(e, DDSM_RVCTX_GENERAL, detail);
    }
    ddsm_mutex_lock(ctx->lock);
    ddsm_batcher *have = atomic_load(&ctx->batcher);
    if (have == NULL) {
        atomic_store(&ctx->batcher, b);
        ctx->audit_key = key;
        have = b;
        b = NULL;
        key = NULL;
    }
    ddsm_mutex_unlock(ctx->lock);
    ddsm_batcher_free(b);
    ddsm_audit_key_free(key);
    *out = have;
    return CKR_OK;
}

void ddsm_ctx_drain_sessions(ddsm_ctx *ctx)
{
    /* A backend may renumber private objects at the next login (SoftHSM does): forget the
     * handles learnt under this one. */
    atomic_store(&ctx->app_root, 0);
    ddsm_rootpool_drain(ctx->roots.primary);
}
