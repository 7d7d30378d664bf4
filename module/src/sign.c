/* SPDX-License-Identifier: Apache-2.0 */
/* Signing and verifying: CKM_SHA256_HMAC and CKM_SHA256_HMAC_GENERAL (CK_MAC_GENERAL_PARAMS,
 * 1..32 bytes) on virtual secret keys, computed in-process (ddsm/mac.h, OpenSSL 3 EVP_MAC);
 * CKM_ECDSA, CKM_ECDSA_SHA256 and CKM_EDDSA on virtual EC keys (ec.h); every other key goes to
 * the backend behind the root guard. A mechanism of the other key family:
 * CKR_KEY_TYPE_INCONSISTENT; other mechanisms on virtual keys: CKR_MECHANISM_INVALID.
 * C_Sign/C_Verify after a *Update: CKR_OPERATION_NOT_INITIALIZED (no single-part operation was
 * initialised; 2.40 lists no CKR_OPERATION_ACTIVE for them) and, as every failed step but
 * CKR_BUFFER_TOO_SMALL, it ends the operation, as SoftHSM does for backend keys. */
#include <string.h>

#include "ddsm/mac.h"
#include "ddsm/secmem.h"
#include "ec.h"
#include "entry.h"
#include "rv.h"
#include "vop.h"

static CK_RV hmac_mech(const CK_MECHANISM *m, const ddsm_hentry *e, ddsm_vop *op)
{
    if (m->mechanism != CKM_SHA256_HMAC && m->mechanism != CKM_SHA256_HMAC_GENERAL)
        return CKR_MECHANISM_INVALID;
    if ((e->variant & DDSM_VK_AES) != 0)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (m->mechanism == CKM_SHA256_HMAC) {
        if (m->pParameter != NULL || m->ulParameterLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        op->out_len = DDSM_MAC_LEN;
        return CKR_OK;
    }
    CK_ULONG n = 0;
    if (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_ULONG))
        return CKR_MECHANISM_PARAM_INVALID;
    memcpy(&n, m->pParameter, sizeof(n));
    if (n < 1 || n > DDSM_MAC_LEN)
        return CKR_MECHANISM_PARAM_INVALID;
    op->out_len = n;
    return CKR_OK;
}

/* Virtual EC keys and EC mechanisms are ec.c's business, the rest HMAC's. */
static CK_RV sign_mech(const CK_MECHANISM *m, const ddsm_hentry *e, ddsm_vop *op)
{
    if (ddsm_ec_is_ec(e->variant) || ddsm_ec_is_mech(m->mechanism))
        return ddsm_ec_mech(m, e, op);
    return hmac_mech(m, e, op);
}

/* The whole MAC of data under the operation's key. Caller holds the session lock. */
static CK_RV mac_once_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *data, CK_ULONG len,
                             uint8_t mac[DDSM_MAC_LEN])
{
    const ddsm_hmac_state *st = ddsm_kref_hmac(op->kref);
    ddsm_err e = st != NULL
                     ? ddsm_hmac_state_mac(st, data, len, mac)
                     : ddsm_hmac_sha256(ddsm_kref_bytes(op->kref), DDSM_KEY_LEN, data, len, mac);
    return e == DDSM_OK ? CKR_OK : ddsm_call_err(c, e, DDSM_RVCTX_KEY);
}

static CK_RV mac_update_locked(ddsm_call *c, ddsm_vop *op, const CK_BYTE *part, CK_ULONG len)
{
    ddsm_err e = DDSM_OK;
    if (op->stream == NULL)
        e = ddsm_hmac_stream_new(ddsm_kref_bytes(op->kref), DDSM_KEY_LEN, &op->stream);
    if (e == DDSM_OK)
        e = ddsm_hmac_stream_update(op->stream, part, len);
    op->updated = true;
    return e == DDSM_OK ? CKR_OK : ddsm_call_err(c, e, DDSM_RVCTX_KEY);
}

static CK_RV mac_final_locked(ddsm_call *c, ddsm_vop *op, uint8_t mac[DDSM_MAC_LEN])
{
    ddsm_err e = DDSM_OK;
    if (op->stream == NULL)
        e = ddsm_hmac_stream_new(ddsm_kref_bytes(op->kref), DDSM_KEY_LEN, &op->stream);
    if (e == DDSM_OK) {
        e = ddsm_hmac_stream_final(op->stream, mac);
        op->stream = NULL; /* freed by final */
    }
    return e == DDSM_OK ? CKR_OK : ddsm_call_err(c, e, DDSM_RVCTX_KEY);
}

