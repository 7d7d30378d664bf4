/* SPDX-License-Identifier: Apache-2.0 */
/* THE one place where ddsm-core's errors become CK_RVs (and ulDeviceError detail codes). */
#ifndef DDSM_RV_H
#define DDSM_RV_H

#include "ddsm/err.h"
#include "ddsm/pkcs11-compat.h"

/* The same internal error means different things depending on what the caller was doing. */
typedef enum ddsm_rvctx {
    DDSM_RVCTX_GENERAL = 0, /* anything not below */
    DDSM_RVCTX_DERIVE,      /* C_DeriveKey(CKM_DDSM_DERIVE): the asset/path came in the parameter */
    DDSM_RVCTX_KEY,         /* using an existing virtual key handle for a crypto operation */
    DDSM_RVCTX_OBJECT,      /* attribute/object calls on an existing virtual handle */
    DDSM_RVCTX_INIT,        /* C_Initialize */
    DDSM_RVCTX__COUNT
} ddsm_rvctx;

/* The CK_RV for e in context ctx; *detail (may be NULL) gets the DDSM_DEVERR_* code that tells the
 * cause apart when the CK_RV is coarse, else DDSM_DEVERR_NONE. Never CKR_GENERAL_ERROR. */
CK_RV ddsm_rv_from_err(ddsm_err e, ddsm_rvctx ctx, CK_ULONG *detail);

/* A backend (HSM) failure during the module's own work (derivation sessions, root lookup): the
 * CK_RV the application sees and the detail code. Resource answers (CKR_HOST_MEMORY) pass through;
 * everything else is CKR_DEVICE_ERROR + DDSM_DEVERR_HSM_FAILED. */
CK_RV ddsm_rv_from_backend(CK_RV backend_rv, CK_ULONG *detail);

#endif
