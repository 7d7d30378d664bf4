/* SPDX-License-Identifier: Apache-2.0 */
/* The tamper-evident audit log (docs/audit.md): the canonical row encoding, the HSM-derived audit
 * key, per-writer MAC chains, and the verify / reconcile / partition-maintenance logic that runs
 * over a store. No PKCS#11 types here. */
#ifndef DDSM_AUDIT_H
#define DDSM_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/derive.h"
#include "ddsm/err.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"

#define DDSM_AUDIT_MAC_LEN 32
#define DDSM_AUDIT_KEY_LEN 32
/* Longest instance id a chain accepts (text, printable ASCII). */
#define DDSM_AUDIT_INSTANCE_MAX 200
/* The first 8 bytes of every canonical row encoding: names the format version. */
#define DDSM_AUDIT_MAGIC "DDSMAUD1"

/* ------------------------------------------------------------------------------------------ */
/* An audit key: the HMAC-SHA256 key of a writer's chains (or the legacy shared key, or the
 * checkpoint key), held in secure memory only (a secret). */

typedef struct ddsm_audit_key ddsm_audit_key;

/* The reserved derivation docs/design.md names: ddsm_derive_secret(prf, nil UUID, depth 0, counter 0),
 * computed by prf (the HSM through the root key). */
DDSM_WUR ddsm_err ddsm_audit_key_derive(const ddsm_prf *prf, ddsm_audit_key **out);
/* Since migration 007 it is the legacy shared key: writers no longer use it, verify checks rows
 * written before per-writer keys began with it. */
/* Per-writer keys (docs/audit.md "The audit keys"): each writer chains its rows under its own key,
 * the reserved derivation of docs/design.md with the SP 800-108 Label DDSM_AUDIT_WRITER_LABEL and
 * the writer id as the Context:
 *   HMAC-SHA256(root, 00000001 || "DDSM-audit-writer-v1" || 00 || writer || 00000100)
 * A writer id is 1..DDSM_AUDIT_WRITER_MAX printable ASCII characters without '#'; the chains of
 * writer W are named "W/c<n>" (n decimal, no leading zero), "#<e>" appended after an unknown
 * outcome, so the writer of every chain is read off its instance id (ddsm_audit_writer_of). */
#define DDSM_AUDIT_WRITER_LABEL "DDSM-audit-writer-v1"
#define DDSM_AUDIT_WRITER_MAX (DDSM_AUDIT_INSTANCE_MAX - 16)
/* The key of checkpoint files (ddsm/audit_checkpoint.h): Label DDSM_AUDIT_CHECKPOINT_LABEL, an
 * empty Context. No writer ever derives it. */
#define DDSM_AUDIT_CHECKPOINT_LABEL "DDSM-audit-checkpoint-v1"
/* Longest reserved-derivation message: [i]4 || label || 00 || writer || [L]4. */
#define DDSM_AUDIT_KDF_MSG_MAX (4 + sizeof(DDSM_AUDIT_CHECKPOINT_LABEL) + DDSM_AUDIT_WRITER_MAX + 4)

/* The whole PRF input of writer's key into out (cap >= DDSM_AUDIT_KDF_MSG_MAX); returns its
 * length, 0 when writer is not a valid writer id. */
size_t ddsm_audit_writer_message(const char *writer, uint8_t *out, size_t cap);
DDSM_WUR ddsm_err ddsm_audit_writer_key_derive(const ddsm_prf *prf, const char *writer,
                                               ddsm_audit_key **out);
DDSM_WUR ddsm_err ddsm_audit_checkpoint_key_derive(const ddsm_prf *prf, ddsm_audit_key **out);
/* The writer a per-writer key belongs to; NULL for the legacy shared key and the checkpoint key. */
const char *ddsm_audit_key_writer(const ddsm_audit_key *k);
/* The writer of the chain named instance ("W/c<n>" or "W/c<n>#<e>") into out; false when the
 * name has no such form (a legacy chain, or not a chain of a per-writer key). */
bool ddsm_audit_writer_of(const char *instance, char *out, size_t cap);

/* From raw key bytes (a secret; copied): for tests and tools that already hold the key. */
DDSM_WUR ddsm_err ddsm_audit_key_from_secret(const uint8_t key_secret[DDSM_AUDIT_KEY_LEN],
                                             ddsm_audit_key **out);
void ddsm_audit_key_free(ddsm_audit_key *k); /* wipes; NULL accepted */

/* ------------------------------------------------------------------------------------------ */
/* Rows and their canonical encoding */

/* Every column the MAC covers, in canonical order. NULL pointers / has_* false are SQL NULL. */
typedef struct ddsm_audit_row {
    const char *event; /* DERIVE, REGISTER, ACTIVATE, ROTATE, GRACE_END, RETIRE, DENY */
    bool has_asset;
    ddsm_uuid asset;
    const char *path; /* canonical derivation path */
    bool has_counter;
    int64_t counter;
    const char *state; /* state_at_derivation */
    int64_t ts_us;     /* microseconds since 1970-01-01T00:00:00Z (the writer's clock) */
    const char *requester;
    const char *instance; /* instance_id of the chain */
    int64_t seq;          /* 1, 2, 3, ... within the chain */
    const char *detail;
} ddsm_audit_row;

