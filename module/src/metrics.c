/* SPDX-License-Identifier: Apache-2.0 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ddsm/audit.h"
#include "ddsm/batch.h"
#include "ddsm/log.h"
#include "ddsm/textbuf.h"

/* Upper bounds (seconds) of the latency histogram's buckets; +Inf follows. */
static const double lat_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
#define N_LAT (sizeof(lat_bounds) / sizeof(lat_bounds[0]))
#define N_STATES (DDSM_STATE__COUNT + 1) /* the last: unknown */

struct hist {
    _Atomic uint64_t bucket[N_LAT + 1]; /* not cumulative; the last is +Inf */
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t count;
};

#define CACHE_STRIPES 16

struct ddsm_metrics {
    char *textfile; /* NULL: none */
    unsigned interval_ms;
    char instance[DDSM_AUDIT_INSTANCE_MAX + 1];
    bool can_thread;
    ddsm_metrics_view_fn view;
    void *view_arg;
    _Atomic uint64_t derived[DDSM_STATE__COUNT];
    _Atomic uint64_t denied[DDSM_DENY__COUNT][N_STATES];
    /* Key-cache hits and misses, counted every C_SignInit: striped over line pairs of their own,
     * one stripe per thread (by a thread-local index), so signing threads share no line. */
    struct {
        _Alignas(128) _Atomic uint64_t hits, misses;
    } cache[CACHE_STRIPES];
    struct hist lat[DDSM_PHASE__COUNT];
    _Atomic uint64_t writes, write_errors;

    pthread_mutex_t lock; /* the thread fields */
    pthread_cond_t cond;
    bool started, stop;
    pthread_t thread;
    char written[4096 + 32]; /* the expanded path last written ("" none) */
};

const char *ddsm_deny_reason_name(ddsm_deny_reason r)
{
    static const char *const names[DDSM_DENY__COUNT] = {
        [DDSM_DENY_PATH] = "path",
        [DDSM_DENY_RATE_ASSET] = "rate_requester_asset",
        [DDSM_DENY_RATE_REQUESTER] = "rate_requester",
        [DDSM_DENY_ZONE] = "zone",
        [DDSM_DENY_MECHANISM] = "mechanism",
        [DDSM_DENY_STATE] = "state",
        [DDSM_DENY_UNKNOWN_ASSET] = "unknown_asset",
    };
    return (unsigned)r < DDSM_DENY__COUNT ? names[r] : "?";
}

int64_t ddsm_metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

CK_RV ddsm_metrics_new(const ddsm_config *cfg, const char *instance, bool can_thread,
                       ddsm_metrics_view_fn view, void *view_arg, ddsm_metrics **out)
{
    ddsm_metrics *m = aligned_alloc(_Alignof(ddsm_metrics), sizeof(*m)); /* the stripes' lines */
    if (m == NULL)
        return CKR_HOST_MEMORY;
    memset(m, 0, sizeof(*m));
    if (cfg->metrics.textfile != NULL && (m->textfile = strdup(cfg->metrics.textfile)) == NULL) {
        free(m);
        return CKR_HOST_MEMORY;
    }
    m->interval_ms = cfg->metrics.interval_ms ? cfg->metrics.interval_ms : 10000;
    snprintf(m->instance, sizeof(m->instance), "%s", instance);
    m->can_thread = can_thread;
    m->view = view;
    m->view_arg = view_arg;
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    *out = m;
    return CKR_OK;
}

void ddsm_metrics_free(ddsm_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    bool started = m->started;
    m->stop = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (started)
        pthread_join(m->thread, NULL);
    if (m->written[0] != '\0' && unlink(m->written) != 0 && errno != ENOENT)
        ddsm_log(DDSM_LOG_WARN, "metrics: cannot remove %s: %s", m->written, strerror(errno));
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m->textfile);
    free(m);
}

