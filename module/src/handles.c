/* SPDX-License-Identifier: Apache-2.0 */
#include "handles.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"

#define CHUNK_BITS 10
#define CHUNK_SIZE (1U << CHUNK_BITS)

/* A slot's contents (the entry, gen, live, retired) change only under the table's lock, inside a
 * write section of the slot's sequence counter (odd while it changes). Lookups (every C_SignInit)
 * take no lock: they copy the contents and retry when the counter moved meanwhile (a seqlock).
 * Every field a lookup reads is atomic, so a lookup that overlaps a write is a retry, never a data
 * race (C11 7.17; ThreadSanitizer checks it). Writes inside a section are release stores and
 * lookups read them with acquire loads: a lookup that sees any byte of a newer write is then
 * ordered after that write's odd counter, so its closing read of the counter sees the change. No
 * fences: ThreadSanitizer does not model them, and on x86 these orders cost nothing. */
#define ENTRY_WORDS ((sizeof(ddsm_hentry) + sizeof(uint64_t) - 1) / sizeof(uint64_t))

typedef struct hslot {
    atomic_uint seq;
    atomic_uint_least64_t entry[ENTRY_WORDS]; /* a ddsm_hentry, word by word */
    atomic_uint gen;   /* generation of the current (or next) occupant */
    atomic_bool live;
    /* Looked up since the entry last reached the tail of the recency list (its second chance).
     * Set by lookups without the lock, and only when clear, so that a hot handle costs no write. */
    atomic_bool ref;
    bool retired;      /* generation exhausted: never reused (lock only) */
    bool session;      /* a session object: not in the recency list, never evicted (lock only) */
    uint32_t next;     /* hash chain (index + 1, 0 = end; lock only) */
    uint32_t next_free;
    uint32_t lru_prev, lru_next; /* the recency list of token objects (index + 1; lock only) */
} hslot;

struct ddsm_htab {
    uint32_t cap;
    unsigned idx_bits;
    uint32_t gen_max; /* never issued */
    ddsm_mutex *lock;         /* interning, reclaiming, the hash index, every slot's contents */
    _Atomic(hslot *) *chunks; /* cap / CHUNK_SIZE (rounded up) chunk pointers */
    uint32_t n_chunks;
    uint32_t used;      /* slots ever handed out (the high-water mark) */
    uint32_t free_head; /* index + 1 of a released slot, 0 = none */
    uint32_t live;
    uint32_t *buckets; /* index + 1 of the first slot in the chain, 0 = empty */
    uint32_t n_buckets;
    uint32_t lru_head, lru_tail; /* most and least recently used token object (index + 1) */
    uint32_t n_session;          /* live session objects */
    _Atomic uint64_t evictions;
};

