/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded HSM calls: the derivation HMAC (C_SignInit + C_Sign on one of the module's own backend
 * sessions) runs on a small pool of module worker threads, and the calling application thread
 * waits at most [backend] call_timeout_ms for it (pthread_cond_timedwait).
 *
 * When the wait expires the caller gets a timeout (the module answers CKR_DEVICE_ERROR with
 * DDSM_DEVERR_TIMEOUT) and the backend session is quarantined: it now belongs to the pool, is
 * never handed out again, and is closed by the worker when the stuck call finally returns. The
 * key bytes the late answer carries are wiped, never cached: the caller's audit row stays a row
 * with no delivered key (docs/audit.md "Crashes: rows without a received key"). A worker stuck in
 * the backend stays counted until its call returns; when every worker of the pool is stuck, new
 * calls fail at once instead of queueing behind them.
 *
 * A call may also be started and collected later (ddsm_hsmcall_start / _collect): a derivation
 * starts its HMAC before its audit round trip and collects it afterwards, the bound counting from
 * the start; an answer nobody collects for use is wiped.
 *
 * Only the module's own sessions go through the pool. Plain pass-through calls on the
 * application's sessions stay direct: the application owns those sessions and their operation
 * state, a late answer cannot be quarantined without breaking that session for its owner, and the
 * standard gives the application no way to be told "your session was replaced". Bounding them is
 * the application's (or its HSM library's) business, exactly as without this module.
 *
 * Condition variables need pthread mutexes, so the pool uses them whatever locking the application
 * chose. Under CKF_LIBRARY_CANT_CREATE_OS_THREADS there is no pool and calls run directly
 * (unbounded: the application forbade the threads a bound needs). */
#ifndef DDSM_HSMCALL_H
#define DDSM_HSMCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/derive.h"
#include "ddsm/hsm.h"

typedef struct ddsm_hsmcall ddsm_hsmcall;

#define DDSM_HSMCALL_WORKERS_MAX 64

/* A pool of at most max_workers threads (started on demand) calling be, each call bounded by
 * timeout_ms. */
CK_RV ddsm_hsmcall_new(CK_FUNCTION_LIST_PTR be, unsigned max_workers, unsigned timeout_ms,
                       ddsm_hsmcall **out) DDSM_WUR;

/* Stop the pool: idle workers exit at once; workers stuck in the backend get up to grace_ms to
 * return. true when every worker is gone (the backend may then be finalised and unloaded). false
 * when some are still inside the backend: the pool then frees itself when the last one returns
 * (closing its quarantined session), and the caller must neither finalise nor unload the backend
 * under it. NULL accepted (true). */
bool ddsm_hsmcall_free(ddsm_hsmcall *p, unsigned grace_ms);

/* Outcome of a bounded call besides the backend's CK_RV. */
typedef enum ddsm_hsmcall_status {
    DDSM_HSMCALL_ANSWERED = 0, /* the backend answered in time: its CK_RV counts */
    DDSM_HSMCALL_TIMEOUT,      /* no answer in time, the session was never used: release it */
    DDSM_HSMCALL_QUARANTINED,  /* no answer in time, the call is stuck: the session is the pool's */
} ddsm_hsmcall_status;

/* HMAC-SHA256 of msg under key through session s, on a worker, waiting at most the pool's
 * timeout. out is secret (a derived key when msg is a derivation message). On
 * DDSM_HSMCALL_ANSWERED the return value is the backend's answer (out filled when CKR_OK).
 * Otherwise the return value is CKR_DEVICE_ERROR and out is untouched. p NULL: a direct call
 * through h (unbounded). Workers call the function list the pool was made with, never h, so that
 * a stuck call outlives the module state that made it. */
CK_RV ddsm_hsmcall_hmac_secret(ddsm_hsmcall *p, ddsm_hsm *h, CK_SESSION_HANDLE s,
                               CK_OBJECT_HANDLE key, const uint8_t *msg, size_t len,
                               uint8_t out[32], ddsm_hsmcall_status *status) DDSM_WUR;

/* A call started now and collected later: the HMAC runs on a worker while its caller does
 * something else (the audit round trip of a derivation, vkey_derive.c). */
typedef struct ddsm_hsmcall_job ddsm_hsmcall_job;

/* Start HMAC-SHA256 of msg under key through session s on a worker; its bound (the pool's timeout)
 * counts from now. Until the call is collected, s belongs to it: the caller must not use s, nor
 * give it back. NULL when no call was started (p NULL, no memory, every worker stuck, no worker
 * could be started): the caller then calls as usual (ddsm_hsmcall_hmac_secret), which says why. */
ddsm_hsmcall_job *ddsm_hsmcall_start(ddsm_hsmcall *p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                     const uint8_t *msg, size_t len) DDSM_WUR;

/* Wait for a started call until its deadline and free it, answering as ddsm_hsmcall_hmac_secret
 * does (DDSM_HSMCALL_TIMEOUT: still queued at its deadline, s never used; QUARANTINED: s is the
 * pool's). out NULL discards the answer: its bytes are wiped, never copied. took_ns (may be
 * NULL): when answered, the call's time from its start to its answer. */
CK_RV ddsm_hsmcall_collect(ddsm_hsmcall *p, ddsm_hsmcall_job *j, uint8_t out[32],
                           ddsm_hsmcall_status *status, int64_t *took_ns);

/* Whether every worker is stuck in a call that never came back (new calls would fail at once).
 * Lets a caller refuse before it writes anything. NULL: false. */
bool ddsm_hsmcall_saturated(ddsm_hsmcall *p);

/* Counters for tests and logs. */
typedef struct ddsm_hsmcall_stats {
    unsigned workers;   /* threads alive */
    unsigned stuck;     /* workers inside a call whose caller gave up */
    uint64_t calls;     /* calls submitted */
    uint64_t timeouts;  /* calls whose caller gave up */
    uint64_t fast_fail; /* calls refused at once because every worker was stuck */
    uint64_t started;   /* of the calls, those started ahead (ddsm_hsmcall_start) */
    uint64_t discarded; /* started calls collected without their answer (out NULL) */
} ddsm_hsmcall_stats;
void ddsm_hsmcall_stats_get(ddsm_hsmcall *p, ddsm_hsmcall_stats *out);

/* The derivation HMAC of one (asset, path, counter) started ahead of its audit row
 * (ddsm_roots_derive_ahead, roots.h). The message is no secret; the answer stays in the pool's
 * secure memory until collected. */
typedef struct ddsm_hsmcall_ahead {
    ddsm_hsmcall *pool;
    ddsm_hsmcall_job *job; /* NULL once collected */
    uint8_t msg[DDSM_MSG_MAX];
    size_t len;
    bool used;       /* its answer was the derivation's */
    int64_t took_ns; /* when used: the call's time */
} ddsm_hsmcall_ahead;

/* A ddsm_prf over the root through one session, each HMAC bounded as above. */
typedef struct ddsm_hsmcall_prf_ctx {
    ddsm_hsmcall *pool;
    ddsm_hsmcall_ahead *ahead; /* NULL, or a call started ahead: the first HMAC collects it */
    ddsm_hsm *hsm;
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE root;
    CK_RV last_rv;              /* the backend's answer (or CKR_DEVICE_ERROR) when it failed */
    ddsm_hsmcall_status status; /* of the last call */
} ddsm_hsmcall_prf_ctx;
void ddsm_hsmcall_prf_init(ddsm_hsmcall_prf_ctx *ctx, ddsm_hsmcall *pool, ddsm_hsm *h,
                           CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, ddsm_prf *out);

#endif
