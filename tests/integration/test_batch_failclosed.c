/* SPDX-License-Identifier: Apache-2.0 */
/* Group commit fails closed: PostgreSQL stopped in the middle of busy batches fails their callers
 * with DDSM_E_STORE_DOWN, writes no partial batch (every chain still verifies, checkpoints
 * included), every key a caller received has its row, and the batcher carries on by itself once
 * the server is back. Runs its own private cluster (scripts/lib/services on $DDSM_TEST_DIR/pg)
 * so stopping it never disturbs tests running in parallel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddsm/audit.h"
#include "ddsm/batch.h"
#include "ddsm/derive.h"
#include "ddsm/store.h"
#include "audit_support.h"
#include "fault_support.h"
#include "pg_support.h"

static char g_dir[PATH_MAX];
static char g_conninfo[512];
static ddsm_audit_key *g_key;

/* scripts/lib/services CMD on our private cluster. */
static int services(const char *cmd)
{
    return fs_services(cmd, g_dir);
}

static int group_setup(void **state)
{
    (void)state;
    fs_cluster_start("pg", g_dir, sizeof g_dir, g_conninfo, sizeof g_conninfo);
    return aus_key(0x40, &g_key);
}

static int group_teardown(void **state)
{
    (void)state;
    ddsm_audit_key_free(g_key);
    return services("stop") == 0 ? 0 : -1;
}

#define THREADS 8
#define MAX_OK 100000

struct worker {
    ddsm_batcher *b;
    ddsm_uuid asset;
    int index;
    atomic_int *stop;
    atomic_int *phase; /* 0 before the stop, 1 while down, 2 after the restart */
    char (*ok_tags)[24];
    uint64_t *ok_counter;
    atomic_int n_ok, ok_after_restart, down;
    int other;
    char other_msg[256], down_msg[256];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (unsigned n = 0; !atomic_load(w->stop); n++) {
        char tag[24];
        snprintf(tag, sizeof tag, "w%d-%u", w->index, n);
        ddsm_derive_req req = {.asset = w->asset, .path = "m/0", .requester = tag};
        uint64_t c = 0;
        int phase = atomic_load(w->phase);
        ddsm_err e = ddsm_batcher_derive(w->b, &req, &c, NULL);
        if (e == DDSM_OK) {
            if (w->n_ok < MAX_OK) {
                snprintf(w->ok_tags[w->n_ok], 24, "%s", tag);
                w->ok_counter[w->n_ok] = c;
                w->n_ok++;
            }
            if (phase == 2)
                w->ok_after_restart++;
        } else if (e == DDSM_E_STORE_DOWN) {
            if (w->down++ == 0)
                snprintf(w->down_msg, sizeof w->down_msg, "%s", ddsm_batcher_errmsg());
            usleep(2000);
        } else {
            if (w->other++ == 0)
                snprintf(w->other_msg, sizeof w->other_msg, "%s: %s", ddsm_err_str(e),
                         ddsm_batcher_errmsg());
            usleep(2000);
        }
    }
    return NULL;
}

/* The sum over the workers of one of their atomic counters. */
static int sum_of(struct worker *w, size_t field)
{
    int n = 0;
    for (int i = 0; i < THREADS; i++)
        n += atomic_load((atomic_int *)((char *)&w[i] + field));
    return n;
}

