/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the store side (the store_*.c files, audit.c, batch.c): chain sealing, the
 * optimistic multi-row audit statement, and the small asset cache that feeds its expectations. */
#ifndef DDSM_STORE_AUDIT_H
#define DDSM_STORE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/audit.h"
#include "ddsm/policy.h"
#include "ddsm/store.h"
#include "store_pq.h"

/* The connection of a store, for the audit queries in audit.c. */
struct ddsm_pq *ddsm_store_pq(ddsm_store *st);
/* The chain attached to a store (NULL: none), for the policy statements in policy.c. */
ddsm_audit_chain *ddsm_store_chain(ddsm_store *st);
/* Run q on the store's connection with its reconnect-once rule (see store.c). *sent (may be
 * NULL) tells whether the statement may have reached the server. */
DDSM_WUR ddsm_err ddsm_store_run(ddsm_store *st, const struct ddsm_pq_query *q, bool idempotent,
                                 PGresult **res, bool *sent);
/* ddsm_store_run of one parameterised statement (sql with values[0..nparams), default bound). */
DDSM_WUR ddsm_err ddsm_store_run_params(ddsm_store *st, const char *what, const char *sql,
                                        int nparams, const char *const *values, bool idempotent,
                                        PGresult **res, bool *sent);

/* ------------------------------------------------------------------------------------------ */
/* Chains (audit.c) */

/* Give rows[0..n) the chain's instance id and the next n sequence numbers and compute their MACs,
 * chained from the last committed row (nothing advances yet). rows[i].instance points into the
 * chain and stays valid until the next settle. DDSM_E_ARG when the chain is already sealing
 * (shared between two connections). */
DDSM_WUR ddsm_err ddsm_audit_chain_seal(ddsm_audit_chain *c, ddsm_audit_row *rows, size_t n,
                                        uint8_t (*macs)[DDSM_AUDIT_MAC_LEN]);

enum ddsm_chain_outcome {
    DDSM_CHAIN_COMMITTED,   /* the rows are in: advance by n */
    DDSM_CHAIN_NOT_WRITTEN, /* provably not written: the same numbers are used again */
    DDSM_CHAIN_UNKNOWN,     /* maybe written: continue under a new instance id */
};
/* The outcome of a sealed statement that failed with err; sent: whether it may have reached the
 * server (ddsm_store_run). (store_derive.c) */
enum ddsm_chain_outcome ddsm_chain_failed_outcome(ddsm_err err, bool sent);
/* End the seal: last_mac is the MAC of the last sealed row (used when COMMITTED). */
void ddsm_audit_chain_settle(ddsm_audit_chain *c, size_t n,
                             const uint8_t last_mac[DDSM_AUDIT_MAC_LEN],
                             enum ddsm_chain_outcome outcome);

/* HMAC-SHA256 of msg under a checkpoint key (DDSM_E_ARG for any other key). (audit.c) */
DDSM_WUR ddsm_err ddsm_audit_checkpoint_mac(const ddsm_audit_key *k, const uint8_t *msg,
                                            size_t len, uint8_t out[DDSM_AUDIT_MAC_LEN]);

/* Current UTC time in microseconds (the ts of rows a chain writes). */
int64_t ddsm_audit_now_us(void);
/* ts as a timestamptz literal "YYYY-MM-DD HH:MM:SS.ffffff+00" (exact to the microsecond). */
void ddsm_audit_format_ts(int64_t us, char out[40]);

/* ------------------------------------------------------------------------------------------ */
/* The optimistic audit statement (store_derive.c) */

/* What the writer believes about an asset when it writes a row for it. */
enum ddsm_expect {
    DDSM_EXPECT_DERIVE,  /* exists, derivable, in exp_state with exp_counter: a DERIVE row */
    DDSM_EXPECT_REFUSED, /* exists, not derivable, in exp_state with exp_counter: a DENY row */
    DDSM_EXPECT_MISSING, /* does not exist: a DENY row */
    DDSM_EXPECT_NONE,    /* a policy refusal (deny_reason): a DENY row, nothing checked */
    DDSM_EXPECT_ZONE_OFF, /* exists, its zone disabled: a DENY row (deny_reason = zone_reason) */
};

