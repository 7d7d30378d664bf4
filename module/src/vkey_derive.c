/* SPDX-License-Identifier: Apache-2.0 */
/* Virtual-key objects and their keys: interning (asset, path) as a handle, checking a handle
 * against its asset record before every use (revalidating with the store when the LISTEN link
 * does not cover it), and deriving a key through the HSM with its audit row.
 *
 * Invariants:
 *  - Locks: this file takes only a session's own lock, briefly; the handle table, the asset
 *    records (vkey_asset.c) and the cache (vkey_cache.c) lock inside their own functions.
 *  - Order of a derivation: the HSM session and root first; then the HSM's HMAC for the counter
 *    the asset's record holds is started on the HSM worker pool (a guess: the record may lag a
 *    rotation) and the store round trip that commits the counter and the DERIVE row runs
 *    meanwhile; then both are waited for. The statement's counter is the authority: the guessed
 *    HMAC's answer is used only when it was made for that counter, else it is wiped and the HMAC
 *    made again for the statement's counter. A key is cached and handed on only after all of it
 *    succeeded and the row is durable (the batcher's commit returned), so a failure leaves
 *    nothing cached, and a store failure wipes the guessed answer unused. Without a counter in
 *    the record (the store never told this process) the HMAC follows the round trip.
 *  - The derived bytes live in secure memory from the HSM's answer on, and are freed (wiped) on
 *    every return unless handed to the cache.
 *  - A store answer that moves an asset's record kills the cached keys it makes unusable before
 *    the new key is cached. */
#include "vkey_int.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "clock.h"
#include "ctx.h"
#include "ddsm/log.h"
#include "ddsm/mac.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "ec.h"
#include "flight.h"
#include "ladder.h"
#include "policy.h"
#include "roots.h"
#include "rv.h"

static bool reclaimable(const ddsm_hentry *e, void *arg)
{
    uint64_t counter;
    ddsm_state st;
    cs_unpack(atomic_load(&((ddsm_asset_rec *)e->aux)->cs), &counter, &st);
    if (st == DDSM_STATE_RETIRED)
        return true;
    if (e->counter + 1 < counter)
        return true;
    return e->counter + 1 == counter && st != DDSM_STATE_ROTATING;
}

CK_RV ddsm_vkey_intern(ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                       uint64_t counter, uint32_t variant, CK_OBJECT_HANDLE *out)
{
    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    e.asset = *asset;
    snprintf(e.path, sizeof(e.path), "%s", canon_path);
    e.counter = counter;
    e.variant = variant;
    if ((variant & DDSM_VK_SESSION) != 0)
        e.owner = c->sess->h;
    e.aux = ddsm_vkeys_asset(c->ctx->vkeys, asset);
    if (e.aux == NULL)
        return CKR_HOST_MEMORY;
    return ddsm_htab_intern(c->ctx->handles, &e, reclaimable, NULL, out);
}

CK_RV ddsm_vkey_lookup(ddsm_call *c, CK_OBJECT_HANDLE h, bool key_ctx, ddsm_hentry *out)
{
    CK_RV rv = ddsm_htab_get(c->ctx->handles, h, out);
    if (rv == CKR_OBJECT_HANDLE_INVALID && key_ctx)
        rv = CKR_KEY_HANDLE_INVALID;
    return rv;
}

static CK_RV dead_rv(ddsm_use use)
{
    return use == DDSM_USE_OBJECT ? CKR_OBJECT_HANDLE_INVALID : CKR_KEY_HANDLE_INVALID;
}

static ddsm_rvctx use_rvctx(ddsm_use use)
{
    return use == DDSM_USE_OBJECT ? DDSM_RVCTX_OBJECT : DDSM_RVCTX_KEY;
}

/* Ask the store for the asset's current state (bounded staleness when the LISTEN link is down). */
static CK_RV revalidate(ddsm_call *c, const ddsm_hentry *e, ddsm_use use)
{
    ddsm_store *st = NULL;
    ddsm_asset a;
    /* Taken before the read: only a read that began after a hint answers it. */
    uint64_t gen = ddsm_asset_rec_hint_gen(e->aux);
    ddsm_err err = ddsm_ctx_store_acquire(c->ctx, &st);
    if (err == DDSM_OK) {
        err = ddsm_store_asset_get(st, &e->asset, &a);
        if (err == DDSM_OK) /* a NOTIFY of the zone may have been missed too */
            err = ddsm_ctx_zone_revalidate(c->ctx, st, &e->asset);
        ddsm_ctx_store_release(c->ctx, st);
    }
    if (err != DDSM_OK) {
        if (err == DDSM_E_NOT_FOUND)
            return dead_rv(use);
        ddsm_log(DDSM_LOG_WARN, "re-validating an asset failed: %s (failing closed)",
                 ddsm_err_str(err));
        return ddsm_call_err(c, err, use_rvctx(use));
    }
    ddsm_asset_rec_update(c->ctx->vkeys, e->aux, &a);
    ddsm_asset_rec_trust_from(e->aux, gen);
    return CKR_OK;
}

