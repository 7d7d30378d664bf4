/* SPDX-License-Identifier: Apache-2.0 */
/* The derived-key cache: the table of every live derived key (the registry), and its sharded
 * cache with CLOCK eviction.
 *
 * Invariants:
 *  - Locks: a shard's rwlock guards its buckets, its insertion list and each cached key's
 *    cached/hnext/lru_* fields; reg_lock guards the registry links. Neither is held across I/O or
 *    while another is taken, and a key is dropped (ddsm_kref_put) only after its shard lock is
 *    released.
 *  - Lookups take the shard lock for reading only, reference the key (atomic) and mark it used;
 *    inserting, evicting and dropping take it for writing. Eviction is CLOCK (second chance) over
 *    the insertion list, which approximates LRU without a write on the lookup path.
 *  - A key's bytes are wiped and freed only by its last reference; the cache's own reference is
 *    dropped only after the key is unlinked under the write lock, so a reader holding the read
 *    lock never sees a freed or wiped key. A killed key (dead) stays readable but every operation
 *    holding it fails.
 *  - Cached keys come from fork-wiped secure memory: a fork child sees zeros, and
 *    ddsm_vkeys_abandon wipes every registered key. */
#include "vkey_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ddsm/secmem.h"

static void kref_ref(void *k)
{
    atomic_fetch_add(&((ddsm_kref *)k)->refs, 1);
}

static void kref_unref(void *k);

/* Mix one 64-bit word into h (a multiply-xorshift step: the key lookup of every C_SignInit
 * hashes these words, which FNV one byte at a time made a noticeable share of a cached sign). */
