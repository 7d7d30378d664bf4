/* SPDX-License-Identifier: Apache-2.0 */
#include "vkey.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "ctx.h"
#include "ddsm/log.h"
#include "ddsm/mac.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "ec.h"
#include "flight.h"
#include "hsmcall.h"
#include "ladder.h"
#include "policy.h"
#include "rv.h"

/* ------------------------------------------------------------------------------------------ */
/* Asset records                                                                               */

#define ASSET_BUCKETS 256
#define STATE_BITS 8
#define COUNTER_MAX ((UINT64_C(1) << (64 - STATE_BITS)) - 1)

struct ddsm_asset_rec {
    ddsm_uuid id;
    /* counter << 8 | state, one word so that readers see a consistent pair without a lock */
    _Atomic uint64_t cs;
    _Atomic int64_t validated_ms;   /* when the store or a NOTIFY last told us; 0 = never */
    /* End of the grace window while ROTATING, on this process's monotonic clock (mono_us), from
     * the time the server said it had left: never this host's wall clock against the server's
     * timestamps. 0 = unknown. */
    _Atomic int64_t grace_end_us;
    _Atomic int ktype;              /* index in key_types + 1 (immutable in the store); 0 unknown */
    /* A notification named the asset (a hint, never a fact: ddsm_asset_rec_distrust) hint_gen
     * times; a store read that began after the hint_gen-th hint raised trusted_gen to it. The
     * record is trusted only while trusted_gen >= hint_gen. */
    _Atomic uint64_t hint_gen;
    _Atomic uint64_t trusted_gen;
    struct ddsm_asset_rec *next;
    /* The label and default path as the store last gave them, and when (0: never); under
     * ddsm_vkeys.asset_lock. No NOTIFY announces a change of either (an administrator may
     * rename an asset in SQL), so finds trust them for cache.staleness_ms only. */
    char label[DDSM_ASSET_LABEL_MAX + 1];
    char default_path[DDSM_PATH_TEXT_MAX];
    int64_t meta_ms;
    bool labelled;                 /* linked in ddsm_vkeys.labels under label */
    struct ddsm_asset_rec *lnext; /* that chain */
};

/* The registry's key types (sql/004_key_types.sql). An asset's type never changes, so a record
 * keeps the type it learnt for the life of the module. */
static const char *const key_types[] = {"hmac", "aes", "secp256k1", "ed25519", "p256"};
#define N_KEY_TYPES (sizeof(key_types) / sizeof(key_types[0]))

static void rec_set_type(ddsm_asset_rec *r, const char *key_type)
{
    for (size_t i = 0; i < N_KEY_TYPES; i++)
        if (strcmp(key_type, key_types[i]) == 0)
            atomic_store(&r->ktype, (int)i + 1);
}

