/* SPDX-License-Identifier: Apache-2.0 */
/* Which backend object is the root seed key: the secret key labelled [backend] root_key_label
 * whose fingerprint, computed inside the HSM, the store pins (docs/root.md). */
#ifndef DDSM_ROOTFIND_H
#define DDSM_ROOTFIND_H

#include "ctx.h"

/* Look for the root through rs->s (one of the module's own root sessions) and set rs->root.
 * Objects carrying the root's label whose fingerprint is not pinned are ignored (and logged once
 * per change of what was seen), never a reason to refuse. On failure CKR_DEVICE_ERROR (or a
 * resource CK_RV) with *detail: DDSM_DEVERR_ROOT_UNPINNED (the store pins no root, or predates
 * the pin), DDSM_DEVERR_ROOT_MISSING (no key carries the label), DDSM_DEVERR_ROOT_MISMATCH (keys
 * carry it, none has a pinned fingerprint), DDSM_DEVERR_ROOT_AMBIGUOUS (two different pinned
 * roots are both on the token), or the store's / HSM's own detail. */
CK_RV ddsm_root_find(ddsm_ctx *ctx, ddsm_rootsess *rs, CK_ULONG *detail) DDSM_WUR;

#endif
