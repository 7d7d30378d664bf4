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
#include "ddsm/pkcs11-compat.h"

/* [backend] extra_mechanisms, resolved: what the context adds to the built-in list. */
typedef struct ddsm_mechallow {
    CK_MECHANISM_TYPE extra[DDSM_BACKEND_MAX_EXTRA_MECHANISMS];
    size_t n_extra;
} ddsm_mechallow;

/* Whether the module passes m to the backend (the built-in list or a's extra mechanisms). The
 * check of an entry point's mechanism is ddsm_mech_check (ladder.h). */
bool ddsm_mech_allowed(const ddsm_mechallow *a, CK_MECHANISM_TYPE m);

/* Resolve cfg's [backend] extra_mechanisms into *out. CKR_FUNCTION_FAILED, logged with the file,
 * for a name the module does not know. */
CK_RV ddsm_mech_extra_load(const ddsm_config *cfg, ddsm_mechallow *out) DDSM_WUR;

#endif
