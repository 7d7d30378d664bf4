/* SPDX-License-Identifier: Apache-2.0 */
#include "ctx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
/* The store pool                                                                              */

void ddsm_ctx_store_opts(const ddsm_ctx *ctx, ddsm_store_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_s = ctx->cfg->store.connect_timeout_s;
    o->statement_timeout_ms = ctx->cfg->store.statement_timeout_ms;
    o->application_name = "ddsm-pkcs11";
    o->role = DDSM_ROLE_MODULE;
}

#define POOL_WAIT_MS 10000

ddsm_err ddsm_ctx_store_acquire(ddsm_ctx *ctx, ddsm_store **out)
{
    unsigned pool = ctx->cfg->store.pool_size ? ctx->cfg->store.pool_size : 8;
    int64_t deadline = ddsm_now_ms() + POOL_WAIT_MS;
    long nap = 50;

    for (;;) {
        ddsm_mutex_lock(ctx->lock);
        if (!ctx->listener_started && atomic_load(&ctx->can_thread)) {
            if (pthread_create(&ctx->listener, NULL, ddsm_ctx_listener_main, ctx) == 0)
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
            ddsm_ctx_store_opts(ctx, &opts);
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
/* The audit batcher and its key, and the root sessions' drain                                  */

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
    ddsm_ctx_store_opts(ctx, &opts);
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

/* ------------------------------------------------------------------------------------------ */
/* Zones                                                                                       */

void ddsm_ctx_zone_note(ddsm_ctx *ctx, const ddsm_uuid *asset, bool enabled, const char *zone)
{
    ddsm_mpolicy_zone_set(ctx->policy, asset, enabled, zone);
    if (!enabled) {
        /* Keys already derived must not be used any more: drop them at once. */
        ddsm_vkeys_kill_asset(ctx->vkeys, asset);
    }
    /* The batcher's expectation may hold the old zone: one more round trip at worst. */
    ddsm_batcher *b = atomic_load(&ctx->batcher);
    if (b != NULL)
        ddsm_batcher_invalidate(b, asset);
}

ddsm_err ddsm_ctx_zone_revalidate(ddsm_ctx *ctx, ddsm_store *st, const ddsm_uuid *asset)
{
    char zone[DDSM_ZONE_NAME_MAX + 1];
    bool enabled = true;
    ddsm_err e = ddsm_zone_of_asset(st, asset, zone, &enabled);
    if (e == DDSM_OK)
        ddsm_ctx_zone_note(ctx, asset, enabled, zone);
    return e;
}
