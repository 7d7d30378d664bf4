/* SPDX-License-Identifier: Apache-2.0 */
/* The small direct-mapped asset cache (store_audit.h) from which chained statements take their
 * expectations: whether an asset exists, its state and counter, its zone.
 *
 * Invariants:
 *  - Not thread-safe: its owner (one store, one writer of the batcher) serialises every call.
 *  - It holds guesses, never the truth: the statement checks every expectation in the database,
 *    so a stale entry costs one more round trip.
 *  - An entry answers only for the asset whose full id it holds; another asset mapping to the same
 *    slot replaces it. */
#include <stdio.h>
#include <string.h>

#include "ddsm/uuid.h"
#include "store_audit.h"

static size_t cache_slot(const ddsm_uuid *a)
{
    /* Random v4 ids: their bytes are already well spread. */
    return ((size_t)a->b[15] | (size_t)a->b[14] << 8) % DDSM_ASSET_CACHE_SLOTS;
}

bool ddsm_asset_cache_get(const struct ddsm_asset_cache *c, const ddsm_uuid *a, bool *found,
                          ddsm_state *state, uint64_t *counter)
{
    const struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    if (!e->used || memcmp(e->asset.b, a->b, sizeof a->b) != 0)
        return false;
    *found = e->found;
    *state = e->state;
    *counter = e->counter;
    return true;
}

void ddsm_asset_cache_put(struct ddsm_asset_cache *c, const ddsm_uuid *a, bool found,
                          ddsm_state state, uint64_t counter)
{
    struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    e->used = true;
    e->found = found;
    e->asset = *a;
    e->state = state;
    e->counter = counter;
    e->zone_off = false;
    e->zone[0] = '\0';
}

void ddsm_asset_cache_set_zone(struct ddsm_asset_cache *c, const ddsm_uuid *a, bool zone_off,
                               const char *zone)
{
    struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    if (!e->used || memcmp(e->asset.b, a->b, sizeof a->b) != 0)
        return;
    e->zone_off = zone_off;
    snprintf(e->zone, sizeof e->zone, "%s", zone != NULL ? zone : "");
}

void ddsm_asset_cache_get_zone(const struct ddsm_asset_cache *c, struct ddsm_batch_item *it)
{
    const struct ddsm_asset_cache_entry *e = &c->e[cache_slot(&it->asset)];
    it->zone_off = false;
    it->zone[0] = '\0';
    if (!e->used || memcmp(e->asset.b, it->asset.b, sizeof it->asset.b) != 0)
        return;
    it->zone_off = e->zone_off;
    snprintf(it->zone, sizeof it->zone, "%s", e->zone);
}

void ddsm_asset_cache_forget(struct ddsm_asset_cache *c, const ddsm_uuid *a)
{
    struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    if (e->used && memcmp(e->asset.b, a->b, sizeof a->b) == 0)
        e->used = false;
}
