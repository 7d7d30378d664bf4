/* SPDX-License-Identifier: Apache-2.0 */
/* The module's policy gate (docs/policy.md): who asks (the requester, with the user named by
 * C_LoginUser), the rate limits in front of every derivation, the compliance zone in front of
 * every derivation and every use of a derived key, and the mechanisms derived keys may serve.
 *
 * Every refusal is CKR_FUNCTION_REJECTED with a DDSM_DEVERR_POLICY_* detail in the session's
 * ulDeviceError, a DENY audit row whose detail gives the reason, one log line, and a count in
 * ddsm_denials_total; it changes nothing else. Refusals for the asset's state (INITIALIZED,
 * RETIRED) keep their own codes (rv.c).
 *
 * Two files: policy.c keeps the gate's state (the requester, the rate-limit buckets and their
 * refill thread, the mechanisms, the zones known to be off) and needs nothing of the module but
 * what its owner hands to ddsm_mpolicy_new; policy_call.c gives a call its answer (the functions
 * below that take a ddsm_call or the context), at the level of the check ladder. */
#ifndef DDSM_MODULE_POLICY_H
#define DDSM_MODULE_POLICY_H

#include <stdbool.h>

#include "ddsm/config.h"
#include "ddsm/policy.h"
#include "ddsm/store.h"
#include "handles.h"
#include "metrics.h"
#include "storepool.h"
#include "vkey.h"

typedef struct ddsm_mpolicy ddsm_mpolicy;
struct ddsm_call;

/* app: the application's name ([policy] requester, else the program's). can_thread: whether the
 * application lets the module create threads (the refill thread is one). Mechanism names of
 * [policy] mechanism that the module does not know: CKR_FUNCTION_FAILED (logged). pool: where
 * rate-limit leases get a store connection, on the calling thread or the refill thread. */
CK_RV ddsm_mpolicy_new(const ddsm_config *cfg, const char *app, const ddsm_storepool *pool,
                       bool can_thread, ddsm_mpolicy **out) DDSM_WUR;
/* Stops the refill thread. NULL accepted. */
void ddsm_mpolicy_free(ddsm_mpolicy *p);
ddsm_ratelimit *ddsm_mpolicy_ratelimit(const ddsm_mpolicy *p); /* NULL when p is */

/* ---- the requester ---- */

/* "<application>" or, after C_LoginUser, "<application>/<user>". Login state is the
 * application's (PKCS#11: per application and token), so the user names every derivation of
 * every session until the logout or the last session closes. */
/* Bytes (NUL included) of the program part of the requester, "<app>" of "<app>/<user>". */
#define DDSM_MPOLICY_APP_CAP (DDSM_REQUESTER_MAX - 64)
void ddsm_mpolicy_requester(ddsm_mpolicy *p, char out[DDSM_REQUESTER_MAX + 1]);
/* The user name of C_LoginUser: 1..64 bytes of UTF-8 without control characters.
 * CKR_ARGUMENTS_BAD otherwise (nothing changes). */
CK_RV ddsm_mpolicy_check_user(const CK_UTF8CHAR *name, CK_ULONG len) DDSM_WUR;
void ddsm_mpolicy_set_user(ddsm_mpolicy *p, const CK_UTF8CHAR *name, CK_ULONG len);
void ddsm_mpolicy_clear_user(ddsm_mpolicy *p);

/* ---- gates ---- */

/* Refuse: CKR_FUNCTION_REJECTED with the detail of why, the DENY row (reason), the log line and
 * the count. canon_path may be NULL. */
CK_RV ddsm_mpolicy_refuse(struct ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                          ddsm_deny_reason why, const char *reason) DDSM_WUR;

/* Whether one more DENY row for an unknown asset or a refused path may be written: a per-process
 * bucket of [policy] deny_burst rows refilled at deny_per_minute, so that a logged-in caller
 * cannot flood the audit log with refusals it provokes. When true, *left_out is the number of such
 * rows left out since the last one written (to say so in this one). */
bool ddsm_mpolicy_deny_row(ddsm_mpolicy *p, uint64_t *left_out);

/* In front of every derivation (C_DeriveKey, first use of a found key): take a token of each
 * configured rate limit for (requester, asset). May lease tokens from the database (only when
 * the local bucket is empty: the first derivation of a window, or a burst faster than the
 * background refill). Store down during a needed lease: CKR_DEVICE_ERROR (fail closed). */
CK_RV ddsm_mpolicy_rate(struct ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                        const char *requester) DDSM_WUR;

/* In front of every crypto use of a derived key (not attribute calls): refused while the
 * asset's zone is disabled. Lock-free while no zone is disabled. */
CK_RV ddsm_mpolicy_key_use(struct ddsm_call *c, const ddsm_hentry *e, ddsm_use use) DDSM_WUR;

/* At C_*Init with a derived key: the mechanism must be one of [policy] mechanism (when set). */
CK_RV ddsm_mpolicy_mechanism(struct ddsm_call *c, const ddsm_hentry *e,
                             CK_MECHANISM_TYPE m) DDSM_WUR;

/* ---- the gate's state, for policy_call.c ---- */

/* The rate limits' verdict on one derivation (ddsm_mpolicy_rate_take). */
typedef enum ddsm_mpolicy_verdict {
    DDSM_MPOLICY_PASS,   /* allowed */
    DDSM_MPOLICY_REFUSE, /* refused: why and reason say so */
    DDSM_MPOLICY_FAIL,   /* no lease could be made (err): fail closed */
} ddsm_mpolicy_verdict;
/* Take a token of each configured rate limit for (requester, asset), leasing through the pool
 * when a bucket is empty (and starting the refill thread at the first use). reason: room for
 * DDSM_MPOLICY_REASON_MAX bytes. */
#define DDSM_MPOLICY_REASON_MAX 160
ddsm_mpolicy_verdict ddsm_mpolicy_rate_take(ddsm_mpolicy *p, const ddsm_uuid *asset,
                                            const char *requester, ddsm_deny_reason *why,
                                            char reason[DDSM_MPOLICY_REASON_MAX], ddsm_err *err);
/* Whether [policy] mechanism allows m (true when it is not set). */
bool ddsm_mpolicy_mech_allowed(const ddsm_mpolicy *p, CK_MECHANISM_TYPE m);
/* Whether the asset's zone is known to be off; then its name into zone. Lock-free while no zone
 * is off. */
bool ddsm_mpolicy_zone_off(ddsm_mpolicy *p, const ddsm_uuid *asset,
                           char zone[DDSM_ZONE_NAME_MAX + 1]);
/* Record what is known of an asset's zone (the table only: ddsm_ctx_zone_note also drops the
 * asset's keys). */
void ddsm_mpolicy_zone_set(ddsm_mpolicy *p, const ddsm_uuid *asset, bool enabled,
                           const char *zone);

/* ---- zones ---- */

/* The derivation statement refused because the asset's zone is disabled (the batcher's
 * DDSM_E_POLICY; its DENY row is written): note the zone (named in store_msg), count it, and
 * answer CKR_FUNCTION_REJECTED with DDSM_DEVERR_POLICY_ZONE. */
CK_RV ddsm_mpolicy_zone_refused(struct ddsm_call *c, const ddsm_uuid *asset,
                                const char *store_msg) DDSM_WUR;
#endif
