/* SPDX-License-Identifier: Apache-2.0 */
/* Invariants: a lock remembers how it was made (pthreads or the application's callbacks) and is
 * always locked, unlocked and freed the same way; g_app changes only in C_Initialize and
 * C_Finalize, which the standard forbids running concurrently with any other call. */
#include "lock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/names.h"

struct ddsm_mutex {
    bool app;
    void *app_mutex;
    pthread_mutex_t pm;
};

/* Set only by C_Initialize / C_Finalize, which the standard forbids running concurrently with
 * other calls. */
static struct {
    bool on;
    CK_CREATEMUTEX create;
    CK_DESTROYMUTEX destroy;
    CK_LOCKMUTEX lock;
    CK_UNLOCKMUTEX unlock;
} g_app;

void ddsm_mutex_use_app(const CK_C_INITIALIZE_ARGS *args)
{
    if (args == NULL) {
        memset(&g_app, 0, sizeof(g_app));
        return;
    }
    g_app.on = true;
    g_app.create = args->CreateMutex;
    g_app.destroy = args->DestroyMutex;
    g_app.lock = args->LockMutex;
    g_app.unlock = args->UnlockMutex;
}

/* Locks get pairs of cache lines of their own: side by side in the heap, two threads locking
 * their own sessions bounced lines between cores (the CPU prefetches lines in pairs, so 64 bytes
 * are not enough). */
#define LINE_ALIGN 128

static void *line_alloc(size_t n)
{
    n = (n + LINE_ALIGN - 1) / LINE_ALIGN * LINE_ALIGN;
    void *p = aligned_alloc(LINE_ALIGN, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

CK_RV ddsm_mutex_new(ddsm_mutex **out)
{
    ddsm_mutex *m = line_alloc(sizeof(*m));
    if (m == NULL)
        return CKR_HOST_MEMORY;
    if (g_app.on) {
        CK_RV rv = g_app.create(&m->app_mutex);
        if (rv != CKR_OK) {
            free(m);
            return rv == CKR_HOST_MEMORY ? rv : CKR_CANT_LOCK;
        }
        m->app = true;
    } else if (pthread_mutex_init(&m->pm, NULL) != 0) {
        free(m);
        return CKR_CANT_LOCK;
    }
    *out = m;
    return CKR_OK;
}

void ddsm_mutex_free(ddsm_mutex *m)
{
    if (m == NULL)
        return;
    if (m->app) {
        if (g_app.on)
            (void)g_app.destroy(m->app_mutex);
    } else {
        pthread_mutex_destroy(&m->pm);
    }
    free(m);
}

void ddsm_mutex_lock(ddsm_mutex *m)
{
    if (m->app) {
        CK_RV rv = g_app.lock(m->app_mutex);
        if (rv != CKR_OK)
            ddsm_log(DDSM_LOG_ERROR, "application LockMutex failed: %s", ddsm_rv_name(rv));
    } else {
        pthread_mutex_lock(&m->pm);
    }
}

void ddsm_mutex_unlock(ddsm_mutex *m)
{
    if (m->app) {
        CK_RV rv = g_app.unlock(m->app_mutex);
        if (rv != CKR_OK)
            ddsm_log(DDSM_LOG_ERROR, "application UnlockMutex failed: %s", ddsm_rv_name(rv));
    } else {
        pthread_mutex_unlock(&m->pm);
    }
}

struct ddsm_rwlock {
    ddsm_mutex *app; /* the application's mutex, or NULL: rw below */
    pthread_rwlock_t rw;
};

CK_RV ddsm_rwlock_new(ddsm_rwlock **out)
{
    ddsm_rwlock *l = line_alloc(sizeof(*l));
    if (l == NULL)
        return CKR_HOST_MEMORY;
    if (g_app.on) {
        CK_RV rv = ddsm_mutex_new(&l->app);
        if (rv != CKR_OK) {
            free(l);
            return rv;
        }
    } else {
        /* Writers (inserting a freshly derived key, evicting) must not starve behind a steady
         * stream of signers. */
        pthread_rwlockattr_t a;
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        int rc = pthread_rwlock_init(&l->rw, &a);
        pthread_rwlockattr_destroy(&a);
        if (rc != 0) {
            free(l);
            return CKR_CANT_LOCK;
        }
    }
    *out = l;
    return CKR_OK;
}

void ddsm_rwlock_free(ddsm_rwlock *l)
{
    if (l == NULL)
        return;
    if (l->app != NULL)
        ddsm_mutex_free(l->app);
    else
        pthread_rwlock_destroy(&l->rw);
    free(l);
}

void ddsm_rwlock_rdlock(ddsm_rwlock *l)
{
    if (l->app != NULL)
        ddsm_mutex_lock(l->app);
    else
        pthread_rwlock_rdlock(&l->rw);
}

void ddsm_rwlock_wrlock(ddsm_rwlock *l)
{
    if (l->app != NULL)
        ddsm_mutex_lock(l->app);
    else
        pthread_rwlock_wrlock(&l->rw);
}

void ddsm_rwlock_unlock(ddsm_rwlock *l)
{
    if (l->app != NULL)
        ddsm_mutex_unlock(l->app);
    else
        pthread_rwlock_unlock(&l->rw);
}