struct ddsm_batch_item {
    /* in */
    ddsm_uuid asset;
    const char *path;        /* canonical */
    const char *requester;   /* may be NULL */
    const char *deny_reason; /* non-NULL: a policy refusal (DDSM_EXPECT_NONE) */
    const char *detail;      /* the DERIVE row's detail (ddsm_derive_req.detail), may be NULL */
    enum ddsm_expect expect;
    ddsm_state exp_state;
    uint64_t exp_counter;
    /* out: what the statement found (also when it wrote nothing) */
    bool found;
    ddsm_state state;
    uint64_t counter;
    /* out: the asset's zone, and whether it is disabled: ddsm_batch_item_expect then turns a
     * derivation of it into a DENY row naming the zone (held in zone_reason). */
    bool zone_off;
    char zone[DDSM_ZONE_NAME_MAX + 1];
    char zone_reason[DDSM_ZONE_NAME_MAX + 32];
};

/* One statement, one transaction: checks every item's expectation against custody_keys (a
 * primary-key probe per row) and, when all hold, inserts one chained row per item (in order) and
 * upserts the chain's checkpoint. *written tells which happened; the items' found/state/counter
 * are filled either way. On an error the chain is settled as NOT_WRITTEN or UNKNOWN. */
DDSM_WUR ddsm_err ddsm_store_batch_exec(ddsm_store *st, ddsm_audit_chain *chain,
                                        struct ddsm_batch_item *items, size_t n, bool *written);

/* Fill the expectation of an item from what the cache (or a previous answer) says. A derivable
 * asset whose zone the item says is off (it->zone_off) is expected as a policy refusal. */
void ddsm_batch_item_expect(struct ddsm_batch_item *it, bool known, bool found, ddsm_state state,
                            uint64_t counter);
/* The caller's answer once its row is written: DDSM_OK with the counter and state (DERIVE),
 * DDSM_E_STATE with the state (refused), DDSM_E_NOT_FOUND, or DDSM_E_POLICY; msg says why. */
DDSM_WUR ddsm_err ddsm_batch_item_result(const struct ddsm_batch_item *it, char *msg, size_t cap,
                                         uint64_t *counter, ddsm_state *state);

/* ------------------------------------------------------------------------------------------ */
/* A small direct-mapped asset cache (not thread-safe: the owner locks; store_cache.c) */

/* Optimistic statements (derivations, transitions, batches) whose expectation keeps failing: the
 * asset changes under us faster than we can write. This many in a row and the write fails closed
 * ("try again"). */
#define DDSM_OPTIMISTIC_ATTEMPTS 5

#define DDSM_ASSET_CACHE_SLOTS 256
struct ddsm_asset_cache_entry {
    bool used;
    bool found;
    ddsm_uuid asset;
    ddsm_state state;
    uint64_t counter;
    bool zone_off; /* cleared by put; set by ddsm_asset_cache_set_zone */
    char zone[DDSM_ZONE_NAME_MAX + 1];
};
struct ddsm_asset_cache {
    struct ddsm_asset_cache_entry e[DDSM_ASSET_CACHE_SLOTS];
};
bool ddsm_asset_cache_get(const struct ddsm_asset_cache *c, const ddsm_uuid *a, bool *found,
                          ddsm_state *state, uint64_t *counter);
void ddsm_asset_cache_put(struct ddsm_asset_cache *c, const ddsm_uuid *a, bool found,
                          ddsm_state state, uint64_t counter);
void ddsm_asset_cache_forget(struct ddsm_asset_cache *c, const ddsm_uuid *a);
/* The zone of a cached asset (after put), and reading it back into an item. */
void ddsm_asset_cache_set_zone(struct ddsm_asset_cache *c, const ddsm_uuid *a, bool zone_off,
                               const char *zone);
void ddsm_asset_cache_get_zone(const struct ddsm_asset_cache *c, struct ddsm_batch_item *it);

#endif
