/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm-bench internals: the run context, the scenario table, the thread runner, latency
 * histograms, machine facts and the report. See docs/benchmark.md for what each scenario
 * measures. The module is reached only through its PKCS#11 function list (dlopen +
 * C_GetFunctionList), exactly as an application would; the baselines reach the backend HSM through
 * ddsm-hsm and PostgreSQL through libpq / ddsm-core's store, as ddsmctl does. */
#ifndef DDSM_BENCH_H
#define DDSM_BENCH_H

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ddsm/audit.h"
#include "ddsm/config.h"
#include "ddsm/hsm.h"
#include "ddsm/pkcs11-compat.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "ddsm/version.h"

#define BENCH_MAX_THREADS 256
#define BENCH_MAX_COUNTS 16 /* thread counts in one --threads list */
#define BENCH_MAX_ASSETS 1024
#define BENCH_MAX_SCENARIOS 16
#define BENCH_WHY 512
#define BENCH_PIN_MAX 255
#define BENCH_MSG_LEN 64 /* the message signed by sign, find-sign, openssl, derive */
#define BENCH_REQUESTER "ddsm-bench"

/* Exit codes (documented in --help). */
enum {
    BENCH_EXIT_OK = 0,
    BENCH_EXIT_FAILED = 1,      /* a scenario failed (the others are still reported) */
    BENCH_EXIT_USAGE = 2,       /* usage error or bad input */
    BENCH_EXIT_UNAVAILABLE = 3, /* module, backend HSM or PostgreSQL unavailable at set-up */
    BENCH_EXIT_INTERRUPTED = 130,
};

/* ---- latency histogram (hist.c): log-linear, 64 linear sub-buckets per power of two, so any
 * reported quantile is within 1/64 (1.6 %) of the true sample; one per thread, merged after. ----
 */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct bench_hist {
    uint64_t n;
    uint64_t sum_ns;
    uint64_t min_ns;
    uint64_t max_ns;
    uint64_t count[HIST_BUCKETS];
} bench_hist;

void bench_hist_reset(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t ns);
void bench_hist_merge(bench_hist *dst, const bench_hist *src);
/* The q-quantile (0 < q <= 1) in nanoseconds: the middle of the bucket holding the sample of rank
 * ceil(q * n), clamped to [min, max]. 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);

/* ---- machine facts (machine.c) ---- */
typedef struct bench_machine {
    unsigned cores;
    char cpu[160];
    uint64_t mem_bytes;
    char kernel[200];
    char date[40];       /* ISO 8601 UTC */
    char load_start[64]; /* /proc/loadavg's 1, 5, 15 minute averages before the runs */
    char load_end[64];   /* and after: other work on the machine shows here */
    char pg_version[200];
    char pg_synchronous_commit[32];
    char pg_fsync[32];
    char pg_wal_sync_method[32];
    char pg_shared_buffers[32];
    char pg_commit_delay[32];
    char pg_max_connections[32];
    char hsm_path[PATH_MAX];
    char hsm_info[200]; /* from the backend's C_GetInfo */
    char module_path[PATH_MAX];
    char module_info[200]; /* from the module's C_GetInfo */
} bench_machine;

/* Fill the host facts (cores, CPU, memory, kernel, date, load average into load_start). */
void bench_machine_host(bench_machine *m);
/* The 1, 5 and 15 minute load averages, "?" when unknown. */
void bench_machine_load(char *out, size_t n);
/* Fill the PostgreSQL facts from conninfo. false (with why) when it cannot be asked. */
bool bench_machine_pg(bench_machine *m, const char *conninfo, char *why, size_t why_len);
/* "<manufacturer> <description> <major.minor>" of a PKCS#11 library. */
void bench_machine_p11_info(CK_FUNCTION_LIST_PTR fl, char *out, size_t n);

/* ---- the run context ---- */
typedef struct bench_scenario bench_scenario;

