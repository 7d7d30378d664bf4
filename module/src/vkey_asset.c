/* SPDX-License-Identifier: Apache-2.0 */
/* The per-asset records: what this process knows of each asset's (counter, state), key type,
 * label and default path, kept current by the store's answers and by NOTIFY.
 *
 * Invariants:
 *  - A record, once made, lives as long as the table (ddsm_vkeys_free) and never moves, so handle
 *    entries may point at it. (counter, state) is one atomic word: readers see a consistent pair
 *    without a lock, and it only moves forward (a lower counter, or leaving RETIRED, is ignored).
 *  - asset_lock guards the buckets, the label index and each record's label, default_path and
 *    meta_ms; it is never held across I/O.
 *  - Generation tags: a notification is a hint, never a fact. It bumps hint_gen; a store read
 *    that began after the n-th hint raises trusted_gen to n. The record is trusted only while
 *    trusted_gen >= hint_gen.
 *  - Grace windows are measured on this process's monotonic clock (ddsm_now_us), never on the
 *    server's timestamps. */
#include "vkey_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

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

const char *ddsm_vk_rec_type(ddsm_asset_rec *r)
{
    int t = r != NULL ? atomic_load(&r->ktype) : 0;
    return t > 0 && (size_t)t <= N_KEY_TYPES ? key_types[t - 1] : NULL;
}

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

/* Fold (counter, state) into r unless it is older than what r knows. grace_us: the window's end
 * on ddsm_now_us, 0 or less: unknown. Returns whether (counter, state) changed. */
bool ddsm_vk_rec_store(ddsm_asset_rec *r, uint64_t counter, ddsm_state state, int64_t grace_us)
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

bool ddsm_vk_rec_distrusted(ddsm_asset_rec *r)
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
        a->state == DDSM_STATE_ROTATING && a->grace_left_us > 0 ? ddsm_now_us() + a->grace_left_us
                                                                 : 0;
    if (ddsm_vk_rec_store(r, a->counter, a->state, grace_end))
        ddsm_vk_kill_stale(v, &a->id, a->counter, a->state);
}

bool ddsm_vkeys_asset_fresh(ddsm_vkeys *v, const char *id_or_label, const ddsm_uuid *id,
                            bool need_meta, ddsm_asset *out)
{
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

    const char *type = ddsm_vk_rec_type(r);
    int64_t validated = atomic_load(&r->validated_ms);
    int64_t now = ddsm_now_ms();
    if (type == NULL || validated == 0 || ddsm_vk_rec_distrusted(r))
        return false;
    if (need_meta && (meta_ms == 0 || now - meta_ms > (int64_t)v->staleness_ms))
        return false;
    /* The counter and state: the rule of ddsm_vkey_check. */
    if (v->link.catch_up == NULL || !v->link.catch_up(v->link.owner))
        return false;
    if (!v->link.covers(v->link.owner, validated) && now - validated > (int64_t)v->staleness_ms)
        return false;
    a.id = r->id;
    snprintf(a.key_type, sizeof(a.key_type), "%s", type);
    cs_unpack(atomic_load(&r->cs), &a.counter, &a.state);
    a.grace_until_us = 0; /* the server's timestamp is not kept: only the window's monotonic end */
    int64_t left =
        a.state == DDSM_STATE_ROTATING ? atomic_load(&r->grace_end_us) - ddsm_now_us() : 0;
    a.grace_left_us = left > 0 ? left : (a.state == DDSM_STATE_ROTATING ? 1 : 0);
    *out = a;
    return true;
}
