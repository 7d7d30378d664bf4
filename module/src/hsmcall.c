/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded HSM calls on a worker pool (see hsmcall.h for the contract).
 *
 * One pthread mutex guards the queue and the counters; each job has its own condition variable on
 * which its caller waits. A job moves QUEUED -> RUNNING -> DONE. A caller whose deadline passes
 * takes a QUEUED job back out of the queue (the session was never touched: the caller keeps it),
 * or abandons a RUNNING one: the worker then owns the job and its session, counts itself stuck,
 * and when the backend finally answers wipes the late key bytes, closes the session and frees the
 * job. No lock is held across a backend call. */
#include "hsmcall.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/secmem.h"

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_state;

typedef struct job {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    uint8_t *msg; /* a copy: the caller may be gone when the worker reads it */
    size_t len;
    uint8_t *out; /* 32 bytes of secure memory: a secret */
    CK_RV rv;
    job_state state;
    bool abandoned;
    struct timespec deadline; /* CLOCK_MONOTONIC: the bound counts from the call's start */
    int64_t queued_ns, took_ns; /* took_ns: from queued to answered (set by the worker) */
    pthread_cond_t done;
    struct job *next;
} job;

struct ddsm_hsmcall;

/* One worker thread. Joinable: the pool joins every worker that has left before it lets the
 * module go (a thread still running its last instructions in a module the application is about to
 * dlclose would crash the process). */
typedef struct worker_slot {
    struct ddsm_hsmcall *p;
    pthread_t th;
    bool exited; /* left worker_main's loop (under the pool lock) */
} worker_slot;

struct ddsm_hsmcall {
    CK_FUNCTION_LIST_PTR be;
    unsigned max_workers;
    unsigned timeout_ms;

    pthread_mutex_t lock;
    pthread_cond_t work;   /* a job was queued, or the pool is stopping */
    pthread_cond_t exited; /* a worker exited */
    job *head, *tail;
    unsigned queued;
    unsigned workers; /* alive */
    unsigned idle;    /* waiting for work */
    unsigned stuck;   /* running an abandoned job */
    bool stopping;
    bool orphaned; /* the owner left: the last worker frees the pool */
    uint64_t calls, timeouts, fast_fail, started, discarded;
    unsigned n_slots; /* threads started (workers only leave when the pool stops) */
    worker_slot slots[DDSM_HSMCALL_WORKERS_MAX];
};

static void job_free(job *j)
{
    if (j == NULL)
        return;
    ddsm_secure_free(j->out, 32);
    free(j->msg);
    pthread_cond_destroy(&j->done);
    free(j);
}

/* HMAC-SHA256 through the pool's function list (never through a ddsm_hsm, see hsmcall.h). out is
 * a secret. */
static CK_RV be_hmac_secret(CK_FUNCTION_LIST_PTR be, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                            const uint8_t *msg, size_t len, uint8_t out[32])
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG out_len = 32;
    CK_RV rv = be->C_SignInit(s, &mech, key);
    if (rv != CKR_OK)
        return rv;
    rv = be->C_Sign(s, (CK_BYTE_PTR)msg, len, out, &out_len);
    if (rv == CKR_OK && out_len != 32) {
        ddsm_wipe(out, 32);
        rv = CKR_DEVICE_ERROR;
    }
    return rv;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pool_destroy(ddsm_hsmcall *p)
{
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->exited);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void *worker_main(void *arg)
{
    worker_slot *slot = arg;
    ddsm_hsmcall *p = slot->p;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->head == NULL) {
            if (p->stopping)
                break;
            p->idle++;
            pthread_cond_wait(&p->work, &p->lock);
            p->idle--;
            continue;
        }
        job *j = p->head;
        p->head = j->next;
        if (p->head == NULL)
            p->tail = NULL;
        j->next = NULL;
        p->queued--;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->lock);

        CK_RV rv = be_hmac_secret(p->be, j->s, j->key, j->msg, j->len, j->out);

        pthread_mutex_lock(&p->lock);
        if (!j->abandoned) {
            j->rv = rv;
            j->took_ns = mono_ns() - j->queued_ns;
            j->state = JOB_DONE;
            pthread_cond_signal(&j->done);
            continue;
        }
        /* Its caller gave up: the late answer is wiped, the quarantined session closed. */
        p->stuck--;
        pthread_mutex_unlock(&p->lock);
        ddsm_log(DDSM_LOG_WARN, "a timed-out HSM call returned %s; closing its session",
                 ddsm_rv_name(rv));
        (void)p->be->C_CloseSession(j->s);
        job_free(j);
        pthread_mutex_lock(&p->lock);
    }
    p->workers--;
    slot->exited = true;
    bool last_of_orphan = p->orphaned && p->workers == 0;
    pthread_cond_broadcast(&p->exited);
    pthread_mutex_unlock(&p->lock);
    if (last_of_orphan)
        pool_destroy(p);
    return NULL;
}

