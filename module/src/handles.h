/* SPDX-License-Identifier: Apache-2.0 */
/* The handle table of virtual objects (docs/design.md "Objects and handles").
 *
 * A virtual handle is 32 bits: the top bit set (it marks our objects), an 11-bit generation tag,
 * and a 20-bit slot index:
 *
 *     1 | gggggggggggg (11) | iiiiiiiiiiiiiiiiiiii (20)
 *
 * Handles are never 0, stable for the life of the table (interning the same entry twice gives the
 * same handle), and a stale or forged handle is detected, never misread: a slot's generation is
 * bumped every time the slot is reused, and a slot whose generation would reach DDSM_HANDLE_GEN_MAX
 * is retired for good instead of wrapping around (so 0xFFFFFFFF is never issued: it is
 * CK_DDSM_ROOT_HANDLE). Values above 32 bits are never ours. Backend handles are below 2^31.
 *
 * Thread safety: interning and reclaiming take the table's mutex; looking a handle up takes no
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
void ddsm_htab_free(ddsm_htab *t); /* NULL accepted */

/* Called while the table is full: may the entry in this slot be dropped (its object can never be
 * used again, e.g. its counter is retired)? */
typedef bool (*ddsm_htab_reclaimable_fn)(const ddsm_hentry *e, void *arg);

/* The handle of the entry equal to e (asset, path, counter, variant), inserting it when new. When
 * every slot is taken, slots whose entry reclaimable() accepts are freed first; CKR_HOST_MEMORY
 * when none is. reclaimable may be NULL. */
CK_RV ddsm_htab_intern(ddsm_htab *t, const ddsm_hentry *e, ddsm_htab_reclaimable_fn reclaimable,
                       void *arg, CK_OBJECT_HANDLE *out) __attribute__((warn_unused_result));

/* Copy out the entry of h. CKR_OBJECT_HANDLE_INVALID when h is not a live handle of this table
 * (forged, out of range, or its slot was reused since). */
CK_RV ddsm_htab_get(ddsm_htab *t, CK_OBJECT_HANDLE h, ddsm_hentry *out)
    __attribute__((warn_unused_result));

/* Number of live entries (tests, logs). */
uint32_t ddsm_htab_live(ddsm_htab *t);

#endif
