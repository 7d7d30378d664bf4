/* SPDX-License-Identifier: Apache-2.0 */
/* The report: one table (or one JSON document) with the machine, every result, the ratio of each
 * scenario to its baselines at the same thread count, and the targets at the largest
 * thread count. The targets are goals to read, never assertions: nothing here fails a run. */
#include <math.h>
#include <string.h>

#include "bench.h"
#include "tool.h"

/* Which scenario is compared with which baseline (ops/s at the same thread count). */
static const struct {
    const char *scenario;
    const char *base;
} ratio_defs[] = {
    {"derive", "seed-design"}, {"derive", "hsm-direct"},   {"derive", "store-only"},
    {"derive", "roofline"},    {"sign", "openssl"},        {"find-sign", "sign"},
    {"rotate-storm", "derive"},
};
#define N_RATIOS (sizeof(ratio_defs) / sizeof(ratio_defs[0]))

static const bench_result *find(const bench_report *r, const char *name, unsigned threads)
{
    for (size_t i = 0; i < r->n_results; i++) {
        const bench_result *x = &r->results[i];
        if (x->ran && !x->failed && x->threads == threads && strcmp(x->sc->name, name) == 0)
            return x;
    }
    return NULL;
}

static double ratio(const bench_report *r, const bench_result *x, const char *base)
{
    if (strcmp(base, "roofline") == 0) {
        /* A derivation needs the store's row and the HSM's HMAC: it cannot beat the slower of
         * the two parts measured alone at the same thread count. */
        const bench_result *st = find(r, "store-only", x->threads);
        const bench_result *h = find(r, "hsm-direct", x->threads);
        if (st == NULL || h == NULL)
            return NAN;
        double limit = st->ops_s < h->ops_s ? st->ops_s : h->ops_s;
        return limit > 0 ? x->ops_s / limit : NAN;
    }
    const bench_result *y = find(r, base, x->threads);
    return y != NULL && y->ops_s > 0 ? x->ops_s / y->ops_s : NAN;
}

static unsigned min_threads(const bench *b)
{
    unsigned m = b->threads[0];
    for (unsigned i = 1; i < b->n_counts; i++)
        if (b->threads[i] < m)
            m = b->threads[i];
    return m;
}

static unsigned max_threads(const bench *b)
{
    unsigned m = b->threads[0];
    for (unsigned i = 1; i < b->n_counts; i++)
        if (b->threads[i] > m)
            m = b->threads[i];
    return m;
}

/* ops/s relative to the same scenario at the smallest thread count. */
static double scale(const bench_report *r, const bench_result *x)
{
    const bench_result *y = find(r, x->sc->name, min_threads(r->b));
    return y != NULL && y->ops_s > 0 ? x->ops_s / y->ops_s : NAN;
}

/* ---- targets ---- */

typedef struct target {
    const char *name;
    char goal[64];
    double value;     /* NAN: not measured */
    const char *unit; /* "x", "ms" or "" (a count) */
    bool met;
} target;

static void set_target(target *t, const char *name, const char *goal, double value,
                       const char *unit, bool met)
{
    t->name = name;
    snprintf(t->goal, sizeof(t->goal), "%s", goal);
    t->value = value;
    t->unit = unit;
    t->met = met;
}

