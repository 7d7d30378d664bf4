/* SPDX-License-Identifier: Apache-2.0 */
/* The thread runner: N workers set up outside the clock, released together by a barrier, each
 * timing every operation into its own histogram (no shared cache line on the hot path but its own
 * progress counter), stopped together after the configured seconds. Throughput is the operations
 * completed divided by the time from the release to the end of the last operation. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

volatile sig_atomic_t bench_interrupted;

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void *bench_thread_alloc(bench_thread *t, size_t size)
{
    t->priv = calloc(1, size);
    if (t->priv == NULL)
        snprintf(t->why, sizeof(t->why), "out of memory");
    return t->priv;
}

typedef struct run_shared {
    pthread_barrier_t barrier;
    atomic_bool stop;
    atomic_bool failed;
    atomic_uint finished; /* workers that left their loop (until_done scenarios) */
    pthread_mutex_t lock; /* guards error */
    char error[BENCH_WHY];
} run_shared;

typedef struct worker_arg {
    bench_thread *t;
    run_shared *sh;
} worker_arg;

static void run_fail(run_shared *sh, const char *who, const char *why)
{
    pthread_mutex_lock(&sh->lock);
    if (!atomic_load(&sh->failed))
        snprintf(sh->error, sizeof(sh->error), "%s: %s", who, why[0] ? why : "failed");
    atomic_store(&sh->failed, true);
    pthread_mutex_unlock(&sh->lock);
    atomic_store(&sh->stop, true);
}

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    bench_thread *t = wa->t;
    run_shared *sh = wa->sh;
    char who[32];
    bool ready = t->sc->thread_init(t);

    snprintf(who, sizeof(who), "thread %u", t->tid);
    if (!ready)
        run_fail(sh, who, t->why);
    pthread_barrier_wait(&sh->barrier);
    if (ready) {
        uint64_t i = 0;
        while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
            int64_t t0 = bench_now_ns();
            bench_rc rc = t->sc->op(t, i++);
            int64_t t1 = bench_now_ns();
            if (rc == BENCH_OP_OK) {
                bench_hist_add(&t->hist, (uint64_t)(t1 - t0));
                t->ops++;
                atomic_store_explicit(&t->progress, t->ops, memory_order_relaxed);
            } else if (rc == BENCH_OP_EXPECTED) {
                t->expected++;
            } else if (rc == BENCH_OP_DONE) {
                break;
            } else {
                run_fail(sh, who, t->why);
                break;
            }
            t->last_end_ns = t1;
        }
    }
    /* Always called: thread_init leaves nothing half-made behind when it fails. */
    if (t->sc->thread_fini != NULL)
        t->sc->thread_fini(t);
    atomic_fetch_add(&sh->finished, 1);
    return NULL;
}

typedef struct side_arg {
    bench *b;
    const bench_scenario *sc;
    run_shared *sh;
    uint64_t count;
} side_arg;

static void *side_main(void *arg)
{
    side_arg *sa = arg;
    char why[BENCH_WHY] = "";
    if (!sa->sc->side(sa->b, &sa->sh->stop, &sa->count, why, sizeof(why)))
        run_fail(sa->sh, "side thread", why);
    return NULL;
}

static void progress_line(const bench *b, const bench_scenario *sc, unsigned n, double elapsed,
                          const bench_thread *ts)
{
    uint64_t ops = 0;
    for (unsigned i = 0; i < n; i++)
        ops += atomic_load_explicit(&ts[i].progress, memory_order_relaxed);
    fprintf(stderr, "\r\033[K%-12s %3u thread%s  %5.1f/%.1f s  %llu ops", sc->name, n,
            n == 1 ? " " : "s", elapsed, b->seconds, (unsigned long long)ops);
    fflush(stderr);
}

