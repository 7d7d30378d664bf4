/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the files of the store handle (store.c, store_migrate.c, store_registry.c,
 * store_lifecycle.c, store_derive.c): the handle's shape, the names of its prepared statements,
 * and the registry row as every statement that answers with one returns it. A ddsm_store is one
 * connection used by one thread at a time: nothing behind this header locks in the process. */
#ifndef DDSM_STORE_INT_H
#define DDSM_STORE_INT_H

#include <stdint.h>

#include "ddsm/audit.h"
#include "ddsm/store.h"
#include "store_audit.h"
#include "store_pq.h"

/* The prepared statements, by index into prepared[] (store.c). */
enum { PREP_DERIVE, PREP_BATCH, PREP__COUNT };

struct ddsm_store {
    struct ddsm_pq pq;
    uint64_t prepared_gen[PREP__COUNT]; /* pq.generation each statement was prepared on */
    ddsm_audit_chain *chain;            /* attached chain (NULL: rows without MAC) */
    ddsm_audit_chain *owned_chain;      /* the chain of ddsm_store_attach_audit, freed with us */
    struct ddsm_asset_cache *cache;     /* expectations of chained derivations */
};

/* The columns of a ddsm_asset, in the order ddsm_store_asset_from_row reads them, for the table
 * alias t. The state is the effective one (see ddsm_effective_state in sql/001_init.sql). */
#define ASSET_COLS(t)                                                                             \
    t ".asset_id::text, " t ".label, " t ".key_type, " t ".default_path, "                        \
    t ".derivation_counter, ddsm_effective_state(" t ".state, " t ".grace_until), "             \
    "(extract(epoch FROM " t ".created_at) * 1000000)::bigint, "                                 \
    "(extract(epoch FROM " t ".updated_at) * 1000000)::bigint, "                                 \
    "CASE WHEN ddsm_effective_state(" t ".state, " t ".grace_until) = 'ROTATING' "               \
    "THEN (extract(epoch FROM " t ".grace_until) * 1000000)::bigint ELSE 0 END, "                \
    "CASE WHEN ddsm_effective_state(" t ".state, " t ".grace_until) = 'ROTATING' "               \
    "THEN greatest(1, (extract(epoch FROM " t ".grace_until - clock_timestamp()) * 1000000)"     \
    "::bigint) ELSE 0 END"
#define ASSET_NCOLS 10

/* The names of the prepared statements (their text: ddsm_store_derive_sql,
 * ddsm_store_derive_batch_sql, in store_derive.c). */
#define DERIVE_STMT "ddsm_derive"
#define BATCH_STMT "ddsm_derive_batch"
#define BATCH_NPARAMS 14

/* DDSM_E_NOT_FOUND ("no asset <shown>") when a statement about one asset found no row.
 * (store_registry.c) */
DDSM_WUR ddsm_err ddsm_store_require_asset_row(ddsm_store *st, const PGresult *res,
                                               const char *shown);
/* Read the ASSET_COLS starting at column col into *out (may be NULL: only check them).
 * DDSM_E_STORE when they do not fit a ddsm_asset. (store_registry.c) */
DDSM_WUR ddsm_err ddsm_store_asset_from_row(ddsm_store *st, const PGresult *res, int row, int col,
                                            ddsm_asset *out);

#endif
