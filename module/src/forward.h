/* SPDX-License-Identifier: Apache-2.0 */
/* The pass-through functions, generated from one list (forward.c): every function that touches
 * neither virtual objects nor the root is forwarded to the backend unchanged behind a shared
 * prologue (initialised? fork generation valid? one of the application's sessions? the backend
 * has the function?) and epilogue (a non-OK rv is logged by name). Functions that take a key get
 * the root guard: a virtual key and the root get the refusal in the fifth column (one that the
 * function's 2.40 return values include: C_DigestKey has no CKR_KEY_FUNCTION_NOT_PERMITTED).
 *
 * Functions that create objects name the handles they return (last two columns): a backend handle
 * with the top bit set would later be misread as one of ours, so such an object is destroyed and
 * the call fails (ddsm_guard_new_handles).
 *
 * The last column is the pointer rung of the ladder (CKR_ARGUMENTS_BAD when false): a NULL the
 * standard forbids is refused here, never handed to an HSM that might not check it.
 *
 * The last column is the entry's own guard, an expression of type CK_RV evaluated after the
 * ladder and before anything reaches the backend (in a scope where c is the call): the mechanism
 * allowlist (mechallow.h) for functions that take a mechanism, the root-label check of templates
 * (guard.h ddsm_guard_template) for functions that create objects, else CKR_OK.
 *
 * X(name, parameter list, argument list, key argument or DDSM_FWD_NO_KEY, refusal for virtual keys,
 *   created handle or DDSM_FWD_NO_OUT, second created handle or DDSM_FWD_NO_OUT, pointers valid,
 *   guard)
 */
#ifndef DDSM_FORWARD_H
#define DDSM_FORWARD_H

#include "ddsm/pkcs11-compat.h"

#define DDSM_FWD_NO_KEY ((CK_OBJECT_HANDLE)0)
#define DDSM_FWD_NO_OUT ((CK_OBJECT_HANDLE_PTR)NULL)

