/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the virtual-key files (vkey_derive.c, vkey_asset.c, vkey_cache.c, vkey_attr.c): the
 * shapes of the asset record, the derived key and the table that holds both, and the few
 * functions one of those files offers the others. Nothing outside them includes this. */
#ifndef DDSM_VKEY_INT_H
#define DDSM_VKEY_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/mac.h"
#include "ddsm/path.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "flight.h"
#include "lock.h"
#include "vkey.h"

#define ASSET_BUCKETS 256
#define STATE_BITS 8
#define COUNTER_MAX ((UINT64_C(1) << (64 - STATE_BITS)) - 1)

struct ddsm_asset_rec {
    ddsm_uuid id;
    /* counter << 8 | state, one word so that readers see a consistent pair without a lock */
    _Atomic uint64_t cs;
    _Atomic int64_t validated_ms;   /* when the store or a NOTIFY last told us; 0 = never */
    /* End of the grace window while ROTATING, on this process's monotonic clock (ddsm_now_us),
     * from the time the server said it had left: never this host's wall clock against the
     * server's timestamps. 0 = unknown. */
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
    ddsm_vkeys_link link;  /* the LISTEN link (vkey.h); all NULL when there is none */
};

static inline uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static inline uint64_t cs_pack(uint64_t counter, ddsm_state st)
{
    return (counter << STATE_BITS) | (uint64_t)st;
}

static inline void cs_unpack(uint64_t cs, uint64_t *counter, ddsm_state *st)
{
    *counter = cs >> STATE_BITS;
    *st = (ddsm_state)(cs & ((1u << STATE_BITS) - 1));
}

/* vkey_asset.c */
/* The record's key type ("hmac", ...), NULL while unknown; r may be NULL. */
const char *ddsm_vk_rec_type(ddsm_asset_rec *r);
/* Fold (counter, state) into r unless it is older than what r knows. grace_us: the window's end
 * on ddsm_now_us, 0 or less: unknown. Returns whether (counter, state) changed. */
bool ddsm_vk_rec_store(ddsm_asset_rec *r, uint64_t counter, ddsm_state state, int64_t grace_us);
/* A notification named the asset after the last store read that began after it. */
bool ddsm_vk_rec_distrusted(ddsm_asset_rec *r);

/* vkey_cache.c */
/* A new key holding the secret bytes of (asset, path, counter), and its HMAC keyed state when it
 * is an HMAC key (hmac); one reference (the caller's). */
ddsm_kref *ddsm_vk_kref_new_secret(ddsm_vkeys *v, const ddsm_uuid *asset, const char *path,
                                   uint64_t counter, const uint8_t key[DDSM_KEY_LEN], bool hmac);
/* A cached key, referenced, or NULL. */
ddsm_kref *ddsm_vk_cache_get(ddsm_vkeys *v, const ddsm_uuid *asset, const char *path,
                             uint64_t counter);
/* Cache k (the cache takes its own reference). When an equal key is cached already, that one is
 * returned referenced and k is released; else k itself comes back. */
ddsm_kref *ddsm_vk_cache_put(ddsm_vkeys *v, ddsm_kref *k);
/* Kill cached keys that the asset's (counter, state) makes unusable. */
void ddsm_vk_kill_stale(ddsm_vkeys *v, const ddsm_uuid *asset, uint64_t counter, ddsm_state state);

#endif