/* The canonical bytes of r (docs/audit.md): DDSM_AUDIT_MAGIC, then the ten fields in the order
 * above, each as one tag byte (0 NULL, 1 present) and, when present, a 4-byte big-endian length
 * and the bytes (UTF-8 text, 16-byte UUID, 8-byte big-endian two's complement integers).
 * With out == NULL (or cap too small) only *len is set; DDSM_E_INPUT when a field does not fit. */
DDSM_WUR ddsm_err ddsm_audit_encode(const ddsm_audit_row *r, uint8_t *out, size_t cap, size_t *len);

/* mac = HMAC-SHA256(audit key, prev || canonical bytes of r). prev is 32 zero bytes for seq 1. */
DDSM_WUR ddsm_err ddsm_audit_row_mac(const ddsm_audit_key *k,
                                     const uint8_t prev[DDSM_AUDIT_MAC_LEN],
                                     const ddsm_audit_row *r, uint8_t out[DDSM_AUDIT_MAC_LEN]);

/* ------------------------------------------------------------------------------------------ */
/* Chains */

/* One writer's chain: an instance id and its sequence. Used by one store connection (one thread)
 * at a time. Holds its own copy of the audit key (a secret). */
typedef struct ddsm_audit_chain ddsm_audit_chain;

/* instance: 1..DDSM_AUDIT_INSTANCE_MAX printable ASCII characters, unique to this writer (make one
 * with ddsm_audit_instance_id). With a per-writer key it must be "<writer>/c<n>" of that key's
 * writer (DDSM_E_INPUT otherwise); a checkpoint key chains nothing (DDSM_E_ARG). The chain starts
 * at seq 1. */
DDSM_WUR ddsm_err ddsm_audit_chain_new(const ddsm_audit_key *k, const char *instance,
                                       ddsm_audit_chain **out);
void ddsm_audit_chain_free(ddsm_audit_chain *c); /* wipes; NULL accepted */
/* The instance id rows are written under now. After a write whose outcome is unknown (the link
 * died after the statement was sent) the chain continues under "<instance>#<n>" from seq 1, so a
 * row that may or may not have committed never leaves a hole in a chain. */
const char *ddsm_audit_chain_instance(const ddsm_audit_chain *c);
/* The last committed seq of the current instance id (0 before the first row). */
int64_t ddsm_audit_chain_seq(const ddsm_audit_chain *c);

/* A fresh instance id: "<prefix><hostname>/<pid>/<8 random hex digits>". prefix may be NULL
 * (the module) or e.g. "ddsmctl/". DDSM_E_INPUT when it does not fit in cap. */
