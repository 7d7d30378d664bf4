/* SPDX-License-Identifier: Apache-2.0 */
/* The module's entry points: ddsm_C_<Name> mirrors C_<Name> (grep maps one to the other). Only
 * C_GetFunctionList, C_GetInterfaceList and C_GetInterface are exported (ddsm-pkcs11.map). */
#ifndef DDSM_ENTRY_H
#define DDSM_ENTRY_H

#include "ddsm/pkcs11-compat.h"
#include "forward.h"

#define DDSM_EXPORT __attribute__((visibility("default")))

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);

/* general.c */
CK_RV ddsm_C_Initialize(CK_VOID_PTR pInitArgs);
CK_RV ddsm_C_Finalize(CK_VOID_PTR pReserved);
CK_RV ddsm_C_GetInfo(CK_INFO_PTR pInfo);

/* slot.c */
CK_RV ddsm_C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount);
CK_RV ddsm_C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo);
CK_RV ddsm_C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo);
CK_RV ddsm_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved);
CK_RV ddsm_C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
                              CK_ULONG_PTR pulCount);
CK_RV ddsm_C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type,
                              CK_MECHANISM_INFO_PTR pInfo);
CK_RV ddsm_C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                       CK_UTF8CHAR_PTR pLabel);

/* session.c */
CK_RV ddsm_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
                         CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession);
CK_RV ddsm_C_CloseSession(CK_SESSION_HANDLE hSession);
CK_RV ddsm_C_CloseAllSessions(CK_SLOT_ID slotID);
CK_RV ddsm_C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo);
CK_RV ddsm_C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                               CK_ULONG_PTR pulOperationStateLen);
CK_RV ddsm_C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                               CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                               CK_OBJECT_HANDLE hAuthenticationKey);
CK_RV ddsm_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                   CK_ULONG ulPinLen);
CK_RV ddsm_C_Logout(CK_SESSION_HANDLE hSession);
CK_RV ddsm_C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                       CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen);

/* message.c (PKCS#11 3.0) */
CK_RV ddsm_C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags);
CK_RV ddsm_C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext,
                            CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext,
                            CK_ULONG_PTR pulCiphertextLen);
CK_RV ddsm_C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                 CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                 CK_ULONG ulAssociatedDataLen);
CK_RV ddsm_C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart,
                                CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart,
                                CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags);
CK_RV ddsm_C_MessageEncryptFinal(CK_SESSION_HANDLE hSession);
CK_RV ddsm_C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext,
                            CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext,
                            CK_ULONG_PTR pulPlaintextLen);
CK_RV ddsm_C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                 CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                 CK_ULONG ulAssociatedDataLen);
CK_RV ddsm_C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart,
                                CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart,
                                CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags);
CK_RV ddsm_C_MessageDecryptFinal(CK_SESSION_HANDLE hSession);
CK_RV ddsm_C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                             CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                         CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                         CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
CK_RV ddsm_C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                              CK_ULONG ulParameterLen);
CK_RV ddsm_C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                             CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                             CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
CK_RV ddsm_C_MessageSignFinal(CK_SESSION_HANDLE hSession);
CK_RV ddsm_C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                               CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                           CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
CK_RV ddsm_C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen);
CK_RV ddsm_C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                               CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                               CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
CK_RV ddsm_C_MessageVerifyFinal(CK_SESSION_HANDLE hSession);

/* object.c */
CK_RV ddsm_C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                        CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                        CK_OBJECT_HANDLE_PTR phNewObject);
CK_RV ddsm_C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject);
CK_RV ddsm_C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                           CK_ULONG_PTR pulSize);
CK_RV ddsm_C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                               CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount);
CK_RV ddsm_C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                               CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount);

/* find.c */
CK_RV ddsm_C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate,
                             CK_ULONG ulCount);
CK_RV ddsm_C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                         CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount);
CK_RV ddsm_C_FindObjectsFinal(CK_SESSION_HANDLE hSession);

/* crypt.c */
CK_RV ddsm_C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                         CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                     CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen);
CK_RV ddsm_C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                           CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen);
CK_RV ddsm_C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,
                          CK_ULONG_PTR pulLastEncryptedPartLen);
CK_RV ddsm_C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                         CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData,
                     CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen);
CK_RV ddsm_C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                           CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen);
CK_RV ddsm_C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart,
                          CK_ULONG_PTR pulLastPartLen);

/* sign.c */
CK_RV ddsm_C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                      CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                  CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen);
CK_RV ddsm_C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen);
CK_RV ddsm_C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                       CK_ULONG_PTR pulSignatureLen);
CK_RV ddsm_C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_OBJECT_HANDLE hKey);
CK_RV ddsm_C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen);
CK_RV ddsm_C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen);
CK_RV ddsm_C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                         CK_ULONG ulSignatureLen);

/* derive.c */
CK_RV ddsm_C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                     CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey,
                     CK_ULONG_PTR pulWrappedKeyLen);
CK_RV ddsm_C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                       CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey,
                       CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate,
                       CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey);
CK_RV ddsm_C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                       CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate,
                       CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey);

#endif