static void observe(struct hist *h, int64_t ns)
{
    if (ns < 0)
        return;
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < N_LAT && s > lat_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void ddsm_metrics_derived(ddsm_metrics *m, ddsm_state state, int64_t store_ns, int64_t hsm_ns,
                          int64_t total_ns)
{
    if (m == NULL)
        return;
    if ((unsigned)state < DDSM_STATE__COUNT)
        atomic_fetch_add_explicit(&m->derived[state], 1, memory_order_relaxed);
    observe(&m->lat[DDSM_PHASE_STORE], store_ns);
    observe(&m->lat[DDSM_PHASE_HSM], hsm_ns);
    observe(&m->lat[DDSM_PHASE_TOTAL], total_ns);
}

void ddsm_metrics_denied(ddsm_metrics *m, ddsm_deny_reason why, ddsm_state state)
{
    if (m == NULL || (unsigned)why >= DDSM_DENY__COUNT)
        return;
    unsigned s = (unsigned)state < DDSM_STATE__COUNT ? (unsigned)state : DDSM_STATE__COUNT;
    atomic_fetch_add_explicit(&m->denied[why][s], 1, memory_order_relaxed);
}

void ddsm_metrics_cache(ddsm_metrics *m, bool hit)
{
    if (m == NULL)
        return;
    static atomic_uint next_stripe;
    static _Thread_local unsigned stripe = UINT_MAX;
    if (stripe == UINT_MAX)
        stripe = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % CACHE_STRIPES;
    atomic_fetch_add_explicit(hit ? &m->cache[stripe].hits : &m->cache[stripe].misses, 1,
                              memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------ */
/* Rendering                                                                                   */

static void family(ddsm_textbuf *b, const char *name, const char *type, const char *help)
{
    ddsm_textbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t cache_total(ddsm_metrics *m, bool hits)
{
    uint64_t n = 0;
    for (int i = 0; i < CACHE_STRIPES; i++)
        n += atomic_load(hits ? &m->cache[i].hits : &m->cache[i].misses);
    return n;
}

/* A family of one sample, this instance's value v. */
static void sample(ddsm_textbuf *b, const char *inst, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    family(b, name, type, help);
    ddsm_textbuf_printf(b, "%s{ddsm_instance=\"%s\"} %" PRIu64 "\n", name, inst, v);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(char *out, size_t cap, const char *v)
{
    size_t n = 0;
    for (; *v != '\0' && n + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            out[n++] = '\\';
            out[n++] = *v;
        } else if (*v == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *v;
        }
    }
    out[n] = '\0';
}

static void hist_out(ddsm_textbuf *b, const char *name, const char *labels, struct hist *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= N_LAT; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < N_LAT)
            ddsm_textbuf_printf(b, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels,
                                lat_bounds[i], cum);
        else
            ddsm_textbuf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
    }
    ddsm_textbuf_printf(b, "%s_sum{%s} %.9f\n", name, labels,
                        (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
    /* The count is the +Inf bucket: read once, the two always agree. */
    ddsm_textbuf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
}

char *ddsm_metrics_render(ddsm_metrics *m)
{
    ddsm_textbuf b = {NULL, 0, 0, false};
    char inst[2 * DDSM_AUDIT_INSTANCE_MAX + 2];
    char lab[sizeof(inst) + 64];
    static const char *const phases[DDSM_PHASE__COUNT] = {"store", "hsm", "total"};
    ddsm_metrics_view view;

    memset(&view, 0, sizeof(view));
    m->view(m->view_arg, &view);
    label_value(inst, sizeof(inst), m->instance);

    family(&b, "ddsm_derivations_total", "counter",
           "Keys derived, each after its DERIVE audit row committed, by the asset's state.");
    for (int s = 0; s < DDSM_STATE__COUNT; s++)
        ddsm_textbuf_printf(
            &b, "ddsm_derivations_total{ddsm_instance=\"%s\",state=\"%s\"} %" PRIu64 "\n", inst,
            ddsm_state_name((ddsm_state)s), atomic_load(&m->derived[s]));

    family(&b, "ddsm_denials_total", "counter",
           "Derivations and key uses refused, each with its DENY audit row, by reason and by the "
           "asset's state when it was known.");
    for (int r = 0; r < DDSM_DENY__COUNT; r++)
        for (int s = 0; s < N_STATES; s++) {
            uint64_t v = atomic_load(&m->denied[r][s]);
            if (v == 0 && s != N_STATES - 1)
                continue; /* keep the series few: "unknown" is always there */
            ddsm_textbuf_printf(
                &b,
                "ddsm_denials_total{ddsm_instance=\"%s\",reason=\"%s\",state=\"%s\"} %" PRIu64 "\n",
                inst, ddsm_deny_reason_name((ddsm_deny_reason)r),
                s < DDSM_STATE__COUNT ? ddsm_state_name((ddsm_state)s) : "unknown", v);
        }

    family(&b, "ddsm_derive_duration_seconds", "histogram",
           "Time of derivations in this process, by phase: store (queueing for the group-commit "
           "statement and its round trip), hsm (the HMAC in the HSM), total.");
    for (int p = 0; p < DDSM_PHASE__COUNT; p++) {
        snprintf(lab, sizeof(lab), "ddsm_instance=\"%s\",phase=\"%s\"", inst, phases[p]);
        hist_out(&b, "ddsm_derive_duration_seconds", lab, &m->lat[p]);
    }

    const ddsm_batch_stats bs = view.batch;
    family(&b, "ddsm_audit_batch_size", "histogram",
           "Derivations and denials written per group-commit statement.");
    uint64_t cum = 0;
    for (int i = 0; i < DDSM_BATCH_SIZE_BUCKETS; i++) {
        cum += bs.size_buckets[i];
        ddsm_textbuf_printf(
            &b, "ddsm_audit_batch_size_bucket{ddsm_instance=\"%s\",le=\"%u\"} %" PRIu64 "\n", inst,
            1u << i, cum);
    }
    ddsm_textbuf_printf(
        &b, "ddsm_audit_batch_size_bucket{ddsm_instance=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", inst,
        cum);
    ddsm_textbuf_printf(&b, "ddsm_audit_batch_size_sum{ddsm_instance=\"%s\"} %" PRIu64 "\n", inst,
                        bs.size_sum);
    ddsm_textbuf_printf(&b, "ddsm_audit_batch_size_count{ddsm_instance=\"%s\"} %" PRIu64 "\n", inst,
                        cum);
    sample(&b, inst, "ddsm_audit_round_trips_total", "counter",
           "Group-commit statements sent (a batch whose expectations were stale sends again).",
           bs.round_trips);
    sample(&b, inst, "ddsm_audit_failed_batches_total", "counter",
           "Group-commit statements that failed (every derivation of the batch failed closed).",
           bs.failed_batches);

    sample(&b, inst, "ddsm_store_reconnects_total", "counter",
           "PostgreSQL connections established again after one was lost, in this process.",
           ddsm_store_reconnects());
    sample(&b, inst, "ddsm_store_listen_up", "gauge",
           "1 while the LISTEN connection that carries rotations and zone changes is up.",
           view.listen_up ? 1 : 0);

    sample(&b, inst, "ddsm_notify_hints_total", "counter",
           "Notifications heard on the lifecycle and zone channels. Any role that can connect may "
           "send one: each is a hint to re-read the asset it names, never believed.",
           view.hints_heard);
    sample(&b, inst, "ddsm_notify_ignored_total", "counter",
           "Notifications naming an asset this process holds nothing of (nothing to re-read).",
           view.hints_ignored);
    sample(&b, inst, "ddsm_notify_rereads_total", "counter",
           "Assets re-read from the store (registry row and zone) because a notification named "
           "them: at most 64 at once and 64 per second, however many notifications arrive.",
           view.hints_reread);
    sample(&b, inst, "ddsm_notify_deferred_total", "counter",
           "Notifications past that budget: the asset's keys re-validate at their next use instead.",
           view.hints_deferred);

    sample(&b, inst, "ddsm_key_cache_hits_total", "counter",
           "Uses of a derived key served from the module's key cache.",
           cache_total(m, true));
    sample(&b, inst, "ddsm_key_cache_misses_total", "counter",
           "Uses of a derived key that had to derive it (audited) first.",
           cache_total(m, false));
    sample(&b, inst, "ddsm_key_cache_keys", "gauge", "Derived keys held in locked memory now.",
           view.keys_cached);

    const ddsm_ratelimit_stats rs = view.rate;
    sample(&b, inst, "ddsm_rate_leases_total", "counter",
           "Token leases answered by the database for the local rate-limit buckets.", rs.leases);
    sample(&b, inst, "ddsm_rate_lease_failures_total", "counter",
           "Token leases that failed (the database was unreachable).", rs.leases_failed);
    sample(&b, inst, "ddsm_rate_tokens_granted_total", "counter",
           "Tokens the database granted to this process's rate-limit buckets.", rs.tokens_granted);
    sample(&b, inst, "ddsm_rate_lease_waits_total", "counter",
           "Derivations that waited for a lease another thread was making.", rs.lease_waits);

    sample(&b, inst, "ddsm_metrics_writes_total", "counter",
           "Times this process wrote its metrics file (this write included).",
           atomic_load(&m->writes) + 1);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* <path> with %p replaced by the process id and %% by %. */
static bool expand_path(const char *tmpl, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = tmpl; *p != '\0'; p++) {
        char num[24];
        const char *piece = p;
        size_t len = 1;
        if (p[0] == '%' && p[1] == 'p') {
            snprintf(num, sizeof(num), "%ld", (long)getpid());
            piece = num;
            len = strlen(num);
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            p++;
        }
        if (n + len + 1 > cap)
            return false;
        memcpy(out + n, piece, len);
        n += len;
    }
    out[n] = '\0';
    return true;
}

ddsm_err ddsm_metrics_write(ddsm_metrics *m)
{
    char path[sizeof(m->written) - 8];
    char tmp[sizeof(m->written)];
    ddsm_err err = DDSM_OK;
    int fd = -1;
    char *text = NULL;

    if (m->textfile == NULL)
        return DDSM_OK;
    if (!expand_path(m->textfile, path, sizeof(path))) {
        err = DDSM_E_CONFIG;
        ddsm_log(DDSM_LOG_WARN, "metrics: the textfile path is too long once expanded");
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    text = ddsm_metrics_render(m);
    if (text == NULL) {
        err = DDSM_E_NOMEM;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        err = ddsm_err_errno(errno);
        ddsm_log(DDSM_LOG_WARN, "metrics: cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(text);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = ddsm_err_errno(w < 0 ? errno : EIO);
            ddsm_log(DDSM_LOG_WARN, "metrics: cannot write %s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        err = ddsm_err_errno(errno);
        ddsm_log(DDSM_LOG_WARN, "metrics: cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        err = ddsm_err_errno(errno);
        ddsm_log(DDSM_LOG_WARN, "metrics: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    pthread_mutex_lock(&m->lock);
    snprintf(m->written, sizeof(m->written), "%s", path);
    pthread_mutex_unlock(&m->lock);
    atomic_fetch_add(&m->writes, 1);
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (err != DDSM_OK)
        atomic_fetch_add(&m->write_errors, 1);
    free(text);
    return err;
}

static void *writer_main(void *arg)
{
    ddsm_metrics *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        pthread_mutex_unlock(&m->lock);
        (void)ddsm_metrics_write(m);
        pthread_mutex_lock(&m->lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += m->interval_ms / 1000;
        ts.tv_nsec += (long)(m->interval_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) == 0) {
        }
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

void ddsm_metrics_start(ddsm_metrics *m)
{
    if (m == NULL || m->textfile == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if (!m->started && !m->stop) {
        if (!m->can_thread) {
            ddsm_log(DDSM_LOG_WARN, "metrics: the application forbids threads: %s is not written",
                     m->textfile);
            m->stop = true;
        } else if (pthread_create(&m->thread, NULL, writer_main, m) == 0) {
            m->started = true;
        } else {
            ddsm_log(DDSM_LOG_WARN, "metrics: cannot start the writer thread");
            m->stop = true;
        }
    }
    pthread_mutex_unlock(&m->lock);
}