/* The output-size protocol of the standard for a MAC of op->out_len bytes. CKR_OK with
 * *proceed = true when the buffer can take it. */
static CK_RV size_protocol(const ddsm_vop *op, const CK_BYTE *out, CK_ULONG_PTR out_len,
                           bool *proceed)
{
    *proceed = false;
    if (out == NULL) {
        *out_len = op->out_len;
        return CKR_OK;
    }
    if (*out_len < op->out_len) {
        *out_len = op->out_len;
        return CKR_BUFFER_TOO_SMALL;
    }
    *proceed = true;
    return CKR_OK;
}

CK_RV ddsm_C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                      CK_OBJECT_HANDLE hKey)
{
    DDSM_CALL(c, "C_SignInit");
    DDSM_LADDER_SESSION(c, hSession, pMechanism != NULL);
    rv = ddsm_op_init(&c, DDSM_OP_SIGN, pMechanism, hKey, sign_mech);
out:
    return ddsm_call_end(&c, rv);
}

/* C_Sign (single: the whole of pData) and C_SignFinal (!single: what the updates fed), after the
 * entry ladder. */
static CK_RV sign_step(ddsm_call *c, CK_SESSION_HANDLE hSession, bool single, CK_BYTE_PTR pData,
                       CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    ddsm_route route;
    uint8_t sig[64]; /* a MAC (DDSM_MAC_LEN) or an EC signature */
    bool proceed = false;
    CK_RV rv;
    if (pulSignatureLen == NULL || (single && pData == NULL && ulDataLen > 0)) {
        ddsm_op_abort(c, DDSM_OP_SIGN);
        return CKR_ARGUMENTS_BAD;
    }
    if ((rv = ddsm_op_enter(c, DDSM_OP_SIGN, DDSM_USE_SIGN, &route)) != CKR_OK)
        return rv;
    if (route == DDSM_ROUTE_BACKEND) {
        rv = single ? c->ctx->be->C_Sign(hSession, pData, ulDataLen, pSignature, pulSignatureLen)
                    : c->ctx->be->C_SignFinal(hSession, pSignature, pulSignatureLen);
        ddsm_op_backend_step(c, DDSM_OP_SIGN, ddsm_op_ends(rv, pSignature));
        return rv;
    }
    ddsm_vop *op = &c->sess->sign;
    if (single && op->updated)
        return ddsm_op_leave(c, DDSM_OP_SIGN, CKR_OPERATION_NOT_INITIALIZED, false);
    if (!single && op->ec != NULL && ddsm_ec_single_part(op))
        rv = CKR_FUNCTION_NOT_SUPPORTED;
    else
        rv = size_protocol(op, pSignature, pulSignatureLen, &proceed);
    if (proceed) {
        if (op->ec != NULL)
            rv = single ? ddsm_ec_sign_locked(c, op, pData, ulDataLen, sig)
                        : ddsm_ec_sign_final_locked(c, op, sig);
        else
            rv = single ? mac_once_locked(c, op, pData, ulDataLen, sig)
                        : mac_final_locked(c, op, sig);
        if (rv == CKR_OK) {
            memcpy(pSignature, sig, op->out_len);
            *pulSignatureLen = op->out_len;
        }
    }
    ddsm_wipe(sig, sizeof(sig));
    return ddsm_op_leave(c, DDSM_OP_SIGN, rv, !ddsm_op_ends(rv, pSignature));
}

CK_RV ddsm_C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                  CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    DDSM_CALL(c, "C_Sign");
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = sign_step(&c, hSession, true, pData, ulDataLen, pSignature, pulSignatureLen);
out:
    return ddsm_call_end(&c, rv);
}

/* C_SignUpdate and C_VerifyUpdate: the same step, on the session's sign or verify operation. */
static CK_RV update_step(ddsm_call *c, ddsm_opkind kind, ddsm_use use, ddsm_vop *op,
                         CK_RV (*backend)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG),
                         CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    ddsm_route route;
    CK_RV rv;
    if (pPart == NULL && ulPartLen > 0) {
        ddsm_op_abort(c, kind);
        return CKR_ARGUMENTS_BAD;
    }
    if ((rv = ddsm_op_enter(c, kind, use, &route)) != CKR_OK)
        return rv;
    if (route == DDSM_ROUTE_BACKEND) {
        rv = backend(hSession, pPart, ulPartLen);
        ddsm_op_backend_step(c, kind, rv != CKR_OK);
        return rv;
    }
    if (op->ec != NULL)
        rv = ddsm_ec_update_locked(c, op, pPart, ulPartLen);
    else
        rv = mac_update_locked(c, op, pPart, ulPartLen);
    return ddsm_op_leave(c, kind, rv, rv == CKR_OK);
}