CK_RV ddsm_vkey_asset_key_type(ddsm_call *c, const ddsm_uuid *asset, const char **out)
{
    /* A record is made only for an asset the store knows: any caller may name random UUIDs, and
     * each would otherwise stay in memory for the life of the process. */
    ddsm_asset_rec *r = ddsm_vkeys_asset_known(c->ctx->vkeys, asset);
    const char *t = r != NULL ? ddsm_vk_rec_type(r) : NULL;
    if (t == NULL) {
        ddsm_store *st = NULL;
        ddsm_asset a;
        ddsm_err err = ddsm_ctx_store_acquire(c->ctx, &st);
        if (err == DDSM_OK) {
            err = ddsm_store_asset_get(st, asset, &a);
            ddsm_ctx_store_release(c->ctx, st);
        }
        if (err == DDSM_E_NOT_FOUND) {
            *out = NULL; /* the derivation's own round trip records the refusal */
            return CKR_OK;
        }
        if (err != DDSM_OK)
            return ddsm_call_err(c, err, DDSM_RVCTX_DERIVE);
        if (r == NULL && (r = ddsm_vkeys_asset(c->ctx->vkeys, asset)) == NULL)
            return CKR_HOST_MEMORY;
        ddsm_asset_rec_update(c->ctx->vkeys, r, &a);
        t = ddsm_vk_rec_type(r);
    }
    *out = t;
    return CKR_OK;
}

CK_RV ddsm_vkey_check(ddsm_call *c, const ddsm_hentry *e, ddsm_use use)
{
    ddsm_asset_rec *r = e->aux;
    uint64_t counter;
    ddsm_state st;
    int64_t grace_us;

    /* A NOTIFY that already reached this process counts before the record is trusted; with
     * [cache] rotation_fence, so does every rotation that returned before this call (fence.h).
     * When that cannot be confirmed the store is asked. */
    bool caught_up = c->ctx->fence != NULL && (use == DDSM_USE_SIGN || use == DDSM_USE_ENCRYPT)
                         ? ddsm_ctx_rotation_fence(c->ctx)
                         : ddsm_ctx_listener_catch_up(c->ctx);
    for (int attempt = 0;; attempt++) {
        cs_unpack(atomic_load(&r->cs), &counter, &st);
        grace_us = atomic_load(&r->grace_end_us);
        int64_t validated = atomic_load(&r->validated_ms);
        bool due = !ddsm_ctx_listener_covers(c->ctx, validated) &&
                   ddsm_now_ms() - validated > (int64_t)c->ctx->vkeys->staleness_ms;
        if (!caught_up || ddsm_vk_rec_distrusted(r))
            due = true;
        /* The window's end is not in a NOTIFY: ask when it matters. */
        if (st == DDSM_STATE_ROTATING && grace_us == 0 && e->counter + 1 == counter)
            due = true;
        if (!due || attempt > 0)
            break;
        CK_RV rv = revalidate(c, e, use);
        if (rv != CKR_OK)
            return rv;
    }
    if (st != DDSM_STATE_ACTIVE && st != DDSM_STATE_ROTATING)
        return dead_rv(use);
    if (e->counter == counter)
        return ddsm_mpolicy_key_use(c, e, use); /* a disabled zone stops its keys */
    if (st == DDSM_STATE_ROTATING && e->counter + 1 == counter && grace_us > 0 &&
        ddsm_now_us() < grace_us) {
        /* The grace window: the previous key may still verify, never sign. */
        if (use == DDSM_USE_SIGN || use == DDSM_USE_ENCRYPT)
            return CKR_KEY_FUNCTION_NOT_PERMITTED;
        return ddsm_mpolicy_key_use(c, e, use);
    }
    return dead_rv(use);
}

/* The counter to start the HMAC with ahead of the audit row: the one the asset's record holds,
 * when the store ever told this process and the asset is derivable. */
static bool counter_guess(ddsm_ctx *ctx, const ddsm_uuid *asset, uint64_t *out)
{
    ddsm_asset_rec *r = ddsm_vkeys_asset_known(ctx->vkeys, asset);
    if (r == NULL || atomic_load(&r->validated_ms) == 0)
        return false;
    ddsm_state st;
    cs_unpack(atomic_load(&r->cs), out, &st);
    return st == DDSM_STATE_ACTIVE || st == DDSM_STATE_ROTATING;
}

