/* General-purpose functions and the three exported symbols. */
#include <string.h>

#include "ctx.h"
#include "ddsm/log.h"
#include "entry.h"
#include "ladder.h"

static CK_RV ddsm_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList);

static CK_FUNCTION_LIST g_functions = {
    .version = {2, 40},
    .C_Initialize = ddsm_C_Initialize,
    .C_Finalize = ddsm_C_Finalize,
    .C_GetInfo = ddsm_C_GetInfo,
    .C_GetFunctionList = ddsm_C_GetFunctionList,
    .C_GetSlotList = ddsm_C_GetSlotList,
    .C_GetSlotInfo = ddsm_C_GetSlotInfo,
    .C_GetTokenInfo = ddsm_C_GetTokenInfo,
    .C_GetMechanismList = ddsm_C_GetMechanismList,
    .C_GetMechanismInfo = ddsm_C_GetMechanismInfo,
    .C_InitToken = ddsm_C_InitToken,
    .C_InitPIN = ddsm_C_InitPIN,
    .C_SetPIN = ddsm_C_SetPIN,
    .C_OpenSession = ddsm_C_OpenSession,
    .C_CloseSession = ddsm_C_CloseSession,
    .C_CloseAllSessions = ddsm_C_CloseAllSessions,
    .C_GetSessionInfo = ddsm_C_GetSessionInfo,
    .C_GetOperationState = ddsm_C_GetOperationState,
    .C_SetOperationState = ddsm_C_SetOperationState,
    .C_Login = ddsm_C_Login,
    .C_Logout = ddsm_C_Logout,
    .C_CreateObject = ddsm_C_CreateObject,
    .C_CopyObject = ddsm_C_CopyObject,
    .C_DestroyObject = ddsm_C_DestroyObject,
    .C_GetObjectSize = ddsm_C_GetObjectSize,
    .C_GetAttributeValue = ddsm_C_GetAttributeValue,
    .C_SetAttributeValue = ddsm_C_SetAttributeValue,
    .C_FindObjectsInit = ddsm_C_FindObjectsInit,
    .C_FindObjects = ddsm_C_FindObjects,
    .C_FindObjectsFinal = ddsm_C_FindObjectsFinal,
    .C_EncryptInit = ddsm_C_EncryptInit,
    .C_Encrypt = ddsm_C_Encrypt,
    .C_EncryptUpdate = ddsm_C_EncryptUpdate,
    .C_EncryptFinal = ddsm_C_EncryptFinal,
    .C_DecryptInit = ddsm_C_DecryptInit,
    .C_Decrypt = ddsm_C_Decrypt,
    .C_DecryptUpdate = ddsm_C_DecryptUpdate,
    .C_DecryptFinal = ddsm_C_DecryptFinal,
    .C_DigestInit = ddsm_C_DigestInit,
    .C_Digest = ddsm_C_Digest,
    .C_DigestUpdate = ddsm_C_DigestUpdate,
    .C_DigestKey = ddsm_C_DigestKey,
    .C_DigestFinal = ddsm_C_DigestFinal,
    .C_SignInit = ddsm_C_SignInit,
    .C_Sign = ddsm_C_Sign,
    .C_SignUpdate = ddsm_C_SignUpdate,
    .C_SignFinal = ddsm_C_SignFinal,
    .C_SignRecoverInit = ddsm_C_SignRecoverInit,
    .C_SignRecover = ddsm_C_SignRecover,
    .C_VerifyInit = ddsm_C_VerifyInit,
    .C_Verify = ddsm_C_Verify,
    .C_VerifyUpdate = ddsm_C_VerifyUpdate,
    .C_VerifyFinal = ddsm_C_VerifyFinal,
    .C_VerifyRecoverInit = ddsm_C_VerifyRecoverInit,
    .C_VerifyRecover = ddsm_C_VerifyRecover,
    .C_DigestEncryptUpdate = ddsm_C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = ddsm_C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = ddsm_C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = ddsm_C_DecryptVerifyUpdate,
    .C_GenerateKey = ddsm_C_GenerateKey,
    .C_GenerateKeyPair = ddsm_C_GenerateKeyPair,
    .C_WrapKey = ddsm_C_WrapKey,
    .C_UnwrapKey = ddsm_C_UnwrapKey,
    .C_DeriveKey = ddsm_C_DeriveKey,
    .C_SeedRandom = ddsm_C_SeedRandom,
    .C_GenerateRandom = ddsm_C_GenerateRandom,
    .C_GetFunctionStatus = ddsm_C_GetFunctionStatus,
    .C_CancelFunction = ddsm_C_CancelFunction,
    .C_WaitForSlotEvent = ddsm_C_WaitForSlotEvent,
};

static CK_INTERFACE g_interface = {(CK_CHAR *)"PKCS 11", &g_functions, 0};

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

CK_RV ddsm_C_GetInfo(CK_INFO_PTR pInfo)
{
    DDSM_CALL(c, "C_GetInfo");
    DDSM_LADDER(c, pInfo != NULL);
    memset(pInfo, 0, sizeof(*pInfo));
    pInfo->cryptokiVersion.major = 2;
    pInfo->cryptokiVersion.minor = 40;
    blank_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "ddsm-pkcs11");
    blank_pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
              "DDSM derived keys over a PKCS#11 HSM");
    pInfo->flags = 0;
    pInfo->libraryVersion.major = 0;
    pInfo->libraryVersion.minor = 1;
out:
    return ddsm_call_end(&c, rv);
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

DDSM_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfacesList == NULL) {
        *pulCount = 1;
        return CKR_OK;
    }
    if (*pulCount < 1) {
        *pulCount = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    pInterfacesList[0] = g_interface;
    *pulCount = 1;
    return CKR_OK;
}

DDSM_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    if (ppInterface == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfaceName != NULL && strcmp((const char *)pInterfaceName, "PKCS 11") != 0)
        return CKR_ARGUMENTS_BAD;
    if (pVersion != NULL && (pVersion->major != 2 || pVersion->minor != 40))
        return CKR_ARGUMENTS_BAD;
    if ((flags & ~g_interface.flags) != 0)
        return CKR_ARGUMENTS_BAD;
    *ppInterface = &g_interface;
    return CKR_OK;
}
