/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 3.0 additions of the 3.0 function list besides C_LoginUser (session.c) and the
 * interface functions (general.c): C_SessionCancel, and the message-based functions, which the
 * module does not offer (CKR_FUNCTION_NOT_SUPPORTED after the usual checks: no mechanism of ours
 * has CKF_MESSAGE_* set, and the backend is reached through its 2.40 list).
 *
 * C_SessionCancel (3.0 section 5.6): flags name the operations to end. A flag for an operation
 * that is not running is ignored. The module ends its own operations on virtual keys
 * (CKF_SIGN, CKF_VERIFY, CKF_ENCRYPT, CKF_DECRYPT) and any search (CKF_FIND_OBJECTS: the backend's
 * part ends with C_FindObjectsFinal). A backend operation of those kinds cannot be cancelled
 * through a 2.40 backend, and the module does not track the backend's digest and recover
 * operations: such flags answer CKR_OPERATION_CANCEL_FAILED, leaving the backend's operation as
 * it was (the module's own ones named by other flags are ended all the same). */
#include "entry.h"
#include "ladder.h"
#include "vop.h"

CK_RV ddsm_C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
    static const struct {
        CK_FLAGS flag;
        ddsm_opkind kind;
    } kinds[] = {{CKF_SIGN, DDSM_OP_SIGN},
                 {CKF_VERIFY, DDSM_OP_VERIFY},
                 {CKF_ENCRYPT, DDSM_OP_ENCRYPT},
                 {CKF_DECRYPT, DDSM_OP_DECRYPT}};
    bool failed = (flags & (CKF_DIGEST | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER)) != 0;
    bool end_be_find = false;
    DDSM_CALL(c, "C_SessionCancel");
    DDSM_LADDER_SESSION(c, hSession, 1);
    ddsm_mutex_lock(c.sess->lock);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if ((flags & kinds[i].flag) == 0)
            continue;
        ddsm_vop *op = ddsm_sess_vop(c.sess, kinds[i].kind);
        if (op->active)
            ddsm_vop_reset(op);
        if (*ddsm_sess_be(c.sess, kinds[i].kind))
            failed = true;
    }
    if ((flags & CKF_FIND_OBJECTS) != 0 && c.sess->find.active) {
        end_be_find = c.sess->find.be_active;
        ddsm_find_reset(&c.sess->find);
    }
    ddsm_mutex_unlock(c.sess->lock);
    if (end_be_find) {
        CK_RV r = c.ctx->be->C_FindObjectsFinal(hSession);
        if (r != CKR_OK && r != CKR_OPERATION_NOT_INITIALIZED)
            failed = true;
    }
    rv = failed ? CKR_OPERATION_CANCEL_FAILED : CKR_OK;
out:
    return ddsm_call_end(&c, rv);
}

/* The message-based functions: the session must exist (CKR_SESSION_HANDLE_INVALID otherwise),
 * then CKR_FUNCTION_NOT_SUPPORTED. */
static CK_RV not_supported(const char *fn, CK_SESSION_HANDLE hSession)
{
    DDSM_CALL(c, fn);
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = CKR_FUNCTION_NOT_SUPPORTED;
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                CK_OBJECT_HANDLE hKey)
{
    return not_supported("C_MessageEncryptInit", hSession);
}

CK_RV ddsm_C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext,
                            CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext,
                            CK_ULONG_PTR pulCiphertextLen)
{
    return not_supported("C_EncryptMessage", hSession);
}

CK_RV ddsm_C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                 CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                 CK_ULONG ulAssociatedDataLen)
{
    return not_supported("C_EncryptMessageBegin", hSession);
}

CK_RV ddsm_C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart,
                                CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart,
                                CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags)
{
    return not_supported("C_EncryptMessageNext", hSession);
}

CK_RV ddsm_C_MessageEncryptFinal(CK_SESSION_HANDLE hSession)
{
    return not_supported("C_MessageEncryptFinal", hSession);
}

CK_RV ddsm_C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                CK_OBJECT_HANDLE hKey)
{
    return not_supported("C_MessageDecryptInit", hSession);
}

CK_RV ddsm_C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext,
                            CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext,
                            CK_ULONG_PTR pulPlaintextLen)
{
    return not_supported("C_DecryptMessage", hSession);
}

CK_RV ddsm_C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                 CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                 CK_ULONG ulAssociatedDataLen)
{
    return not_supported("C_DecryptMessageBegin", hSession);
}

CK_RV ddsm_C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart,
                                CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart,
                                CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags)
{
    return not_supported("C_DecryptMessageNext", hSession);
}

CK_RV ddsm_C_MessageDecryptFinal(CK_SESSION_HANDLE hSession)
{
    return not_supported("C_MessageDecryptFinal", hSession);
}

CK_RV ddsm_C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                             CK_OBJECT_HANDLE hKey)
{
    return not_supported("C_MessageSignInit", hSession);
}

CK_RV ddsm_C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                         CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                         CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    return not_supported("C_SignMessage", hSession);
}

CK_RV ddsm_C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                              CK_ULONG ulParameterLen)
{
    return not_supported("C_SignMessageBegin", hSession);
}

CK_RV ddsm_C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                             CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                             CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    return not_supported("C_SignMessageNext", hSession);
}

CK_RV ddsm_C_MessageSignFinal(CK_SESSION_HANDLE hSession)
{
    return not_supported("C_MessageSignFinal", hSession);
}

CK_RV ddsm_C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                               CK_OBJECT_HANDLE hKey)
{
    return not_supported("C_MessageVerifyInit", hSession);
}

CK_RV ddsm_C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                           CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    return not_supported("C_VerifyMessage", hSession);
}

CK_RV ddsm_C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen)
{
    return not_supported("C_VerifyMessageBegin", hSession);
}

CK_RV ddsm_C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                               CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                               CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    return not_supported("C_VerifyMessageNext", hSession);
}

CK_RV ddsm_C_MessageVerifyFinal(CK_SESSION_HANDLE hSession)
{
    return not_supported("C_MessageVerifyFinal", hSession);
}
