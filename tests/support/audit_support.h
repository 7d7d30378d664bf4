/* SPDX-License-Identifier: Apache-2.0 */
/* Fixture for the integration tests that drive ddsm-core's chained store and batcher directly (no
 * module, no HSM): an audit key derived in-process from a test seed, a migrated store on
 * $DDSM_TEST_CONNINFO with that key's chain attached, a libpq connection for checks, and assets
 * registered under unique labels. Include after <cmocka.h>. */
#ifndef DDSM_AUDIT_SUPPORT_H
#define DDSM_AUDIT_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "ddsm/audit.h"
#include "ddsm/state.h"
#include "ddsm/store.h"

/* Fail the test unless the ddsm_err of got is want; msg says more (the store's or the batcher's
 * message). */
#define assert_ddsm_err(got, want, msg)                                                            \
    do {                                                                                           \
        ddsm_err got_ = (got);                                                                     \
        if (got_ != (want))                                                                        \
            fail_msg("%s returned %s, expected %s: %s", #got, ddsm_err_str(got_),                  \
                     ddsm_err_str(want), (msg));                                                   \
    } while (0)

/* The audit key derived in-process from the 32 seed bytes seed_first, seed_first + 1, ...
 * 0 on success, -1 on failure (for cmocka group setups). */
int aus_key(uint8_t seed_first, ddsm_audit_key **key);

/* For a cmocka group setup: derive the audit key from the 32 seed bytes seed_first,
 * seed_first + 1, ..., open and migrate a store on $DDSM_TEST_CONNINFO, attach the chain of a
 * fresh instance id under instance_prefix, and connect libpq to the same database. 0 on success;
 * -1 (out-parameters untouched, nothing left open) when the key or the store fails. */
int aus_open(uint8_t seed_first, const char *instance_prefix, ddsm_audit_key **key, ddsm_store **st,
             PGconn **pg);
/* For the matching group teardown. */
void aus_close(ddsm_audit_key *key, ddsm_store *st, PGconn *pg);

/* "<prefix>-<pid>-<n>" with n counting up in this process: a label or instance no other test or
 * earlier call used. */
void aus_unique(const char *prefix, char *out, size_t cap);

/* Register an hmac asset (default path m/0) under a unique label with prefix, by requester, and
 * walk it to target (INITIALIZED, ACTIVE or RETIRED). Fails the test on any error. */
ddsm_asset aus_asset(ddsm_store *st, const char *prefix, const char *requester, ddsm_state target);

#endif