typedef struct bench {
    ddsm_config *cfg;
    const char *conf_path;
    const char *pin_file;
    const char *module_path; /* NULL until resolved */
    const char *ctl_path;
    char *pin_secret; /* the HSM user PIN, BENCH_PIN_MAX + 1 bytes of secure memory */
    size_t pin_len;
    double seconds;
    unsigned threads[BENCH_MAX_COUNTS];
    unsigned n_counts;
    unsigned n_assets;
    bool json;
    bool progress; /* stderr is a terminal */

    /* The module, loaded as an application loads it. */
    void *mod_dl;
    CK_FUNCTION_LIST_PTR mod;
    bool mod_initialized;
    CK_SLOT_ID mod_slot;
    CK_SESSION_HANDLE mod_login; /* kept open: the login lives as long as one session does */
    bool have_mod_login;
    CK_OBJECT_HANDLE mod_root; /* the root seed key as the application sees it */

    /* The backend HSM, loaded directly (baselines). */
    ddsm_hsm *hsm;
    CK_FUNCTION_LIST_PTR be;
    CK_SLOT_ID be_slot;
    CK_SESSION_HANDLE be_login;
    bool have_be_login;
    CK_OBJECT_HANDLE be_root;

    /* The store (asset set-up, rotations). Every row the bench writes there is chained under the
     * audit key, which the HSM computes, so that `ddsmctl audit verify` accepts it. */
    ddsm_audit_key *audit_key;
    ddsm_store *store;
    ddsm_uuid assets[BENCH_MAX_ASSETS];
    char asset_text[BENCH_MAX_ASSETS][DDSM_UUID_TEXT_LEN + 1];

    unsigned run_seq; /* bumped per scenario run: derivation paths are never reused */
    bool seed_table;  /* custody_audit_log_seed exists and must be dropped at the end */
    bench_machine machine;
} bench;

/* ---- the thread runner (runner.c) ---- */
typedef enum bench_rc {
    BENCH_OP_OK = 0,   /* one operation done: counted and timed */
    BENCH_OP_EXPECTED, /* an expected, counted outcome that is not an operation (rotate-storm) */
    BENCH_OP_FAIL,     /* an error: why is set, the run stops */
} bench_rc;

typedef struct bench_thread {
    bench *b;
    const bench_scenario *sc;
    unsigned tid;
    unsigned nthreads;
    unsigned run; /* b->run_seq of this run */
    uint64_t ops;
    uint64_t expected;
    uint64_t retries;
    int64_t last_end_ns;
    _Atomic uint64_t progress;
    void *priv; /* the scenario's per-thread state */
    char why[BENCH_WHY];
    bench_hist hist;
} bench_thread;

struct bench_scenario {
    const char *name;
    const char *about;  /* one line, for --help and the JSON */
    bool needs_module;  /* through libddsm-pkcs11.so */
    bool needs_backend; /* the backend HSM loaded directly */
    bool needs_store;   /* PostgreSQL and the bench assets */
    /* Once per run before any thread starts; false with why on failure. May be NULL. */
    bool (*prepare)(bench *b, char *why, size_t why_len);
    /* Per thread, before the clock starts (sessions, keys); false with t->why on failure. */
    bool (*thread_init)(bench_thread *t);
    bench_rc (*op)(bench_thread *t, uint64_t i);
    void (*thread_fini)(bench_thread *t); /* may be NULL */
    /* Beside the workers until *stop (rotate-storm's rotator); counts into *count. May be NULL. */
    bool (*side)(bench *b, const atomic_bool *stop, uint64_t *count, char *why, size_t why_len);
    /* Once per run after the clock stopped; false with why on failure. May be NULL. */
    bool (*finish)(bench *b, char *why, size_t why_len);
};

typedef struct bench_result {
    const bench_scenario *sc;
    unsigned threads;
    double elapsed_s;
    uint64_t ops;
    uint64_t expected; /* rotate-storm: operations that met CKR_KEY_HANDLE_INVALID */
    uint64_t retries;  /* seed-design: serialization failures retried */
    uint64_t side_ops; /* rotate-storm: rotations */
    double ops_s;
    double mean_ns;
    uint64_t p50_ns, p99_ns, p999_ns, min_ns, max_ns;
    bool ran;
    bool failed;
    char error[BENCH_WHY];
} bench_result;

/* Set by SIGINT/SIGTERM: the current run stops and no other starts. */
extern volatile sig_atomic_t bench_interrupted;

int64_t bench_now_ns(void); /* monotonic */
/* A scenario's per-thread state: t->priv := size zeroed bytes; NULL (t->why set) when out of
 * memory. The scenario's thread_fini frees it. */
void *bench_thread_alloc(bench_thread *t, size_t size);
/* Run sc with nthreads workers for b->seconds; the result (also a failed one) goes to out. */
void bench_run(bench *b, const bench_scenario *sc, unsigned nthreads, bench_result *out);

/* ---- scenarios (scen_module.c, scen_base.c) ---- */
extern const bench_scenario bench_sc_openssl, bench_sc_hsm_direct, bench_sc_seed_design;
extern const bench_scenario bench_sc_derive, bench_sc_sign, bench_sc_find_sign,
    bench_sc_rotate_storm;