CK_RV ddsm_hsmcall_new(CK_FUNCTION_LIST_PTR be, unsigned max_workers, unsigned timeout_ms,
                       ddsm_hsmcall **out)
{
    if (be == NULL || out == NULL || max_workers == 0 || timeout_ms == 0)
        return CKR_ARGUMENTS_BAD;
    ddsm_hsmcall *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CKR_HOST_MEMORY;
    p->be = be;
    p->max_workers =
        max_workers > DDSM_HSMCALL_WORKERS_MAX ? DDSM_HSMCALL_WORKERS_MAX : max_workers;
    p->timeout_ms = timeout_ms;
    pthread_condattr_t ca;
    bool have_ca = pthread_condattr_init(&ca) == 0;
    if (!have_ca || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&p->lock, NULL) != 0) {
        if (have_ca)
            pthread_condattr_destroy(&ca);
        free(p);
        return CKR_CANT_LOCK;
    }
    if (pthread_cond_init(&p->work, NULL) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return CKR_CANT_LOCK;
    }
    if (pthread_cond_init(&p->exited, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return CKR_CANT_LOCK;
    }
    pthread_condattr_destroy(&ca);
    *out = p;
    return CKR_OK;
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Keep this module mapped for good (RTLD_NODELETE): a worker stuck in the backend will return
 * into our code whenever the HSM answers, even after C_Finalize and dlclose. */
static void pin_module(void)
{
    Dl_info info;
    if (dladdr((void *)(uintptr_t)pin_module, &info) == 0 || info.dli_fname == NULL ||
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) == NULL)
        ddsm_log(DDSM_LOG_WARN, "cannot pin the module in memory for its stuck HSM calls");
}

bool ddsm_hsmcall_free(ddsm_hsmcall *p, unsigned grace_ms)
{
    if (p == NULL)
        return true;
    struct timespec deadline;
    deadline_after(&deadline, grace_ms);
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    while (p->workers > 0) {
        int e = pthread_cond_timedwait(&p->exited, &p->lock, &deadline);
        if (e == ETIMEDOUT)
            break;
    }
    bool gone = p->workers == 0;
    if (!gone) {
        /* Stuck in the backend: they free the pool (and close their sessions) on their way out.
         * Nothing is queued (every queued job has a waiting caller, and there are none now).
         * Their code must stay mapped even if the application unloads the module. */
        p->orphaned = true;
        for (unsigned i = 0; i < p->n_slots; i++) {
            if (p->slots[i].exited)
                (void)pthread_join(p->slots[i].th, NULL);
            else
                (void)pthread_detach(p->slots[i].th);
        }
        pin_module();
        ddsm_log(DDSM_LOG_WARN,
                 "%u HSM call(s) still stuck at C_Finalize: leaving the backend "
                 "loaded for them",
                 p->workers);
    }
    pthread_mutex_unlock(&p->lock);
    if (gone) {
        for (unsigned i = 0; i < p->n_slots; i++)
            (void)pthread_join(p->slots[i].th, NULL);
        pool_destroy(p);
    }
    return gone;
}

/* Start a worker when the queued jobs outnumber the idle workers. Called with the lock held.
 * false when no worker exists and none could be started. */
static bool ensure_worker_locked(ddsm_hsmcall *p)
{
    if (p->idle >= p->queued || p->workers >= p->max_workers)
        return p->workers > 0;
    if (p->n_slots == DDSM_HSMCALL_WORKERS_MAX)
        return p->workers > 0;
    worker_slot *slot = &p->slots[p->n_slots];
    slot->p = p;
    slot->exited = false;
    int e = pthread_create(&slot->th, NULL, worker_main, slot);
    if (e != 0) {
        ddsm_log(DDSM_LOG_WARN, "cannot start an HSM worker thread: %s", strerror(e));
        return p->workers > 0;
    }
    p->n_slots++;
    p->workers++;
    return true;
}

static void unqueue_locked(ddsm_hsmcall *p, job *j)
{
    job **link = &p->head, *prev = NULL;
    while (*link != NULL && *link != j) {
        prev = *link;
        link = &(*link)->next;
    }
    if (*link == NULL)
        return;
    *link = j->next;
    if (p->tail == j)
        p->tail = prev;
    j->next = NULL;
    p->queued--;
}

