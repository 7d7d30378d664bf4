/* SPDX-License-Identifier: Apache-2.0 */
/* Which backend object is the root seed key: the secret key labelled [backend] root_key_label
 * whose fingerprint, computed inside the HSM, the store pins (docs/root.md). */
#ifndef DDSM_ROOTFIND_H
#define DDSM_ROOTFIND_H

#include <stdatomic.h>
#include <stdbool.h>

#include "ddsm/hsm.h"
#include "hsmcall.h"
#include "storepool.h"

/* What the root lookups of a process share, whichever token they look at: the label, where the
 * pins are read, and what they last logged. The context owns it; the root tokens' session pools
 * (rootpool.h, standby.h) use it. */
typedef struct ddsm_rootfind {
    const char *label;   /* [backend] root_key_label */
    unsigned timeout_ms; /* [backend] call_timeout_ms, named in the log */
    ddsm_storepool pins; /* the store pool the pins are read through */
    /* What lookups last logged, plus one; 0 = nothing yet. */
    _Atomic unsigned logged_ignored;
    _Atomic CK_ULONG logged_detail;
} ddsm_rootfind;

/* Look for the root through s, one of the module's own root sessions on the token of h, each
 * fingerprint's HMAC bounded by calls (NULL: direct), and set *root. When calls quarantined s (no
 * answer in time), *quarantined is set: s is the pool's now, and the caller forgets it (its
 * disown). Objects carrying the root's label whose fingerprint is not pinned are ignored (and
 * logged once per change of what was seen), never a reason to refuse. On failure
 * CKR_DEVICE_ERROR (or a resource CK_RV) with *detail: DDSM_DEVERR_ROOT_UNPINNED (the store pins
 * no root, or predates the pin), DDSM_DEVERR_ROOT_MISSING (no key carries the label),
 * DDSM_DEVERR_ROOT_MISMATCH (keys carry it, none has a pinned fingerprint),
 * DDSM_DEVERR_ROOT_AMBIGUOUS (two different pinned roots are both on the token), or the store's /
 * HSM's own detail. */
CK_RV ddsm_root_find(ddsm_rootfind *rf, ddsm_hsm *h, ddsm_hsmcall *calls, CK_SESSION_HANDLE s,
                     CK_OBJECT_HANDLE *root, bool *quarantined, CK_ULONG *detail) DDSM_WUR;

#endif
