/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm-bench: the module against the backend HSM, in-process OpenSSL and the design it replaces,
 * side by side in one invocation (docs/benchmark.md). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "ddsm/batch.h"
#include "ddsm/log.h"
#include "ddsm/secmem.h"
#include "tool.h"

static const char usage_text[] =
    "Usage: ddsm-bench [--conf FILE] [--pin-file FILE] [--threads N[,N...]] [--seconds S]\n"
    "                  [--assets A] [--scenario NAME ...] [--module PATH] [--ctl PATH] [--json]\n"
    "                  [--hsm-latency-us N [--hsm-concurrency C] [--fault-lib PATH]]\n";

static void help(void)
{
    printf("%s\n", usage_text);
    printf("Load libddsm-pkcs11.so through PKCS#11 as an application would and measure it against\n"
           "its baselines in one run: for every thread count, every scenario runs for S seconds;\n"
           "then one table (or with --json one JSON document) gives ops/s, p50/p99/p99.9 latency,\n"
           "each scenario's ratio to its baselines at the same thread count, and the machine.\n"
           "\n"
           "Scenarios (default: all but soak, in this order; soak runs only when named):\n");
    for (size_t i = 0; i < bench_scenarios_count; i++)
        printf("  %-13s %s\n", bench_scenarios[i]->name, bench_scenarios[i]->about);
    printf(
        "\n"
        "Options:\n"
        "  --conf FILE          the ddsm.conf the module reads (default: $DDSM_CONF, else\n"
        "                       " DDSM_CONF_DEFAULT "); the bench reads [backend] and [store]\n"
        "  --pin-file FILE      HSM user PIN from the first line of FILE (else $DDSM_PIN, else a\n"
        "                       prompt when stdin is a terminal)\n"
        "  --threads LIST       comma-separated thread counts, 1..%d each (default 1,4,16)\n"
        "  --seconds S          seconds per scenario and thread count, up to 3600 (default 5)\n"
        "  --assets A           assets bench-0..bench-<A-1> to use, registered and activated\n"
        "                       when missing, 1..%d (default 4)\n"
        "  --scenario NAME      run only these (repeatable, or comma-separated)\n"
        "  --module PATH        the module (default: $DDSM_MODULE, else ../module/ or ../lib/\n"
        "                       beside this program, else the loader's search path)\n"
        "  --ctl PATH           ddsmctl, for `audit verify` after rotate-storm (default:\n"
        "                       $DDSM_CTL, else beside this program, else the PATH)\n"
        "  --json               one JSON document on stdout instead of the table\n"
        "  --hsm-latency-us N   model a networked HSM: every backend call, the baselines' too,\n"
        "                       waits N microseconds (0..1000000) in the fault wrapper first\n"
        "  --hsm-concurrency C  with it: at most C backend calls in flight (default: no limit)\n"
        "  --fault-lib PATH     the fault wrapper (default: $DDSM_FAULTP11, else the build tree's)\n"
        "  -h, --help           this help;  --version  the version\n"
        "\n"
        "Progress goes to stderr when it is a terminal. The seed-design baseline writes its audit\n"
        "rows to a table custody_audit_log_seed that it creates and drops again.\n"
        "\n"
        "Exit status: 0 every run completed; 1 a scenario failed (the rest is reported); 2 usage\n"
        "error or bad input; 3 module, HSM or PostgreSQL unavailable at set-up; 130 interrupted.\n",
        BENCH_MAX_THREADS, BENCH_MAX_ASSETS);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ddsm-bench: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%sTry 'ddsm-bench --help'.\n", usage_text);
    return BENCH_EXIT_USAGE;
}

/* A decimal in lo..hi, nothing else. */
static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool parse_threads(bench *b, const char *list)
{
    char buf[256];
    char *save = NULL;
    if (strlen(list) >= sizeof(buf) || list[0] == '\0')
        return false;
    snprintf(buf, sizeof(buf), "%s", list);
    if (buf[strlen(buf) - 1] == ',' || strstr(buf, ",,") != NULL || buf[0] == ',')
        return false;
    b->n_counts = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        unsigned v;
        if (b->n_counts == BENCH_MAX_COUNTS || !parse_uint(tok, 1, BENCH_MAX_THREADS, &v))
            return false;
        for (unsigned i = 0; i < b->n_counts; i++)
            if (b->threads[i] == v)
                return false;
        b->threads[b->n_counts++] = v;
    }
    return b->n_counts > 0;
}