/* Derive the key of (asset, path) at the asset's current counter: the store round trip (state
 * check, counter, DERIVE audit row) and HMAC-SHA256(root, msg) in the HSM through one of the
 * module's own sessions, overlapped (see the invariants above). The HSM session and root handle
 * are secured before the store is touched, so a broken HSM writes no audit row. Returns the counter and the key, cached.
 * For an EC variant (ec.h) the HSM computes the asset seed (depth 0) instead, and the key is the
 * HD key of the path under it. The DERIVE row's detail names the asset's key type when known. */
static CK_RV derive_current_secret(ddsm_call *c, const ddsm_uuid *asset, const ddsm_path *path,
                                   uint32_t variant, ddsm_rvctx rvctx, uint64_t *counter_out,
                                   ddsm_kref **out)
{
    ddsm_ctx *ctx = c->ctx;
    CK_RV rv;
    ddsm_rootsess rs;
    CK_ULONG detail = 0;
    uint64_t counter = 0;
    ddsm_state state = DDSM_STATE_INITIALIZED;
    uint8_t *key = NULL;
    ddsm_kref *k = NULL;
    bool have_rs = false, broken = false;
    ddsm_hsmcall_ahead ahead = {0};
    char canon[DDSM_PATH_TEXT_MAX];
    char type_detail[48];
    ddsm_curve curve = DDSM_CURVE_SECP256K1;
    const bool ec = ddsm_ec_variant_curve(variant, &curve);
    /* The asset seed (docs/design.md "Reserved derivations"). */
    const ddsm_path seed_path = {.depth = 0};
    const char *key_type = ddsm_vk_rec_type(ddsm_vkeys_asset(ctx->vkeys, asset));

    ddsm_path_format(path, canon);
    ddsm_curve type_curve;
    if (ec ? key_type == NULL || strcmp(key_type, ddsm_curve_name(curve)) != 0
           : key_type != NULL &&
                 (ddsm_ec_key_type(key_type, &type_curve) ||
                  ((variant & DDSM_VK_AES) != 0) != (strcmp(key_type, "aes") == 0))) {
        /* An object is only ever made for an asset of its kind, whose type never changes: the
         * derived-key cache, keyed by (asset, path, counter), never mixes the kinds, and the
         * bytes of an hmac asset never become an AES key or the reverse. */
        ddsm_log(DDSM_LOG_ERROR, "%s key of an asset whose type is %s", ec ? "an EC" : "a secret",
                 key_type != NULL ? key_type : "unknown");
        return rvctx == DDSM_RVCTX_DERIVE ? CKR_MECHANISM_PARAM_INVALID : CKR_KEY_HANDLE_INVALID;
    }
    if (key_type != NULL)
        snprintf(type_detail, sizeof(type_detail), "key type %s", key_type);
    /* The policy gate's rate limits (policy.h): no round trip unless the bucket is empty. */
    char requester[DDSM_REQUESTER_MAX + 1];
    int64_t t0 = ddsm_metrics_now_ns(), t_store = -1, t_hsm = -1;
    ddsm_mpolicy_requester(ctx->policy, requester);
    rv = ddsm_mpolicy_rate(c, asset, canon, requester);
    if (rv != CKR_OK)
        goto out;
    rv = ddsm_roots_acquire(&ctx->roots, &rs, &detail);
    if (rv != CKR_OK) {
        c->detail = detail;
        goto out;
    }
    have_rs = true;

    ddsm_batcher *b = NULL;
    rv = ddsm_ctx_batcher(ctx, &rs, &b, &detail);
    if (rv != CKR_OK) {
        c->detail = detail;
        goto out;
    }
    if (ddsm_hsmcall_saturated(ddsm_roots_calls(&ctx->roots, &rs))) {
        /* Every HSM worker is stuck in a call that never came back: refuse before writing a row
         * whose key could not be computed. */
        c->detail = DDSM_DEVERR_TIMEOUT;
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    /* The store round trip: state check, counter, and the chained DERIVE row (or a DENY row for
     * an unknown or underivable asset), committed before anything else happens. */
    ddsm_derive_req req = {*asset, canon, requester, ctx->instance,
                           key_type != NULL ? type_detail : NULL};
    uint64_t guess;
    if (counter_guess(ctx, asset, &guess)) /* not started: the HMAC follows the round trip */
        ddsm_roots_derive_ahead(&ctx->roots, &rs, asset, ec ? &seed_path : path, guess, &ahead);
    int64_t ts0 = ddsm_metrics_now_ns();
    ddsm_err err = ddsm_batcher_derive(b, &req, &counter, &state);
    t_store = ddsm_metrics_now_ns() - ts0;
    if (err != DDSM_OK) /* no row, or a refusal's: the guessed answer is wiped unused */
        ddsm_roots_ahead_drop(&ctx->roots, &rs, &ahead, &broken);
    if (err == DDSM_E_POLICY) {
        /* The statement found the asset's zone disabled and wrote the DENY row. */
        rv = ddsm_mpolicy_zone_refused(c, asset, ddsm_batcher_errmsg());
        goto out;
    }
    if (err != DDSM_OK) {
        ddsm_metrics_denied(ctx->metrics,
                            err == DDSM_E_STATE ? DDSM_DENY_STATE : DDSM_DENY_UNKNOWN_ASSET,
                            err == DDSM_E_STATE ? state : DDSM_STATE__COUNT);
        if (err == DDSM_E_STATE) {
            ddsm_asset_rec *r = ddsm_vkeys_asset(ctx->vkeys, asset);
            if (r != NULL && (state == DDSM_STATE_RETIRED || state == DDSM_STATE_INITIALIZED))
                atomic_store(&r->validated_ms, 0); /* ask again before trusting the record */
        } else if (err != DDSM_E_NOT_FOUND) {
            ddsm_log(DDSM_LOG_WARN, "derivation refused by the store: %s", ddsm_batcher_errmsg());
        }
        rv = ddsm_call_err(c, err, rvctx);
        goto out;
    }
    ddsm_asset_rec *r = ddsm_vkeys_asset(ctx->vkeys, asset);
    if (r == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (ddsm_vk_rec_store(r, counter, state,
                          state == DDSM_STATE_ROTATING ? atomic_load(&r->grace_end_us) : 0))
        ddsm_vk_kill_stale(ctx->vkeys, asset, counter, state);

    key = ddsm_secure_alloc(DDSM_KEY_LEN);
    if (key == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    /* The HSM call, bounded by [backend] call_timeout_ms (hsmcall.h). A failure here leaves a
     * DERIVE row whose key nobody received (docs/audit.md allows it): fail closed. */
    int64_t th0 = ddsm_metrics_now_ns();
    rv = ddsm_roots_derive_secret(&ctx->roots, &rs, asset, ec ? &seed_path : path, counter, key,
                                  &detail, &broken, &ahead);
    /* Started ahead and used: the call's own time (most of it hidden behind the round trip). */
    t_hsm = ahead.used ? ahead.took_ns : ddsm_metrics_now_ns() - th0;
    if (rv != CKR_OK) {
        if (detail != DDSM_DEVERR_NONE)
            c->detail = detail;
        goto out;
    }
    if (ec) {
        /* BIP-32 / SLIP-10 along the path, in place: the seed is wiped, the key stays. */
        ddsm_err herr = ddsm_ec_key_from_seed_secret(curve, path, key);
        if (herr != DDSM_OK) {
            rv = ddsm_call_err(c, herr, rvctx);
            goto out;
        }
    }
    k = ddsm_vk_kref_new_secret(ctx->vkeys, asset, canon, counter, key, !ec);
    if (k == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    *out = ddsm_vk_cache_put(ctx->vkeys, k);
    *counter_out = counter;
    k = NULL;
    ddsm_metrics_derived(ctx->metrics, state, t_store, t_hsm, ddsm_metrics_now_ns() - t0);
    if (c->sess != NULL) {
        ddsm_mutex_lock(c->sess->lock);
        c->sess->dev_err = DDSM_DEVERR_NONE;
        ddsm_mutex_unlock(c->sess->lock);
    }
    rv = CKR_OK;
out:
    /* A call started ahead holds the session until it is collected. */
    ddsm_roots_ahead_drop(&ctx->roots, &rs, &ahead, &broken);
    if (have_rs)
        ddsm_roots_release(&ctx->roots, &rs, broken);
    ddsm_secure_free(key, DDSM_KEY_LEN);
    return rv;
}

void ddsm_vkey_record_denial(ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                             const char *reason)
{
    ddsm_rootsess rs;
    CK_ULONG detail = 0;
    ddsm_batcher *b = NULL;
    char requester[DDSM_REQUESTER_MAX + 1];
    ddsm_mpolicy_requester(c->ctx->policy, requester);
    ddsm_derive_req req = {*asset, canon_path, requester, c->ctx->instance, NULL};
    CK_RV rv = ddsm_roots_acquire(&c->ctx->roots, &rs, &detail);
    if (rv == CKR_OK) {
        rv = ddsm_ctx_batcher(c->ctx, &rs, &b, &detail);
        ddsm_roots_release(&c->ctx->roots, &rs, false);
    }
    ddsm_err e = rv == CKR_OK ? ddsm_batcher_deny(b, &req, reason) : DDSM_E_HSM;
    if (e != DDSM_OK)
        ddsm_log(DDSM_LOG_WARN, "could not record a DENY row (%s): %s", reason,
                 rv == CKR_OK ? ddsm_batcher_errmsg() : ddsm_rv_name(rv));
}

void ddsm_vkey_record_denial_bounded(ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                                     const char *reason)
{
    uint64_t left_out = 0;
    if (!ddsm_mpolicy_deny_row(c->ctx->policy, &left_out))
        return;
    if (left_out == 0) {
        ddsm_vkey_record_denial(c, asset, canon_path, reason);
        return;
    }
    char text[256];
    snprintf(text, sizeof(text), "%s (and %" PRIu64 " such refusals not recorded before this one)",
             reason, left_out);
    ddsm_vkey_record_denial(c, asset, canon_path, text);
}

CK_RV ddsm_vkey_materialise(ddsm_call *c, const ddsm_hentry *e, ddsm_use use, ddsm_kref **out)
{
    ddsm_kref *k = ddsm_vk_cache_get(c->ctx->vkeys, &e->asset, e->path, e->counter);
    ddsm_metrics_cache(c->ctx->metrics, k != NULL);
    if (k != NULL) {
        *out = k;
        return CKR_OK;
    }
    uint64_t counter;
    ddsm_state st;
    cs_unpack(atomic_load(&((ddsm_asset_rec *)e->aux)->cs), &counter, &st);
    if (counter != e->counter) {
        /* A grace-window key that is no longer cached: the store derives (and audits) only the
         * current counter, so the previous key cannot be re-derived honestly. */
        return dead_rv(use);
    }
    ddsm_path path;
    if (ddsm_path_parse(e->path, strlen(e->path), &path, NULL) != DDSM_OK)
        return dead_rv(use);

    /* Single flight (flight.h): callers needing this (asset, path, counter) at the same time
     * share one store round trip (one audit row) and one HSM call. */
    uint8_t fkey[16 + 8 + DDSM_PATH_TEXT_MAX];
    size_t plen = strlen(e->path);
    memcpy(fkey, e->asset.b, 16);
    memcpy(fkey + 16, &e->counter, 8);
    memcpy(fkey + 24, e->path, plen);
    ddsm_flight *fl = NULL;
    CK_RV rv = CKR_OK;
    CK_ULONG detail = 0;
    void *shared = NULL;
    if (!ddsm_flight_join(c->ctx->vkeys->flights, fkey, 24 + plen, &fl, &rv, &detail, &shared)) {
        if (rv == CKR_OK) {
            *out = shared;
            return CKR_OK;
        }
        if (detail != DDSM_DEVERR_NONE)
            c->detail = detail;
        /* The leader's use may differ from ours (sign vs attributes): a dead handle is named
         * for our own use. */
        return rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID ? dead_rv(use) : rv;
    }
    /* Leading. A flight that landed between the cache miss above and the join left its key in
     * the cache. */
    k = ddsm_vk_cache_get(c->ctx->vkeys, &e->asset, e->path, e->counter);
    if (k == NULL) {
        rv = derive_current_secret(c, &e->asset, &path, e->variant, use_rvctx(use), &counter,
                                   &k);
        if (rv == CKR_OK && counter != e->counter) {
            /* Rotated since the object was found: the fresh key is cached for the next find. */
            ddsm_kref_put(k);
            k = NULL;
            rv = dead_rv(use);
        }
    }
    ddsm_flight_land(c->ctx->vkeys->flights, fl, rv, rv == CKR_OK ? DDSM_DEVERR_NONE : c->detail,
                     k);
    if (rv != CKR_OK)
        return rv;
    *out = k;
    return CKR_OK;
}

CK_RV ddsm_vkey_derive_new(ddsm_call *c, const ddsm_uuid *asset, const ddsm_path *path,
                           uint32_t variant, CK_OBJECT_HANDLE *out)
{
    uint64_t counter = 0;
    ddsm_kref *k = NULL;
    char canon[DDSM_PATH_TEXT_MAX];
    CK_RV rv = derive_current_secret(c, asset, path, variant, DDSM_RVCTX_DERIVE, &counter, &k);
    if (rv != CKR_OK)
        return rv;
    ddsm_path_format(path, canon);
    rv = ddsm_vkey_intern(c, asset, canon, counter, variant, out);
    ddsm_kref_put(k);
    return rv;
}