static void test_batch__server_stopped_mid_batch_fails_callers_closed_and_writes_no_half(void **s)
{
    (void)s;
    char inst[128];
    ddsm_store *st = NULL;
    ddsm_asset a;
    assert_int_equal(ddsm_audit_instance_id("failclosed/", inst, sizeof inst), DDSM_OK);
    assert_int_equal(ddsm_store_open(g_conninfo, NULL, &st), DDSM_OK);
    if (ddsm_store_migrate(st, NULL) != DDSM_OK)
        fail_msg("migrate: %s", ddsm_store_errmsg(st));
    assert_int_equal(ddsm_store_attach_audit(st, g_key, inst), DDSM_OK);
    if (ddsm_store_asset_register(st, NULL, "fc", "hmac", NULL, "t", &a) != DDSM_OK ||
        ddsm_store_asset_transition(st, &a.id, DDSM_EV_ACTIVATE, 0, "t", &a) != DDSM_OK)
        fail_msg("setup: %s", ddsm_store_errmsg(st));

    ddsm_store_opts opts = {.connect_timeout_s = 2, .statement_timeout_ms = 2000};
    ddsm_batcher *b = NULL;
    strncat(inst, "/batch", sizeof inst - strlen(inst) - 1);
    if (ddsm_batcher_new(g_conninfo, &opts, 64, 200, 2, g_key, inst, &b) != DDSM_OK)
        fail_msg("batcher: %s", ddsm_batcher_errmsg());

    atomic_int stop = 0, phase = 0;
    static struct worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i] = (struct worker){.b = b, .asset = a.id, .index = i, .stop = &stop, .phase = &phase};
        w[i].ok_tags = calloc(MAX_OK, 24);
        w[i].ok_counter = calloc(MAX_OK, sizeof *w[i].ok_counter);
        assert_non_null(w[i].ok_tags);
        assert_non_null(w[i].ok_counter);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    /* Each phase lasts until something happened in it, counted rather than timed (a slow run,
     * under valgrind, takes longer and sees the same story; a hang runs into ctest's timeout). */
    while (sum_of(w, offsetof(struct worker, n_ok)) < 50)
        usleep(10000);
    atomic_store(&phase, 1);
    assert_int_equal(services("halt"), 0); /* fast shutdown: in-flight batches are cut off */
    while (sum_of(w, offsetof(struct worker, down)) < THREADS)
        usleep(10000);
    assert_int_equal(services("start"), 0);
    atomic_store(&phase, 2);
    int after = 0;
    while ((after = sum_of(w, offsetof(struct worker, ok_after_restart))) < 200)
        usleep(10000);
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    int ok = 0, down = 0;
    for (int i = 0; i < THREADS; i++) {
        if (w[i].other != 0)
            fail_msg("worker %d: %d errors other than DDSM_E_STORE_DOWN, first: %s", i, w[i].other,
                     w[i].other_msg);
        ok += w[i].n_ok;
        down += w[i].down;
        if (w[i].down != 0)
            assert_non_null(strstr(w[i].down_msg, "store unavailable"));
    }
    ddsm_batch_stats stats;
    ddsm_batcher_stats(b, &stats);
    print_message("%d keys received, %d calls failed closed, %" PRIu64 " failed batches, %d "
                  "keys after the restart\n",
                  ok, down, stats.failed_batches, after);
    assert_true(down > 0);
    assert_true(stats.failed_batches > 0);
    assert_true(after >= 200); /* it reconnected by itself */
    ddsm_batcher_free(b);

    /* Every received key has its row; chains and checkpoints are whole. */
    PGconn *pg = pgs_connect(g_conninfo);
    for (int i = 0; i < THREADS; i++) {
        for (int k = 0; k < w[i].n_ok; k++) {
            char c[24];
            snprintf(c, sizeof c, "%" PRIu64, w[i].ok_counter[k]);
            const char *p[] = {w[i].ok_tags[k], c};
            long long n = pgs_int(pg,
                                  "SELECT count(*) FROM custody_audit_log WHERE requester = $1"
                                  " AND counter = $2::bigint AND event = 'DERIVE'",
                                  2, p);
            if (n != 1)
                fail_msg("key %s: %lld rows", w[i].ok_tags[k], n);
        }
        free(w[i].ok_tags);
        free(w[i].ok_counter);
    }
    long long rows =
        pgs_int(pg, "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'", 0, NULL);
    print_message("%lld DERIVE rows for %d received keys\n", rows, ok);
    assert_true(rows >= ok);
    PQfinish(pg);

    ddsm_audit_verify_stats vs;
    if (ddsm_audit_verify(st, g_key, NULL, NULL, NULL, &vs) != DDSM_OK)
        fail_msg("verify: %s", ddsm_store_errmsg(st));
    for (int k = 0; k < DDSM_AUDIT__KINDS; k++)
        if (vs.findings[k] != 0)
            fail_msg("%" PRIu64 " %s findings after the outage", vs.findings[k],
                     ddsm_audit_kind_name((ddsm_audit_kind)k));
    print_message("%" PRIu64 " rows in %" PRIu64 " chains verify\n", vs.rows, vs.chains);
    assert_true(vs.rows >= (uint64_t)ok);
    ddsm_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_batch__server_stopped_mid_batch_fails_callers_closed_and_writes_no_half),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
