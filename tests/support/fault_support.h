/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the fault tests (tests/integration/test_fault_*.c): a private PostgreSQL cluster a
 * test may stop and restart (scripts/lib/services on a directory of its own), configuration files
 * with chosen timeouts and backend library, the fault-injecting wrapper's control and call log,
 * and thread-safe helpers (no cmocka assertion: they may run on worker threads). */
#ifndef DDSM_FAULT_SUPPORT_H
#define DDSM_FAULT_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/path.h"

/* Run scripts/lib/services CMD DIR; returns its exit status (-1 when it could not run). */
int fs_services(const char *cmd, const char *dir);

/* Start a private cluster in $DDSM_TEST_DIR/<name> and give its directory and libpq conninfo
 * (database "postgres"). Fails the test when it cannot. Stop it with fs_services("stop", dir). */
void fs_cluster_start(const char *name, char *dir, size_t dir_len, char *conninfo,
                      size_t conninfo_len);

/* Write $DDSM_TEST_DIR/<name>.conf (mode 0600) and point $DDSM_CONF at it:
 *     [backend]  module (NULL: SoftHSM), token custody, root ddsm-root, then backend_keys
 *     [store]    conninfo (NULL: $DDSM_TEST_CONNINFO), then extra verbatim (more [store] keys,
 *                and further sections)
 * backend_keys and extra may be NULL. Returns the path (static storage). */
const char *fs_write_conf(const char *name, const char *module, const char *conninfo,
                          const char *backend_keys, const char *extra);

/* Nanoseconds / milliseconds on CLOCK_MONOTONIC. */
int64_t fs_now_ns(void);
int64_t fs_now_ms(void);

/* The key of (asset, path, counter) under the docs/design.md test seed 00..1f, computed in-process
 * with ddsm-core. false on any failure (bad input). Thread-safe, no assertion. */
bool fs_expected_key(const char *uuid_text, const char *path, uint64_t counter, uint8_t out[32]);
/* The same for a parsed path (any depth, 0 included: the asset seed of the EC keys). */
bool fs_expected_secret(const char *uuid_text, const ddsm_path *path, uint64_t counter,
                        uint8_t out[32]);

/* HMAC-SHA256 with raw key bytes (OpenSSL). Thread-safe, no assertion. */
void fs_hmac(const uint8_t key[32], const void *data, size_t len, uint8_t out[32]);

/* The binary form of a UUID in text. */
void fs_uuid_bytes(const char *text, uint8_t out[16]);

/* Replace the rules of the fault-injecting wrapper ($DDSM_FAULT_CTL) with text ("" = none). The
 * wrapper re-reads the file when its size or mtime changes; this waits long enough for the mtime
 * to differ. */
void fs_faults(const char *text);

/* Number of lines of the wrapper's call log ($DDSM_FAULT_LOG) that are exactly fn; truncate it. */
long fs_log_count(const char *fn);
void fs_log_reset(void);

/* How many of the n (path, counter) pairs of asset uuid_text lack a DERIVE row in the database of
 * conninfo (one query). */
long fs_missing_derive_rows(const char *conninfo, const char *uuid_text, const char *const *paths,
                            const uint64_t *counters, size_t n);

/* The pids of the server processes serving application_name 'ddsm-pkcs11' on the database of
 * conninfo (ordered, at most max); returns how many. */
size_t fs_module_backends(const char *conninfo, long *pids, size_t max);

#endif
