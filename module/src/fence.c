/* SPDX-License-Identifier: Apache-2.0 */
/* The rotation fence (see fence.h). Requests are numbered; the LISTEN thread reads the highest
 * number before it sends a fence, so the fence started after every request up to it, and
 * publishes that number as done (or failed) when the fence returns. */
#include "fence.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct ddsm_fence {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int efd;
    uint64_t requested; /* highest request number handed out */
    uint64_t done;      /* every request up to this one is covered by a completed fence */
    uint64_t failed;    /* every request up to this one had its fence fail */
};

CK_RV ddsm_fence_new(ddsm_fence **out)
{
    ddsm_fence *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return CKR_HOST_MEMORY;
    f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_condattr_t ca;
    bool have_ca = pthread_condattr_init(&ca) == 0;
    bool ok = f->efd >= 0 && have_ca && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
              pthread_mutex_init(&f->lock, NULL) == 0;
    if (ok && pthread_cond_init(&f->cond, &ca) != 0) {
        pthread_mutex_destroy(&f->lock);
        ok = false;
    }
    if (have_ca)
        pthread_condattr_destroy(&ca);
    if (!ok) {
        if (f->efd >= 0)
            close(f->efd);
        free(f);
        return CKR_CANT_LOCK;
    }
    *out = f;
    return CKR_OK;
}

void ddsm_fence_free(ddsm_fence *f)
{
    if (f == NULL)
        return;
    close(f->efd);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

int ddsm_fence_wakefd(const ddsm_fence *f)
{
    return f->efd;
}

bool ddsm_fence_wait(ddsm_fence *f, unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(timeout_ms / 1000);
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->lock);
    uint64_t mine = ++f->requested;
    pthread_mutex_unlock(&f->lock);
    uint64_t one = 1;
    /* EAGAIN: the counter is saturated, i.e. a wake-up is pending anyway. */
    while (write(f->efd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&f->lock);
    while (f->done < mine && f->failed < mine) {
        if (pthread_cond_timedwait(&f->cond, &f->lock, &deadline) == ETIMEDOUT)
            break;
    }
    bool ok = f->done >= mine; /* a later fence that succeeded covers us too */
    pthread_mutex_unlock(&f->lock);
    return ok;
}

uint64_t ddsm_fence_begin(ddsm_fence *f)
{
    uint64_t v;
    while (read(f->efd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&f->lock);
    uint64_t target = f->requested > f->done && f->requested > f->failed ? f->requested : 0;
    pthread_mutex_unlock(&f->lock);
    return target;
}

void ddsm_fence_end(ddsm_fence *f, uint64_t target, bool ok)
{
    if (target == 0)
        return;
    pthread_mutex_lock(&f->lock);
    if (ok && target > f->done)
        f->done = target;
    if (!ok && target > f->failed)
        f->failed = target;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}
