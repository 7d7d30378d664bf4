/* SPDX-License-Identifier: Apache-2.0 */
/* The context's LISTEN thread (ctx.h): one connection LISTENing on the store's notification
 * channels, whose notifications are hints answered with store reads; the link's state that key
 * checks consult (covered, caught up); and the rotation fence run on it.
 *
 * Invariants:
 * - Only the LISTEN thread touches the listener, ctx->link and ctx->hints; other threads read the
 *   link's state through atomics (link_up, link_up_since_ms, listen_fd, listen_busy,
 *   listen_clear_ns) and never wait on the thread for longer than a catch-up's bound.
 * - A notification's payload is never believed: it only names an asset, which is then read from
 *   the store (or its record distrusted when the read budget is spent).
 * - link_up_since_ms is set when the link comes up: a record validated before it may have missed
 *   a NOTIFY and is not covered. */
#include "ctx.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/mac.h"
#include "fence.h"
#include "metrics.h"
#include "policy.h"
#include "vkey.h"

#define LISTEN_WAIT_MS 100

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
        ddsm_ctx_store_opts(ctx, &opts);
        err = ddsm_store_open(ctx->cfg->store.conninfo, &opts, &h->st);
        if (err != DDSM_OK)
            return err;
    }
    atomic_fetch_add(&ctx->hints_reread, 1);
    err = ddsm_store_asset_get(h->st, id, &a);
    if (err == DDSM_OK)
        err = ddsm_ctx_zone_revalidate(ctx, h->st, id);
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

void *ddsm_ctx_listener_main(void *arg)
{
    ddsm_ctx *ctx = arg;
    ddsm_listener *l = NULL;
    ddsm_store_opts opts;
    const char *ci = ctx->cfg->store.listen_conninfo != NULL ? ctx->cfg->store.listen_conninfo
                                                             : ctx->cfg->store.conninfo;
    long backoff_ms = 0;
    struct ddsm_hints *hints = calloc(1, sizeof(*hints));
    ddsm_ctx_store_opts(ctx, &opts);
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
