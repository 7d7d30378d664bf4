/* SPDX-License-Identifier: Apache-2.0 */
/* Encryption and decryption. Virtual keys of type CKK_AES do AES-256-GCM (CKM_AES_GCM with
 * CK_GCM_PARAMS: a 12-byte IV, a 128-bit tag, optional AAD), single-part, in-process with OpenSSL
 * EVP; the ciphertext is data || tag. Multi-part calls on a virtual operation end it with
 * CKR_FUNCTION_NOT_SUPPORTED (documented limit). Every other key goes to the backend behind the
 * root guard. Decryption writes nothing to the caller's buffer unless the tag verifies. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ddsm/ossl.h"
#include "ddsm/secmem.h"
#include "entry.h"
#include "rv.h"
#include "vop.h"

#define GCM_IV_LEN 12
#define GCM_TAG_LEN 16
#define GCM_AAD_MAX (1UL << 20)

static CK_RV gcm_mech(const CK_MECHANISM *m, const ddsm_hentry *e, ddsm_vop *op)
{
    if (m->mechanism != CKM_AES_GCM)
        return CKR_MECHANISM_INVALID;
    if ((e->variant & DDSM_VK_AES) == 0)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_GCM_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    const CK_GCM_PARAMS *p = m->pParameter;
    if (p->pIv == NULL || p->ulIvLen != GCM_IV_LEN || (p->ulIvBits != 0 && p->ulIvBits != 96))
        return CKR_MECHANISM_PARAM_INVALID;
    if (p->ulTagBits != 8 * GCM_TAG_LEN)
        return CKR_MECHANISM_PARAM_INVALID;
    if ((p->pAAD == NULL && p->ulAADLen > 0) || p->ulAADLen > GCM_AAD_MAX)
        return CKR_MECHANISM_PARAM_INVALID;
    memcpy(op->iv, p->pIv, GCM_IV_LEN);
    if (p->ulAADLen > 0) {
        op->aad = malloc(p->ulAADLen);
        if (op->aad == NULL)
            return CKR_HOST_MEMORY;
        memcpy(op->aad, p->pAAD, p->ulAADLen);
        op->aad_len = p->ulAADLen;
    }
    return CKR_OK;
}

/* AES-256-GCM under the operation's key (a secret). in and out may not overlap. For decryption,
 * in ends with the tag and out receives len - 16 bytes; CKR_ENCRYPTED_DATA_INVALID when the tag
 * does not verify (out is then wiped). */
static CK_RV gcm_secret(ddsm_call *c, const ddsm_vop *op, bool enc, const CK_BYTE *in,
                        size_t in_len, CK_BYTE *out)
{
    CK_RV rv = CKR_OK;
    int n = 0, fin = 0;
    size_t body = enc ? in_len : in_len - GCM_TAG_LEN;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (x == NULL)
        return CKR_HOST_MEMORY;
    if (EVP_CipherInit_ex2(x, ddsm_ossl_aes_256_gcm(), NULL, NULL, enc ? 1 : 0, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_IVLEN, GCM_IV_LEN, NULL) != 1 ||
        EVP_CipherInit_ex2(x, NULL, ddsm_kref_bytes(op->kref), op->iv, -1, NULL) != 1 ||
        (op->aad_len > 0 && EVP_CipherUpdate(x, NULL, &n, op->aad, (int)op->aad_len) != 1) ||
        (body > 0 && EVP_CipherUpdate(x, out, &n, in, (int)body) != 1)) {
        rv = ddsm_call_err(c, DDSM_E_CRYPTO, DDSM_RVCTX_KEY);
        goto out;
    }
    if (enc) {
        if (EVP_CipherFinal_ex(x, out + n, &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, out + body) != 1)
            rv = ddsm_call_err(c, DDSM_E_CRYPTO, DDSM_RVCTX_KEY);
    } else {
        if (EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, (void *)(in + body)) != 1) {
            rv = ddsm_call_err(c, DDSM_E_CRYPTO, DDSM_RVCTX_KEY);
        } else if (EVP_CipherFinal_ex(x, out + n, &fin) != 1) {
            ddsm_wipe(out, body);
            rv = CKR_ENCRYPTED_DATA_INVALID;
        }
    }
out:
    EVP_CIPHER_CTX_free(x);
    return rv;
}

