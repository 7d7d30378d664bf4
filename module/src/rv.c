/* SPDX-License-Identifier: Apache-2.0 */
/* The ddsm_err -> CK_RV table. Choices worth knowing (they are part of the module's contract):
 *
 *  - Unknown asset in C_DeriveKey's parameter: CKR_MECHANISM_PARAM_INVALID (the parameter names
 *    something that does not exist). For a handle found earlier whose asset vanished:
 *    CKR_KEY_HANDLE_INVALID (crypto) / CKR_OBJECT_HANDLE_INVALID (attributes).
 *  - Asset not derivable (INITIALIZED, RETIRED) in C_DeriveKey: CKR_KEY_FUNCTION_NOT_PERMITTED
 *    (the root may not derive that key now). For an existing handle: the handle is dead,
 *    CKR_KEY_HANDLE_INVALID / CKR_OBJECT_HANDLE_INVALID, as docs/design.md "Lifecycle" says.
 *  - Policy refusal (path patterns): CKR_FUNCTION_REJECTED.
 *  - Store unreachable: CKR_DEVICE_ERROR + DDSM_DEVERR_STORE_DOWN; the store answering with an
 *    unexpected error (e.g. the audit insert refused): CKR_DEVICE_ERROR + DDSM_DEVERR_STORE_FAILED.
 *  - HSM failures: CKR_DEVICE_ERROR + DDSM_DEVERR_HSM_FAILED.
 *  - The database role lacks a privilege the module needs: CKR_DEVICE_ERROR +
 *    DDSM_DEVERR_STORE_PRIVILEGE; its session cannot have synchronous_commit at least "on":
 *    CKR_DEVICE_ERROR + DDSM_DEVERR_STORE_DURABILITY. Both are found when a connection is made,
 *    before any statement of the call, so nothing is written.
 *  - Configuration errors at C_Initialize: CKR_FUNCTION_FAILED (the only fitting code C_Initialize
 *    may return); the reason is logged with file and line. */
#include "rv.h"

#include "ddsm/pkcs11-ddsm.h"

struct rv_row {
    CK_RV rv[DDSM_RVCTX__COUNT];
    CK_ULONG detail;
};

/* Columns: GENERAL, DERIVE, KEY, OBJECT, INIT. */
static const struct rv_row rv_table[DDSM_E__COUNT] = {
    [DDSM_OK] = {{CKR_OK, CKR_OK, CKR_OK, CKR_OK, CKR_OK}, DDSM_DEVERR_NONE},
    [DDSM_E_ARG] = {{CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED,
                     CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED},
                    DDSM_DEVERR_INTERNAL},
    [DDSM_E_NOMEM] = {{CKR_HOST_MEMORY, CKR_HOST_MEMORY, CKR_HOST_MEMORY, CKR_HOST_MEMORY,
                       CKR_HOST_MEMORY},
                      DDSM_DEVERR_NONE},
    [DDSM_E_PATH] = {{CKR_ATTRIBUTE_VALUE_INVALID, CKR_MECHANISM_PARAM_INVALID,
                      CKR_KEY_HANDLE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, CKR_FUNCTION_FAILED},
                     DDSM_DEVERR_NONE},
    [DDSM_E_UUID] = {{CKR_ATTRIBUTE_VALUE_INVALID, CKR_MECHANISM_PARAM_INVALID,
                      CKR_KEY_HANDLE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, CKR_FUNCTION_FAILED},
                     DDSM_DEVERR_NONE},
    [DDSM_E_INPUT] = {{CKR_ARGUMENTS_BAD, CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD,
                       CKR_ARGUMENTS_BAD, CKR_FUNCTION_FAILED},
                      DDSM_DEVERR_NONE},
    [DDSM_E_CONFIG] = {{CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED,
                        CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED},
                       DDSM_DEVERR_NONE},
    [DDSM_E_STORE_DOWN] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                            CKR_FUNCTION_FAILED},
                           DDSM_DEVERR_STORE_DOWN},
    [DDSM_E_STORE] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                       CKR_FUNCTION_FAILED},
                      DDSM_DEVERR_STORE_FAILED},
    [DDSM_E_NOT_FOUND] = {{CKR_OBJECT_HANDLE_INVALID, CKR_MECHANISM_PARAM_INVALID,
                           CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID, CKR_FUNCTION_FAILED},
                          DDSM_DEVERR_NONE},
    [DDSM_E_EXISTS] = {{CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED,
                        CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED},
                       DDSM_DEVERR_STORE_FAILED},
    [DDSM_E_STATE] = {{CKR_KEY_FUNCTION_NOT_PERMITTED, CKR_KEY_FUNCTION_NOT_PERMITTED,
                       CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID, CKR_FUNCTION_FAILED},
                      DDSM_DEVERR_NONE},
    [DDSM_E_POLICY] = {{CKR_FUNCTION_REJECTED, CKR_FUNCTION_REJECTED, CKR_FUNCTION_REJECTED,
                        CKR_FUNCTION_REJECTED, CKR_FUNCTION_FAILED},
                       DDSM_DEVERR_NONE},
    [DDSM_E_HSM] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                     CKR_FUNCTION_FAILED},
                    DDSM_DEVERR_HSM_FAILED},
    [DDSM_E_CRYPTO] = {{CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED,
                        CKR_FUNCTION_FAILED, CKR_FUNCTION_FAILED},
                       DDSM_DEVERR_CRYPTO},
    [DDSM_E_IO] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                    CKR_FUNCTION_FAILED},
                   DDSM_DEVERR_CUSTODY_LOGIN},
    [DDSM_E_TIMEOUT] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                         CKR_FUNCTION_FAILED},
                        DDSM_DEVERR_TIMEOUT},
    [DDSM_E_PRIVILEGE] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                           CKR_FUNCTION_FAILED},
                          DDSM_DEVERR_STORE_PRIVILEGE},
    [DDSM_E_DURABILITY] = {{CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR, CKR_DEVICE_ERROR,
                            CKR_FUNCTION_FAILED},
                           DDSM_DEVERR_STORE_DURABILITY},
};

CK_RV ddsm_rv_from_err(ddsm_err e, ddsm_rvctx ctx, CK_ULONG *detail)
{
    CK_RV rv = CKR_FUNCTION_FAILED;
    CK_ULONG d = DDSM_DEVERR_INTERNAL;
    if ((unsigned)e < DDSM_E__COUNT && (unsigned)ctx < DDSM_RVCTX__COUNT) {
        rv = rv_table[e].rv[ctx];
        d = rv_table[e].detail;
    }
    if (detail != NULL)
        *detail = d;
    return rv;
}

CK_RV ddsm_rv_from_backend(CK_RV backend_rv, CK_ULONG *detail)
{
    CK_RV rv = CKR_DEVICE_ERROR;
    CK_ULONG d = DDSM_DEVERR_HSM_FAILED;
    switch (backend_rv) {
    case CKR_OK:
        rv = CKR_OK;
        d = DDSM_DEVERR_NONE;
        break;
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
        rv = backend_rv;
        d = DDSM_DEVERR_NONE;
        break;
    default:
        break;
    }
    if (detail != NULL)
        *detail = d;
    return rv;
}
