/* SPDX-License-Identifier: Apache-2.0 */
/* Slot and token management. One slot, numbered 0 (DDSM_SLOT_ID), is the configured backend
 * token's slot; every other slot id is CKR_SLOT_ID_INVALID. Slot, token and mechanism information
 * come from the backend. The mechanism list is the backend's, narrowed to the mechanisms the
 * module passes on (mechallow.h; C_GetMechanismInfo of any other is CKR_MECHANISM_INVALID), with
 * CKM_DDSM_DERIVE and the EC signature mechanisms of virtual signing keys (CKM_ECDSA,
 * CKM_ECDSA_SHA256, CKM_EDDSA: ec.h) added; their C_GetMechanismInfo merges ours with the
 * backend's (its own keys keep using them).
 *
 * C_InitToken would erase the token, root seed key included: it is refused with
 * CKR_TOKEN_WRITE_PROTECTED when the root lives on the fronted token (initialise tokens with the
 * backend's own tools; 2.40 allows CKR_ACTION_PROHIBITED only from C_CopyObject,
 * C_SetAttributeValue and C_DestroyObject), and forwarded when the root is on a separate custody
 * token. C_InitPIN and
 * C_SetPIN are plain forwards (forward.c). */
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ec.h"
#include "entry.h"
#include "ladder.h"
#include "mechallow.h"
#include "login.h"

#define DDSM_DERIVE_ROOT_MIN 16 /* bytes of root seed the mechanism accepts */
#define DDSM_DERIVE_ROOT_MAX 64