extern const bench_scenario bench_sc_ec_sign; /* scen_ec.c */
/* Every scenario in the order runs use: baselines first. */
extern const bench_scenario *const bench_scenarios[];
extern const size_t bench_scenarios_count;

/* Drop custody_audit_log_seed when seed-design created it. */
void bench_seed_cleanup(bench *b);

/* ---- PKCS#11 plumbing (p11.c) ---- */
/* Load the module (dlopen + C_GetFunctionList + C_Initialize), find the slot of
 * [backend] token_label, log in with the PIN and find the root key. */
bool bench_module_open(bench *b, char *why, size_t why_len);
void bench_module_close(bench *b);
/* Load the backend named by [backend] module directly, log in on the root's token (the custody
 * token with root_pin_file when [backend] root_token_label is set) and find the root key. */
bool bench_backend_open(bench *b, char *why, size_t why_len);
void bench_backend_close(bench *b);
/* Open a read-write session on the module's slot. */
CK_RV bench_module_session(bench *b, CK_SESSION_HANDLE *out);
/* Open a read-only session on the backend's slot of the root token. */
CK_RV bench_backend_session(bench *b, CK_SESSION_HANDLE *out);
/* t->why := "<what>: <CKR_ name>"; returns false. */
bool bench_thread_fail_rv(bench_thread *t, const char *what, CK_RV rv);
/* What a module scenario's per-thread state begins with: a read-write session of its own. */
typedef struct bench_mod_thread {
    CK_SESSION_HANDLE s;
    bool have_s;
} bench_mod_thread;
/* A module scenario's thread_init core: t->priv := size zeroed bytes (a struct whose first member
 * is a bench_mod_thread) with its session open. false with t->why on failure. */
bool bench_mod_thread_init(bench_thread *t, size_t size);
/* The matching thread_fini: closes the session and frees t->priv. */
void bench_mod_thread_fini(bench_thread *t);
/* C_DeriveKey(CKM_DDSM_DERIVE) on the root key for (asset, path): an HMAC key. */
CK_RV bench_module_derive(bench *b, CK_SESSION_HANDLE s, const ddsm_uuid *asset, const char *path,
                          CK_OBJECT_HANDLE *out);
/* The same with the template tmpl (n attributes) for the derived object. */
CK_RV bench_module_derive_tmpl(bench *b, CK_SESSION_HANDLE s, const ddsm_uuid *asset,
                               const char *path, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                               CK_OBJECT_HANDLE *out);
/* C_SignInit + C_Sign with CKM_SHA256_HMAC over msg; the MAC is not secret. */
CK_RV bench_p11_hmac(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                     const uint8_t *msg, size_t len, uint8_t mac[32]);
/* Read the first line of file into buf (a secret: secure memory of cap + 1 bytes, NUL-ended). */
bool bench_read_line_secret(const char *file, char *buf, size_t cap, size_t *len, char *why,
                            size_t why_len);

/* ---- the store and assets (scen_module.c) ---- */
/* Derive the audit key through the backend (bench_backend_open first). */
bool bench_audit_key(bench *b, char *why, size_t why_len);
/* A store connection whose rows are chained under a fresh instance id "ddsm-bench/...". */
bool bench_store_open(bench *b, ddsm_store **out, char *why, size_t why_len);
/* Reuse or register (key type type, default path default_path, NULL: m/0) the asset labelled
 * label, and activate it when it is INITIALIZED; *a is then its registry row. */
ddsm_err bench_asset_ensure(bench *b, const char *label, const char *type,
                            const char *default_path, ddsm_asset *a);
/* Reuse or register and activate the assets bench-0 .. bench-<n-1>. */
bool bench_assets_setup(bench *b, char *why, size_t why_len);

/* ---- the report (report.c) ---- */
typedef struct bench_check {
    const char *status; /* "passed", "failed", "not available", "not run" */
    int exit_code;
    char output[2048];
} bench_check;

/* Run `<ddsmctl> [--conf F] [--pin-file P] <words...>` when `<ddsmctl> <words...> --help` says
 * the command exists; the PIN goes through DDSM_PIN in the child's environment only. */
void bench_run_ctl_check(bench *b, const char *const *words, size_t n_words, bench_check *out);

typedef struct bench_report {
    const bench *b;
    const bench_result *results;
    size_t n_results;
    const bench_check *verify;
    const bench_check *reconcile;
    int argc;
    char **argv;
} bench_report;

void bench_report_table(FILE *f, const bench_report *r);
void bench_report_json(FILE *f, const bench_report *r);

#endif