DDSM_WUR ddsm_err ddsm_audit_instance_id(const char *prefix, char *out, size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* Verify: walk every chain (streaming, in one REPEATABLE READ READ ONLY transaction) */

typedef enum ddsm_audit_kind {
    DDSM_AUDIT_EDITED = 0,      /* MAC mismatch (or MAC removed) */
    DDSM_AUDIT_DELETED,         /* a gap in a chain's sequence */
    DDSM_AUDIT_REORDERED,       /* row ids disagree with the chain's order */
    DDSM_AUDIT_DUPLICATE,       /* a sequence number appears twice */
    DDSM_AUDIT_TRUNCATED,       /* the checkpoint proves rows after the last one */
    DDSM_AUDIT_CHECKPOINT,      /* a checkpoint missing, behind its chain, or not its last MAC */
    DDSM_AUDIT_UNAUTHENTICATED, /* rows without a chain written after migration 002 */
    DDSM_AUDIT_PRE_CHAIN,       /* rows from before migration 002 (never authenticated) */
    DDSM_AUDIT_LEGACY_KEY,      /* a row after migration 007 MACed under the legacy shared key */
    DDSM_AUDIT_ROLLED_BACK,     /* a chain behind (or off) its anchor in a checkpoint file */
    DDSM_AUDIT_CHAIN_GONE,      /* a chain of a checkpoint file with no row left */
    DDSM_AUDIT_ANCHOR,          /* a checkpoint file that does not verify, or a moved boundary */
    DDSM_AUDIT__KINDS
} ddsm_audit_kind;

const char *ddsm_audit_kind_name(ddsm_audit_kind k); /* "EDITED"... */

typedef struct ddsm_audit_finding {
    ddsm_audit_kind kind;
    const char *instance; /* NULL for (UN)AUTHENTICATED / PRE_CHAIN ranges */
    int64_t row_id;       /* the row concerned (0: none) */
    int64_t other_id;     /* the neighbour it is compared with (0: none) */
    int64_t seq_from;     /* sequence range concerned (0: none) */
    int64_t seq_to;
    int64_t id_to;      /* row id ranges (UNAUTHENTICATED, PRE_CHAIN): row_id..id_to */
    int64_t count;      /* rows concerned */
    const char *detail; /* one line for humans */
} ddsm_audit_finding;

/* Return non-zero to stop the walk (it then ends with DDSM_OK and the stats so far). */
typedef int (*ddsm_audit_finding_cb)(const ddsm_audit_finding *f, void *arg);
typedef void (*ddsm_audit_progress_cb)(uint64_t rows, uint64_t chains, void *arg);

typedef struct ddsm_audit_verify_opts {
    bool has_since;
    int64_t since_us;     /* only rows with ts >= since (partitions before it are pruned) */
    const char *instance; /* only this chain (NULL: every chain) */
    unsigned page_rows;   /* rows per FETCH; 0: 2000 */
    ddsm_audit_progress_cb progress; /* called after every page; may be NULL */
    void *progress_arg;
    /* The HSM's root PRF: rows from custody_audit_meta.writer_keys_from_id on (migration 007) are
     * checked under their writer's key, derived through it; rows before it under the key given to
     * ddsm_audit_verify (the legacy shared key). NULL: every row under that key (tests). */
    const ddsm_prf *prf;
} ddsm_audit_verify_opts;

typedef struct ddsm_audit_verify_stats {
    uint64_t rows;   /* chained rows walked */
    uint64_t chains; /* instance ids walked */
    uint64_t findings[DDSM_AUDIT__KINDS];
    uint64_t unchained_rows; /* rows counted by UNAUTHENTICATED and PRE_CHAIN findings */
} ddsm_audit_verify_stats;

/* The walk's query ($1 since as timestamptz, '-infinity' for all; $2 instance or NULL), for
 * EXPLAIN by tests: with a since, partitions before it are pruned. */
extern const char ddsm_audit_verify_sql[];

/* Walks and reports every finding through cb. DDSM_OK when the walk completed (findings or
 * not: look at stats); a store error otherwise (ddsm_store_errmsg says why). */
DDSM_WUR ddsm_err ddsm_audit_verify(ddsm_store *st, const ddsm_audit_key *k,
                                    const ddsm_audit_verify_opts *opts, ddsm_audit_finding_cb cb,
                                    void *arg, ddsm_audit_verify_stats *stats);

/* ------------------------------------------------------------------------------------------ */
/* Reconcile: registry counters against rotations and the audit log, in one set-based query */

typedef struct ddsm_reconcile_finding {
    const char *kind; /* COUNTER_DRIFT, MISSING_AUDIT_ENTRY, ROTATED_COUNTER_DERIVED */
    ddsm_uuid asset;
    const char *label;
    int64_t row_id;   /* the audit or rotation row concerned (0: none) */
    int64_t counter;  /* the counter found */
    int64_t expected; /* the counter that should have been there (-1: none) */
    const char *detail;
} ddsm_reconcile_finding;

typedef int (*ddsm_reconcile_cb)(const ddsm_reconcile_finding *f, void *arg);

typedef struct ddsm_reconcile_opts {
    bool has_since;
    int64_t since_us; /* DERIVE rows with ts >= since only (partitions before it are pruned) */
} ddsm_reconcile_opts;

/* Reports every finding through cb (non-zero stops); *count (may be NULL) gets their number. */
DDSM_WUR ddsm_err ddsm_audit_reconcile(ddsm_store *st, const ddsm_reconcile_opts *opts,
                                       ddsm_reconcile_cb cb, void *arg, uint64_t *count);

/* The reconcile query (parameter $1: since as timestamptz or NULL), for EXPLAIN by tests. */
extern const char ddsm_audit_reconcile_sql[];

/* ------------------------------------------------------------------------------------------ */
/* Partitions */

typedef struct ddsm_maintain_event {
    enum { DDSM_MAINTAIN_CREATED, DDSM_MAINTAIN_PRESENT, DDSM_MAINTAIN_STRAY } what;
    const char *month;      /* "2026-11" (UTC) */
    const char *partition;  /* its table name; NULL for strays */
    int64_t rows;           /* CREATED: rows moved in from the default partition; STRAY: rows */
    int64_t min_id, max_id; /* STRAY: the ids of those rows */
} ddsm_maintain_event;
typedef void (*ddsm_maintain_cb)(const ddsm_maintain_event *e, void *arg);

/* Make sure the monthly partitions of the current month (UTC) and the next `months` exist (rows
 * of those months waiting in the default partition move into them), then report, by month, the
 * rows still in the default partition. Idempotent; concurrent runs serialise. */
DDSM_WUR ddsm_err ddsm_audit_maintain(ddsm_store *st, unsigned months, ddsm_maintain_cb cb,
                                      void *arg, int64_t *stray_rows);

#endif