static const char *rec_type(ddsm_asset_rec *r)
{
    int t = r != NULL ? atomic_load(&r->ktype) : 0;
    return t > 0 && (size_t)t <= N_KEY_TYPES ? key_types[t - 1] : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The derived-key cache                                                                       */

/* Read-mostly: a lookup (every C_SignInit) takes its shard's lock for reading only, references
 * the key (atomic) and marks it used; inserting, evicting and dropping take it for writing.
 * Eviction is CLOCK (second chance) over the insertion list: a key used since it last came up is
 * moved back to the head instead of being evicted, which approximates LRU without a write on
 * the lookup path. A key is freed (wiped) only by its last reference, and the cache's reference
 * is dropped only after the key is unlinked under the write lock, so a reader holding the read
 * lock never sees a freed or wiped key. */
#define MAX_SHARDS 16
#define SHARD_BUCKETS 256

struct ddsm_kref {
    atomic_int refs;
    atomic_bool dead; /* invalidated: operations holding it fail */
    uint8_t *key;     /* DDSM_KEY_LEN bytes of secure memory: a secret */
    ddsm_uuid asset;
    char path[DDSM_PATH_TEXT_MAX];
    uint64_t counter;
    int64_t born_ms;
    /* HMAC keys: the keyed state (ddsm/mac.h) in secure memory, a secret like the key and wiped
     * with it, so that a sign restarts from it instead of re-keying; NULL for EC keys */
    ddsm_hmac_state *hmac;
    atomic_bool used; /* looked up since the clock hand last passed (second chance) */
    bool cached;      /* the fields below are the shard's (under its write lock) */
    struct ddsm_kref *hnext, *lru_prev, *lru_next;
    /* the registry of every live key (ddsm_vkeys.reg_lock) */
    struct ddsm_kref *reg_prev, *reg_next;
    ddsm_vkeys *owner;
};

typedef struct kshard {
    ddsm_rwlock *lock;
    ddsm_kref *buckets[SHARD_BUCKETS];
    ddsm_kref *lru_head, *lru_tail; /* head = most recently inserted or given a second chance */
    unsigned count, cap;
} kshard;

struct ddsm_vkeys {
    unsigned ttl_ms;
    unsigned staleness_ms;
    bool extractable;
    ddsm_mutex *asset_lock;
    ddsm_asset_rec *assets[ASSET_BUCKETS];
    ddsm_asset_rec *labels[ASSET_BUCKETS]; /* the same records by label (asset_lock) */
    unsigned n_shards;
    kshard shards[MAX_SHARDS];
    ddsm_mutex *reg_lock;
    ddsm_kref *reg_head;
    ddsm_flights *flights; /* single flight of materialisations (flight.h) */
};

static void kref_ref(void *k)
{
    atomic_fetch_add(&((ddsm_kref *)k)->refs, 1);
}

static void kref_unref(void *k);

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

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

static uint64_t cs_pack(uint64_t counter, ddsm_state st)
{
    return (counter << STATE_BITS) | (uint64_t)st;
}

static void cs_unpack(uint64_t cs, uint64_t *counter, ddsm_state *st)
{
    *counter = cs >> STATE_BITS;
    *st = (ddsm_state)(cs & ((1u << STATE_BITS) - 1));
}

CK_RV ddsm_vkeys_new(const ddsm_config *cfg, ddsm_vkeys **out)
{
    CK_RV rv = CKR_HOST_MEMORY;
    ddsm_vkeys *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return rv;
    unsigned size = cfg->cache.size ? cfg->cache.size : 4096;
    v->ttl_ms = cfg->cache.ttl_ms ? cfg->cache.ttl_ms : 300000;
    v->staleness_ms = cfg->cache.staleness_ms;
    v->extractable = cfg->policy.extractable;
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
static ddsm_kref *kref_new_secret(ddsm_vkeys *v, const ddsm_uuid *asset, const char *path,
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
static ddsm_kref *cache_get(ddsm_vkeys *v, const ddsm_uuid *asset, const char *path,
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
static ddsm_kref *cache_put(ddsm_vkeys *v, ddsm_kref *k)
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

/* ------------------------------------------------------------------------------------------ */
/* Asset records                                                                               */

/* The record of asset in its bucket (*bucket), or NULL. Expects v->asset_lock held. */
static ddsm_asset_rec *rec_find_locked(ddsm_vkeys *v, const ddsm_uuid *asset, uint32_t *bucket)
{
    uint32_t b = fnv(2166136261u, asset->b, 16) % ASSET_BUCKETS;
    ddsm_asset_rec *r;
    for (r = v->assets[b]; r != NULL; r = r->next)
        if (memcmp(r->id.b, asset->b, 16) == 0)
            break;
    *bucket = b;
    return r;
}

ddsm_asset_rec *ddsm_vkeys_asset(ddsm_vkeys *v, const ddsm_uuid *asset)
{
    uint32_t b;
    ddsm_mutex_lock(v->asset_lock);
    ddsm_asset_rec *r = rec_find_locked(v, asset, &b);
    if (r == NULL && (r = calloc(1, sizeof(*r))) != NULL) {
        r->id = *asset;
        atomic_init(&r->cs, cs_pack(0, DDSM_STATE_INITIALIZED));
        atomic_init(&r->validated_ms, 0);
        atomic_init(&r->grace_end_us, 0);
        atomic_init(&r->ktype, 0);
        atomic_init(&r->hint_gen, 0);
        atomic_init(&r->trusted_gen, 0);
        r->next = v->assets[b];
        v->assets[b] = r;
    }
    ddsm_mutex_unlock(v->asset_lock);
    return r;
}

/* Microseconds on the monotonic clock: grace windows are measured on it. */
static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Fold (counter, state) into r unless it is older than what r knows. grace_us: the window's end
 * on mono_us, 0 or less: unknown. Returns whether (counter, state) changed. */
static bool rec_store(ddsm_asset_rec *r, uint64_t counter, ddsm_state state, int64_t grace_us)
{
    if (counter > COUNTER_MAX)
        counter = COUNTER_MAX;
    uint64_t old = atomic_load(&r->cs), want = cs_pack(counter, state);
    for (;;) {
        uint64_t oc;
        ddsm_state os;
        cs_unpack(old, &oc, &os);
        if (counter < oc || (counter == oc && os == DDSM_STATE_RETIRED && state != os))
            return false;
        if (atomic_compare_exchange_weak(&r->cs, &old, want))
            break;
    }
    atomic_store(&r->grace_end_us, state == DDSM_STATE_ROTATING && grace_us > 0 ? grace_us : 0);
    atomic_store(&r->validated_ms, ddsm_now_ms());
    return old != want;
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
static void kill_stale(ddsm_vkeys *v, const ddsm_uuid *asset, uint64_t counter, ddsm_state state)
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

ddsm_asset_rec *ddsm_vkeys_asset_known(ddsm_vkeys *v, const ddsm_uuid *asset)
{
    uint32_t b;
    ddsm_mutex_lock(v->asset_lock);
    ddsm_asset_rec *r = rec_find_locked(v, asset, &b);
    ddsm_mutex_unlock(v->asset_lock);
    return r;
}

uint64_t ddsm_asset_rec_hint_gen(ddsm_asset_rec *r)
{
    return atomic_load(&r->hint_gen);
}

void ddsm_asset_rec_distrust(ddsm_asset_rec *r)
{
    atomic_fetch_add(&r->hint_gen, 1);
}

void ddsm_asset_rec_trust_from(ddsm_asset_rec *r, uint64_t gen)
{
    uint64_t old = atomic_load(&r->trusted_gen);
    while (old < gen && !atomic_compare_exchange_weak(&r->trusted_gen, &old, gen)) {
    }
}

static bool rec_distrusted(ddsm_asset_rec *r)
{
    return atomic_load(&r->trusted_gen) < atomic_load(&r->hint_gen);
}

static uint32_t label_bucket(const char *label)
{
    return fnv(2166136261u, label, strlen(label)) % ASSET_BUCKETS;
}

/* Record the label and default path the store gave (a fresh read). */
static void rec_set_meta(ddsm_vkeys *v, ddsm_asset_rec *r, const ddsm_asset *a)
{
    ddsm_mutex_lock(v->asset_lock);
    if (!r->labelled || strcmp(r->label, a->label) != 0) {
        if (r->labelled) {
            ddsm_asset_rec **link = &v->labels[label_bucket(r->label)];
            while (*link != r)
                link = &(*link)->lnext;
            *link = r->lnext;
        }
        snprintf(r->label, sizeof(r->label), "%s", a->label);
        uint32_t b = label_bucket(r->label);
        r->lnext = v->labels[b];
        v->labels[b] = r;
        r->labelled = true;
    }
    snprintf(r->default_path, sizeof(r->default_path), "%s", a->default_path);
    r->meta_ms = ddsm_now_ms();
    ddsm_mutex_unlock(v->asset_lock);
}

void ddsm_asset_rec_update(ddsm_vkeys *v, ddsm_asset_rec *r, const ddsm_asset *a)
{
    rec_set_type(r, a->key_type);
    if (a->label[0] != '\0')
        rec_set_meta(v, r, a);
    /* The window's rest as the server measured it, counted from now: at most the delivery of one
     * answer later than the server's own end (a grace key only ever verifies). */
    int64_t grace_end =
        a->state == DDSM_STATE_ROTATING && a->grace_left_us > 0 ? mono_us() + a->grace_left_us : 0;
    if (rec_store(r, a->counter, a->state, grace_end))
        kill_stale(v, &a->id, a->counter, a->state);
}

bool ddsm_vkeys_asset_fresh(ddsm_call *c, const char *id_or_label, const ddsm_uuid *id,
                            bool need_meta, ddsm_asset *out)
{
    ddsm_vkeys *v = c->ctx->vkeys;
    ddsm_uuid u;
    bool by_id = id != NULL;
    if (by_id) {
        u = *id;
    } else if (id_or_label == NULL) {
        return false;
    } else if (strlen(id_or_label) == DDSM_UUID_TEXT_LEN &&
               ddsm_uuid_parse(id_or_label, DDSM_UUID_TEXT_LEN, &u) == DDSM_OK) {
        by_id = true; /* as the store reads it (ddsm_store_asset_find) */
    } else {
        need_meta = true; /* the label itself is what must be current */
    }

    ddsm_asset a;
    memset(&a, 0, sizeof(a));
    int64_t meta_ms = 0;
    ddsm_asset_rec *r;
    ddsm_mutex_lock(v->asset_lock);
    if (by_id) {
        for (r = v->assets[fnv(2166136261u, u.b, 16) % ASSET_BUCKETS]; r != NULL; r = r->next)
            if (memcmp(r->id.b, u.b, 16) == 0)
                break;
    } else {
        for (r = v->labels[label_bucket(id_or_label)]; r != NULL; r = r->lnext)
            if (strcmp(r->label, id_or_label) == 0)
                break;
    }
    if (r != NULL) {
        memcpy(a.label, r->label, sizeof(a.label));
        memcpy(a.default_path, r->default_path, sizeof(a.default_path));
        meta_ms = r->meta_ms;
    }
    ddsm_mutex_unlock(v->asset_lock);
    if (r == NULL)
        return false;

    const char *type = rec_type(r);
    int64_t validated = atomic_load(&r->validated_ms);
    int64_t now = ddsm_now_ms();
    if (type == NULL || validated == 0 || rec_distrusted(r))
        return false;
    if (need_meta && (meta_ms == 0 || now - meta_ms > (int64_t)v->staleness_ms))
        return false;
    /* The counter and state: the rule of ddsm_vkey_check. */
    if (!ddsm_ctx_listener_catch_up(c->ctx))
        return false;
    if (!ddsm_ctx_listener_covers(c->ctx, validated) &&
        now - validated > (int64_t)v->staleness_ms)
        return false;
    a.id = r->id;
    snprintf(a.key_type, sizeof(a.key_type), "%s", type);
    cs_unpack(atomic_load(&r->cs), &a.counter, &a.state);
    a.grace_until_us = 0; /* the server's timestamp is not kept: only the window's monotonic end */
    int64_t left = a.state == DDSM_STATE_ROTATING ? atomic_load(&r->grace_end_us) - mono_us() : 0;
    a.grace_left_us = left > 0 ? left : (a.state == DDSM_STATE_ROTATING ? 1 : 0);
    *out = a;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Objects                                                                                     */

bool ddsm_vkey_found_variant(const char *key_type, bool policy_extractable, uint32_t *variant)
{
    uint32_t v = policy_extractable ? DDSM_VK_EXTRACTABLE | DDSM_VK_KEY_READABLE : DDSM_VK_SENSITIVE;
    if (strcmp(key_type, "hmac") == 0)
        v |= DDSM_VK_SIGN | DDSM_VK_VERIFY;
    else if (strcmp(key_type, "aes") == 0)
        v |= DDSM_VK_AES | DDSM_VK_ENCRYPT | DDSM_VK_DECRYPT;
    else
        return false;
    *variant = v;
    return true;
}

CK_RV ddsm_vkey_template_parse_typed(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                                     const char *canon_path, const char *key_type,
                                     bool policy_extractable, uint32_t *variant)
{
    bool want_aes;
    if (strcmp(key_type, "aes") == 0)
        want_aes = true;
    else if (strcmp(key_type, "hmac") == 0)
        want_aes = false;
    else
        return CKR_TEMPLATE_INCONSISTENT; /* not a secret-key asset: no secret key of it */
    if (n > 0 && tmpl == NULL)
        return CKR_ARGUMENTS_BAD;
    bool typed = false;
    for (CK_ULONG i = 0; i < n; i++)
        typed = typed || tmpl[i].type == CKA_KEY_TYPE;
    uint32_t v = 0;
    CK_RV rv;
    if (typed || !want_aes) {
        rv = ddsm_vkey_template_parse(tmpl, n, asset, canon_path, policy_extractable, &v);
    } else {
        /* An aes asset's keys are AES keys when the template does not say: the parser's default
         * (a generic secret) would be refused below. */
        CK_KEY_TYPE aes = CKK_AES;
        CK_ATTRIBUTE *t = calloc((size_t)n + 1, sizeof(*t));
        if (t == NULL)
            return CKR_HOST_MEMORY;
        t[0] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &aes, sizeof(aes)};
        if (n > 0)
            memcpy(&t[1], tmpl, (size_t)n * sizeof(*t));
        rv = ddsm_vkey_template_parse(t, n + 1, asset, canon_path, policy_extractable, &v);
        free(t);
    }
    if (rv != CKR_OK)
        return rv;
    /* The same 32 bytes must never serve as an HMAC key and as an AES key. */
    if (((v & DDSM_VK_AES) != 0) != want_aes)
        return CKR_TEMPLATE_INCONSISTENT;
    *variant = v;
    return CKR_OK;
}

size_t ddsm_vkey_id(const ddsm_uuid *asset, const char *canon_path, uint8_t out[DDSM_KEY_ID_MAX])
{
    size_t len = 0;
    if (ddsm_key_id(asset, canon_path, out, &len) != DDSM_OK) {
        /* Only for a path no table entry can hold: an empty id names nothing. */
        ddsm_log(DDSM_LOG_ERROR, "CKA_ID of an over-long path");
        return 0;
    }
    return len;
}

bool ddsm_vkey_id_names(const void *id, CK_ULONG len, const ddsm_uuid *asset,
                        const char *canon_path)
{
    ddsm_uuid a;
    ddsm_path p;
    char canon[DDSM_PATH_TEXT_MAX];
    if (id == NULL || ddsm_key_id_parse(id, len, &a, &p) != DDSM_OK)
        return false;
    ddsm_path_format(&p, canon);
    return memcmp(a.b, asset->b, sizeof(a.b)) == 0 && strcmp(canon, canon_path) == 0;
}

void ddsm_vkey_label(const ddsm_uuid *asset, const char *canon_path,
                     char out[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX])
{
    char id[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(asset, id);
    snprintf(out, DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX, "%s/%s", id, canon_path);
}

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
            err = ddsm_mpolicy_zone_revalidate(c->ctx, st, &e->asset);
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
    const char *t = r != NULL ? rec_type(r) : NULL;
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
        t = rec_type(r);
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
        if (!caught_up || rec_distrusted(r))
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
        mono_us() < grace_us) {
        /* The grace window: the previous key may still verify, never sign. */
        if (use == DDSM_USE_SIGN || use == DDSM_USE_ENCRYPT)
            return CKR_KEY_FUNCTION_NOT_PERMITTED;
        return ddsm_mpolicy_key_use(c, e, use);
    }
    return dead_rv(use);
}

/* Derive the key of (asset, path) at the asset's current counter: the store round trip (state
 * check, counter, DERIVE audit row) first, then HMAC-SHA256(root, msg) in the HSM through one of
 * the module's own sessions. The HSM session and root handle are secured before the store is
 * touched, so a broken HSM writes no audit row. Returns the counter and the key, cached.
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
    char canon[DDSM_PATH_TEXT_MAX];
    char type_detail[48];
    ddsm_curve curve = DDSM_CURVE_SECP256K1;
    const bool ec = ddsm_ec_variant_curve(variant, &curve);
    /* The asset seed (docs/design.md "Reserved derivations"). */
    const ddsm_path seed_path = {.depth = 0};
    const char *key_type = rec_type(ddsm_vkeys_asset(ctx->vkeys, asset));

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
    rv = ddsm_ctx_root_acquire(ctx, &rs, &detail);
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
    if (ddsm_hsmcall_saturated(ddsm_ctx_hsmcall(ctx))) {
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
    int64_t ts0 = ddsm_metrics_now_ns();
    ddsm_err err = ddsm_batcher_derive(b, &req, &counter, &state);
    t_store = ddsm_metrics_now_ns() - ts0;
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
    if (rec_store(r, counter, state,
                  state == DDSM_STATE_ROTATING ? atomic_load(&r->grace_end_us) : 0))
        kill_stale(ctx->vkeys, asset, counter, state);

    key = ddsm_secure_alloc(DDSM_KEY_LEN);
    if (key == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    /* The HSM call, bounded by [backend] call_timeout_ms (hsmcall.h). A failure here leaves a
     * DERIVE row whose key nobody received (docs/audit.md allows it): fail closed. */
    int64_t th0 = ddsm_metrics_now_ns();
    rv = ddsm_hsmcall_derive_secret(ctx, &rs, asset, ec ? &seed_path : path, counter, key, &detail,
                                    &broken);
    t_hsm = ddsm_metrics_now_ns() - th0;
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
    k = kref_new_secret(ctx->vkeys, asset, canon, counter, key, !ec);
    if (k == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    *out = cache_put(ctx->vkeys, k);
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
    if (have_rs)
        ddsm_ctx_root_release(ctx, &rs, broken);
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
    CK_RV rv = ddsm_ctx_root_acquire(c->ctx, &rs, &detail);
    if (rv == CKR_OK) {
        rv = ddsm_ctx_batcher(c->ctx, &rs, &b, &detail);
        ddsm_ctx_root_release(c->ctx, &rs, false);
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
    ddsm_kref *k = cache_get(c->ctx->vkeys, &e->asset, e->path, e->counter);
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
    k = cache_get(c->ctx->vkeys, &e->asset, e->path, e->counter);
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

/* ------------------------------------------------------------------------------------------ */
/* Attributes                                                                                  */

static CK_RV put_ulong(uint8_t *buf, CK_ULONG *len, CK_ULONG v)
{
    memcpy(buf, &v, sizeof(v));
    *len = sizeof(v);
    return CKR_OK;
}

static CK_RV put_bool(uint8_t *buf, CK_ULONG *len, bool v)
{
    buf[0] = v ? CK_TRUE : CK_FALSE;
    *len = 1;
    return CKR_OK;
}

static CK_RV put_bytes(uint8_t *buf, CK_ULONG *len, const void *p, size_t n)
{
    memcpy(buf, p, n);
    *len = n;
    return CKR_OK;
}

static CK_ULONG state_code(ddsm_state st)
{
    switch (st) {
    case DDSM_STATE_ACTIVE:
        return CK_DDSM_STATE_ACTIVE;
    case DDSM_STATE_ROTATING:
        return CK_DDSM_STATE_ROTATING;
    case DDSM_STATE_RETIRED:
        return CK_DDSM_STATE_RETIRED;
    default:
        return CK_DDSM_STATE_INITIALIZED;
    }
}

CK_RV ddsm_vkey_attr(const ddsm_hentry *e, CK_ATTRIBUTE_TYPE t, uint8_t buf[DDSM_VKEY_ATTR_MAX],
                     CK_ULONG *len)
{
    uint32_t v = e->variant;
    if (ddsm_ec_is_ec(v)) {
        /* EC private and public keys (ec.h); the attributes every object shares are below. */
        bool handled = false;
        CK_RV erv = ddsm_ec_attr(e, t, buf, len, &handled);
        if (handled)
            return erv;
    }
    bool aes = (v & DDSM_VK_AES) != 0;
    char text[DDSM_VKEY_ATTR_MAX];

    switch (t) {
    case CKA_CLASS:
        return put_ulong(buf, len, CKO_SECRET_KEY);
    case CKA_KEY_TYPE:
        return put_ulong(buf, len, aes ? CKK_AES : CKK_GENERIC_SECRET);
    case CKA_TOKEN:
    case CKA_PRIVATE:
        return put_bool(buf, len, true);
    case CKA_MODIFIABLE:
    case CKA_COPYABLE:
    case CKA_DESTROYABLE:
    case CKA_DERIVE:
    case CKA_WRAP:
    case CKA_UNWRAP:
    case CKA_LOCAL:
    case CKA_TRUSTED:
    case CKA_WRAP_WITH_TRUSTED:
        return put_bool(buf, len, false);
    case CKA_SIGN:
        return put_bool(buf, len, (v & DDSM_VK_SIGN) != 0);
    case CKA_VERIFY:
        return put_bool(buf, len, (v & DDSM_VK_VERIFY) != 0);
    case CKA_ENCRYPT:
        return put_bool(buf, len, (v & DDSM_VK_ENCRYPT) != 0);
    case CKA_DECRYPT:
        return put_bool(buf, len, (v & DDSM_VK_DECRYPT) != 0);
    case CKA_SENSITIVE:
        return put_bool(buf, len, (v & DDSM_VK_SENSITIVE) != 0);
    case CKA_EXTRACTABLE:
        return put_bool(buf, len, (v & DDSM_VK_EXTRACTABLE) != 0);
    case CKA_ALWAYS_SENSITIVE:
        /* Properties of the key, not of this handle: true only while no handle of the key can
         * ever reveal its value (DDSM_VK_KEY_READABLE). */
        return put_bool(buf, len,
                        (v & DDSM_VK_SENSITIVE) != 0 && (v & DDSM_VK_KEY_READABLE) == 0);
    case CKA_NEVER_EXTRACTABLE:
        return put_bool(buf, len,
                        (v & DDSM_VK_EXTRACTABLE) == 0 && (v & DDSM_VK_KEY_READABLE) == 0);
    case CKA_VALUE_LEN:
        return put_ulong(buf, len, DDSM_KEY_LEN);
    case CKA_KEY_GEN_MECHANISM:
        return put_ulong(buf, len, CKM_DDSM_DERIVE);
    case CKA_START_DATE:
    case CKA_END_DATE:
        *len = 0;
        return CKR_OK;
    case CKA_LABEL:
        ddsm_vkey_label(&e->asset, e->path, text);
        return put_bytes(buf, len, text, strlen(text));
    case CKA_ID: {
        uint8_t id[DDSM_KEY_ID_MAX];
        size_t n = ddsm_vkey_id(&e->asset, e->path, id);
        return put_bytes(buf, len, id, n);
    }
    case CKA_UNIQUE_ID: {
        char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
        ddsm_vkey_label(&e->asset, e->path, label);
        int n = snprintf(text, sizeof(text), "%s#%" PRIu64, label, e->counter);
        return put_bytes(buf, len, text, (size_t)n);
    }
    case CKA_ALLOWED_MECHANISMS: {
        CK_MECHANISM_TYPE m[2];
        size_t n = 0;
        if (aes) {
            m[n++] = CKM_AES_GCM;
        } else {
            m[n++] = CKM_SHA256_HMAC;
            m[n++] = CKM_SHA256_HMAC_GENERAL;
        }
        return put_bytes(buf, len, m, n * sizeof(m[0]));
    }
    case CKA_DDSM_ASSET_ID:
        return put_bytes(buf, len, e->asset.b, 16);
    case CKA_DDSM_PATH:
        return put_bytes(buf, len, e->path, strlen(e->path));
    case CKA_DDSM_COUNTER:
        return put_ulong(buf, len, (CK_ULONG)e->counter);
    case CKA_DDSM_STATE: {
        uint64_t counter;
        ddsm_state st;
        cs_unpack(atomic_load(&((const ddsm_asset_rec *)e->aux)->cs), &counter, &st);
        return put_ulong(buf, len, state_code(st));
    }
    case CKA_VALUE:
        return (v & DDSM_VK_SENSITIVE) != 0 || (v & DDSM_VK_EXTRACTABLE) == 0
                   ? CKR_ATTRIBUTE_SENSITIVE
                   : CKR_KEY_NEEDED;
    default:
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* C_DeriveKey templates                                                                       */

typedef struct tmpl_val {
    bool seen;
    CK_ULONG ul;
    bool b;
} tmpl_val;

/* A CK_BBOOL attribute value: one byte, 0 or 1. */
static CK_RV read_bool(const CK_ATTRIBUTE *a, bool *out)
{
    if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    CK_BBOOL b = *(const CK_BBOOL *)a->pValue;
    if (b != CK_TRUE && b != CK_FALSE)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *out = b == CK_TRUE;
    return CKR_OK;
}

static CK_RV read_ulong(const CK_ATTRIBUTE *a, CK_ULONG *out)
{
    if (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    memcpy(out, a->pValue, sizeof(*out));
    return CKR_OK;
}

/* Record a value; the same attribute twice with different values is contradictory. */
static CK_RV note(tmpl_val *slot, CK_ULONG ul, bool b)
{
    if (slot->seen && (slot->ul != ul || slot->b != b))
        return CKR_TEMPLATE_INCONSISTENT;
    slot->seen = true;
    slot->ul = ul;
    slot->b = b;
    return CKR_OK;
}

enum { T_CLASS, T_KEYTYPE, T_LEN, T_SIGN, T_VERIFY, T_ENC, T_DEC, T_EXTR, T_SENS, T__N };

CK_RV ddsm_vkey_template_parse(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                               const char *canon_path, bool policy_extractable, uint32_t *variant)
{
    tmpl_val v[T__N];
    char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
    CK_RV rv = CKR_OK;

    memset(v, 0, sizeof(v));
    ddsm_vkey_label(asset, canon_path, label);
    if (n > 0 && tmpl == NULL)
        return CKR_ARGUMENTS_BAD;

    for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++) {
        const CK_ATTRIBUTE *a = &tmpl[i];
        CK_ULONG ul = 0;
        bool b = false;
        switch (a->type) {
        case CKA_CLASS:
            if ((rv = read_ulong(a, &ul)) == CKR_OK)
                rv = ul != CKO_SECRET_KEY ? CKR_TEMPLATE_INCONSISTENT : note(&v[T_CLASS], ul, 0);
            break;
        case CKA_KEY_TYPE:
            if ((rv = read_ulong(a, &ul)) == CKR_OK)
                rv = ul != CKK_GENERIC_SECRET && ul != CKK_AES ? CKR_ATTRIBUTE_VALUE_INVALID
                                                               : note(&v[T_KEYTYPE], ul, 0);
            break;
        case CKA_VALUE_LEN:
            if ((rv = read_ulong(a, &ul)) == CKR_OK)
                rv = ul != DDSM_KEY_LEN ? CKR_ATTRIBUTE_VALUE_INVALID : note(&v[T_LEN], ul, 0);
            break;
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
        case CKA_EXTRACTABLE:
        case CKA_SENSITIVE: {
            int which = a->type == CKA_SIGN          ? T_SIGN
                        : a->type == CKA_VERIFY      ? T_VERIFY
                        : a->type == CKA_ENCRYPT     ? T_ENC
                        : a->type == CKA_DECRYPT     ? T_DEC
                        : a->type == CKA_EXTRACTABLE ? T_EXTR
                                                     : T_SENS;
            if ((rv = read_bool(a, &b)) == CKR_OK)
                rv = note(&v[which], 0, b);
            break;
        }
        case CKA_TOKEN:
        case CKA_PRIVATE:
            /* Derived keys are token objects (the registry is persistent) and private. */
            if ((rv = read_bool(a, &b)) == CKR_OK && !b)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_MODIFIABLE:
        case CKA_COPYABLE:
        case CKA_DESTROYABLE:
        case CKA_DERIVE:
        case CKA_WRAP:
        case CKA_UNWRAP:
        case CKA_TRUSTED:
        case CKA_WRAP_WITH_TRUSTED:
            if ((rv = read_bool(a, &b)) == CKR_OK && b)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_LABEL:
            if (a->ulValueLen != strlen(label) ||
                (a->ulValueLen > 0 &&
                 (a->pValue == NULL || memcmp(a->pValue, label, a->ulValueLen) != 0)))
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_ID:
            /* Any hardening spelling of the path names the same key. */
            if (!ddsm_vkey_id_names(a->pValue, a->ulValueLen, asset, canon_path))
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_DDSM_ASSET_ID:
            if (a->ulValueLen != 16 || a->pValue == NULL || memcmp(a->pValue, asset->b, 16) != 0)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        case CKA_DDSM_PATH: {
            ddsm_path p;
            char canon[DDSM_PATH_TEXT_MAX];
            if (a->pValue == NULL ||
                ddsm_path_parse(a->pValue, a->ulValueLen, &p, NULL) != DDSM_OK) {
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
                break;
            }
            ddsm_path_format(&p, canon);
            if (strcmp(canon, canon_path) != 0)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        }
        case CKA_VALUE:
        case CKA_UNIQUE_ID:
        case CKA_LOCAL:
        case CKA_KEY_GEN_MECHANISM:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_DDSM_COUNTER:
        case CKA_DDSM_STATE:
            rv = CKR_ATTRIBUTE_READ_ONLY;
            break;
        default:
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
            break;
        }
    }
    if (rv != CKR_OK)
        return rv;

    bool aes = v[T_KEYTYPE].seen && v[T_KEYTYPE].ul == CKK_AES;
    bool extractable = v[T_EXTR].seen ? v[T_EXTR].b : policy_extractable;
    bool sensitive = v[T_SENS].seen ? v[T_SENS].b : !extractable;
    bool sign = v[T_SIGN].seen ? v[T_SIGN].b : !aes;
    bool verify = v[T_VERIFY].seen ? v[T_VERIFY].b : !aes;
    bool enc = v[T_ENC].seen ? v[T_ENC].b : aes;
    bool dec = v[T_DEC].seen ? v[T_DEC].b : aes;

    if (extractable && !policy_extractable)
        return CKR_TEMPLATE_INCONSISTENT; /* the policy keeps derived keys in the module */
    if (!sensitive && !extractable)
        return CKR_TEMPLATE_INCONSISTENT; /* a readable value is an extraction */
    if (aes && (sign || verify))
        return CKR_TEMPLATE_INCONSISTENT; /* HMAC takes generic secret keys */
    if (!aes && (enc || dec))
        return CKR_TEMPLATE_INCONSISTENT; /* only AES keys encrypt */

    *variant = (aes ? DDSM_VK_AES : 0) | (sign ? DDSM_VK_SIGN : 0) | (verify ? DDSM_VK_VERIFY : 0) |
               (enc ? DDSM_VK_ENCRYPT : 0) | (dec ? DDSM_VK_DECRYPT : 0) |
               (extractable ? DDSM_VK_EXTRACTABLE : 0) | (sensitive ? DDSM_VK_SENSITIVE : 0) |
               (policy_extractable ? DDSM_VK_KEY_READABLE : 0);
    return CKR_OK;
}