/* Mark the scenarios named in list ("derive,sign" or "all"). false with the bad name. */
static bool select_scenarios(const char *list, bool sel[], char *bad, size_t bad_len)
{
    char buf[256];
    char *save = NULL;
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        bool known = false;
        for (size_t i = 0; i < bench_scenarios_count; i++) {
            /* "all" is every timed scenario; soak runs only when named (it is not timed). */
            if ((strcmp(tok, "all") == 0 && !bench_scenarios[i]->until_done) ||
                strcmp(tok, bench_scenarios[i]->name) == 0) {
                sel[i] = true;
                known = true;
            }
        }
        if (!known) {
            snprintf(bad, bad_len, "%s", tok);
            return false;
        }
    }
    if (list[0] == '\0' || list[strlen(list) - 1] == ',') {
        snprintf(bad, bad_len, "%s", list);
        return false;
    }
    return true;
}

/* The PIN prompt with echo off (tool.h). */
static bool prompt_pin_secret(bench *b)
{
    b->pin_len = 0;
    switch (tool_pin_prompt_secret(b->cfg->backend.token_label, b->pin_secret, BENCH_PIN_MAX,
                                   &b->pin_len)) {
    case TOOL_PIN_OK:
        return true;
    case TOOL_PIN_NO_TERMINAL:
        break;
    case TOOL_PIN_TOO_LONG:
        fprintf(stderr, "ddsm-bench: the PIN is too long\n");
        break;
    case TOOL_PIN_EMPTY:
        fprintf(stderr, "ddsm-bench: no PIN entered\n");
        break;
    }
    return false;
}

/* The HSM user PIN: --pin-file, else $DDSM_PIN (scrubbed from our environment), else a prompt. */
static int get_pin_secret(bench *b)
{
    char why[BENCH_WHY];
    b->pin_secret = ddsm_secure_alloc(BENCH_PIN_MAX + 1);
    if (b->pin_secret == NULL) {
        fprintf(stderr, "ddsm-bench: out of secure memory for the PIN\n");
        return BENCH_EXIT_UNAVAILABLE;
    }
    if (b->pin_file != NULL) {
        if (bench_read_line_secret(b->pin_file, b->pin_secret, BENCH_PIN_MAX, &b->pin_len, why,
                                   sizeof(why)))
            return BENCH_EXIT_OK;
        fprintf(stderr, "ddsm-bench: PIN file: %s\n", why);
        return BENCH_EXIT_USAGE;
    }
    char *env = getenv("DDSM_PIN");
    if (env != NULL) {
        size_t n = strlen(env);
        int rc = BENCH_EXIT_USAGE;
        if (n == 0 || n > BENCH_PIN_MAX) {
            fprintf(stderr, "ddsm-bench: DDSM_PIN is %s\n", n == 0 ? "empty" : "too long");
        } else {
            memcpy(b->pin_secret, env, n);
            b->pin_len = n;
            rc = BENCH_EXIT_OK;
        }
        ddsm_wipe(env, n);
        unsetenv("DDSM_PIN");
        return rc;
    }
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "ddsm-bench: no HSM PIN: use --pin-file FILE or set DDSM_PIN (stdin is "
                        "not a terminal, so ddsm-bench cannot prompt)\n");
        return BENCH_EXIT_USAGE;
    }
    return prompt_pin_secret(b) ? BENCH_EXIT_OK : BENCH_EXIT_USAGE;
}

