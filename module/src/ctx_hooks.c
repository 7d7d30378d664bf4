/* SPDX-License-Identifier: Apache-2.0 */
/* The narrow interfaces the context hands to its parts (ctx.h): what they would otherwise read
 * from the context itself. Each runs on the part's threads too, for as long as the part lives;
 * ctx_free frees the parts before what these read. */
#include "ctx.h"

#include <string.h>

#include "metrics.h"
#include "policy.h"
#include "vkey.h"

void ddsm_ctx_metrics_view(void *arg, struct ddsm_metrics_view *out)
{
    ddsm_ctx *ctx = arg;
    memset(out, 0, sizeof(*out));
    ddsm_batcher_stats(atomic_load(&ctx->batcher), &out->batch);
    ddsm_ratelimit_stats_get(ddsm_mpolicy_ratelimit(ctx->policy), &out->rate);
    out->listen_up = atomic_load(&ctx->link_up);
    out->hints_heard = atomic_load(&ctx->hints_heard);
    out->hints_ignored = atomic_load(&ctx->hints_ignored);
    out->hints_reread = atomic_load(&ctx->hints_reread);
    out->hints_deferred = atomic_load(&ctx->hints_deferred);
    out->keys_cached = ddsm_vkeys_cached(ctx->vkeys);
}

static ddsm_err pool_acquire(void *ctx, ddsm_store **out)
{
    return ddsm_ctx_store_acquire(ctx, out);
}

static void pool_release(void *ctx, ddsm_store *st)
{
    ddsm_ctx_store_release(ctx, st);
}

static bool link_catch_up(void *ctx)
{
    return ddsm_ctx_listener_catch_up(ctx);
}

static bool link_covers(void *ctx, int64_t validated_ms)
{
    return ddsm_ctx_listener_covers(ctx, validated_ms);
}

void ddsm_ctx_vkeys_link(ddsm_ctx *ctx, ddsm_vkeys_link *out)
{
    out->catch_up = link_catch_up;
    out->covers = link_covers;
    out->owner = ctx;
}

void ddsm_ctx_store_pool(ddsm_ctx *ctx, ddsm_storepool *out)
{
    out->acquire = pool_acquire;
    out->release = pool_release;
    out->owner = ctx;
}
