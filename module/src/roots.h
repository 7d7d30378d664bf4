/* SPDX-License-Identifier: Apache-2.0 */
/* The module's own root sessions, on whichever token derives: the primary token's pool
 * (rootpool.h) alone, or with a standby token (standby.h) that derivations fail over to. This is
 * what derivation code holds: a session is taken, used for the HMACs of one derivation (or the
 * audit key's), and given back, and a session of either token goes back where it came from.
 *
 * Invariants:
 * - A session is held by one thread from acquire to release (or disown); rs->standby says which
 *   token's pool it belongs to, and nothing else decides it.
 * - The derivation's key bytes exist only in the caller's buffer and the call pool's secure
 *   memory; an answer not used (another counter's, or a call abandoned) is wiped there.
 * - The context owns both pools and fills this at C_Initialize; it is not changed afterwards. */
#ifndef DDSM_ROOTS_H
#define DDSM_ROOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "ddsm/derive.h"
#include "ddsm/uuid.h"
#include "hsmcall.h"
#include "rootpool.h"
#include "standby.h"

typedef struct ddsm_roots {
    const ddsm_config *cfg;
    ddsm_rootpool *primary;
    ddsm_standby *standby; /* NULL without [backend] standby_token_label */
} ddsm_roots;

/* One of the module's own sessions on the token that derives now, logged in, with the root's
 * handle there. On failure *detail gets a DDSM_DEVERR_* code. */
CK_RV ddsm_roots_acquire(const ddsm_roots *r, ddsm_rootsess *out, CK_ULONG *detail) DDSM_WUR;
/* broken: the session failed in a way that makes it unfit for reuse. */
void ddsm_roots_release(const ddsm_roots *r, const ddsm_rootsess *rs, bool broken);
/* A bounded call on rs->s timed out and the call pool quarantined the session (it closes it when
 * the stuck call returns): forget it here, without closing it. rs->s becomes CK_INVALID_HANDLE,
 * which ddsm_roots_release then ignores. */
void ddsm_roots_disown(const ddsm_roots *r, ddsm_rootsess *rs);
/* Look the root up again through rs->s (the backend called its cached handle invalid). */
CK_RV ddsm_roots_refresh(const ddsm_roots *r, ddsm_rootsess *rs, CK_ULONG *detail) DDSM_WUR;

/* The call pool of rs's token (NULL when calls go direct), and a ddsm_prf over its root through
 * rs, each HMAC bounded by that pool. */
ddsm_hsmcall *ddsm_roots_calls(const ddsm_roots *r, const ddsm_rootsess *rs);
void ddsm_roots_prf_init(const ddsm_roots *r, const ddsm_rootsess *rs, ddsm_hsmcall_prf_ctx *pctx,
                         ddsm_prf *prf);

/* The key of (asset, path, counter), computed by the HSM through rs: the HMAC bounded by rs's
 * call pool; the root's handle looked up again once when the backend calls it invalid; a session
 * the backend lost (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED) closed and replaced once by a
 * fresh one; with a standby, one failover to the other token (the audit row names the key, not
 * the session or the token, so the same row covers the second attempt). key is secret
 * (DDSM_KEY_LEN bytes). On failure: CKR_DEVICE_ERROR (or the backend's resource answer) with
 * *detail DDSM_DEVERR_TIMEOUT or DDSM_DEVERR_HSM_FAILED (or what a fresh session's setup said),
 * and *broken true when rs must not be reused. rs->s may come back CK_INVALID_HANDLE
 * (quarantined, or no fresh session could be had): ddsm_roots_release ignores it.
 * ahead: NULL, or the call ddsm_roots_derive_ahead started through rs. Its answer is used only
 * when it was the HMAC of exactly this (asset, path, counter) and the backend answered it;
 * otherwise it is wiped and the HMAC made now (a started call that timed out while queued is made
 * again; one the backend failed or that was quarantined counts as this derivation's call). The
 * call is collected whatever happens. */
CK_RV ddsm_roots_derive_secret(const ddsm_roots *r, ddsm_rootsess *rs, const ddsm_uuid *asset,
                               const ddsm_path *path, uint64_t counter, uint8_t key[DDSM_KEY_LEN],
                               CK_ULONG *detail, bool *broken, ddsm_hsmcall_ahead *ahead) DDSM_WUR;

/* Start the HMAC of (asset, path, counter) through rs on its call pool, before the audit row that
 * decides the counter. out->job stays NULL when none was started (no pool: the module may not
 * make threads; or see ddsm_hsmcall_start): the derivation then calls in sequence. */
void ddsm_roots_derive_ahead(const ddsm_roots *r, ddsm_rootsess *rs, const ddsm_uuid *asset,
                             const ddsm_path *path, uint64_t counter, ddsm_hsmcall_ahead *out);

/* The derivation will not use a started call (its audit round trip failed): wait for it and wipe
 * its answer. A quarantined session is disowned (rs->s becomes CK_INVALID_HANDLE) and *broken set,
 * as is *broken when the backend failed the call. Nothing when ahead->job is NULL. */
void ddsm_roots_ahead_drop(const ddsm_roots *r, ddsm_rootsess *rs, ddsm_hsmcall_ahead *ahead,
                           bool *broken);

#endif