/* A job for (s, key, msg), its bound counting from now; NULL when out of memory. */
static job *job_new(ddsm_hsmcall *p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                    const uint8_t *msg, size_t len)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->msg = malloc(len > 0 ? len : 1);
    j->out = ddsm_secure_alloc(32);
    if (j->msg == NULL || j->out == NULL) {
        ddsm_secure_free(j->out, 32);
        free(j->msg);
        free(j);
        return NULL;
    }
    /* The wait is on CLOCK_MONOTONIC: a wall clock step cannot stretch the bound. */
    pthread_condattr_t ca;
    bool have_ca = pthread_condattr_init(&ca) == 0;
    if (!have_ca || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&j->done, &ca) != 0) {
        if (have_ca)
            pthread_condattr_destroy(&ca);
        ddsm_secure_free(j->out, 32);
        free(j->msg);
        free(j);
        return NULL; /* the only way condition variable set-up fails on Linux */
    }
    pthread_condattr_destroy(&ca);
    memcpy(j->msg, msg, len);
    j->len = len;
    j->s = s;
    j->key = key;
    j->state = JOB_QUEUED;
    j->queued_ns = mono_ns();
    deadline_after(&j->deadline, p->timeout_ms);
    return j;
}

typedef enum { ENQ_QUEUED, ENQ_SATURATED, ENQ_NO_WORKER } enq_result;

/* Queue j for a worker (counted as a call). Called with the lock held. */
static enq_result enqueue_locked(ddsm_hsmcall *p, job *j)
{
    p->calls++;
    if (p->stuck >= p->max_workers) {
        /* Every worker is inside a call that never came back: the HSM is not answering. */
        p->fast_fail++;
        return ENQ_SATURATED;
    }
    if (p->tail != NULL)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    if (!ensure_worker_locked(p)) {
        unqueue_locked(p, j);
        return ENQ_NO_WORKER;
    }
    pthread_cond_signal(&p->work);
    return ENQ_QUEUED;
}

/* Wait for a queued job until its deadline, and collect it (see ddsm_hsmcall_collect). Called
 * with the lock held; returns with it released. Frees j unless the worker now owns it. */
static CK_RV wait_unlock(ddsm_hsmcall *p, job *j, uint8_t out[32], ddsm_hsmcall_status *status,
                         int64_t *took_ns)
{
    CK_RV rv = CKR_DEVICE_ERROR;
    *status = DDSM_HSMCALL_ANSWERED;
    while (j->state != JOB_DONE) {
        int e = pthread_cond_timedwait(&j->done, &p->lock, &j->deadline);
        if (e == ETIMEDOUT && j->state != JOB_DONE)
            break;
    }
    if (j->state == JOB_DONE) {
        pthread_mutex_unlock(&p->lock);
        rv = j->rv;
        if (rv == CKR_OK && out != NULL)
            memcpy(out, j->out, 32);
        if (took_ns != NULL)
            *took_ns = j->took_ns;
    } else if (j->state == JOB_QUEUED) {
        unqueue_locked(p, j);
        p->timeouts++;
        pthread_mutex_unlock(&p->lock);
        *status = DDSM_HSMCALL_TIMEOUT;
    } else {
        j->abandoned = true;
        p->stuck++;
        p->timeouts++;
        pthread_mutex_unlock(&p->lock);
        ddsm_log(DDSM_LOG_WARN, "HSM call exceeded %u ms: session quarantined", p->timeout_ms);
        *status = DDSM_HSMCALL_QUARANTINED;
        return CKR_DEVICE_ERROR; /* the worker's now */
    }
    job_free(j);
    return rv;
}

CK_RV ddsm_hsmcall_hmac_secret(ddsm_hsmcall *p, ddsm_hsm *h, CK_SESSION_HANDLE s,
                               CK_OBJECT_HANDLE key, const uint8_t *msg, size_t len,
                               uint8_t out[32], ddsm_hsmcall_status *status)
{
    *status = DDSM_HSMCALL_ANSWERED;
    if (p == NULL)
        return ddsm_hsm_hmac_sha256(h, s, key, msg, len, out);

    job *j = job_new(p, s, key, msg, len);
    if (j == NULL)
        return CKR_HOST_MEMORY;
    pthread_mutex_lock(&p->lock);
    enq_result r = enqueue_locked(p, j);
    if (r == ENQ_QUEUED)
        return wait_unlock(p, j, out, status, NULL);
    pthread_mutex_unlock(&p->lock);
    job_free(j);
    if (r == ENQ_SATURATED) {
        *status = DDSM_HSMCALL_TIMEOUT;
        return CKR_DEVICE_ERROR;
    }
    ddsm_log(DDSM_LOG_WARN, "no HSM worker thread: calling the HSM directly (unbounded)");
    return be_hmac_secret(p->be, s, key, msg, len, out);
}

