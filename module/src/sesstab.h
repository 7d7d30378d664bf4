/* SPDX-License-Identifier: Apache-2.0 */
/* Per-session records, keyed by the backend session handle (which passes through unchanged).
 * Every session the application opened through us has one; it holds our operation state (find
 * merge, sign/verify/encrypt/decrypt on virtual keys), whether a backend operation of each kind is
 * running, and the ulDeviceError detail. The table is sharded so that no lock is shared by every
 * thread; each record has its own lock for its operation state, never held across I/O. */
#ifndef DDSM_SESSTAB_H
#define DDSM_SESSTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/mac.h"
#include "handles.h"
#include "lock.h"
#include "vkey.h"

typedef struct ddsm_sesstab ddsm_sesstab;

/* One operation on a virtual key. */
typedef struct ddsm_vop {
    bool active;
    CK_MECHANISM_TYPE mech;
    ddsm_hentry key;          /* the object, re-checked at every step */
    ddsm_kref *kref;          /* its bytes */
    size_t out_len;           /* MAC length (HMAC_GENERAL may truncate) */
    bool updated;             /* a multi-part step happened: single-part calls are refused */
    ddsm_hmac_stream *stream; /* multi-part HMAC, created at the first *Update */
    struct ddsm_ec_op *ec;    /* EC signature state (ecop.h), NULL for secret keys */
    /* AES-GCM */
    uint8_t iv[12];
    uint8_t *aad;
    size_t aad_len;
} ddsm_vop;

/* A find of one asset has one or two virtual objects (two for an EC key type): they fit in the
 * session itself, so that such a find allocates nothing. */
#define DDSM_FIND_INLINE 4

typedef struct ddsm_find {
    bool active;
    bool be_active; /* the backend's find runs too */
    bool be_done;
    CK_OBJECT_HANDLE *virt; /* few, or a heap array for more */
    size_t n_virt, pos;
    CK_OBJECT_HANDLE few[DDSM_FIND_INLINE];
} ddsm_find;

typedef struct ddsm_sess {
    CK_SESSION_HANDLE h;
    ddsm_mutex *lock; /* the fields below */
    CK_ULONG dev_err;
    ddsm_vop sign, verify, encrypt, decrypt;
    /* A backend operation of that kind was started and has not ended by our account. */
    bool be_sign, be_verify, be_encrypt, be_decrypt;
    ddsm_find find;
    /* owned by the table; refs is taken under the shard lock while linked (the table holds one),
     * dropped without it (ddsm_sess_put: every entry point's epilogue) */
    atomic_uint refs;
    bool unlinked;
    struct ddsm_sess *next;
} ddsm_sess;

CK_RV ddsm_sesstab_new(ddsm_sesstab **out) DDSM_WUR;
void ddsm_sesstab_free(ddsm_sesstab *t); /* ends every operation; NULL accepted */
CK_RV ddsm_sesstab_add(ddsm_sesstab *t, CK_SESSION_HANDLE h) DDSM_WUR;
/* A referenced record, or NULL when h is not one of the application's sessions. */
ddsm_sess *ddsm_sesstab_get(ddsm_sesstab *t, CK_SESSION_HANDLE h);
void ddsm_sess_put(ddsm_sesstab *t, ddsm_sess *s);
/* Forget h (after the backend closed it); the record goes when its last reference does. */
void ddsm_sesstab_remove(ddsm_sesstab *t, CK_SESSION_HANDLE h);
size_t ddsm_sesstab_count(ddsm_sesstab *t);
/* A malloc'ed copy of every session handle. */
CK_RV ddsm_sesstab_list(ddsm_sesstab *t, CK_SESSION_HANDLE **out, size_t *n) DDSM_WUR;

/* End an operation: drop the key reference, wipe and free its state. Caller holds s->lock. */
void ddsm_vop_reset(ddsm_vop *op);
void ddsm_find_reset(ddsm_find *f);

#endif
