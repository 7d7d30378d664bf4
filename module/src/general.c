/* SPDX-License-Identifier: Apache-2.0 */
/* General-purpose functions and the three exported symbols. */
#include <string.h>

#include "ctx.h"
#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/version.h"
#include "entry.h"
#include "ladder.h"

static CK_RV ddsm_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList);

/* The 2.40 functions, in CK_FUNCTION_LIST order: both function lists start with them. */
#define DDSM_FUNCTIONS_240                                                                         \
    .C_Initialize = ddsm_C_Initialize,                                                             \
    .C_Finalize = ddsm_C_Finalize,                                                                 \
    .C_GetFunctionList = ddsm_C_GetFunctionList,                                                   \
    .C_GetSlotList = ddsm_C_GetSlotList,                                                           \
    .C_GetSlotInfo = ddsm_C_GetSlotInfo,                                                           \
    .C_GetTokenInfo = ddsm_C_GetTokenInfo,                                                         \
    .C_GetMechanismList = ddsm_C_GetMechanismList,                                                 \
    .C_GetMechanismInfo = ddsm_C_GetMechanismInfo,                                                 \
    .C_InitToken = ddsm_C_InitToken,                                                               \
    .C_InitPIN = ddsm_C_InitPIN,                                                                   \
    .C_SetPIN = ddsm_C_SetPIN,                                                                     \
    .C_OpenSession = ddsm_C_OpenSession,                                                           \
    .C_CloseSession = ddsm_C_CloseSession,                                                         \
    .C_CloseAllSessions = ddsm_C_CloseAllSessions,                                                 \
    .C_GetSessionInfo = ddsm_C_GetSessionInfo,                                                     \
    .C_GetOperationState = ddsm_C_GetOperationState,                                               \
    .C_SetOperationState = ddsm_C_SetOperationState,                                               \
    .C_Login = ddsm_C_Login,                                                                       \
    .C_Logout = ddsm_C_Logout,                                                                     \
    .C_CreateObject = ddsm_C_CreateObject,                                                         \
    .C_CopyObject = ddsm_C_CopyObject,                                                             \
    .C_DestroyObject = ddsm_C_DestroyObject,                                                       \
    .C_GetObjectSize = ddsm_C_GetObjectSize,                                                       \
    .C_GetAttributeValue = ddsm_C_GetAttributeValue,                                               \
    .C_SetAttributeValue = ddsm_C_SetAttributeValue,                                               \
    .C_FindObjectsInit = ddsm_C_FindObjectsInit,                                                   \
    .C_FindObjects = ddsm_C_FindObjects,                                                           \
    .C_FindObjectsFinal = ddsm_C_FindObjectsFinal,                                                 \
    .C_EncryptInit = ddsm_C_EncryptInit,                                                           \
    .C_Encrypt = ddsm_C_Encrypt,                                                                   \
    .C_EncryptUpdate = ddsm_C_EncryptUpdate,                                                       \
    .C_EncryptFinal = ddsm_C_EncryptFinal,                                                         \
    .C_DecryptInit = ddsm_C_DecryptInit,                                                           \
    .C_Decrypt = ddsm_C_Decrypt,                                                                   \
    .C_DecryptUpdate = ddsm_C_DecryptUpdate,                                                       \
    .C_DecryptFinal = ddsm_C_DecryptFinal,                                                         \
    .C_DigestInit = ddsm_C_DigestInit,                                                             \
    .C_Digest = ddsm_C_Digest,                                                                     \
    .C_DigestUpdate = ddsm_C_DigestUpdate,                                                         \
    .C_DigestKey = ddsm_C_DigestKey,                                                               \
    .C_DigestFinal = ddsm_C_DigestFinal,                                                           \
    .C_SignInit = ddsm_C_SignInit,                                                                 \
    .C_Sign = ddsm_C_Sign,                                                                         \
    .C_SignUpdate = ddsm_C_SignUpdate,                                                             \
    .C_SignFinal = ddsm_C_SignFinal,                                                               \
    .C_SignRecoverInit = ddsm_C_SignRecoverInit,                                                   \
    .C_SignRecover = ddsm_C_SignRecover,                                                           \
    .C_VerifyInit = ddsm_C_VerifyInit,                                                             \
    .C_Verify = ddsm_C_Verify,                                                                     \
    .C_VerifyUpdate = ddsm_C_VerifyUpdate,                                                         \
    .C_VerifyFinal = ddsm_C_VerifyFinal,                                                           \
    .C_VerifyRecoverInit = ddsm_C_VerifyRecoverInit,                                               \
    .C_VerifyRecover = ddsm_C_VerifyRecover,                                                       \
    .C_DigestEncryptUpdate = ddsm_C_DigestEncryptUpdate,                                           \
    .C_DecryptDigestUpdate = ddsm_C_DecryptDigestUpdate,                                           \
    .C_SignEncryptUpdate = ddsm_C_SignEncryptUpdate,                                               \
    .C_DecryptVerifyUpdate = ddsm_C_DecryptVerifyUpdate,                                           \
    .C_GenerateKey = ddsm_C_GenerateKey,                                                           \
    .C_GenerateKeyPair = ddsm_C_GenerateKeyPair,                                                   \
    .C_WrapKey = ddsm_C_WrapKey,                                                                   \
    .C_UnwrapKey = ddsm_C_UnwrapKey,                                                               \
    .C_DeriveKey = ddsm_C_DeriveKey,                                                               \
    .C_SeedRandom = ddsm_C_SeedRandom,                                                             \
    .C_GenerateRandom = ddsm_C_GenerateRandom,                                                     \
    .C_GetFunctionStatus = ddsm_C_GetFunctionStatus,                                               \
    .C_CancelFunction = ddsm_C_CancelFunction,                                                     \
    .C_WaitForSlotEvent = ddsm_C_WaitForSlotEvent