static uint64_t mix64(uint64_t h, uint64_t w)
{
    h ^= w;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static uint32_t key_hash(const ddsm_uuid *a, const char *path, uint64_t counter)
{
    uint64_t w[2], h = 0x243F6A8885A308D3ull;
    memcpy(w, a->b, sizeof(w));
    h = mix64(mix64(h, w[0]), w[1]);
    size_t n = strlen(path);
    for (; n >= 8; n -= 8, path += 8) {
        memcpy(w, path, 8);
        h = mix64(h, w[0]);
    }
    w[0] = 0;
    memcpy(w, path, n);
    h = mix64(mix64(h, w[0] ^ ((uint64_t)n << 56)), counter);
    return (uint32_t)(h ^ (h >> 32));
}

CK_RV ddsm_vkeys_new(const ddsm_config *cfg, const ddsm_vkeys_link *link, ddsm_vkeys **out)
{
    CK_RV rv = CKR_HOST_MEMORY;
    ddsm_vkeys *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return rv;
    unsigned size = cfg->cache.size ? cfg->cache.size : 4096;
    v->ttl_ms = cfg->cache.ttl_ms ? cfg->cache.ttl_ms : 300000;
    v->staleness_ms = cfg->cache.staleness_ms;
    v->extractable = cfg->policy.extractable;
    if (link != NULL)
        v->link = *link;
    /* A power of two no larger than the bound, so that the per-shard caps add up to at most it. */
    v->n_shards = 1;
    while (v->n_shards * 2 <= MAX_SHARDS && v->n_shards * 2 <= size)
        v->n_shards *= 2;
    if ((rv = ddsm_mutex_new(&v->asset_lock)) != CKR_OK ||
        (rv = ddsm_mutex_new(&v->reg_lock)) != CKR_OK ||
        (rv = ddsm_flights_new(kref_ref, kref_unref, &v->flights)) != CKR_OK)
        goto out;
    for (unsigned i = 0; i < v->n_shards; i++) {
        v->shards[i].cap = size / v->n_shards;
        if ((rv = ddsm_rwlock_new(&v->shards[i].lock)) != CKR_OK)
            goto out;
    }
    *out = v;
    return CKR_OK;
out:
    ddsm_vkeys_free(v);
    return rv;
}

/* Free a key whose last reference is gone: wipe, unlink from the registry. */
static void kref_destroy(ddsm_kref *k)
{
    ddsm_vkeys *v = k->owner;
    ddsm_mutex_lock(v->reg_lock);
    if (k->reg_prev != NULL)
        k->reg_prev->reg_next = k->reg_next;
    else
        v->reg_head = k->reg_next;
    if (k->reg_next != NULL)
        k->reg_next->reg_prev = k->reg_prev;
    ddsm_mutex_unlock(v->reg_lock);
    ddsm_secure_free(k->key, DDSM_KEY_LEN);
    ddsm_secure_free(k->hmac, sizeof(*k->hmac));
    free(k);
}

void ddsm_kref_put(ddsm_kref *k)
{
    if (k != NULL && atomic_fetch_sub(&k->refs, 1) == 1)
        kref_destroy(k);
}

static void kref_unref(void *k)
{
    ddsm_kref_put(k);
}

const uint8_t *ddsm_kref_bytes(const ddsm_kref *k)
{
    return k->key;
}

const ddsm_hmac_state *ddsm_kref_hmac(const ddsm_kref *k)
{
    return k->hmac;
}

bool ddsm_kref_dead(const ddsm_kref *k)
{
    return atomic_load(&((ddsm_kref *)k)->dead);
}

/* A new key holding the secret bytes of (asset, path, counter), and its HMAC keyed state when it
 * is an HMAC key (hmac); one reference (the caller's). */
ddsm_kref *ddsm_vk_kref_new_secret(ddsm_vkeys *v, const ddsm_uuid *asset, const char *path,
                                   uint64_t counter, const uint8_t key[DDSM_KEY_LEN], bool hmac)
{
    ddsm_kref *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    /* Cached keys: a fork child sees zeros here (secmem.h), whatever it does with the handles. */
    k->key = ddsm_secure_alloc_fork_wiped(DDSM_KEY_LEN);
    if (hmac)
        k->hmac = ddsm_secure_alloc_fork_wiped(sizeof(*k->hmac));
    bool hmac_ok = !hmac || (k->hmac != NULL &&
                             ddsm_hmac_state_init_secret(k->hmac, key, DDSM_KEY_LEN) == DDSM_OK);
    if (k->key == NULL || !hmac_ok) {
        ddsm_secure_free(k->key, DDSM_KEY_LEN);
        ddsm_secure_free(k->hmac, sizeof(*k->hmac));
        free(k);
        return NULL;
    }
    memcpy(k->key, key, DDSM_KEY_LEN);
    atomic_init(&k->refs, 1);
    atomic_init(&k->dead, false);
    k->asset = *asset;
    snprintf(k->path, sizeof(k->path), "%s", path);
    k->counter = counter;
    k->born_ms = ddsm_now_ms();
    atomic_init(&k->used, false);
    k->owner = v;
    ddsm_mutex_lock(v->reg_lock);
    k->reg_next = v->reg_head;
    if (v->reg_head != NULL)
        v->reg_head->reg_prev = k;
    v->reg_head = k;
    ddsm_mutex_unlock(v->reg_lock);
    return k;
}

static kshard *shard_of(ddsm_vkeys *v, uint32_t h)
{
    return &v->shards[(h >> 24) & (v->n_shards - 1)];
}

static void lru_unlink_locked(kshard *sh, ddsm_kref *k)
{
    if (k->lru_prev != NULL)
        k->lru_prev->lru_next = k->lru_next;
    else
        sh->lru_head = k->lru_next;
    if (k->lru_next != NULL)
        k->lru_next->lru_prev = k->lru_prev;
    else
        sh->lru_tail = k->lru_prev;
    k->lru_prev = k->lru_next = NULL;
}

static void lru_push_locked(kshard *sh, ddsm_kref *k)
{
    k->lru_next = sh->lru_head;
    k->lru_prev = NULL;
    if (sh->lru_head != NULL)
        sh->lru_head->lru_prev = k;
    sh->lru_head = k;
    if (sh->lru_tail == NULL)
        sh->lru_tail = k;
}

/* Take k out of the shard; returns the cache's reference for the caller to drop after unlocking. */
static ddsm_kref *evict_locked(kshard *sh, ddsm_kref *k, bool kill)
{
    uint32_t h = key_hash(&k->asset, k->path, k->counter);
    ddsm_kref **link = &sh->buckets[h % SHARD_BUCKETS];
    while (*link != k)
        link = &(*link)->hnext;
    *link = k->hnext;
    k->hnext = NULL;
    lru_unlink_locked(sh, k);
    k->cached = false;
    sh->count--;
    if (kill)
        atomic_store(&k->dead, true);
    return k;
}

/* Drop every cached key for which pred says so, outside the shard locks. */
typedef bool (*kpred_fn)(const ddsm_kref *k, const void *arg, int64_t now);
static void cache_drop(ddsm_vkeys *v, kpred_fn pred, const void *arg, bool kill)
{
    int64_t now = ddsm_now_ms();
    for (unsigned i = 0; i < v->n_shards; i++) {
        kshard *sh = &v->shards[i];
        ddsm_kref *gone = NULL;
        ddsm_rwlock_wrlock(sh->lock);
        for (ddsm_kref *k = sh->lru_head, *next; k != NULL; k = next) {
            next = k->lru_next;
            if (pred(k, arg, now)) {
                evict_locked(sh, k, kill);
                k->hnext = gone; /* reuse the chain link for the drop list */
                gone = k;
            }
        }
        ddsm_rwlock_unlock(sh->lock);
        while (gone != NULL) {
            ddsm_kref *next = gone->hnext;
            gone->hnext = NULL;
            ddsm_kref_put(gone);
            gone = next;
        }
    }
}

static bool pred_all(const ddsm_kref *k, const void *arg, int64_t now)
{
    return true;
}

static bool pred_expired_ttl(const ddsm_kref *k, const void *arg, int64_t now)
{
    const unsigned *ttl = arg;
    return now - k->born_ms > (int64_t)*ttl;
}

static bool kref_is(const ddsm_kref *k, const ddsm_uuid *asset, const char *path,
                    uint64_t counter)
{
    return k->counter == counter && memcmp(k->asset.b, asset->b, 16) == 0 &&
           strcmp(k->path, path) == 0;
}

/* A cached key, referenced, or NULL. An expired key is dropped on the way (under the write lock,
 * taken only then). */
ddsm_kref *ddsm_vk_cache_get(ddsm_vkeys *v, const ddsm_uuid *asset, const char *path,
                             uint64_t counter)
{
    uint32_t h = key_hash(asset, path, counter);
    kshard *sh = shard_of(v, h);
    ddsm_kref *found = NULL, *expired = NULL;
    bool stale = false;
    ddsm_rwlock_rdlock(sh->lock);
    for (ddsm_kref *k = sh->buckets[h % SHARD_BUCKETS]; k != NULL; k = k->hnext) {
        if (kref_is(k, asset, path, counter)) {
            if (ddsm_now_ms() - k->born_ms > (int64_t)v->ttl_ms) {
                stale = true;
            } else {
                /* Linked, so the cache's own reference keeps it alive while we take ours. */
                found = k;
                atomic_fetch_add(&k->refs, 1);
                if (!atomic_load_explicit(&k->used, memory_order_relaxed))
                    atomic_store_explicit(&k->used, true, memory_order_relaxed);
            }
            break;
        }
    }
    ddsm_rwlock_unlock(sh->lock);
    if (!stale)
        return found;
    ddsm_rwlock_wrlock(sh->lock);
    for (ddsm_kref *k = sh->buckets[h % SHARD_BUCKETS]; k != NULL; k = k->hnext) {
        if (kref_is(k, asset, path, counter)) {
            if (ddsm_now_ms() - k->born_ms > (int64_t)v->ttl_ms)
                expired = evict_locked(sh, k, false);
            break;
        }
    }
    ddsm_rwlock_unlock(sh->lock);
    ddsm_kref_put(expired);
    return NULL;
}

/* CLOCK: the first key from the tail that was not used since the hand last passed it; used ones
 * lose their mark and go back to the head. NULL for an empty shard. */
static ddsm_kref *clock_victim_locked(kshard *sh)
{
    for (unsigned turns = 0; sh->lru_tail != NULL && turns < sh->count; turns++) {
        ddsm_kref *k = sh->lru_tail;
        if (!atomic_exchange_explicit(&k->used, false, memory_order_relaxed))
            return k;
        lru_unlink_locked(sh, k);
        lru_push_locked(sh, k);
    }
    return sh->lru_tail; /* every key was used: the oldest goes */
}

/* Cache k (the cache takes its own reference). When an equal key is cached already, that one is
 * returned referenced and k is released; else k itself comes back. */
ddsm_kref *ddsm_vk_cache_put(ddsm_vkeys *v, ddsm_kref *k)
{
    uint32_t h = key_hash(&k->asset, k->path, k->counter);
    kshard *sh = shard_of(v, h);
    ddsm_kref *victim = NULL, *result = k;
    if (sh->cap == 0)
        return k;
    ddsm_rwlock_wrlock(sh->lock);
    for (ddsm_kref *c = sh->buckets[h % SHARD_BUCKETS]; c != NULL; c = c->hnext) {
        if (c->counter == k->counter && memcmp(c->asset.b, k->asset.b, 16) == 0 &&
            strcmp(c->path, k->path) == 0 && !ddsm_kref_dead(c)) {
            atomic_fetch_add(&c->refs, 1);
            result = c;
            break;
        }
    }
    if (result == k) {
        ddsm_kref *old = sh->count >= sh->cap ? clock_victim_locked(sh) : NULL;
        if (old != NULL)
            victim = evict_locked(sh, old, false);
        atomic_fetch_add(&k->refs, 1);
        k->hnext = sh->buckets[h % SHARD_BUCKETS];
        sh->buckets[h % SHARD_BUCKETS] = k;
        lru_push_locked(sh, k);
        k->cached = true;
        sh->count++;
    }
    ddsm_rwlock_unlock(sh->lock);
    ddsm_kref_put(victim);
    if (result != k)
        ddsm_kref_put(k);
    return result;
}

void ddsm_vkeys_wipe_all(ddsm_vkeys *v)
{
    cache_drop(v, pred_all, NULL, false);
}

void ddsm_vkeys_sweep(ddsm_vkeys *v)
{
    cache_drop(v, pred_expired_ttl, &v->ttl_ms, false);
}

unsigned ddsm_vkeys_cached(ddsm_vkeys *v)
{
    unsigned n = 0;
    for (unsigned i = 0; i < v->n_shards; i++) {
        ddsm_rwlock_rdlock(v->shards[i].lock);
        n += v->shards[i].count;
        ddsm_rwlock_unlock(v->shards[i].lock);
    }
    return n;
}

void ddsm_vkeys_free(ddsm_vkeys *v)
{
    if (v == NULL)
        return;
    if (v->reg_lock != NULL)
        cache_drop(v, pred_all, NULL, true);
    /* Keys still referenced by someone (there should be none: sessions are freed first) are
     * wiped anyway. */
    for (ddsm_kref *k = v->reg_head; k != NULL; k = k->reg_next) {
        ddsm_wipe(k->key, DDSM_KEY_LEN);
        if (k->hmac != NULL)
            ddsm_wipe(k->hmac, sizeof(*k->hmac));
    }
    for (int b = 0; b < ASSET_BUCKETS; b++) {
        ddsm_asset_rec *r = v->assets[b];
        while (r != NULL) {
            ddsm_asset_rec *next = r->next;
            free(r);
            r = next;
        }
    }
    for (unsigned i = 0; i < v->n_shards; i++)
        ddsm_rwlock_free(v->shards[i].lock);
    ddsm_mutex_free(v->asset_lock);
    ddsm_mutex_free(v->reg_lock);
    ddsm_flights_free(v->flights);
    free(v);
}

void ddsm_vkeys_abandon(ddsm_vkeys *v)
{
    if (v == NULL)
        return;
    for (ddsm_kref *k = v->reg_head; k != NULL; k = k->reg_next) {
        ddsm_wipe(k->key, DDSM_KEY_LEN);
        if (k->hmac != NULL)
            ddsm_wipe(k->hmac, sizeof(*k->hmac));
    }
}

struct kill_arg {
    ddsm_uuid asset;
    uint64_t keep_from; /* keys of counters below are stale */
};

static bool pred_stale(const ddsm_kref *k, const void *arg, int64_t now)
{
    const struct kill_arg *ka = arg;
    return memcmp(k->asset.b, ka->asset.b, 16) == 0 && k->counter < ka->keep_from;
}

/* Kill cached keys that the asset's (counter, state) makes unusable. */
void ddsm_vk_kill_stale(ddsm_vkeys *v, const ddsm_uuid *asset, uint64_t counter, ddsm_state state)
{
    struct kill_arg ka = {*asset, 0};
    if (state == DDSM_STATE_RETIRED || state == DDSM_STATE_INITIALIZED)
        ka.keep_from = UINT64_MAX;
    else if (state == DDSM_STATE_ROTATING && counter > 0)
        ka.keep_from = counter - 1; /* the grace window keeps the previous key for verifying */
    else
        ka.keep_from = counter;
    if (ka.keep_from > 0)
        cache_drop(v, pred_stale, &ka, true);
}

static bool pred_asset(const ddsm_kref *k, const void *arg, int64_t now)
{
    return memcmp(k->asset.b, ((const ddsm_uuid *)arg)->b, 16) == 0;
}

void ddsm_vkeys_kill_asset(ddsm_vkeys *v, const ddsm_uuid *asset)
{
    cache_drop(v, pred_asset, asset, true);
}