#define CHECK_SLOT(c, id)                                                                          \
    do {                                                                                           \
        if ((id) != DDSM_SLOT_ID) {                                                                \
            rv = CKR_SLOT_ID_INVALID;                                                              \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

CK_RV ddsm_C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
    CK_SLOT_INFO info;
    DDSM_CALL(c, "C_GetSlotList");
    DDSM_LADDER(c, pulCount != NULL);
    CK_ULONG n = 1;
    if (tokenPresent) {
        rv = c.ctx->be->C_GetSlotInfo(c.ctx->slot, &info);
        if (rv != CKR_OK)
            goto out;
        n = (info.flags & CKF_TOKEN_PRESENT) ? 1 : 0;
    }
    if (pSlotList != NULL) {
        if (*pulCount < n) {
            *pulCount = n;
            rv = CKR_BUFFER_TOO_SMALL;
            goto out;
        }
        if (n == 1)
            pSlotList[0] = DDSM_SLOT_ID;
    }
    *pulCount = n;
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
    DDSM_CALL(c, "C_GetSlotInfo");
    DDSM_LADDER(c, 1);
    CHECK_SLOT(c, slotID);
    if (pInfo == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    rv = c.ctx->be->C_GetSlotInfo(c.ctx->slot, pInfo);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
    DDSM_CALL(c, "C_GetTokenInfo");
    DDSM_LADDER(c, 1);
    CHECK_SLOT(c, slotID);
    if (pInfo == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    rv = c.ctx->be->C_GetTokenInfo(c.ctx->slot, pInfo);
out:
    return ddsm_call_end(&c, rv);
}

/* Non-blocking polls of the backend in one C_WaitForSlotEvent(CKF_DONT_BLOCK) at most. */
#define WAIT_POLLS_MAX 1024

CK_RV ddsm_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
    CK_SLOT_ID be_slot = 0;
    DDSM_CALL(c, "C_WaitForSlotEvent");
    DDSM_LADDER(c, pSlot != NULL && pReserved == NULL);
    /* Events of backend slots we do not expose are passed over: the caller asked to wait for an
     * event on ours (blocking) or to learn whether one is pending (CKF_DONT_BLOCK: the backend
     * then answers CKR_NO_EVENT once its queue is empty, bounded here against one that never
     * does). */
    for (unsigned polls = 0;; polls++) {
        rv = c.ctx->be->C_WaitForSlotEvent(flags, &be_slot, NULL);
        if (rv != CKR_OK)
            break;
        if (be_slot == c.ctx->slot) {
            *pSlot = DDSM_SLOT_ID;
            break;
        }
        if ((flags & CKF_DONT_BLOCK) != 0 && polls >= WAIT_POLLS_MAX) {
            rv = CKR_NO_EVENT;
            break;
        }
    }
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
                              CK_ULONG_PTR pulCount)
{
    CK_MECHANISM_TYPE *list = NULL;
    CK_ULONG n = 0;
    DDSM_CALL(c, "C_GetMechanismList");
    DDSM_LADDER(c, 1);
    CHECK_SLOT(c, slotID);
    if (pulCount == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    /* The backend's list may change between the two calls: retry on CKR_BUFFER_TOO_SMALL. */
    for (;;) {
        rv = c.ctx->be->C_GetMechanismList(c.ctx->slot, NULL, &n);
        if (rv != CKR_OK)
            goto out;
        free(list);
        list = calloc(n + 1 + DDSM_EC_MECHS, sizeof(*list));
        if (list == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rv = c.ctx->be->C_GetMechanismList(c.ctx->slot, list, &n);
        if (rv != CKR_BUFFER_TOO_SMALL)
            break;
    }
    if (rv != CKR_OK)
        goto out;
    /* Only what the module lets through (mechallow.h), then ours. */
    CK_ULONG kept = 0;
    for (CK_ULONG i = 0; i < n; i++)
        if (ddsm_mech_allowed(&c.ctx->mechs, list[i]) && list[i] != CKM_DDSM_DERIVE)
            list[kept++] = list[i];
    n = kept;
    list[n++] = CKM_DDSM_DERIVE;
    for (size_t k = 0; k < DDSM_EC_MECHS; k++) {
        bool listed = false;
        for (CK_ULONG i = 0; i < n && !listed; i++)
            listed = list[i] == ddsm_ec_mechs[k];
        if (!listed)
            list[n++] = ddsm_ec_mechs[k];
    }
    if (pMechanismList != NULL) {
        if (*pulCount < n) {
            *pulCount = n;
            rv = CKR_BUFFER_TOO_SMALL;
            goto out;
        }
        memcpy(pMechanismList, list, n * sizeof(*list));
    }
    *pulCount = n;
out:
    free(list);
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type,
                              CK_MECHANISM_INFO_PTR pInfo)
{
    DDSM_CALL(c, "C_GetMechanismInfo");
    DDSM_LADDER(c, 1);
    CHECK_SLOT(c, slotID);
    if (pInfo == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (type == CKM_DDSM_DERIVE) {
        pInfo->ulMinKeySize = DDSM_DERIVE_ROOT_MIN;
        pInfo->ulMaxKeySize = DDSM_DERIVE_ROOT_MAX;
        pInfo->flags = CKF_DERIVE;
        goto out;
    }
    if (ddsm_ec_is_mech(type)) {
        CK_MECHANISM_INFO be;
        rv = c.ctx->be->C_GetMechanismInfo(c.ctx->slot, type, &be);
        if (rv == CKR_OK || rv == CKR_MECHANISM_INVALID) {
            ddsm_ec_mech_info(type, rv == CKR_OK ? &be : NULL, pInfo);
            rv = CKR_OK;
        }
        goto out;
    }
    if (!ddsm_mech_allowed(&c.ctx->mechs, type)) {
        rv = CKR_MECHANISM_INVALID; /* the module would not pass it on */
        goto out;
    }
    rv = c.ctx->be->C_GetMechanismInfo(c.ctx->slot, type, pInfo);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                       CK_UTF8CHAR_PTR pLabel)
{
    DDSM_CALL(c, "C_InitToken");
    DDSM_LADDER(c, 1);
    CHECK_SLOT(c, slotID);
    if (pLabel == NULL || (pPin == NULL && ulPinLen > 0)) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (!c.ctx->custody) {
        ddsm_log(DDSM_LOG_WARN, "C_InitToken refused: it would erase the root seed key");
        rv = CKR_TOKEN_WRITE_PROTECTED;
        goto out;
    }
    rv = c.ctx->be->C_InitToken(c.ctx->slot, pPin, ulPinLen, pLabel);
    if (rv == CKR_OK)
        ddsm_login_forget(c.ctx); /* a freshly initialised token has nobody logged in */
out:
    return ddsm_call_end(&c, rv);
}