ddsm_hsmcall_job *ddsm_hsmcall_start(ddsm_hsmcall *p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                     const uint8_t *msg, size_t len)
{
    if (p == NULL)
        return NULL;
    job *j = job_new(p, s, key, msg, len);
    if (j == NULL)
        return NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stuck >= p->max_workers) {
        /* Not counted: the caller's own call will be, and fail at once. */
        pthread_mutex_unlock(&p->lock);
        job_free(j);
        return NULL;
    }
    p->started++;
    enq_result r = enqueue_locked(p, j);
    pthread_mutex_unlock(&p->lock);
    if (r != ENQ_QUEUED) {
        job_free(j);
        return NULL;
    }
    return (ddsm_hsmcall_job *)j;
}

CK_RV ddsm_hsmcall_collect(ddsm_hsmcall *p, ddsm_hsmcall_job *jp, uint8_t out[32],
                           ddsm_hsmcall_status *status, int64_t *took_ns)
{
    job *j = (job *)jp;
    pthread_mutex_lock(&p->lock);
    if (out == NULL)
        p->discarded++;
    return wait_unlock(p, j, out, status, took_ns);
}

void ddsm_hsmcall_stats_get(ddsm_hsmcall *p, ddsm_hsmcall_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    out->workers = p->workers;
    out->stuck = p->stuck;
    out->calls = p->calls;
    out->timeouts = p->timeouts;
    out->fast_fail = p->fast_fail;
    out->started = p->started;
    out->discarded = p->discarded;
    pthread_mutex_unlock(&p->lock);
}

/* The call started ahead, collected by the first HMAC of its derivation: true when its outcome
 * is this call's (ctx->last_rv, ctx->status, out), false when the HMAC must be made now. */
static bool collect_ahead(ddsm_hsmcall_prf_ctx *ctx, const uint8_t *msg, size_t len,
                          uint8_t out[32])
{
    ddsm_hsmcall_ahead *a = ctx->ahead;
    ctx->ahead = NULL;
    if (a == NULL || a->job == NULL)
        return false;
    /* The message names asset, path and counter: only the very key may be handed on. */
    bool same = len == a->len && memcmp(msg, a->msg, len) == 0;
    ddsm_hsmcall_status st;
    int64_t took = 0;
    CK_RV rv = ddsm_hsmcall_collect(a->pool, a->job, same ? out : NULL, &st, &took);
    a->job = NULL;
    if (st == DDSM_HSMCALL_TIMEOUT)
        return false; /* it never ran (queued past its deadline): the session is untouched */
    if (st == DDSM_HSMCALL_ANSWERED && !same)
        return false; /* another counter's key, wiped: the statement's counter decides */
    ctx->last_rv = rv;
    ctx->status = st;
    a->used = same && st == DDSM_HSMCALL_ANSWERED;
    a->took_ns = took;
    return true;
}

static ddsm_err prf_hmac_root(void *arg, const uint8_t *msg, size_t len, uint8_t out[32])
{
    ddsm_hsmcall_prf_ctx *ctx = arg;
    if (collect_ahead(ctx, msg, len, out))
        return ctx->last_rv == CKR_OK && ctx->status == DDSM_HSMCALL_ANSWERED ? DDSM_OK
                                                                              : DDSM_E_HSM;
    ctx->last_rv = ddsm_hsmcall_hmac_secret(ctx->pool, ctx->hsm, ctx->session, ctx->root, msg, len,
                                            out, &ctx->status);
    return ctx->last_rv == CKR_OK && ctx->status == DDSM_HSMCALL_ANSWERED ? DDSM_OK : DDSM_E_HSM;
}

void ddsm_hsmcall_prf_init(ddsm_hsmcall_prf_ctx *ctx, ddsm_hsmcall *pool, ddsm_hsm *h,
                           CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, ddsm_prf *out)
{
    ctx->pool = pool;
    ctx->ahead = NULL;
    ctx->hsm = h;
    ctx->session = s;
    ctx->root = root;
    ctx->last_rv = CKR_OK;
    ctx->status = DDSM_HSMCALL_ANSWERED;
    out->hmac_root = prf_hmac_root;
    out->ctx = ctx;
}

bool ddsm_hsmcall_saturated(ddsm_hsmcall *p)
{
    if (p == NULL)
        return false;
    pthread_mutex_lock(&p->lock);
    bool full = p->stuck >= p->max_workers;
    pthread_mutex_unlock(&p->lock);
    return full;
}
