/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's view of the database (`ddsmctl status`, `ddsmctl metrics`): read-only queries,
 * each one statement, none of them touching the derivation path's rows under lock. */
#ifndef DDSM_OPSVIEW_H
#define DDSM_OPSVIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/policy.h"
#include "ddsm/state.h"
#include "ddsm/store.h"

typedef struct ddsm_overview {
    char server_version[64]; /* "15.20" (server_version) */
    char last_migration[64]; /* name of the newest applied migration, "" when none */
    unsigned migrations_applied;
    uint64_t assets[DDSM_STATE__COUNT]; /* by effective state */
    uint64_t zones, zones_disabled;
    uint64_t assets_in_disabled_zones;
    bool has_rotation; /* the fields below describe the newest rotation */
    int64_t last_rotation_us;
    char last_rotation_label[DDSM_ASSET_LABEL_MAX + 1];
    int64_t last_rotation_from, last_rotation_to;
    uint64_t rotations;
    uint64_t chains;                /* checkpoints in custody_audit_chain_heads */
    int64_t chain_seq_max;          /* the longest chain's last seq */
    int64_t chain_newest_us;        /* the most recently moved checkpoint (0: none) */
    int64_t chain_oldest_us;        /* the checkpoint that moved least recently (0: none) */
    int64_t default_partition_rows; /* rows in custody_audit_log_default (should be 0) */
    bool current_partition;         /* the current month (UTC) has its partition */
    unsigned future_partitions;     /* partitions of months after the current one */
    int64_t now_us;                 /* the server's clock when this was read */
} ddsm_overview;

/* One statement; DDSM_E_STORE_DOWN when the store is unreachable. */
DDSM_WUR ddsm_err ddsm_overview_get(ddsm_store *st, ddsm_overview *out);

typedef struct ddsm_chain_head {
    const char *instance;
    int64_t seq;
    int64_t updated_us;
} ddsm_chain_head;
typedef int (*ddsm_chain_head_cb)(const ddsm_chain_head *h, void *arg);
/* The limit most recently moved checkpoints, newest first. */
DDSM_WUR ddsm_err ddsm_overview_chain_heads(ddsm_store *st, unsigned limit, ddsm_chain_head_cb cb,
                                            void *arg);

/* What happened in the last window_s seconds (server clock), from the audit log (a BRIN index
 * on ts keeps it a scan of the newest pages). DENY rows are classified by their detail into the
 * reasons the module counts (ddsm_denials_total): path, rate_requester_asset, rate_requester,
 * zone, mechanism, state, unknown_asset, other. */
#define DDSM_ACTIVITY_REASONS 8
typedef struct ddsm_activity {
    unsigned window_s;
    uint64_t derivations[DDSM_STATE__COUNT]; /* DERIVE rows by state_at_derivation */
    uint64_t denials[DDSM_ACTIVITY_REASONS];
    uint64_t lifecycle; /* REGISTER, ACTIVATE, ROTATE, GRACE_END, RETIRE, ZONE_* rows */
    uint64_t writers;   /* distinct instance ids that wrote */
} ddsm_activity;
const char *ddsm_activity_reason_name(unsigned i);
DDSM_WUR ddsm_err ddsm_overview_activity(ddsm_store *st, unsigned window_s, ddsm_activity *out);

#endif