CK_RV ddsm_C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    DDSM_CALL(c, "C_SignUpdate");
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = update_step(&c, DDSM_OP_SIGN, DDSM_USE_SIGN, &c.sess->sign, c.ctx->be->C_SignUpdate,
                     hSession, pPart, ulPartLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                       CK_ULONG_PTR pulSignatureLen)
{
    DDSM_CALL(c, "C_SignFinal");
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = sign_step(&c, hSession, false, NULL, 0, pSignature, pulSignatureLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_OBJECT_HANDLE hKey)
{
    DDSM_CALL(c, "C_VerifyInit");
    DDSM_LADDER_SESSION(c, hSession, pMechanism != NULL);
    rv = ddsm_op_init(&c, DDSM_OP_VERIFY, pMechanism, hKey, sign_mech);
out:
    return ddsm_call_end(&c, rv);
}

/* Compare in constant time; the length is checked first (CKR_SIGNATURE_LEN_RANGE). */
static CK_RV compare(const ddsm_vop *op, const uint8_t mac[DDSM_MAC_LEN], const CK_BYTE *sig,
                     CK_ULONG sig_len)
{
    if (sig_len != op->out_len)
        return CKR_SIGNATURE_LEN_RANGE;
    return ddsm_ct_equal(mac, sig, op->out_len) ? CKR_OK : CKR_SIGNATURE_INVALID;
}

/* C_Verify (single: the whole of pData) and C_VerifyFinal (!single), after the entry ladder. */
static CK_RV verify_step(ddsm_call *c, CK_SESSION_HANDLE hSession, bool single, CK_BYTE_PTR pData,
                         CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    ddsm_route route;
    uint8_t mac[DDSM_MAC_LEN];
    CK_RV rv;
    if ((single && pData == NULL && ulDataLen > 0) || (pSignature == NULL && ulSignatureLen > 0)) {
        ddsm_op_abort(c, DDSM_OP_VERIFY);
        return CKR_ARGUMENTS_BAD;
    }
    if ((rv = ddsm_op_enter(c, DDSM_OP_VERIFY, DDSM_USE_VERIFY, &route)) != CKR_OK)
        return rv;
    if (route == DDSM_ROUTE_BACKEND) {
        rv = single ? c->ctx->be->C_Verify(hSession, pData, ulDataLen, pSignature, ulSignatureLen)
                    : c->ctx->be->C_VerifyFinal(hSession, pSignature, ulSignatureLen);
        ddsm_op_backend_step(c, DDSM_OP_VERIFY, true);
        return rv;
    }
    ddsm_vop *op = &c->sess->verify;
    if (single && op->updated)
        return ddsm_op_leave(c, DDSM_OP_VERIFY, CKR_OPERATION_NOT_INITIALIZED, false);
    if (op->ec != NULL)
        rv = single ? ddsm_ec_verify_locked(c, op, pData, ulDataLen, pSignature, ulSignatureLen)
                    : ddsm_ec_verify_final_locked(c, op, pSignature, ulSignatureLen);
    else if (ulSignatureLen != op->out_len)
        rv = CKR_SIGNATURE_LEN_RANGE;
    else if ((rv = single ? mac_once_locked(c, op, pData, ulDataLen, mac)
                          : mac_final_locked(c, op, mac)) == CKR_OK)
        rv = compare(op, mac, pSignature, ulSignatureLen);
    ddsm_wipe(mac, sizeof(mac));
    return ddsm_op_leave(c, DDSM_OP_VERIFY, rv, false);
}

CK_RV ddsm_C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                    CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    DDSM_CALL(c, "C_Verify");
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = verify_step(&c, hSession, true, pData, ulDataLen, pSignature, ulSignatureLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    DDSM_CALL(c, "C_VerifyUpdate");
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = update_step(&c, DDSM_OP_VERIFY, DDSM_USE_VERIFY, &c.sess->verify,
                     c.ctx->be->C_VerifyUpdate, hSession, pPart, ulPartLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                         CK_ULONG ulSignatureLen)
{
    DDSM_CALL(c, "C_VerifyFinal");
    DDSM_LADDER_SESSION(c, hSession, 1);
    rv = verify_step(&c, hSession, false, NULL, 0, pSignature, ulSignatureLen);
out:
    return ddsm_call_end(&c, rv);
}
