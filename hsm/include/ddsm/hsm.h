/* SPDX-License-Identifier: Apache-2.0 */
/* The backend (real HSM) adapter: loads the configured PKCS#11 library and offers the few
 * composite operations the module, ddsmctl and ddsm-bench need (static library ddsm-hsm). */
#ifndef DDSM_HSM_H
#define DDSM_HSM_H

#include <stddef.h>
#include <stdint.h>

#include "ddsm/derive.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-compat.h"

typedef struct ddsm_hsm ddsm_hsm;

/* dlopen path, take its function list (C_GetInterface "PKCS 11" when exported, else
 * C_GetFunctionList) and C_Initialize it with CKF_OS_LOCKING_OK. A backend that another part of
 * the process already initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED) is used and never finalised
 * by us. On failure writes a reason into why. */
CK_RV ddsm_hsm_load(const char *path, ddsm_hsm **out, char *why, size_t why_len) DDSM_WUR;
/* C_Finalize (when we initialised it) and dlclose. NULL accepted. */
void ddsm_hsm_unload(ddsm_hsm *h);
/* Forget the backend without calling into it: for a fork child whose inherited state is void. */
void ddsm_hsm_abandon(ddsm_hsm *h);

CK_FUNCTION_LIST_PTR ddsm_hsm_functions(const ddsm_hsm *h);

/* The slot whose token label (space-padded in CK_TOKEN_INFO) equals label.
 * CKR_TOKEN_NOT_PRESENT when no slot has it. */
CK_RV ddsm_hsm_find_token(ddsm_hsm *h, const char *label, CK_SLOT_ID *slot) DDSM_WUR;

/* The unique object of class cls with CKA_LABEL == label. *count tells how many matched (0, 1 or
 * 2 meaning "more than one"); *out is set only when exactly one did. */
CK_RV ddsm_hsm_find_object(ddsm_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                           const char *label, CK_OBJECT_HANDLE *out, unsigned *count) DDSM_WUR;

/* C_Login as CKU_USER; CKR_USER_ALREADY_LOGGED_IN counts as success. The PIN is a secret. */
CK_RV ddsm_hsm_login_secret(ddsm_hsm *h, CK_SESSION_HANDLE s, const char *pin, size_t pin_len)
    DDSM_WUR;

/* HMAC-SHA256 of msg under an HSM key (C_SignInit + C_Sign with CKM_SHA256_HMAC). out is secret
 * when msg is a derivation message. */
CK_RV ddsm_hsm_hmac_sha256(ddsm_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                           const uint8_t *msg, size_t len, uint8_t out[32]) DDSM_WUR;

/* A ddsm_prf whose root is an HSM key reached through one session. The session must not be used
 * by another thread while the prf is in use. */
typedef struct ddsm_hsm_prf_ctx {
    ddsm_hsm *hsm;
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE root;
    CK_RV last_rv; /* the backend's answer when hmac_root failed */
} ddsm_hsm_prf_ctx;
void ddsm_hsm_prf_init(ddsm_hsm_prf_ctx *ctx, ddsm_hsm *h, CK_SESSION_HANDLE s,
                       CK_OBJECT_HANDLE root, ddsm_prf *out);

#endif
