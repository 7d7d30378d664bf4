/* SPDX-License-Identifier: Apache-2.0 */
/* The mechanism allowlist: the only mechanisms the module passes to the backend (C_DeriveKey,
 * C_WrapKey, C_UnwrapKey, the encrypt/decrypt/sign/verify/recover inits, C_DigestInit,
 * C_GenerateKey, C_GenerateKeyPair) and reports in C_GetMechanismList / C_GetMechanismInfo.
 *
 * A mechanism is on the list only when its parameter carries no object handle: a handle inside a
 * parameter (CKM_CONCATENATE_BASE_AND_KEY's, ECMQV's hPrivateData, the SP 800-108 KDFs' key
 * handle data) would reach the backend past the root guard, which sees only the handle
 * arguments. Unknown and vendor mechanisms are refused with CKR_MECHANISM_INVALID before anything
 * reaches the backend. [backend] extra_mechanisms extends the list (conf/ddsm.conf.example: the
 * operator takes on the risk of what those parameters may carry). */
#ifndef DDSM_MECHALLOW_H
#define DDSM_MECHALLOW_H

#include <stdbool.h>
#include <stddef.h>

#include "ddsm/config.h"
#include "ladder.h"

/* Whether the module passes m to the backend (the built-in list or ctx's extra mechanisms). */
bool ddsm_mech_allowed(const ddsm_ctx *ctx, CK_MECHANISM_TYPE m);

/* CKR_OK when m->mechanism is allowed, else CKR_MECHANISM_INVALID (logged with c->fn). */
CK_RV ddsm_mech_check(ddsm_call *c, const CK_MECHANISM *m) DDSM_WUR;

/* Resolve cfg's [backend] extra_mechanisms into out (room for
 * DDSM_BACKEND_MAX_EXTRA_MECHANISMS) and *n. CKR_FUNCTION_FAILED, logged with the file, for a
 * name the module does not know. */
CK_RV ddsm_mech_extra_load(const ddsm_config *cfg, CK_MECHANISM_TYPE *out, size_t *n) DDSM_WUR;

#endif