CK_RV ddsm_C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                         CK_OBJECT_HANDLE hKey)
{
    DDSM_CALL(c, "C_EncryptInit");
    DDSM_LADDER_SESSION(c, hSession, pMechanism != NULL);
    rv = ddsm_op_init(&c, DDSM_OP_ENCRYPT, pMechanism, hKey, gcm_mech);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                     CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
    ddsm_route route;
    DDSM_CALL(c, "C_Encrypt");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if (pulEncryptedDataLen == NULL || (pData == NULL && ulDataLen > 0)) {
        ddsm_op_abort(&c, DDSM_OP_ENCRYPT);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if ((rv = ddsm_op_enter(&c, DDSM_OP_ENCRYPT, DDSM_USE_ENCRYPT, &route)) != CKR_OK)
        goto out;
    if (route == DDSM_ROUTE_BACKEND) {
        rv = c.ctx->be->C_Encrypt(hSession, pData, ulDataLen, pEncryptedData, pulEncryptedDataLen);
        ddsm_op_backend_step(&c, DDSM_OP_ENCRYPT, ddsm_op_ends(rv, pEncryptedData));
        goto out;
    }
    if (ulDataLen > (CK_ULONG)INT_MAX - GCM_TAG_LEN) {
        rv = ddsm_op_leave(&c, DDSM_OP_ENCRYPT, CKR_DATA_LEN_RANGE, false);
        goto out;
    }
    CK_ULONG need = ulDataLen + GCM_TAG_LEN;
    if (pEncryptedData == NULL) {
        *pulEncryptedDataLen = need;
        rv = CKR_OK;
    } else if (*pulEncryptedDataLen < need) {
        *pulEncryptedDataLen = need;
        rv = CKR_BUFFER_TOO_SMALL;
    } else {
        rv = gcm_secret(&c, &c.sess->encrypt, true, pData, ulDataLen, pEncryptedData);
        if (rv == CKR_OK)
            *pulEncryptedDataLen = need;
    }
    rv = ddsm_op_leave(&c, DDSM_OP_ENCRYPT, rv, !ddsm_op_ends(rv, pEncryptedData));
out:
    return ddsm_call_end(&c, rv);
}

/* A multi-part step: forwarded, or the end of a virtual operation. */
static CK_RV multipart(ddsm_call *c, ddsm_opkind k, ddsm_use use, bool final, CK_RV (*fwd)(void *),
                       void *arg, const void *out)
{
    ddsm_route route;
    CK_RV rv = ddsm_op_enter(c, k, use, &route);
    if (rv != CKR_OK)
        return rv;
    if (route == DDSM_ROUTE_BACKEND) {
        rv = fwd(arg);
        ddsm_op_backend_step(c, k, final ? ddsm_op_ends(rv, out) : rv != CKR_OK);
        return rv;
    }
    return ddsm_op_leave(c, k, CKR_FUNCTION_NOT_SUPPORTED, false);
}

struct upd_args {
    CK_FUNCTION_LIST_PTR be;
    CK_SESSION_HANDLE s;
    CK_BYTE_PTR in;
    CK_ULONG in_len;
    CK_BYTE_PTR out;
    CK_ULONG_PTR out_len;
};

static CK_RV fwd_encrypt_update(void *p)
{
    struct upd_args *a = p;
    return a->be->C_EncryptUpdate(a->s, a->in, a->in_len, a->out, a->out_len);
}

static CK_RV fwd_encrypt_final(void *p)
{
    struct upd_args *a = p;
    return a->be->C_EncryptFinal(a->s, a->out, a->out_len);
}

static CK_RV fwd_decrypt_update(void *p)
{
    struct upd_args *a = p;
    return a->be->C_DecryptUpdate(a->s, a->in, a->in_len, a->out, a->out_len);
}

static CK_RV fwd_decrypt_final(void *p)
{
    struct upd_args *a = p;
    return a->be->C_DecryptFinal(a->s, a->out, a->out_len);
}

CK_RV ddsm_C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                           CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
    DDSM_CALL(c, "C_EncryptUpdate");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if (pulEncryptedPartLen == NULL || (pPart == NULL && ulPartLen > 0)) {
        ddsm_op_abort(&c, DDSM_OP_ENCRYPT);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    struct upd_args a = {c.ctx->be, hSession,       pPart,
                         ulPartLen, pEncryptedPart, pulEncryptedPartLen};
    rv = multipart(&c, DDSM_OP_ENCRYPT, DDSM_USE_ENCRYPT, false, fwd_encrypt_update, &a, NULL);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,
                          CK_ULONG_PTR pulLastEncryptedPartLen)
{
    DDSM_CALL(c, "C_EncryptFinal");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if (pulLastEncryptedPartLen == NULL) {
        ddsm_op_abort(&c, DDSM_OP_ENCRYPT);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    struct upd_args a = {c.ctx->be, hSession, NULL, 0, pLastEncryptedPart, pulLastEncryptedPartLen};
    rv = multipart(&c, DDSM_OP_ENCRYPT, DDSM_USE_ENCRYPT, true, fwd_encrypt_final, &a,
                   pLastEncryptedPart);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                         CK_OBJECT_HANDLE hKey)
{
    DDSM_CALL(c, "C_DecryptInit");
    DDSM_LADDER_SESSION(c, hSession, pMechanism != NULL);
    rv = ddsm_op_init(&c, DDSM_OP_DECRYPT, pMechanism, hKey, gcm_mech);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData,
                     CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
    ddsm_route route;
    CK_BYTE *tmp = NULL;
    CK_ULONG need = 0;
    DDSM_CALL(c, "C_Decrypt");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if (pulDataLen == NULL || (pEncryptedData == NULL && ulEncryptedDataLen > 0)) {
        ddsm_op_abort(&c, DDSM_OP_DECRYPT);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if ((rv = ddsm_op_enter(&c, DDSM_OP_DECRYPT, DDSM_USE_DECRYPT, &route)) != CKR_OK)
        goto out;
    if (route == DDSM_ROUTE_BACKEND) {
        rv = c.ctx->be->C_Decrypt(hSession, pEncryptedData, ulEncryptedDataLen, pData, pulDataLen);
        ddsm_op_backend_step(&c, DDSM_OP_DECRYPT, ddsm_op_ends(rv, pData));
        goto out;
    }
    if (ulEncryptedDataLen < GCM_TAG_LEN || ulEncryptedDataLen > (CK_ULONG)INT_MAX) {
        rv = ddsm_op_leave(&c, DDSM_OP_DECRYPT, CKR_ENCRYPTED_DATA_LEN_RANGE, false);
        goto out;
    }
    need = ulEncryptedDataLen - GCM_TAG_LEN;
    if (pData == NULL) {
        *pulDataLen = need;
        rv = CKR_OK;
    } else if (*pulDataLen < need) {
        *pulDataLen = need;
        rv = CKR_BUFFER_TOO_SMALL;
    } else {
        /* Plaintext reaches the caller only once the tag has verified. */
        tmp = malloc(need > 0 ? need : 1);
        if (tmp == NULL) {
            rv = CKR_HOST_MEMORY;
        } else {
            rv = gcm_secret(&c, &c.sess->decrypt, false, pEncryptedData, ulEncryptedDataLen, tmp);
            if (rv == CKR_OK) {
                memcpy(pData, tmp, need);
                *pulDataLen = need;
            }
        }
    }
    rv = ddsm_op_leave(&c, DDSM_OP_DECRYPT, rv, !ddsm_op_ends(rv, pData));
out:
    if (tmp != NULL) {
        ddsm_wipe(tmp, need > 0 ? need : 1);
        free(tmp);
    }
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                           CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
    DDSM_CALL(c, "C_DecryptUpdate");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if (pulPartLen == NULL || (pEncryptedPart == NULL && ulEncryptedPartLen > 0)) {
        ddsm_op_abort(&c, DDSM_OP_DECRYPT);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    struct upd_args a = {c.ctx->be,          hSession, pEncryptedPart,
                         ulEncryptedPartLen, pPart,    pulPartLen};
    rv = multipart(&c, DDSM_OP_DECRYPT, DDSM_USE_DECRYPT, false, fwd_decrypt_update, &a, NULL);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart,
                          CK_ULONG_PTR pulLastPartLen)
{
    DDSM_CALL(c, "C_DecryptFinal");
    DDSM_LADDER_SESSION(c, hSession, 1);
    if (pulLastPartLen == NULL) {
        ddsm_op_abort(&c, DDSM_OP_DECRYPT);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    struct upd_args a = {c.ctx->be, hSession, NULL, 0, pLastPart, pulLastPartLen};
    rv = multipart(&c, DDSM_OP_DECRYPT, DDSM_USE_DECRYPT, true, fwd_decrypt_final, &a, pLastPart);
out:
    return ddsm_call_end(&c, rv);
}