static size_t targets(const bench_report *r, target out[12])
{
    const bench *b = r->b;
    unsigned t = max_threads(b), t0 = min_threads(b);
    const bench_result *d = find(r, "derive", t);
    const bench_result *s = find(r, "sign", t), *s0 = find(r, "sign", t0);
    const bench_result *o = find(r, "openssl", t), *o0 = find(r, "openssl", t0);
    const bench_result *rs = find(r, "rotate-storm", t);
    size_t n = 0;
    double v;
    char goal[64];

    v = d != NULL ? ratio(r, d, "seed-design") : NAN;
    set_target(&out[n++], "derive vs seed-design", ">= 10x", v, "x", v >= 10);
    v = d != NULL ? ratio(r, d, "hsm-direct") : NAN;
    set_target(&out[n++], "derive vs hsm-direct", ">= 0.70x", v, "x", v >= 0.70);
    v = d != NULL ? ratio(r, d, "roofline") : NAN;
    set_target(&out[n++], "derive vs roofline", ">= 0.80x", v, "x", v >= 0.80);
    v = d != NULL ? (double)d->p99_ns / 1e6 : NAN;
    set_target(&out[n++], "derive p99", "<= 5 ms", v, "ms", v <= 5.0);
    v = s != NULL ? ratio(r, s, "openssl") : NAN;
    set_target(&out[n++], "sign vs openssl (per thread)", ">= 0.50x", v, "x", v >= 0.50);
    /* Scaling: sign should speed up with threads as much as the machine lets lock-free work
     * speed up, which openssl's own scaling in the same run measures (the cores may be shared or
     * throttled); without openssl, min(threads, cores) is the ideal. */
    unsigned cores = b->machine.cores ? b->machine.cores : 1;
    double ideal = (double)(t < cores ? t : cores) / (double)(t0 < cores ? t0 : cores);
    if (o != NULL && o0 != NULL && o0->ops_s > 0) {
        ideal = o->ops_s / o0->ops_s;
        snprintf(goal, sizeof(goal), ">= 75%% of openssl's %.2fx (%u to %u thr)", ideal, t0, t);
    } else {
        snprintf(goal, sizeof(goal), ">= 75%% of %.2fx = min(thr, cores) (%u to %u)", ideal, t0, t);
    }
    v = s != NULL && s0 != NULL && s0->ops_s > 0 && t > t0 ? s->ops_s / s0->ops_s : NAN;
    set_target(&out[n++], "sign scales with threads", goal, v, "x", v >= 0.75 * ideal);
    v = rs != NULL ? ratio(r, rs, "derive") : NAN;
    set_target(&out[n++], "rotate-storm vs derive", ">= 0.50x", v, "x", v >= 0.50);
    /* soak runs only when named: its goals are listed only then. */
    const bench_result *sk = find(r, "soak", t);
    if (sk != NULL) {
        v = (double)sk->failures;
        set_target(&out[n++], "soak failures", "= 0", v, "", v == 0);
        v = sk->rss_warm_kb > 0 && sk->rss_end_kb > 0
                ? (double)sk->rss_end_kb / (double)sk->rss_warm_kb
                : NAN;
        set_target(&out[n++], "soak RSS end / after warm-up", "<= 1.10x (flat)", v, "x",
                   v <= 1.10);
    }
    return n;
}

/* ---- table ---- */

static void fmt_ns(char *out, size_t n, double ns)
{
    if (ns <= 0)
        snprintf(out, n, "-");
    else if (ns < 1e3)
        snprintf(out, n, "%.0fns", ns);
    else if (ns < 1e6)
        snprintf(out, n, "%.1fus", ns / 1e3);
    else if (ns < 1e9)
        snprintf(out, n, "%.2fms", ns / 1e6);
    else
        snprintf(out, n, "%.2fs", ns / 1e9);
}

static void print_machine(FILE *f, const bench *b)
{
    const bench_machine *m = &b->machine;
    fprintf(f, "ddsm-bench %s, %s\n", DDSM_VERSION, m->date);
    fprintf(f, "machine:    %u cores, %s, %.1f GiB, %s\n", m->cores, m->cpu,
            (double)m->mem_bytes / (1024.0 * 1024 * 1024), m->kernel);
    fprintf(f,
            "load:       %s before, %s after (1/5/15 min; more than the bench's own threads "
            "means other work shared the cores)\n",
            m->load_start, m->load_end[0] ? m->load_end : "?");
    if (m->pg_version[0])
        fprintf(f,
                "postgresql: %s\n            synchronous_commit=%s fsync=%s wal_sync_method=%s "
                "shared_buffers=%s commit_delay=%s max_connections=%s\n",
                m->pg_version, m->pg_synchronous_commit, m->pg_fsync, m->pg_wal_sync_method,
                m->pg_shared_buffers, m->pg_commit_delay, m->pg_max_connections);
    if (m->hsm_path[0])
        fprintf(f, "backend:    %s (%s)\n", m->hsm_path,
                m->hsm_info[0] ? m->hsm_info : "not loaded");
    if (m->module_path[0])
        fprintf(f, "module:     %s (%s)\n", m->module_path, m->module_info);
    if (b->hsm_net) {
        char conc[32] = "no limit";
        if (b->hsm_concurrency > 0)
            snprintf(conc, sizeof(conc), "at most %u", b->hsm_concurrency);
        fprintf(f, "hsm model:  every backend call waits %u us first, %s in flight (fault wrapper %s)\n",
                b->hsm_latency_us, conc, b->cfg->backend.module);
    }
    fprintf(f, "config:     %s; %g s per scenario and thread count; %u asset%s\n", b->conf_path,
            b->seconds, b->n_assets, b->n_assets == 1 ? "" : "s");
}

