/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoint files (docs/audit.md "Checkpoints outside the database"): the chain heads of the
 * store, MACed under the checkpoint key (ddsm_audit_checkpoint_key_derive), as stable text for
 * storage outside PostgreSQL; and the check of a store against such a file. No PKCS#11 here. */
#ifndef DDSM_AUDIT_CHECKPOINT_H
#define DDSM_AUDIT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ddsm/audit.h"
#include "ddsm/store.h"

/* The first line of every checkpoint file (format version 1). */
#define DDSM_CHECKPOINT_MAGIC "DDSM-AUDIT-CHECKPOINT 1"
/* Files larger than this are refused (about 100 000 chains). */
#define DDSM_CHECKPOINT_FILE_MAX (32u << 20)

/* Reads every chain head (custody_audit_chain_heads) and where per-writer keys begin, in one
 * snapshot, and writes the MACed file to out. *chains (may be NULL) gets the number of chains.
 * A store error leaves out untouched (the text is built first). */
DDSM_WUR ddsm_err ddsm_audit_checkpoint_write(ddsm_store *st, const ddsm_audit_key *ckey, FILE *out,
                                              uint64_t *chains);

/* Check the store against the file text[0..len): its MAC first (a file that does not verify is
 * one ANCHOR finding and nothing else is read from it), then, for each chain it anchors, that
 * the row at the anchored seq is still there with the anchored MAC (ROLLED_BACK when the chain
 * ends before it or has another row there, CHAIN_GONE when no row of the chain is left), and
 * that per-writer keys still begin at the same row id (ANCHOR). Findings go to cb (non-zero
 * stops) and are counted in stats->findings (stats may be NULL). DDSM_E_INPUT when the text is
 * not a checkpoint file (why says where); a store error otherwise (ddsm_store_errmsg). */
DDSM_WUR ddsm_err ddsm_audit_checkpoint_check(ddsm_store *st, const ddsm_audit_key *ckey,
                                              const char *text, size_t len,
                                              ddsm_audit_finding_cb cb, void *arg,
                                              ddsm_audit_verify_stats *stats, char *why,
                                              size_t why_cap);

#endif
