/* SPDX-License-Identifier: Apache-2.0 */
/* Cryptographic operations that may run on a virtual key (in-process) or on a backend key
 * (forwarded): routing, explicit operation state, and the standard's termination rules.
 *
 * Per session and kind there is at most one operation: ours (ddsm_vop.active) or the backend's
 * (tracked by the be_* flags from the CK_RVs the backend returned). *Init refuses with
 * CKR_OPERATION_ACTIVE while either runs; a virtual operation ends on success and on every error
 * except CKR_BUFFER_TOO_SMALL and a successful length query, as the standard says. */
#ifndef DDSM_VOP_H
#define DDSM_VOP_H

#include "ladder.h"

typedef enum ddsm_opkind {
    DDSM_OP_SIGN = 0,
    DDSM_OP_VERIFY,
    DDSM_OP_ENCRYPT,
    DDSM_OP_DECRYPT,
} ddsm_opkind;

ddsm_vop *ddsm_sess_vop(ddsm_sess *s, ddsm_opkind k);
bool *ddsm_sess_be(ddsm_sess *s, ddsm_opkind k);

/* Check the mechanism against a virtual key and fill the operation's parameters (out_len, iv,
 * aad): CKR_MECHANISM_INVALID, CKR_KEY_TYPE_INCONSISTENT, CKR_MECHANISM_PARAM_INVALID. */
typedef CK_RV (*ddsm_mech_fn)(const CK_MECHANISM *m, const ddsm_hentry *e, ddsm_vop *op);

/* C_<Kind>Init: for a virtual key the ladder's remaining rungs (login, operation state, handle,
 * mechanism, key usage, lifecycle) then the key bytes (derived and audited on first use); for a
 * backend key the root guard, then the backend. */
CK_RV ddsm_op_init(ddsm_call *c, ddsm_opkind k, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE hKey,
                   ddsm_mech_fn mech) DDSM_WUR;

typedef enum ddsm_route {
    DDSM_ROUTE_BACKEND = 0, /* no virtual operation: forward */
    DDSM_ROUTE_VIRTUAL,     /* ours: c->sess->lock is HELD on return; finish with ddsm_op_leave */
} ddsm_route;

/* The start of a step (C_Sign, C_SignUpdate, ...). The key is re-checked (rotation, retirement,
 * staleness) before the session lock is taken; a dead key ends the operation. On error nothing
 * is held. */
CK_RV ddsm_op_enter(ddsm_call *c, ddsm_opkind k, ddsm_use use, ddsm_route *route) DDSM_WUR;
/* End of a virtual step: ends the operation unless keep, and unlocks. Returns rv. */
CK_RV ddsm_op_leave(ddsm_call *c, ddsm_opkind k, CK_RV rv, bool keep);

/* End a virtual operation of kind k, if one runs (a bad-argument call terminates it). */
void ddsm_op_abort(ddsm_call *c, ddsm_opkind k);

/* After forwarding a step: whether the backend's operation is still running. ended: the standard
 * says this result terminates the operation. */
void ddsm_op_backend_step(ddsm_call *c, ddsm_opkind k, bool ended);

/* Whether a single-part output call with this outcome ends the operation: not for
 * CKR_BUFFER_TOO_SMALL nor for a successful length query (out == NULL). */
static inline bool ddsm_op_ends(CK_RV rv, const void *out)
{
    return !(rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && out == NULL));
}

#endif