static void print_check(FILE *f, const char *name, const bench_check *c)
{
    if (c == NULL)
        return;
    fprintf(f, "%s: %s", name, c->status);
    if (strcmp(c->status, "passed") == 0 || strcmp(c->status, "failed") == 0)
        fprintf(f, " (exit %d)", c->exit_code);
    fputc('\n', f);
    if (strcmp(c->status, "failed") == 0 && c->output[0])
        fprintf(f, "%s%s", c->output, c->output[strlen(c->output) - 1] == '\n' ? "" : "\n");
}

void bench_report_table(FILE *f, const bench_report *r)
{
    char p50[16], p99[16], p999[16], sc[16];

    print_machine(f, r->b);
    fprintf(f, "\n%7s  %-12s %10s %10s %10s %9s %9s %9s %6s  %s\n", "threads", "scenario", "ops",
            "ops/s", "ops/s/thr", "p50", "p99", "p99.9", "scale", "vs baselines / notes");
    for (size_t i = 0; i < r->n_results; i++) {
        const bench_result *x = &r->results[i];
        if (!x->ran && !x->failed)
            continue;
        if (x->failed) {
            fprintf(f, "%7u  %-12s FAILED: %s\n", x->threads, x->sc->name, x->error);
            continue;
        }
        fmt_ns(p50, sizeof(p50), (double)x->p50_ns);
        fmt_ns(p99, sizeof(p99), (double)x->p99_ns);
        fmt_ns(p999, sizeof(p999), (double)x->p999_ns);
        double s = scale(r, x);
        if (isnan(s))
            snprintf(sc, sizeof(sc), "-");
        else
            snprintf(sc, sizeof(sc), "%.2f", s);
        fprintf(f, "%7u  %-12s %10llu %10.0f %10.0f %9s %9s %9s %6s ", x->threads, x->sc->name,
                (unsigned long long)x->ops, x->ops_s, x->ops_s / x->threads, p50, p99, p999, sc);
        for (size_t k = 0; k < N_RATIOS; k++) {
            if (strcmp(ratio_defs[k].scenario, x->sc->name) != 0)
                continue;
            double v = ratio(r, x, ratio_defs[k].base);
            if (!isnan(v))
                fprintf(f, " %.2fx %s", v, ratio_defs[k].base);
        }
        if (x->sc == &bench_sc_seed_design)
            fprintf(f, " %llu serialization retries", (unsigned long long)x->retries);
        if (x->sc == &bench_sc_rotate_storm)
            fprintf(f, " %llu rotations, %llu CKR_KEY_HANDLE_INVALID",
                    (unsigned long long)x->side_ops, (unsigned long long)x->expected);
        if (x->sc == &bench_sc_soak) {
            fprintf(f, " %llu failures%s%s, RSS %.1f MiB after warm-up, %.1f MiB at the end",
                    (unsigned long long)x->failures, x->failures > 0 ? " (first: " : "",
                    x->failures > 0 ? x->first_failure : "", (double)x->rss_warm_kb / 1024.0,
                    (double)x->rss_end_kb / 1024.0);
            if (x->failures > 0)
                fputc(')', f);
        }
        fputc('\n', f);
    }
    fputc('\n', f);
    print_check(f, "audit verify", r->verify);
    print_check(f, "reconcile", r->reconcile);

    target t[12];
    size_t n = targets(r, t);
    fprintf(f, "\ntargets at %u threads (goals, not assertions):\n", max_threads(r->b));
    for (size_t i = 0; i < n; i++) {
        if (isnan(t[i].value))
            fprintf(f, "  %-30s %-40s %10s  not measured\n", t[i].name, t[i].goal, "-");
        else
            fprintf(f, "  %-30s %-40s %9.2f%s  %s\n", t[i].name, t[i].goal, t[i].value,
                    t[i].unit, t[i].met ? "met" : "MISSED");
    }
    if (r->verify != NULL)
        fprintf(f, "  %-30s %-40s %10s  %s\n", "audit verifies after storm", "ddsmctl audit verify",
                "",
                strcmp(r->verify->status, "passed") == 0   ? "met"
                : strcmp(r->verify->status, "failed") == 0 ? "MISSED"
                                                           : r->verify->status);
}

