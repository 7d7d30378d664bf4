/* SPDX-License-Identifier: Apache-2.0 */
#include "vop.h"

#include "ddsm/pkcs11-ddsm.h"
#include "guard.h"
#include "handles.h"
#include "login.h"
#include "policy.h"

ddsm_vop *ddsm_sess_vop(ddsm_sess *s, ddsm_opkind k)
{
    switch (k) {
    case DDSM_OP_SIGN:
        return &s->sign;
    case DDSM_OP_VERIFY:
        return &s->verify;
    case DDSM_OP_ENCRYPT:
        return &s->encrypt;
    default:
        return &s->decrypt;
    }
}

bool *ddsm_sess_be(ddsm_sess *s, ddsm_opkind k)
{
    switch (k) {
    case DDSM_OP_SIGN:
        return &s->be_sign;
    case DDSM_OP_VERIFY:
        return &s->be_verify;
    case DDSM_OP_ENCRYPT:
        return &s->be_encrypt;
    default:
        return &s->be_decrypt;
    }
}

static ddsm_use use_of(ddsm_opkind k)
{
    switch (k) {
    case DDSM_OP_SIGN:
        return DDSM_USE_SIGN;
    case DDSM_OP_VERIFY:
        return DDSM_USE_VERIFY;
    case DDSM_OP_ENCRYPT:
        return DDSM_USE_ENCRYPT;
    default:
        return DDSM_USE_DECRYPT;
    }
}

static uint32_t usage_bit(ddsm_opkind k)
{
    switch (k) {
    case DDSM_OP_SIGN:
        return DDSM_VK_SIGN;
    case DDSM_OP_VERIFY:
        return DDSM_VK_VERIFY;
    case DDSM_OP_ENCRYPT:
        return DDSM_VK_ENCRYPT;
    default:
        return DDSM_VK_DECRYPT;
    }
}

static bool busy(ddsm_call *c, ddsm_opkind k)
{
    ddsm_mutex_lock(c->sess->lock);
    bool b = ddsm_sess_vop(c->sess, k)->active || *ddsm_sess_be(c->sess, k);
    ddsm_mutex_unlock(c->sess->lock);
    return b;
}

static CK_RV backend_init(ddsm_call *c, ddsm_opkind k, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE h)
{
    CK_FUNCTION_LIST_PTR be = c->ctx->be;
    /* The root check fails closed (guard.h): application code that runs between it and the
     * forwarded call (an application mutex callback of the lock below, another thread) cannot
     * make a handle it refused usable, nor one it let through the root, by logging in or out. */
    CK_RV rv = ddsm_mech_check(c, m);
    if (rv != CKR_OK || (rv = ddsm_guard_key(c, h, CKR_OK)) != CKR_OK)
        return rv;
    ddsm_mutex_lock(c->sess->lock);
    bool ours = ddsm_sess_vop(c->sess, k)->active;
    ddsm_mutex_unlock(c->sess->lock);
    if (ours)
        return CKR_OPERATION_ACTIVE;
    switch (k) {
    case DDSM_OP_SIGN:
        rv = be->C_SignInit(c->sess->h, m, h);
        break;
    case DDSM_OP_VERIFY:
        rv = be->C_VerifyInit(c->sess->h, m, h);
        break;
    case DDSM_OP_ENCRYPT:
        rv = be->C_EncryptInit(c->sess->h, m, h);
        break;
    default:
        rv = be->C_DecryptInit(c->sess->h, m, h);
        break;
    }
    rv = ddsm_guard_key_rv(rv, CKR_KEY_HANDLE_INVALID);
    if (rv == CKR_OK || rv == CKR_OPERATION_ACTIVE) {
        ddsm_mutex_lock(c->sess->lock);
        *ddsm_sess_be(c->sess, k) = true;
        ddsm_mutex_unlock(c->sess->lock);
    }
    return rv;
}

