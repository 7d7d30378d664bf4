/* SPDX-License-Identifier: Apache-2.0 */
/* The few PKCS#11 3.0 definitions the system header (p11-kit's, v2.40) lacks, copied by value from
 * the OASIS PKCS#11 3.0 specification. Each is guarded so that a newer system header wins. */
#ifndef DDSM_PKCS11_COMPAT_H
#define DDSM_PKCS11_COMPAT_H

#include <p11-kit/pkcs11.h>

#ifndef CKA_UNIQUE_ID
#define CKA_UNIQUE_ID 0x00000004UL
#endif
#ifndef CKM_SP800_108_COUNTER_KDF
#define CKM_SP800_108_COUNTER_KDF 0x000003acUL
#endif
/* A 3.0 header defines CKF_INTERFACE_FORK_SAFE together with CK_INTERFACE and
 * CK_FUNCTION_LIST_3_0. */
#ifndef CKF_INTERFACE_FORK_SAFE
#define DDSM_PKCS11_DEFINES_3_0 1
#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;
#endif

#ifndef CKR_OPERATION_CANCEL_FAILED
#define CKR_OPERATION_CANCEL_FAILED 0x00000202UL
#endif
#ifndef CKF_MESSAGE_ENCRYPT
#define CKF_MESSAGE_ENCRYPT 0x00000002UL
#define CKF_MESSAGE_DECRYPT 0x00000004UL
#define CKF_MESSAGE_SIGN 0x00000008UL
#define CKF_MESSAGE_VERIFY 0x00000010UL
#define CKF_MULTI_MESSAGE 0x00000020UL
#endif
#ifndef CKF_FIND_OBJECTS
#define CKF_FIND_OBJECTS 0x00000040UL
#endif

#ifdef DDSM_PKCS11_DEFINES_3_0
/* The version 3.0 function list: CK_FUNCTION_LIST's members in the same order, then the 3.0
 * functions, in the order of the OASIS specification (section "CK_FUNCTION_LIST_3_0"). */
