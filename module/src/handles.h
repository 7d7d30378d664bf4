/* SPDX-License-Identifier: Apache-2.0 */
/* The handle table of virtual objects (docs/design.md "Objects and handles").
 *
 * A virtual handle is 32 bits: the top bit set (it marks our objects), a generation tag, and a slot
 * index of as many bits as the table's capacity needs (20 for the largest table, 2^20 slots; the
 * generation gets the other 31 - index bits):
 *
 *     1 | generation (31 - b bits) | index (b bits)
 *
 * Handles are never 0, stable while their entry lives (interning the same entry twice gives the
 * same handle), and a stale or forged handle is detected, never misread: a slot's generation is
 * bumped every time the slot is reused, and a slot whose generation would reach the field's
 * maximum is retired for good instead of wrapping around (so 0xFFFFFFFF is never issued: it is
 * CK_DDSM_ROOT_HANDLE). Values above 32 bits are never ours. Backend handles are below 2^31.
 *
 * The table never runs out while it holds token objects: when every slot is taken, the least
 * recently used token object's entry is dropped (its slot gets the next generation, so its old
 * handle is CKR_OBJECT_HANDLE_INVALID, never another key; a find or a derivation makes a new
 * handle for the same key). Recency is the order of interning, with a second chance for an entry
 * looked up since it last reached the end of that order (CLOCK), so that lookups take no lock.
 * Session objects (an owner session set) are never dropped that way: they live until their
 * session closes (ddsm_htab_release_owner) or they are destroyed (ddsm_htab_release). Each slot
 * takes at most 2^(31 - b) - 1 occupants in its life, so a process can issue about 2^31 handles in
 * all, whatever the capacity.
 *
 * Thread safety: interning and releasing take the table's mutex; looking a handle up takes no
 * lock at all (each slot has a sequence counter: a seqlock), so that signing threads share
 * nothing here. */
#ifndef DDSM_HANDLES_H
#define DDSM_HANDLES_H

#include <stdbool.h>
#include <stdint.h>

#include "ddsm/path.h"
#include "ddsm/pkcs11-compat.h"
#include "ddsm/uuid.h"

#define DDSM_HANDLE_TOP 0x80000000UL
/* The layout of the largest table (DDSM_HANDLE_CAP_MAX slots); smaller ones use fewer index bits
 * and more generation bits. */
#define DDSM_HANDLE_IDX_BITS 20
#define DDSM_HANDLE_CAP_MAX (1UL << DDSM_HANDLE_IDX_BITS)
#define DDSM_HANDLE_GEN_BITS 11
#define DDSM_HANDLE_GEN_MAX ((1U << DDSM_HANDLE_GEN_BITS) - 1) /* never issued */

/* What a virtual object is: the key of (asset, canonical path, counter) in one variant (key type
 * and usage flags, see vkey.h). aux is carried along for the owner (the asset record); it is not
 * part of the identity. */
typedef struct ddsm_hentry {
    ddsm_uuid asset;
    char path[DDSM_PATH_TEXT_MAX]; /* canonical */
    uint64_t counter;
    uint32_t variant;
    /* The session of a session object (CKA_TOKEN false), 0 for a token object. Part of the
     * identity: each session's session objects are its own. */
    CK_SESSION_HANDLE owner;
    void *aux;
} ddsm_hentry;

typedef struct ddsm_htab ddsm_htab;

/* Whether h has the shape of one of our handles (bit 31 set, nothing above bit 31). */
static inline bool ddsm_handle_is_virtual(CK_ULONG h)
{
    /* Widened first: shifting a 32-bit CK_ULONG by 32 is undefined. */
    return (h & DDSM_HANDLE_TOP) != 0 && ((uint64_t)h >> 32) == 0;
}

/* Whether h may be passed to the backend unchanged (below 2^31). */
static inline bool ddsm_handle_is_backend(CK_ULONG h)
{
    return h < DDSM_HANDLE_TOP;
}

/* capacity: number of slots, 1..DDSM_HANDLE_CAP_MAX. */
CK_RV ddsm_htab_new(uint32_t capacity, ddsm_htab **out) __attribute__((warn_unused_result));
/* The same with gen_bits generation bits (1..31 - the index bits; 0: all the others), so that a
 * test can reach the end of a slot's generations. */
CK_RV ddsm_htab_new_gen(uint32_t capacity, unsigned gen_bits, ddsm_htab **out)
    __attribute__((warn_unused_result));
void ddsm_htab_free(ddsm_htab *t); /* NULL accepted */

/* May the entry in this slot be dropped ahead of its turn (its object can never be used again,
 * e.g. its counter is retired)? */
typedef bool (*ddsm_htab_reclaimable_fn)(const ddsm_hentry *e, void *arg);

/* The handle of the entry equal to e (asset, path, counter, variant, owner), inserting it when new
 * and making it the most recently used. When every slot is taken, the least recently used token
 * object's entry is dropped (one whose reclaimable() is true goes without a second chance);
 * CKR_HOST_MEMORY only when every live entry is a session object (or every slot is retired).
 * reclaimable may be NULL. */
CK_RV ddsm_htab_intern(ddsm_htab *t, const ddsm_hentry *e, ddsm_htab_reclaimable_fn reclaimable,
                       void *arg, CK_OBJECT_HANDLE *out) __attribute__((warn_unused_result));

/* Drop the entry of h now (C_DestroyObject): its slot gets the next generation.
 * CKR_OBJECT_HANDLE_INVALID when h is not a live handle of this table. */
CK_RV ddsm_htab_release(ddsm_htab *t, CK_OBJECT_HANDLE h) __attribute__((warn_unused_result));

/* Drop every session object of owner (its session closed). Costs nothing while the table holds no
 * session object; otherwise a walk over the slots in use. */
void ddsm_htab_release_owner(ddsm_htab *t, CK_SESSION_HANDLE owner);

/* The handles of owner's live session objects, at most max into out; returns how many there are
 * (more than max when out was too short). Costs nothing while the table holds no session object. */
size_t ddsm_htab_owned(ddsm_htab *t, CK_SESSION_HANDLE owner, CK_OBJECT_HANDLE *out, size_t max);

/* Copy out the entry of h. CKR_OBJECT_HANDLE_INVALID when h is not a live handle of this table
 * (forged, out of range, or its slot was reused since). */
CK_RV ddsm_htab_get(ddsm_htab *t, CK_OBJECT_HANDLE h, ddsm_hentry *out)
    __attribute__((warn_unused_result));

/* Number of live entries (tests, logs). */
uint32_t ddsm_htab_live(ddsm_htab *t);
/* Number of entries dropped to make room since the table was made (tests, metrics). */
uint64_t ddsm_htab_evictions(ddsm_htab *t);

#endif