static void on_signal(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

enum {
    OPT_CONF = 256,
    OPT_PIN_FILE,
    OPT_MODULE,
    OPT_CTL,
    OPT_THREADS,
    OPT_SECONDS,
    OPT_ASSETS,
    OPT_SCENARIO,
    OPT_JSON,
    OPT_VERSION,
    OPT_HSM_LATENCY,
    OPT_HSM_CONCURRENCY,
    OPT_FAULT_LIB,
};
#define HELP_SHOWN (-1)

/* Options into b, the selected scenarios into sel. An exit code, or HELP_SHOWN. */
static int parse_args(bench *b, int argc, char **argv, bool sel[])
{
    static const struct option opts[] = {
        {"conf", required_argument, NULL, OPT_CONF},
        {"pin-file", required_argument, NULL, OPT_PIN_FILE},
        {"module", required_argument, NULL, OPT_MODULE},
        {"ctl", required_argument, NULL, OPT_CTL},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"assets", required_argument, NULL, OPT_ASSETS},
        {"scenario", required_argument, NULL, OPT_SCENARIO},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"hsm-latency-us", required_argument, NULL, OPT_HSM_LATENCY},
        {"hsm-concurrency", required_argument, NULL, OPT_HSM_CONCURRENCY},
        {"fault-lib", required_argument, NULL, OPT_FAULT_LIB},
        {NULL, 0, NULL, 0},
    };
    bool any_sel = false;
    char bad[256];
    char *end;
    int c;

    b->seconds = 5;
    b->n_assets = 4;
    b->threads[0] = 1;
    b->threads[1] = 4;
    b->threads[2] = 16;
    b->n_counts = 3;
    b->module_path = getenv("DDSM_MODULE");
    b->ctl_path = getenv("DDSM_CTL");
    if (b->module_path != NULL && b->module_path[0] == '\0')
        b->module_path = NULL;
    if (b->ctl_path != NULL && b->ctl_path[0] == '\0')
        b->ctl_path = NULL;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CONF:
            b->conf_path = optarg;
            break;
        case OPT_PIN_FILE:
            b->pin_file = optarg;
            break;
        case OPT_MODULE:
            b->module_path = optarg;
            break;
        case OPT_CTL:
            b->ctl_path = optarg;
            break;
        case OPT_THREADS:
            if (!parse_threads(b, optarg))
                return usage_error("bad --threads '%s': a comma-separated list of distinct "
                                   "counts 1..%d (at most %d)",
                                   optarg, BENCH_MAX_THREADS, BENCH_MAX_COUNTS);
            break;
        case OPT_SECONDS:
            errno = 0;
            b->seconds = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !isfinite(b->seconds) ||
                b->seconds <= 0 || b->seconds > 3600)
                return usage_error("bad --seconds '%s': a number above 0, at most 3600", optarg);
            break;
        case OPT_ASSETS:
            if (!parse_uint(optarg, 1, BENCH_MAX_ASSETS, &b->n_assets))
                return usage_error("bad --assets '%s': 1..%d", optarg, BENCH_MAX_ASSETS);
            break;
        case OPT_SCENARIO:
            if (!select_scenarios(optarg, sel, bad, sizeof(bad)))
                return usage_error("unknown scenario '%s' (see --help)", bad);
            any_sel = true;
            break;
        case OPT_JSON:
            b->json = true;
            break;
        case OPT_HSM_LATENCY:
            if (!parse_uint(optarg, 0, 1000000, &b->hsm_latency_us))
                return usage_error("bad --hsm-latency-us '%s': 0..1000000", optarg);
            b->hsm_net = true;
            break;
        case OPT_HSM_CONCURRENCY:
            if (!parse_uint(optarg, 1, 65536, &b->hsm_concurrency))
                return usage_error("bad --hsm-concurrency '%s': 1..65536", optarg);
            break;
        case OPT_FAULT_LIB:
            b->fault_lib = optarg;
            break;
        case 'h':
            help();
            return HELP_SHOWN;
        case OPT_VERSION:
            printf("ddsm-bench %s\n", DDSM_VERSION);
            return HELP_SHOWN;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if ((b->hsm_concurrency > 0 || b->fault_lib != NULL) && !b->hsm_net)
        return usage_error("--hsm-concurrency and --fault-lib go with --hsm-latency-us");
    for (size_t i = 0; !any_sel && i < bench_scenarios_count; i++)
        sel[i] = !bench_scenarios[i]->until_done;
    return BENCH_EXIT_OK;
}

/* Configuration, PIN, machine facts, store and assets, module, backend: what the selected
 * scenarios need, in that order. An exit code (message printed). */
static int open_all(bench *b, const bool sel[])
{
    bool need_module = false, need_backend = false, need_store = false;
    char why[BENCH_WHY] = "";
    int rc;

    for (size_t i = 0; i < bench_scenarios_count; i++) {
        if (!sel[i])
            continue;
        need_module |= bench_scenarios[i]->needs_module;
        need_backend |= bench_scenarios[i]->needs_backend;
        need_store |= bench_scenarios[i]->needs_store;
    }
    need_backend |= need_store; /* the audit key of the bench's own store writes */
    if (b->conf_path == NULL)
        b->conf_path = ddsm_config_default_path();
    if (ddsm_config_load(b->conf_path, &b->cfg, why, sizeof(why)) != DDSM_OK) {
        fprintf(stderr, "ddsm-bench: configuration: %s\n", why);
        return BENCH_EXIT_USAGE;
    }
    /* The module reads $DDSM_CONF: make it read the same file as the bench. */
    setenv("DDSM_CONF", b->conf_path, 1);
    snprintf(b->machine.hsm_path, sizeof(b->machine.hsm_path), "%s", b->cfg->backend.module);
    if (b->hsm_net && !bench_hsmnet_setup(b, why, sizeof(why))) {
        fprintf(stderr, "ddsm-bench: %s\n", why);
        return BENCH_EXIT_UNAVAILABLE;
    }
    if ((need_module || need_backend) && (rc = get_pin_secret(b)) != BENCH_EXIT_OK)
        return rc;

    bench_machine_host(&b->machine);
    if (!bench_machine_pg(&b->machine, b->cfg->store.conninfo, why, sizeof(why)) && need_store)
        goto unavailable;
    /* The module first: it initialises the backend library, which the baselines then share
     * (and the module finalises it last). */
    if (need_module && !bench_module_open(b, why, sizeof(why)))
        goto unavailable;
    if (need_backend && !bench_backend_open(b, why, sizeof(why)))
        goto unavailable;
    if (need_store && (!bench_audit_key(b, why, sizeof(why)) ||
                       !bench_store_open(b, &b->store, why, sizeof(why)) ||
                       !bench_assets_setup(b, why, sizeof(why))))
        goto unavailable;
    return BENCH_EXIT_OK;
unavailable:
    fprintf(stderr, "ddsm-bench: %s\n", why);
    return BENCH_EXIT_UNAVAILABLE;
}