/* C_GetInfo reports the Cryptoki version of the function list it was reached through. */
static CK_RV ddsm_C_GetInfo_3_0(CK_INFO_PTR pInfo);

static CK_FUNCTION_LIST g_functions = {
    .version = {2, 40},
    DDSM_FUNCTIONS_240,
    .C_GetInfo = ddsm_C_GetInfo,
};

/* PKCS#11 3.0: the same functions, then the 3.0 ones (pkcs11-compat.h). */
static CK_RV ddsm_C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
static CK_RV ddsm_C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);
static CK_FUNCTION_LIST_3_0 g_functions_3_0 = {
    .version = {3, 0},
    DDSM_FUNCTIONS_240,
    .C_GetInfo = ddsm_C_GetInfo_3_0,
    .C_GetInterfaceList = ddsm_C_GetInterfaceList,
    .C_GetInterface = ddsm_C_GetInterface,
    .C_LoginUser = ddsm_C_LoginUser,
    .C_SessionCancel = ddsm_C_SessionCancel,
    .C_MessageEncryptInit = ddsm_C_MessageEncryptInit,
    .C_EncryptMessage = ddsm_C_EncryptMessage,
    .C_EncryptMessageBegin = ddsm_C_EncryptMessageBegin,
    .C_EncryptMessageNext = ddsm_C_EncryptMessageNext,
    .C_MessageEncryptFinal = ddsm_C_MessageEncryptFinal,
    .C_MessageDecryptInit = ddsm_C_MessageDecryptInit,
    .C_DecryptMessage = ddsm_C_DecryptMessage,
    .C_DecryptMessageBegin = ddsm_C_DecryptMessageBegin,
    .C_DecryptMessageNext = ddsm_C_DecryptMessageNext,
    .C_MessageDecryptFinal = ddsm_C_MessageDecryptFinal,
    .C_MessageSignInit = ddsm_C_MessageSignInit,
    .C_SignMessage = ddsm_C_SignMessage,
    .C_SignMessageBegin = ddsm_C_SignMessageBegin,
    .C_SignMessageNext = ddsm_C_SignMessageNext,
    .C_MessageSignFinal = ddsm_C_MessageSignFinal,
    .C_MessageVerifyInit = ddsm_C_MessageVerifyInit,
    .C_VerifyMessage = ddsm_C_VerifyMessage,
    .C_VerifyMessageBegin = ddsm_C_VerifyMessageBegin,
    .C_VerifyMessageNext = ddsm_C_VerifyMessageNext,
    .C_MessageVerifyFinal = ddsm_C_MessageVerifyFinal,
};