CK_RV ddsm_op_init(ddsm_call *c, ddsm_opkind k, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE hKey,
                   ddsm_mech_fn mech)
{
    CK_RV rv;
    ddsm_vop op;
    ddsm_kref *kref = NULL;

    if (!ddsm_handle_is_virtual(hKey) || hKey == CK_DDSM_ROOT_HANDLE)
        return backend_init(c, k, m, hKey);

    memset(&op, 0, sizeof(op));
    if ((rv = ddsm_require_user(c)) != CKR_OK)
        goto out;
    if (busy(c, k)) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    if ((rv = ddsm_vkey_lookup(c, hKey, true, &op.key)) != CKR_OK)
        goto out;
    /* A dead key (rotated away, retired) is CKR_KEY_HANDLE_INVALID whatever the mechanism. */
    if ((rv = ddsm_vkey_check(c, &op.key, use_of(k))) != CKR_OK)
        goto out;
    if ((rv = mech(m, &op.key, &op)) != CKR_OK)
        goto out;
    if ((op.key.variant & usage_bit(k)) == 0) {
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        goto out;
    }
    if ((rv = ddsm_mpolicy_mechanism(c, &op.key, m->mechanism)) != CKR_OK)
        goto out;
    /* Derivation (store + HSM round trips) happens here, with no lock held. */
    if ((rv = ddsm_vkey_materialise(c, &op.key, use_of(k), &kref)) != CKR_OK)
        goto out;

    ddsm_mutex_lock(c->sess->lock);
    ddsm_vop *slot = ddsm_sess_vop(c->sess, k);
    if (slot->active || *ddsm_sess_be(c->sess, k)) {
        rv = CKR_OPERATION_ACTIVE; /* another thread won the race on this session */
    } else if (!ddsm_login_still(c->ctx, c->login_epoch)) {
        rv = CKR_USER_NOT_LOGGED_IN; /* a logout ran since the check: it ended every operation */
    } else {
        *slot = op;
        slot->mech = m->mechanism;
        slot->kref = kref;
        slot->active = true;
        kref = NULL;
        memset(&op, 0, sizeof(op)); /* ownership of aad moved */
    }
    ddsm_mutex_unlock(c->sess->lock);
out:
    ddsm_kref_put(kref);
    ddsm_vop_reset(&op);
    return rv;
}

CK_RV ddsm_op_enter(ddsm_call *c, ddsm_opkind k, ddsm_use use, ddsm_route *route)
{
    ddsm_hentry key;
    ddsm_mutex_lock(c->sess->lock);
    ddsm_vop *op = ddsm_sess_vop(c->sess, k);
    if (!op->active) {
        ddsm_mutex_unlock(c->sess->lock);
        *route = DDSM_ROUTE_BACKEND;
        return CKR_OK;
    }
    key = op->key;
    ddsm_mutex_unlock(c->sess->lock);

    /* May ask the store (LISTEN link down): no lock held. */
    CK_RV rv = ddsm_vkey_check(c, &key, use);

    ddsm_mutex_lock(c->sess->lock);
    if (!op->active) {
        ddsm_mutex_unlock(c->sess->lock);
        return CKR_OPERATION_NOT_INITIALIZED;
    }
    if (rv == CKR_OK && op->kref != NULL && ddsm_kref_dead(op->kref))
        rv = use == DDSM_USE_OBJECT ? CKR_OBJECT_HANDLE_INVALID : CKR_KEY_HANDLE_INVALID;
    if (rv != CKR_OK) {
        ddsm_vop_reset(op);
        ddsm_mutex_unlock(c->sess->lock);
        return rv;
    }
    *route = DDSM_ROUTE_VIRTUAL;
    return CKR_OK;
}

CK_RV ddsm_op_leave(ddsm_call *c, ddsm_opkind k, CK_RV rv, bool keep)
{
    if (!keep)
        ddsm_vop_reset(ddsm_sess_vop(c->sess, k));
    ddsm_mutex_unlock(c->sess->lock);
    return rv;
}

void ddsm_op_backend_step(ddsm_call *c, ddsm_opkind k, bool ended)
{
    if (!ended)
        return;
    ddsm_mutex_lock(c->sess->lock);
    *ddsm_sess_be(c->sess, k) = false;
    ddsm_mutex_unlock(c->sess->lock);
}

void ddsm_op_abort(ddsm_call *c, ddsm_opkind k)
{
    ddsm_mutex_lock(c->sess->lock);
    ddsm_vop *op = ddsm_sess_vop(c->sess, k);
    if (op->active)
        ddsm_vop_reset(op);
    ddsm_mutex_unlock(c->sess->lock);
}