int main(int argc, char **argv)
{
    bench *b = calloc(1, sizeof(*b));
    bench_result *results = NULL;
    bool sel[BENCH_MAX_SCENARIOS] = {false};
    size_t n_results = 0;
    bench_check verify, reconcile;
    bool storm = false;
    int rc;

    if (b == NULL || bench_scenarios_count > BENCH_MAX_SCENARIOS) {
        rc = BENCH_EXIT_UNAVAILABLE;
        goto out;
    }
    ddsm_log_setup(DDSM_LOG_WARN, 0, "ddsm-bench");
    rc = parse_args(b, argc, argv, sel);
    if (rc == HELP_SHOWN) {
        rc = BENCH_EXIT_OK;
        goto out;
    }
    if (rc != BENCH_EXIT_OK || (rc = open_all(b, sel)) != BENCH_EXIT_OK)
        goto out;
    b->progress = isatty(STDERR_FILENO);
    for (size_t i = 0; i < bench_scenarios_count; i++)
        storm |= sel[i] && bench_scenarios[i] == &bench_sc_rotate_storm;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    results = calloc((size_t)b->n_counts * bench_scenarios_count, sizeof(*results));
    if (results == NULL) {
        rc = BENCH_EXIT_UNAVAILABLE;
        goto out;
    }
    /* Thread counts outermost: each scenario sits next to its baselines in time, so a machine
     * that slows down for a while skews a ratio less than it would skew a column. */
    for (unsigned k = 0; k < b->n_counts && !bench_interrupted; k++) {
        for (size_t i = 0; i < bench_scenarios_count && !bench_interrupted; i++) {
            if (!sel[i])
                continue;
            bench_result *res = &results[n_results++];
            bench_run(b, bench_scenarios[i], b->threads[k], res);
            if (res->failed) {
                fprintf(stderr, "ddsm-bench: %s with %u threads failed: %s\n", res->sc->name,
                        res->threads, res->error);
                rc = BENCH_EXIT_FAILED;
            }
        }
    }
    bench_machine_load(b->machine.load_end, sizeof(b->machine.load_end));
    /* All module work is committed; let go of the HSM before ddsmctl opens it. */
    bench_backend_close(b);
    bench_module_close(b);
    bench_seed_cleanup(b);
    if (storm && !bench_interrupted) {
        static const char *const verify_words[] = {"audit", "verify"};
        static const char *const reconcile_words[] = {"reconcile"};
        bench_run_ctl_check(b, verify_words, 2, &verify);
        bench_run_ctl_check(b, reconcile_words, 1, &reconcile);
    }
    bench_report rep = {
        .b = b,
        .results = results,
        .n_results = n_results,
        .verify = storm && !bench_interrupted ? &verify : NULL,
        .reconcile = storm && !bench_interrupted ? &reconcile : NULL,
        .argc = argc,
        .argv = argv,
    };
    if (b->json)
        bench_report_json(stdout, &rep);
    else
        bench_report_table(stdout, &rep);
    if (bench_interrupted)
        rc = BENCH_EXIT_INTERRUPTED;
out:
    if (b != NULL) {
        bench_backend_close(b);
        bench_module_close(b);
        bench_seed_cleanup(b);
        bench_hsmnet_cleanup(b);
        ddsm_batcher_free(b->roof_batcher);
        ddsm_store_close(b->store);
        ddsm_audit_key_free(b->audit_key);
        if (b->pin_secret != NULL)
            ddsm_secure_free(b->pin_secret, BENCH_PIN_MAX + 1);
        ddsm_config_free(b->cfg);
    }
    free(results);
    free(b);
    fflush(stdout);
    return rc;
}