void bench_run(bench *b, const bench_scenario *sc, unsigned nthreads, bench_result *out)
{
    run_shared sh;
    bench_thread *ts = NULL;
    pthread_t *tids = NULL;
    worker_arg *args = NULL;
    side_arg sa = {b, sc, &sh, 0};
    pthread_t side_tid;
    bool side_started = false, barrier_made = false;
    unsigned started = 0;
    bench_hist *merged = NULL;
    char why[BENCH_WHY] = "";

    memset(out, 0, sizeof(*out));
    out->sc = sc;
    out->threads = nthreads;
    memset(&sh, 0, sizeof(sh));
    pthread_mutex_init(&sh.lock, NULL);
    b->run_seq++;

    if (sc->prepare != NULL && !sc->prepare(b, why, sizeof(why))) {
        run_fail(&sh, "set-up", why);
        goto out;
    }
    ts = calloc(nthreads, sizeof(*ts));
    tids = calloc(nthreads, sizeof(*tids));
    args = calloc(nthreads, sizeof(*args));
    merged = malloc(sizeof(*merged));
    if (ts == NULL || tids == NULL || args == NULL || merged == NULL) {
        run_fail(&sh, "set-up", "out of memory");
        goto out;
    }
    if (pthread_barrier_init(&sh.barrier, NULL, nthreads + 1) != 0) {
        run_fail(&sh, "set-up", "cannot create a barrier");
        goto out;
    }
    barrier_made = true;
    for (unsigned i = 0; i < nthreads; i++) {
        ts[i].b = b;
        ts[i].sc = sc;
        ts[i].tid = i;
        ts[i].nthreads = nthreads;
        ts[i].run = b->run_seq;
        bench_hist_reset(&ts[i].hist);
        args[i].t = &ts[i];
        args[i].sh = &sh;
    }
    for (; started < nthreads; started++) {
        int err = pthread_create(&tids[started], NULL, worker, &args[started]);
        if (err != 0) {
            snprintf(why, sizeof(why), "cannot start thread %u: %s", started, strerror(err));
            break;
        }
    }
    if (started < nthreads) {
        /* The barrier counts nthreads + 1: stand in for the threads that never started. */
        run_fail(&sh, "set-up", why);
        for (unsigned i = started; i < nthreads; i++)
            pthread_barrier_wait(&sh.barrier);
    }
    pthread_barrier_wait(&sh.barrier);
    int64_t start = bench_now_ns();
    if (sc->side != NULL && !atomic_load(&sh.stop)) {
        if (pthread_create(&side_tid, NULL, side_main, &sa) == 0)
            side_started = true;
        else
            run_fail(&sh, "set-up", "cannot start the side thread");
    }
    int64_t deadline = sc->until_done ? INT64_MAX : start + (int64_t)(b->seconds * 1e9);
    while (!atomic_load(&sh.stop) && !bench_interrupted) {
        int64_t now = bench_now_ns();
        if (now >= deadline || (sc->until_done && atomic_load(&sh.finished) == started))
            break;
        if (b->progress)
            progress_line(b, sc, nthreads, (double)(now - start) / 1e9, ts);
        int64_t nap = deadline - now;
        if (nap > 200000000)
            nap = 200000000;
        struct timespec ts_nap = {0, (long)nap};
        while (nanosleep(&ts_nap, &ts_nap) != 0 && errno == EINTR && !bench_interrupted)
            ;
    }
    atomic_store(&sh.stop, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (side_started)
        pthread_join(side_tid, NULL);
    if (b->progress)
        fprintf(stderr, "\r\033[K");

    int64_t end = start;
    bench_hist_reset(merged);
    for (unsigned i = 0; i < started; i++) {
        bench_hist_merge(merged, &ts[i].hist);
        out->ops += ts[i].ops;
        out->expected += ts[i].expected;
        out->retries += ts[i].retries;
        if (ts[i].last_end_ns > end)
            end = ts[i].last_end_ns;
    }
    out->side_ops = sa.count;
    out->elapsed_s = (double)(end - start) / 1e9;
    out->ops_s = out->elapsed_s > 0 ? (double)out->ops / out->elapsed_s : 0;
    out->mean_ns = merged->n > 0 ? (double)merged->sum_ns / (double)merged->n : 0;
    out->p50_ns = bench_hist_quantile(merged, 0.50);
    out->p99_ns = bench_hist_quantile(merged, 0.99);
    out->p999_ns = bench_hist_quantile(merged, 0.999);
    out->min_ns = merged->n > 0 ? merged->min_ns : 0;
    out->max_ns = merged->max_ns;
    out->ran = true;
    if (sc->finish != NULL && !atomic_load(&sh.failed) && !sc->finish(b, why, sizeof(why)))
        run_fail(&sh, "after the run", why);
    if (sc == &bench_sc_soak) {
        out->failures = atomic_load(&b->soak_failures);
        snprintf(out->first_failure, sizeof(out->first_failure), "%s", b->soak_first_failure);
        out->rss_warm_kb = atomic_load(&b->soak_rss_warm_kb);
        out->rss_end_kb = b->soak_rss_end_kb;
    }
out:
    if (!atomic_load(&sh.failed) && bench_interrupted)
        run_fail(&sh, "run", "interrupted");
    if (atomic_load(&sh.failed)) {
        out->failed = true;
        snprintf(out->error, sizeof(out->error), "%s", sh.error);
    }
    if (barrier_made)
        pthread_barrier_destroy(&sh.barrier);
    pthread_mutex_destroy(&sh.lock);
    free(merged);
    free(args);
    free(tids);
    free(ts);
}