static uint32_t entry_hash(const ddsm_hentry *e)
{
    /* FNV-1a over the identity fields: not adversarial input (our own entries). */
    uint32_t h = 2166136261u;
    const uint8_t *p = e->asset.b;
    for (size_t i = 0; i < sizeof(e->asset.b); i++)
        h = (h ^ p[i]) * 16777619u;
    for (const char *s = e->path; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    for (int i = 0; i < 8; i++)
        h = (h ^ (uint8_t)(e->counter >> (8 * i))) * 16777619u;
    for (int i = 0; i < 4; i++)
        h = (h ^ (uint8_t)(e->variant >> (8 * i))) * 16777619u;
    for (int i = 0; i < 8; i++)
        h = (h ^ (uint8_t)((uint64_t)e->owner >> (8 * i))) * 16777619u;
    return h;
}

static bool entry_same(const ddsm_hentry *a, const ddsm_hentry *b)
{
    return memcmp(a->asset.b, b->asset.b, sizeof(a->asset.b)) == 0 && a->counter == b->counter &&
           a->variant == b->variant && a->owner == b->owner && strcmp(a->path, b->path) == 0;
}

static hslot *slot_at(ddsm_htab *t, uint32_t idx)
{
    hslot *chunk = atomic_load_explicit(&t->chunks[idx >> CHUNK_BITS], memory_order_acquire);
    return chunk == NULL ? NULL : &chunk[idx & (CHUNK_SIZE - 1)];
}

/* Write sections of a slot's contents (the table's lock held). */
static void slot_write_begin(hslot *s)
{
    atomic_store_explicit(&s->seq, atomic_load_explicit(&s->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void slot_write_end(hslot *s)
{
    atomic_store_explicit(&s->seq, atomic_load_explicit(&s->seq, memory_order_relaxed) + 1,
                          memory_order_release);
}

static void slot_store_entry(hslot *s, const ddsm_hentry *e)
{
    uint64_t w[ENTRY_WORDS] = {0};
    memcpy(w, e, sizeof(*e));
    for (size_t i = 0; i < ENTRY_WORDS; i++)
        atomic_store_explicit(&s->entry[i], w[i], memory_order_release);
}

static void slot_load_entry(hslot *s, memory_order order, ddsm_hentry *out)
{
    uint64_t w[ENTRY_WORDS];
    for (size_t i = 0; i < ENTRY_WORDS; i++)
        w[i] = atomic_load_explicit(&s->entry[i], order);
    memcpy(out, w, sizeof(*out));
}

static CK_OBJECT_HANDLE make_handle(const ddsm_htab *t, uint32_t gen, uint32_t idx)
{
    return DDSM_HANDLE_TOP | ((CK_OBJECT_HANDLE)gen << t->idx_bits) | idx;
}

/* The slot index and generation a handle names; false when it cannot be one of this table's. */
static bool split_handle(const ddsm_htab *t, CK_OBJECT_HANDLE h, uint32_t *idx, uint32_t *gen)
{
    if (!ddsm_handle_is_virtual(h))
        return false;
    *idx = (uint32_t)(h & ((1UL << t->idx_bits) - 1));
    *gen = (uint32_t)((h & ~DDSM_HANDLE_TOP) >> t->idx_bits);
    return *idx < t->cap && *gen < t->gen_max;
}

/* ---- the recency list (lock held) ---- */
static void lru_unlink_locked(ddsm_htab *t, uint32_t idx, hslot *s)
{
    if (s->lru_prev != 0)
        slot_at(t, s->lru_prev - 1)->lru_next = s->lru_next;
    else
        t->lru_head = s->lru_next;
    if (s->lru_next != 0)
        slot_at(t, s->lru_next - 1)->lru_prev = s->lru_prev;
    else
        t->lru_tail = s->lru_prev;
    s->lru_prev = s->lru_next = 0;
    (void)idx;
}

static void lru_push_head_locked(ddsm_htab *t, uint32_t idx, hslot *s)
{
    s->lru_prev = 0;
    s->lru_next = t->lru_head;
    if (t->lru_head != 0)
        slot_at(t, t->lru_head - 1)->lru_prev = idx + 1;
    else
        t->lru_tail = idx + 1;
    t->lru_head = idx + 1;
}

CK_RV ddsm_htab_new(uint32_t capacity, ddsm_htab **out)
{
    return ddsm_htab_new_gen(capacity, 0, out);
}

CK_RV ddsm_htab_new_gen(uint32_t capacity, unsigned gen_bits, ddsm_htab **out)
{
    CK_RV rv = CKR_HOST_MEMORY;
    ddsm_htab *t = NULL;
    unsigned idx_bits = 0;

    if (capacity == 0 || capacity > DDSM_HANDLE_CAP_MAX || out == NULL)
        return CKR_ARGUMENTS_BAD;
    while ((1UL << idx_bits) < capacity)
        idx_bits++;
    if (gen_bits == 0)
        gen_bits = 31 - idx_bits;
    if (gen_bits > 31 - idx_bits)
        return CKR_ARGUMENTS_BAD;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto out;
    t->cap = capacity;
    t->idx_bits = idx_bits;
    t->gen_max = (uint32_t)((1UL << gen_bits) - 1);
    t->n_chunks = (capacity + CHUNK_SIZE - 1) / CHUNK_SIZE;
    t->chunks = calloc(t->n_chunks, sizeof(*t->chunks));
    t->n_buckets = 1;
    while (t->n_buckets < capacity && t->n_buckets < (1U << 16))
        t->n_buckets <<= 1;
    t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
    if (t->chunks == NULL || t->buckets == NULL)
        goto out;
    rv = ddsm_mutex_new(&t->lock);
    if (rv != CKR_OK)
        goto out;
    *out = t;
    t = NULL;
out:
    ddsm_htab_free(t);
    return rv;
}

void ddsm_htab_free(ddsm_htab *t)
{
    if (t == NULL)
        return;
    if (t->chunks != NULL)
        for (uint32_t i = 0; i < t->n_chunks; i++)
            free(atomic_load(&t->chunks[i]));
    free(t->chunks);
    free(t->buckets);
    ddsm_mutex_free(t->lock);
    free(t);
}

/* Unlink slot idx from its hash chain. */
static void unhash_locked(ddsm_htab *t, uint32_t idx, const ddsm_hentry *e)
{
    uint32_t *link = &t->buckets[entry_hash(e) & (t->n_buckets - 1)];
    while (*link != 0) {
        hslot *cur = slot_at(t, *link - 1);
        if (*link - 1 == idx) {
            *link = cur->next;
            return;
        }
        link = &cur->next;
    }
}

/* Drop the live entry of slot idx (e is its entry): the slot's next occupant gets a new
 * generation, and a slot about to reach the reserved maximum is retired instead of wrapping
 * around, so an old handle can never match again. */
static void drop_locked(ddsm_htab *t, uint32_t idx, hslot *s, const ddsm_hentry *e)
{
    unhash_locked(t, idx, e);
    if (s->session)
        t->n_session--;
    else
        lru_unlink_locked(t, idx, s);
    slot_write_begin(s);
    atomic_store_explicit(&s->live, false, memory_order_release);
    uint32_t gen = atomic_load_explicit(&s->gen, memory_order_relaxed);
    if (gen + 1 >= t->gen_max)
        s->retired = true;
    else
        atomic_store_explicit(&s->gen, gen + 1, memory_order_release);
    slot_write_end(s);
    atomic_store_explicit(&s->ref, false, memory_order_relaxed);
    s->session = false;
    t->live--;
    if (!s->retired) {
        s->next_free = t->free_head;
        t->free_head = idx + 1;
    }
}

/* Make room: drop the least recently used token object. An entry looked up since it was last
 * here gets a second chance (to the head, its mark cleared), unless reclaimable() says it is dead
 * anyway; every entry is looked at at most twice. false when no token object is left to drop or
 * every slot freed was retired. */
static bool evict_one_locked(ddsm_htab *t, ddsm_htab_reclaimable_fn reclaimable, void *arg)
{
    for (uint64_t steps = 2 * (uint64_t)t->live + 1; t->lru_tail != 0 && steps > 0; steps--) {
        uint32_t idx = t->lru_tail - 1;
        hslot *s = slot_at(t, idx);
        ddsm_hentry e;
        slot_load_entry(s, memory_order_relaxed, &e);
        bool dead = reclaimable != NULL && reclaimable(&e, arg);
        if (!dead && atomic_load_explicit(&s->ref, memory_order_relaxed)) {
            atomic_store_explicit(&s->ref, false, memory_order_relaxed);
            lru_unlink_locked(t, idx, s);
            lru_push_head_locked(t, idx, s);
            continue;
        }
        drop_locked(t, idx, s, &e);
        atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
        if (t->free_head != 0)
            return true;
    }
    return false;
}

CK_RV ddsm_htab_intern(ddsm_htab *t, const ddsm_hentry *e, ddsm_htab_reclaimable_fn reclaimable,
                       void *arg, CK_OBJECT_HANDLE *out)
{
    CK_RV rv = CKR_OK;
    uint32_t bucket = entry_hash(e) & (t->n_buckets - 1);
    uint32_t idx;
    hslot *s;

    ddsm_mutex_lock(t->lock);
    for (uint32_t link = t->buckets[bucket]; link != 0; link = s->next) {
        ddsm_hentry have;
        s = slot_at(t, link - 1);
        if (!atomic_load_explicit(&s->live, memory_order_relaxed))
            continue;
        slot_load_entry(s, memory_order_relaxed, &have);
        if (entry_same(&have, e)) {
            if (!s->session) {
                lru_unlink_locked(t, link - 1, s);
                lru_push_head_locked(t, link - 1, s);
            }
            *out = make_handle(t, atomic_load_explicit(&s->gen, memory_order_relaxed), link - 1);
            goto out;
        }
    }
    if (t->free_head == 0 && t->used == t->cap && !evict_one_locked(t, reclaimable, arg)) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (t->free_head != 0) {
        idx = t->free_head - 1;
        s = slot_at(t, idx);
        t->free_head = s->next_free;
    } else {
        idx = t->used;
        if (slot_at(t, idx) == NULL) {
            hslot *chunk = calloc(CHUNK_SIZE, sizeof(*chunk));
            if (chunk == NULL) {
                rv = CKR_HOST_MEMORY;
                goto out;
            }
            /* Generation 0 is fine for a fresh slot: the handle still has its top bit set. */
            atomic_store_explicit(&t->chunks[idx >> CHUNK_BITS], chunk, memory_order_release);
        }
        s = slot_at(t, idx);
        t->used++;
    }
    slot_write_begin(s);
    slot_store_entry(s, e);
    atomic_store_explicit(&s->live, true, memory_order_release);
    slot_write_end(s);
    s->next = t->buckets[bucket];
    t->buckets[bucket] = idx + 1;
    t->live++;
    s->session = e->owner != 0;
    if (s->session)
        t->n_session++;
    else
        lru_push_head_locked(t, idx, s);
    *out = make_handle(t, atomic_load_explicit(&s->gen, memory_order_relaxed), idx);
out:
    ddsm_mutex_unlock(t->lock);
    return rv;
}

CK_RV ddsm_htab_get(ddsm_htab *t, CK_OBJECT_HANDLE h, ddsm_hentry *out)
{
    CK_RV rv = CKR_OBJECT_HANDLE_INVALID;
    uint32_t idx, gen;
    if (!split_handle(t, h, &idx, &gen))
        return rv;
    hslot *s = slot_at(t, idx);
    if (s == NULL)
        return rv;
    ddsm_hentry copy;
    bool live;
    uint32_t have_gen;
    for (;;) {
        unsigned before = atomic_load_explicit(&s->seq, memory_order_acquire);
        if ((before & 1) != 0) {
            sched_yield(); /* an intern or a reclaim is writing this very slot */
            continue;
        }
        live = atomic_load_explicit(&s->live, memory_order_acquire);
        have_gen = atomic_load_explicit(&s->gen, memory_order_acquire);
        if (live && have_gen == gen)
            slot_load_entry(s, memory_order_acquire, &copy);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == before)
            break;
    }
    if (live && have_gen == gen) {
        *out = copy;
        rv = CKR_OK;
        /* A racing reuse of the slot may see this mark too: one spurious second chance. */
        if (!atomic_load_explicit(&s->ref, memory_order_relaxed))
            atomic_store_explicit(&s->ref, true, memory_order_relaxed);
    }
    return rv;
}

CK_RV ddsm_htab_release(ddsm_htab *t, CK_OBJECT_HANDLE h)
{
    CK_RV rv = CKR_OBJECT_HANDLE_INVALID;
    uint32_t idx, gen;
    if (!split_handle(t, h, &idx, &gen))
        return rv;
    ddsm_mutex_lock(t->lock);
    hslot *s = slot_at(t, idx);
    if (s != NULL && atomic_load_explicit(&s->live, memory_order_relaxed) &&
        atomic_load_explicit(&s->gen, memory_order_relaxed) == gen) {
        ddsm_hentry e;
        slot_load_entry(s, memory_order_relaxed, &e);
        drop_locked(t, idx, s, &e);
        rv = CKR_OK;
    }
    ddsm_mutex_unlock(t->lock);
    return rv;
}

/* Slot idx when it holds a live session object of owner (its entry in *e), else NULL. Called
 * with the table's lock held. */
static hslot *owned_locked(ddsm_htab *t, uint32_t idx, CK_SESSION_HANDLE owner, ddsm_hentry *e)
{
    hslot *s = slot_at(t, idx);
    if (s == NULL || !s->session || !atomic_load_explicit(&s->live, memory_order_relaxed))
        return NULL;
    slot_load_entry(s, memory_order_relaxed, e);
    return e->owner == owner ? s : NULL;
}

void ddsm_htab_release_owner(ddsm_htab *t, CK_SESSION_HANDLE owner)
{
    ddsm_mutex_lock(t->lock);
    for (uint32_t idx = 0; idx < t->used && t->n_session > 0; idx++) {
        ddsm_hentry e;
        hslot *s = owned_locked(t, idx, owner, &e);
        if (s != NULL)
            drop_locked(t, idx, s, &e);
    }
    ddsm_mutex_unlock(t->lock);
}

size_t ddsm_htab_owned(ddsm_htab *t, CK_SESSION_HANDLE owner, CK_OBJECT_HANDLE *out, size_t max)
{
    size_t n = 0;
    ddsm_mutex_lock(t->lock);
    for (uint32_t idx = 0; idx < t->used && t->n_session > 0; idx++) {
        ddsm_hentry e;
        hslot *s = owned_locked(t, idx, owner, &e);
        if (s == NULL)
            continue;
        if (n < max)
            out[n] = make_handle(t, atomic_load_explicit(&s->gen, memory_order_relaxed), idx);
        n++;
    }
    ddsm_mutex_unlock(t->lock);
    return n;
}

uint64_t ddsm_htab_evictions(ddsm_htab *t)
{
    return atomic_load_explicit(&t->evictions, memory_order_relaxed);
}

uint32_t ddsm_htab_live(ddsm_htab *t)
{
    ddsm_mutex_lock(t->lock);
    uint32_t n = t->live;
    ddsm_mutex_unlock(t->lock);
    return n;
}