/* ---- JSON ---- */

/* "k": */
static void jkey(FILE *f, const char *k)
{
    tool_json_str(f, k);
    fputc(':', f);
}

static void jnum(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else if (v > -9e15 && v < 9e15 && (double)(long long)v == v) /* counts stay integers */
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.6g", v);
}

static void jkv_str(FILE *f, const char *k, const char *v, bool comma)
{
    jkey(f, k);
    tool_json_str(f, v);
    if (comma)
        fputc(',', f);
}

static void jkv_num(FILE *f, const char *k, double v, bool comma)
{
    jkey(f, k);
    jnum(f, v);
    if (comma)
        fputc(',', f);
}

static void json_check(FILE *f, const char *key, const bench_check *c)
{
    jkey(f, key);
    if (c == NULL) {
        fputs("null", f);
        return;
    }
    fputc('{', f);
    jkv_str(f, "status", c->status, true);
    jkv_num(f, "exit", c->exit_code, true);
    jkv_str(f, "output", c->output, false);
    fputc('}', f);
}

void bench_report_json(FILE *f, const bench_report *r)
{
    const bench *b = r->b;
    const bench_machine *m = &b->machine;

    fputc('{', f);
    jkv_str(f, "tool", "ddsm-bench", true);
    jkv_str(f, "version", DDSM_VERSION, true);
    jkey(f, "command");
    fputc('[', f);
    for (int i = 0; i < r->argc; i++) {
        if (i)
            fputc(',', f);
        tool_json_str(f, r->argv[i]);
    }
    fputs("],", f);

    jkey(f, "machine");
    fputc('{', f);
    jkv_str(f, "date", m->date, true);
    jkv_num(f, "cores", m->cores, true);
    jkv_str(f, "cpu", m->cpu, true);
    jkv_num(f, "memory_bytes", (double)m->mem_bytes, true);
    jkv_str(f, "kernel", m->kernel, true);
    jkv_str(f, "load_before", m->load_start, true);
    jkv_str(f, "load_after", m->load_end, true);
    jkey(f, "postgresql");
    fputc('{', f);
    jkv_str(f, "version", m->pg_version, true);
    jkv_str(f, "synchronous_commit", m->pg_synchronous_commit, true);
    jkv_str(f, "fsync", m->pg_fsync, true);
    jkv_str(f, "wal_sync_method", m->pg_wal_sync_method, true);
    jkv_str(f, "shared_buffers", m->pg_shared_buffers, true);
    jkv_str(f, "commit_delay", m->pg_commit_delay, true);
    jkv_str(f, "max_connections", m->pg_max_connections, false);
    fputs("},", f);
    jkey(f, "backend");
    fputc('{', f);
    jkv_str(f, "path", m->hsm_path, true);
    jkv_str(f, "info", m->hsm_info, false);
    fputs("},", f);
    jkey(f, "module");
    fputc('{', f);
    jkv_str(f, "path", m->module_path, true);
    jkv_str(f, "info", m->module_info, false);
    fputs("}},", f);

    jkey(f, "config");
    fputc('{', f);
    jkv_str(f, "conf", b->conf_path, true);
    jkv_num(f, "seconds", b->seconds, true);
    jkey(f, "threads");
    fputc('[', f);
    for (unsigned i = 0; i < b->n_counts; i++)
        fprintf(f, "%s%u", i ? "," : "", b->threads[i]);
    fputs("],", f);
    jkv_num(f, "assets", b->n_assets, true);
    jkey(f, "hsm_model");
    if (b->hsm_net) {
        fputc('{', f);
        jkv_num(f, "latency_us", b->hsm_latency_us, true);
        jkv_num(f, "concurrency", b->hsm_concurrency, false);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs("},", f);

    jkey(f, "results");
    fputc('[', f);
    bool first = true;
    for (size_t i = 0; i < r->n_results; i++) {
        const bench_result *x = &r->results[i];
        if (!x->ran && !x->failed)
            continue;
        if (!first)
            fputc(',', f);
        first = false;
        fputc('{', f);
        jkv_str(f, "scenario", x->sc->name, true);
        jkv_str(f, "about", x->sc->about, true);
        jkv_num(f, "threads", x->threads, true);
        jkv_num(f, "seconds", x->elapsed_s, true);
        jkv_num(f, "ops", (double)x->ops, true);
        jkv_num(f, "ops_per_s", x->ops_s, true);
        jkv_num(f, "ops_per_s_per_thread", x->ops_s / x->threads, true);
        jkey(f, "latency_us");
        fputc('{', f);
        jkv_num(f, "p50", (double)x->p50_ns / 1e3, true);
        jkv_num(f, "p99", (double)x->p99_ns / 1e3, true);
        jkv_num(f, "p99_9", (double)x->p999_ns / 1e3, true);
        jkv_num(f, "min", (double)x->min_ns / 1e3, true);
        jkv_num(f, "max", (double)x->max_ns / 1e3, true);
        jkv_num(f, "mean", x->mean_ns / 1e3, false);
        fputs("},", f);
        jkv_num(f, "serialization_retries", (double)x->retries, true);
        jkv_num(f, "key_handle_invalid", (double)x->expected, true);
        jkv_num(f, "rotations", (double)x->side_ops, true);
        jkey(f, "soak");
        if (x->sc == &bench_sc_soak) {
            fputc('{', f);
            jkv_num(f, "failures", (double)x->failures, true);
            jkv_str(f, "first_failure", x->first_failure, true);
            jkv_num(f, "rss_after_warmup_kb", (double)x->rss_warm_kb, true);
            jkv_num(f, "rss_end_kb", (double)x->rss_end_kb, false);
            fputs("},", f);
        } else {
            fputs("null,", f);
        }
        jkv_num(f, "scale", x->failed ? NAN : scale(r, x), true);
        jkey(f, "ratios");
        fputc('{', f);
        bool rfirst = true;
        for (size_t k = 0; k < N_RATIOS; k++) {
            if (strcmp(ratio_defs[k].scenario, x->sc->name) != 0)
                continue;
            if (!rfirst)
                fputc(',', f);
            rfirst = false;
            jkv_num(f, ratio_defs[k].base, x->failed ? NAN : ratio(r, x, ratio_defs[k].base),
                    false);
        }
        fputs("},", f);
        jkey(f, "error");
        if (x->failed)
            tool_json_str(f, x->error);
        else
            fputs("null", f);
        fputc('}', f);
    }
    fputs("],", f);

    json_check(f, "audit_verify", r->verify);
    fputc(',', f);
    json_check(f, "reconcile", r->reconcile);
    fputc(',', f);

    target t[12];
    size_t n = targets(r, t);
    jkey(f, "targets");
    fputc('{', f);
    jkv_num(f, "threads", max_threads(b), true);
    jkey(f, "items");
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        fputc('{', f);
        jkv_str(f, "name", t[i].name, true);
        jkv_str(f, "goal", t[i].goal, true);
        jkv_num(f, "value", t[i].value, true);
        jkv_str(f, "unit", t[i].unit, true);
        jkey(f, "met");
        fputs(isnan(t[i].value) ? "null" : t[i].met ? "true" : "false", f);
        fputc('}', f);
    }
    fputs("]}}\n", f);
}
