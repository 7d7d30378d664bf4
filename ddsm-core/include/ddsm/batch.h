/* SPDX-License-Identifier: Apache-2.0 */
/* Group commit (docs/audit.md "Group commit"): concurrent derivations in one process share one
 * multi-row statement that checks every asset's state and counter, inserts all their chained
 * audit rows and moves the chain's checkpoint, in one round trip and one transaction.
 *
 * Leader/follower: a caller queues its request; a caller that finds a free connection becomes
 * the leader, takes up to batch_max queued requests (its own among them when it is early enough)
 * and runs the statement with no lock held; the others wait on a condition variable. A lone
 * caller never waits for company: batch_wait_us applies only when other requests are already
 * queued while another batch is in flight. Each connection writes its own chain
 * ("<instance>/c<n>"), so batches on different connections are independent. While a batch is in
 * flight, the requests that arrive wait for it and go together in the next batch (concurrent
 * callers share statements); another connection is taken only when half a batch waits, or when
 * the batch in flight has run for 5 ms (stuck behind a lock or a slow server). */
#ifndef DDSM_BATCH_H
#define DDSM_BATCH_H

#include <stdint.h>

#include "ddsm/audit.h"
#include "ddsm/err.h"
#include "ddsm/state.h"
#include "ddsm/store.h"

typedef struct ddsm_batcher ddsm_batcher;

#define DDSM_BATCH_MAX_LIMIT 4096
#define DDSM_BATCH_CONNECTIONS_LIMIT 64
#define DDSM_BATCH_SIZE_BUCKETS 13

/* batch_max 1..4096 rows per statement (config [audit] batch_max), batch_wait_us 0..1000000
 * (config [audit] batch_wait_us), connections 1..64. key: the writer's audit key (copied into
 * each chain). instance: this process's writer id (ddsm_audit_instance_id), the key's writer for a
 * per-writer key; connection n writes the chain "<instance>/c<n>". Connects lazily. DDSM_E_INPUT for a value out of range. */
DDSM_WUR ddsm_err ddsm_batcher_new(const char *conninfo, const ddsm_store_opts *opts,
                                   unsigned batch_max, unsigned batch_wait_us, unsigned connections,
                                   const ddsm_audit_key *key, const char *instance,
                                   ddsm_batcher **out);
/* No call may be in progress. NULL accepted. */
void ddsm_batcher_free(ddsm_batcher *b);

/* Blocks until the caller's own audit row is durably committed, or fails. The results are those
 * of ddsm_store_derive with a chain attached: DDSM_OK with the counter (and state, which may be
 * NULL); DDSM_E_STATE (state set) and DDSM_E_NOT_FOUND once the refusal's DENY row is committed;
 * DDSM_E_POLICY once the DENY row of a derivable asset whose zone is disabled is committed
 * (ddsm_batcher_errmsg names the zone; sql/003_policy.sql);
 * DDSM_E_PATH for a path that is not canonical (nothing written); and when the batch's statement
 * fails, the same error for every caller in the batch (DDSM_E_STORE_DOWN when PostgreSQL is
 * unreachable), with none of its rows written. req->instance is ignored. */
DDSM_WUR ddsm_err ddsm_batcher_derive(ddsm_batcher *b, const ddsm_derive_req *req,
                                      uint64_t *counter, ddsm_state *state);

/* Record a request refused by policy as a DENY row (reason in detail, 1..500 characters), through
 * the same batches. DDSM_OK once the row is committed. */
DDSM_WUR ddsm_err ddsm_batcher_deny(ddsm_batcher *b, const ddsm_derive_req *req,
                                    const char *reason);

/* The calling thread's last error message from ddsm_batcher_derive / _deny (never NULL). */
const char *ddsm_batcher_errmsg(void);

/* Forget what the batcher believes about an asset (call it from the NOTIFY listener). Stale
 * beliefs are never unsafe (the statement checks them); they cost one more round trip. */
void ddsm_batcher_invalidate(ddsm_batcher *b, const ddsm_uuid *asset);

typedef struct ddsm_batch_stats {
    uint64_t requests;          /* calls that reached a batch */
    uint64_t batches;           /* batches run (a batch may take several round trips) */
    uint64_t rows;              /* rows written */
    uint64_t round_trips;       /* statements sent */
    uint64_t retries;           /* round trips repeated because an expectation was stale */
    uint64_t waits;             /* times a leader waited batch_wait_us for company */
    uint64_t multi_row_batches; /* batches of more than one request */
    uint64_t max_batch;         /* most requests in one batch */
    uint64_t failed_batches;    /* batches whose statement failed */
    /* batches by size: size_buckets[i] counts batches of 2^(i-1) + 1 .. 2^i requests (i = 0: one
     * request), not cumulative; 4096 = 2^12 is the largest batch */
    uint64_t size_buckets[DDSM_BATCH_SIZE_BUCKETS];
    uint64_t size_sum; /* requests over every batch run (the histogram's sum) */
} ddsm_batch_stats;
void ddsm_batcher_stats(ddsm_batcher *b, ddsm_batch_stats *out);

#endif