/* Both interfaces are named "PKCS 11"; the first (3.0) is the default. No flags: a fork child
 * must call C_Initialize again (CKF_INTERFACE_FORK_SAFE is not offered). */
static CK_INTERFACE g_interfaces[2] = {
    {(CK_CHAR *)"PKCS 11", &g_functions_3_0, 0},
    {(CK_CHAR *)"PKCS 11", &g_functions, 0},
};
#define N_INTERFACES (sizeof(g_interfaces) / sizeof(g_interfaces[0]))

/* Pad s with spaces into a fixed-size, unterminated PKCS#11 text field. */
static void blank_pad(CK_UTF8CHAR *field, size_t len, const char *s)
{
    size_t n = strlen(s);
    memset(field, ' ', len);
    memcpy(field, s, n < len ? n : len);
}

CK_RV ddsm_C_Initialize(CK_VOID_PTR pInitArgs)
{
    DDSM_CALL(c, "C_Initialize");
    const CK_C_INITIALIZE_ARGS *args = pInitArgs;
    if (args != NULL) {
        if (args->pReserved != NULL) {
            rv = CKR_ARGUMENTS_BAD;
            goto out;
        }
        int given = (args->CreateMutex != NULL) + (args->DestroyMutex != NULL) +
                    (args->LockMutex != NULL) + (args->UnlockMutex != NULL);
        if (given != 0 && given != 4) {
            rv = CKR_ARGUMENTS_BAD;
            goto out;
        }
    }
    rv = ddsm_ctx_initialize(args);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_Finalize(CK_VOID_PTR pReserved)
{
    DDSM_CALL(c, "C_Finalize");
    DDSM_LADDER(c, pReserved == NULL);
    rv = ddsm_ctx_finalize();
out:
    return ddsm_call_end(&c, rv);
}

static CK_RV get_info(CK_INFO_PTR pInfo, CK_BYTE major, CK_BYTE minor)
{
    DDSM_CALL(c, "C_GetInfo");
    DDSM_LADDER(c, pInfo != NULL);
    memset(pInfo, 0, sizeof(*pInfo));
    pInfo->cryptokiVersion.major = major;
    pInfo->cryptokiVersion.minor = minor;
    blank_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), DDSM_LIBRARY_MANUFACTURER);
    blank_pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
              DDSM_LIBRARY_DESCRIPTION);
    pInfo->flags = 0;
    pInfo->libraryVersion.major = DDSM_VERSION_MAJOR;
    pInfo->libraryVersion.minor = DDSM_VERSION_MINOR;
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_GetInfo(CK_INFO_PTR pInfo)
{
    return get_info(pInfo, 2, 40);
}

static CK_RV ddsm_C_GetInfo_3_0(CK_INFO_PTR pInfo)
{
    return get_info(pInfo, 3, 0);
}

static CK_RV ddsm_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (ppFunctionList == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &g_functions;
    return CKR_OK;
}

DDSM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    return ddsm_C_GetFunctionList(ppFunctionList);
}

static CK_RV ddsm_C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfacesList == NULL) {
        *pulCount = N_INTERFACES;
        return CKR_OK;
    }
    if (*pulCount < N_INTERFACES) {
        *pulCount = N_INTERFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    for (size_t i = 0; i < N_INTERFACES; i++)
        pInterfacesList[i] = g_interfaces[i];
    *pulCount = N_INTERFACES;
    return CKR_OK;
}

/* pInterfaceName NULL or "PKCS 11"; pVersion NULL (the default: 3.0), 3.0 or 2.40; flags a
 * subset of the interface's. Anything else: CKR_ARGUMENTS_BAD. */
static CK_RV ddsm_C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    if (ppInterface == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfaceName != NULL && strcmp((const char *)pInterfaceName, "PKCS 11") != 0)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < N_INTERFACES; i++) {
        const CK_VERSION *v = g_interfaces[i].pFunctionList;
        if (pVersion != NULL && (pVersion->major != v->major || pVersion->minor != v->minor))
            continue;
        if ((flags & ~g_interfaces[i].flags) != 0)
            continue;
        *ppInterface = &g_interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}

DDSM_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    return ddsm_C_GetInterfaceList(pInterfacesList, pulCount);
}

DDSM_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    return ddsm_C_GetInterface(pInterfaceName, pVersion, ppInterface, flags);
}