#define DDSM_FORWARDS(X)                                                                           \
    X(C_DigestInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism),                     \
      (hSession, pMechanism), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,           \
      (pMechanism != NULL), (ddsm_mech_check(&c, pMechanism)))                                     \
    X(C_Digest,                                                                                    \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,     \
       CK_ULONG_PTR pulDigestLen),                                                                 \
      (hSession, pData, ulDataLen, pDigest, pulDigestLen), DDSM_FWD_NO_KEY, CKR_OK,                \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulDigestLen != NULL && (pData != NULL || ulDataLen == 0)), (CKR_OK))                       \
    X(C_DigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),         \
      (hSession, pPart, ulPartLen), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,     \
      (pPart != NULL || ulPartLen == 0), (CKR_OK))                                                 \
    X(C_DigestKey, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey), (hSession, hKey), hKey,    \
      CKR_KEY_INDIGESTIBLE, DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT, (1), (CKR_OK))                       \
    X(C_DigestFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen), \
      (hSession, pDigest, pulDigestLen), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT,                 \
      DDSM_FWD_NO_OUT, (pulDigestLen != NULL), (CKR_OK))                                           \
    X(C_SignRecoverInit,                                                                           \
      (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),            \
      (hSession, pMechanism, hKey), hKey, CKR_KEY_FUNCTION_NOT_PERMITTED, DDSM_FWD_NO_OUT,         \
      DDSM_FWD_NO_OUT, (pMechanism != NULL), (ddsm_mech_check(&c, pMechanism)))                    \
    X(C_SignRecover,                                                                               \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,  \
       CK_ULONG_PTR pulSignatureLen),                                                              \
      (hSession, pData, ulDataLen, pSignature, pulSignatureLen), DDSM_FWD_NO_KEY, CKR_OK,          \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulSignatureLen != NULL && (pData != NULL || ulDataLen == 0)), (CKR_OK))                    \
    X(C_VerifyRecoverInit,                                                                         \
      (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey),            \
      (hSession, pMechanism, hKey), hKey, CKR_KEY_FUNCTION_NOT_PERMITTED, DDSM_FWD_NO_OUT,         \
      DDSM_FWD_NO_OUT, (pMechanism != NULL), (ddsm_mech_check(&c, pMechanism)))                    \
    X(C_VerifyRecover,                                                                             \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen,                \
       CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen),                                                \
      (hSession, pSignature, ulSignatureLen, pData, pulDataLen), DDSM_FWD_NO_KEY, CKR_OK,          \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulDataLen != NULL && (pSignature != NULL || ulSignatureLen == 0)), (CKR_OK))               \
    X(C_DigestEncryptUpdate,                                                                       \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,                          \
       CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen),                              \
      (hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen), DDSM_FWD_NO_KEY, CKR_OK,  \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulEncryptedPartLen != NULL && (pPart != NULL || ulPartLen == 0)), (CKR_OK))                \
    X(C_DecryptDigestUpdate,                                                                       \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,        \
       CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),                                                \
      (hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen), DDSM_FWD_NO_KEY, CKR_OK,  \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulPartLen != NULL && (pEncryptedPart != NULL || ulEncryptedPartLen == 0)), (CKR_OK))       \
    X(C_SignEncryptUpdate,                                                                         \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,                          \
       CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen),                              \
      (hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen), DDSM_FWD_NO_KEY, CKR_OK,  \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulEncryptedPartLen != NULL && (pPart != NULL || ulPartLen == 0)), (CKR_OK))                \
    X(C_DecryptVerifyUpdate,                                                                       \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,        \
       CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),                                                \
      (hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen), DDSM_FWD_NO_KEY, CKR_OK,  \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,                                                            \
      (pulPartLen != NULL && (pEncryptedPart != NULL || ulEncryptedPartLen == 0)), (CKR_OK))       \
    X(C_GenerateKey,                                                                               \
      (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,        \
       CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey),                                              \
      (hSession, pMechanism, pTemplate, ulCount, phKey), DDSM_FWD_NO_KEY, CKR_OK, phKey,           \
      DDSM_FWD_NO_OUT,                                                                             \
      (pMechanism != NULL && phKey != NULL && (pTemplate != NULL || ulCount == 0)),                \
      (ddsm_fwd_generate(&c, pMechanism, pTemplate, ulCount, NULL, 0)))                            \
    X(C_GenerateKeyPair,                                                                           \
      (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,                                    \
       CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,                    \
       CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,                  \
       CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey),                       \
      (hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate,   \
       ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey),                                     \
      DDSM_FWD_NO_KEY, CKR_OK, phPublicKey, phPrivateKey,                                          \
      (pMechanism != NULL && phPublicKey != NULL && phPrivateKey != NULL &&                        \
       (pPublicKeyTemplate != NULL || ulPublicKeyAttributeCount == 0) &&                           \
       (pPrivateKeyTemplate != NULL || ulPrivateKeyAttributeCount == 0)),                          \
      (ddsm_fwd_generate(&c, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount,            \
                         pPrivateKeyTemplate, ulPrivateKeyAttributeCount)))                        \
    X(C_SeedRandom, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen),           \
      (hSession, pSeed, ulSeedLen), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,     \
      (pSeed != NULL || ulSeedLen == 0), (CKR_OK))                                                 \
    X(C_GenerateRandom,                                                                            \
      (CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen),                  \
      (hSession, RandomData, ulRandomLen), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT,               \
      DDSM_FWD_NO_OUT, (RandomData != NULL || ulRandomLen == 0), (CKR_OK))                         \
    X(C_GetFunctionStatus, (CK_SESSION_HANDLE hSession), (hSession), DDSM_FWD_NO_KEY, CKR_OK,      \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT, (1), (CKR_OK))                                             \
    X(C_CancelFunction, (CK_SESSION_HANDLE hSession), (hSession), DDSM_FWD_NO_KEY, CKR_OK,         \
      DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT, (1), (CKR_OK))                                             \
    X(C_InitPIN, (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen),            \
      (hSession, pPin, ulPinLen), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT, DDSM_FWD_NO_OUT,       \
      (pPin != NULL || ulPinLen == 0), (CKR_OK))                                                   \
    X(C_SetPIN,                                                                                    \
      (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,                     \
       CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen),                                                \
      (hSession, pOldPin, ulOldLen, pNewPin, ulNewLen), DDSM_FWD_NO_KEY, CKR_OK, DDSM_FWD_NO_OUT,  \
      DDSM_FWD_NO_OUT, ((pOldPin != NULL || ulOldLen == 0) && (pNewPin != NULL || ulNewLen == 0)), \
      (CKR_OK))                                                                                    \
    X(C_CreateObject,                                                                              \
      (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,                   \
       CK_OBJECT_HANDLE_PTR phObject),                                                             \
      (hSession, pTemplate, ulCount, phObject), DDSM_FWD_NO_KEY, CKR_OK, phObject,                 \
      DDSM_FWD_NO_OUT, (phObject != NULL && (pTemplate != NULL || ulCount == 0)),                  \
      (ddsm_guard_template(&c, pTemplate, ulCount)))

#define DDSM_FWD_DECLARE(name, params, args, key, virt_rv, out1, out2, args_ok, pre)               \
    CK_RV ddsm_##name params;
DDSM_FORWARDS(DDSM_FWD_DECLARE)

#endif