typedef struct CK_FUNCTION_LIST_3_0 {
    CK_VERSION version;
    CK_C_Initialize C_Initialize;
    CK_C_Finalize C_Finalize;
    CK_C_GetInfo C_GetInfo;
    CK_C_GetFunctionList C_GetFunctionList;
    CK_C_GetSlotList C_GetSlotList;
    CK_C_GetSlotInfo C_GetSlotInfo;
    CK_C_GetTokenInfo C_GetTokenInfo;
    CK_C_GetMechanismList C_GetMechanismList;
    CK_C_GetMechanismInfo C_GetMechanismInfo;
    CK_C_InitToken C_InitToken;
    CK_C_InitPIN C_InitPIN;
    CK_C_SetPIN C_SetPIN;
    CK_C_OpenSession C_OpenSession;
    CK_C_CloseSession C_CloseSession;
    CK_C_CloseAllSessions C_CloseAllSessions;
    CK_C_GetSessionInfo C_GetSessionInfo;
    CK_C_GetOperationState C_GetOperationState;
    CK_C_SetOperationState C_SetOperationState;
    CK_C_Login C_Login;
    CK_C_Logout C_Logout;
    CK_C_CreateObject C_CreateObject;
    CK_C_CopyObject C_CopyObject;
    CK_C_DestroyObject C_DestroyObject;
    CK_C_GetObjectSize C_GetObjectSize;
    CK_C_GetAttributeValue C_GetAttributeValue;
    CK_C_SetAttributeValue C_SetAttributeValue;
    CK_C_FindObjectsInit C_FindObjectsInit;
    CK_C_FindObjects C_FindObjects;
    CK_C_FindObjectsFinal C_FindObjectsFinal;
    CK_C_EncryptInit C_EncryptInit;
    CK_C_Encrypt C_Encrypt;
    CK_C_EncryptUpdate C_EncryptUpdate;
    CK_C_EncryptFinal C_EncryptFinal;
    CK_C_DecryptInit C_DecryptInit;
    CK_C_Decrypt C_Decrypt;
    CK_C_DecryptUpdate C_DecryptUpdate;
    CK_C_DecryptFinal C_DecryptFinal;
    CK_C_DigestInit C_DigestInit;
    CK_C_Digest C_Digest;
    CK_C_DigestUpdate C_DigestUpdate;
    CK_C_DigestKey C_DigestKey;
    CK_C_DigestFinal C_DigestFinal;
    CK_C_SignInit C_SignInit;
    CK_C_Sign C_Sign;
    CK_C_SignUpdate C_SignUpdate;
    CK_C_SignFinal C_SignFinal;
    CK_C_SignRecoverInit C_SignRecoverInit;
    CK_C_SignRecover C_SignRecover;
    CK_C_VerifyInit C_VerifyInit;
    CK_C_Verify C_Verify;
    CK_C_VerifyUpdate C_VerifyUpdate;
    CK_C_VerifyFinal C_VerifyFinal;
    CK_C_VerifyRecoverInit C_VerifyRecoverInit;
    CK_C_VerifyRecover C_VerifyRecover;
    CK_C_DigestEncryptUpdate C_DigestEncryptUpdate;
    CK_C_DecryptDigestUpdate C_DecryptDigestUpdate;
    CK_C_SignEncryptUpdate C_SignEncryptUpdate;
    CK_C_DecryptVerifyUpdate C_DecryptVerifyUpdate;
    CK_C_GenerateKey C_GenerateKey;
    CK_C_GenerateKeyPair C_GenerateKeyPair;
    CK_C_WrapKey C_WrapKey;
    CK_C_UnwrapKey C_UnwrapKey;
    CK_C_DeriveKey C_DeriveKey;
    CK_C_SeedRandom C_SeedRandom;
    CK_C_GenerateRandom C_GenerateRandom;
    CK_C_GetFunctionStatus C_GetFunctionStatus;
    CK_C_CancelFunction C_CancelFunction;
    CK_C_WaitForSlotEvent C_WaitForSlotEvent;
    CK_RV (*C_GetInterfaceList)(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
    CK_RV (*C_GetInterface)(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                            CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);
    CK_RV (*C_LoginUser)(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                         CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen);
    CK_RV (*C_SessionCancel)(CK_SESSION_HANDLE hSession, CK_FLAGS flags);
    CK_RV (*C_MessageEncryptInit)(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                  CK_OBJECT_HANDLE hKey);
    CK_RV (*C_EncryptMessage)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                              CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                              CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext,
                              CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext,
                              CK_ULONG_PTR pulCiphertextLen);
    CK_RV (*C_EncryptMessageBegin)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                   CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                   CK_ULONG ulAssociatedDataLen);
    CK_RV (*C_EncryptMessageNext)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                  CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart,
                                  CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart,
                                  CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags);
    CK_RV (*C_MessageEncryptFinal)(CK_SESSION_HANDLE hSession);
    CK_RV (*C_MessageDecryptInit)(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                  CK_OBJECT_HANDLE hKey);
    CK_RV (*C_DecryptMessage)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                              CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                              CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext,
                              CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext,
                              CK_ULONG_PTR pulPlaintextLen);
    CK_RV (*C_DecryptMessageBegin)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                   CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                   CK_ULONG ulAssociatedDataLen);
    CK_RV (*C_DecryptMessageNext)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                  CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart,
                                  CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart,
                                  CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags);
    CK_RV (*C_MessageDecryptFinal)(CK_SESSION_HANDLE hSession);
    CK_RV (*C_MessageSignInit)(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                               CK_OBJECT_HANDLE hKey);
    CK_RV (*C_SignMessage)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                           CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
    CK_RV (*C_SignMessageBegin)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen);
    CK_RV (*C_SignMessageNext)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                               CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                               CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
    CK_RV (*C_MessageSignFinal)(CK_SESSION_HANDLE hSession);
    CK_RV (*C_MessageVerifyInit)(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                 CK_OBJECT_HANDLE hKey);
    CK_RV (*C_VerifyMessage)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                             CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                             CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
    CK_RV (*C_VerifyMessageBegin)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                  CK_ULONG ulParameterLen);
    CK_RV (*C_VerifyMessageNext)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                 CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                                 CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
    CK_RV (*C_MessageVerifyFinal)(CK_SESSION_HANDLE hSession);
} CK_FUNCTION_LIST_3_0;
typedef CK_FUNCTION_LIST_3_0 *CK_FUNCTION_LIST_3_0_PTR;
typedef CK_FUNCTION_LIST_3_0_PTR *CK_FUNCTION_LIST_3_0_PTR_PTR;
#endif

typedef CK_RV (*ddsm_C_GetInterfaceList_fn)(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
typedef CK_RV (*ddsm_C_GetInterface_fn)(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                        CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);

#endif
