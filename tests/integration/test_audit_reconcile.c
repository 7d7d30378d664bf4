/* SPDX-License-Identifier: Apache-2.0 */
/* Reconcile against a real server: silent on a clean log, even one written by 8 threads while an
 * asset was rotated under them; finds injected drift of each kind (registry counter moved by hand,
 * a rotation's ROTATE row deleted, a derivation with a counter already rotated away, an audit row
 * above the registry) and names the asset and row; ignores retired assets; prunes by time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ddsm/audit.h"
#include "ddsm/batch.h"
#include "ddsm/derive.h"
#include "ddsm/store.h"
#include "audit_support.h"
#include "pg_support.h"

static ddsm_audit_key *g_key;
static ddsm_store *g_st;
static PGconn *g_pg;

struct rfind {
    char kind[32];
    ddsm_uuid asset;
    int64_t row_id, counter, expected;
    char detail[300];
};
struct rfinds {
    struct rfind f[32];
    size_t n;
};

static int collect(const ddsm_reconcile_finding *f, void *arg)
{
    struct rfinds *r = arg;
    if (r->n < 32) {
        struct rfind *x = &r->f[r->n];
        snprintf(x->kind, sizeof x->kind, "%s", f->kind);
        x->asset = f->asset;
        x->row_id = f->row_id;
        x->counter = f->counter;
        x->expected = f->expected;
        snprintf(x->detail, sizeof x->detail, "%s", f->detail);
    }
    r->n++;
    return 0;
}

static void reconcile(const ddsm_reconcile_opts *o, struct rfinds *r)
{
    uint64_t n = 999;
    memset(r, 0, sizeof *r);
    if (ddsm_audit_reconcile(g_st, o, collect, r, &n) != DDSM_OK)
        fail_msg("reconcile: %s", ddsm_store_errmsg(g_st));
    assert_int_equal(n, r->n);
}

static void print_rfinds(const struct rfinds *r)
{
    for (size_t i = 0; i < r->n && i < 32; i++)
        print_message("  %s row %" PRId64 ": %s\n", r->f[i].kind, r->f[i].row_id, r->f[i].detail);
}

static const struct rfind *find(const struct rfinds *r, const char *kind, const ddsm_uuid *a)
{
    for (size_t i = 0; i < r->n && i < 32; i++)
        if (strcmp(r->f[i].kind, kind) == 0 && memcmp(r->f[i].asset.b, a->b, 16) == 0)
            return &r->f[i];
    return NULL;
}

static size_t count_for(const struct rfinds *r, const ddsm_uuid *a)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n && i < 32; i++)
        n += memcmp(r->f[i].asset.b, a->b, 16) == 0;
    return n;
}

static ddsm_asset active(const char *prefix)
{
    return aus_asset(g_st, prefix, "t", DDSM_STATE_ACTIVE);
}

static void derive(const ddsm_asset *a, uint64_t want)
{
    ddsm_derive_req req = {.asset = a->id, .path = "m/0", .requester = "t"};
    uint64_t c = 99;
    if (ddsm_store_derive(g_st, &req, &c, NULL) != DDSM_OK)
        fail_msg("derive: %s", ddsm_store_errmsg(g_st));
    assert_int_equal(c, want);
}

static void rotate(const ddsm_asset *a, ddsm_event ev)
{
    ddsm_asset b;
    if (ddsm_store_asset_transition(g_st, &a->id, ev, 3600, "t", &b) != DDSM_OK)
        fail_msg("%s: %s", ddsm_event_name(ev), ddsm_store_errmsg(g_st));
}

static int group_setup(void **state)
{
    (void)state;
    return aus_open(0x10, "reconcile/", &g_key, &g_st, &g_pg);
}

static int group_teardown(void **state)
{
    (void)state;
    aus_close(g_key, g_st, g_pg);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

struct busy {
    ddsm_batcher *b;
    ddsm_uuid asset;
    atomic_int *stop;
    int n;
    char msg[256];
};

static void *busy_main(void *arg)
{
    struct busy *w = arg;
    while (!atomic_load(w->stop)) {
        ddsm_derive_req req = {.asset = w->asset, .path = "m/1", .requester = "busy"};
        uint64_t c;
        if (ddsm_batcher_derive(w->b, &req, &c, NULL) != DDSM_OK) {
            snprintf(w->msg, sizeof w->msg, "%s", ddsm_batcher_errmsg());
            return NULL;
        }
        w->n++;
    }
    return NULL;
}

static void test_reconcile__silent_on_a_clean_log_written_under_rotations(void **state)
{
    (void)state;
    ddsm_asset a = active("clean"), b = active("clean-grace"), c = active("clean-retired");
    derive(&a, 0);
    rotate(&a, DDSM_EV_ROTATE);
    derive(&a, 1);
    rotate(&b, DDSM_EV_ROTATE_GRACE);
    derive(&b, 1);
    rotate(&c, DDSM_EV_ROTATE);
    rotate(&c, DDSM_EV_RETIRE);

    /* Eight threads derive while the asset is rotated under them, many times. */
    char inst[128];
    ddsm_batcher *bt = NULL;
    assert_int_equal(ddsm_audit_instance_id("reconcile-busy/", inst, sizeof inst), DDSM_OK);
    assert_int_equal(ddsm_batcher_new(pgs_conninfo(), NULL, 64, 100, 2, g_key, inst, &bt), DDSM_OK);
    atomic_int stop = 0;
    struct busy w[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].b = bt;
        w[i].asset = a.id;
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&th[i], NULL, busy_main, &w[i]), 0);
    }
    for (int k = 0; k < 40; k++) {
        rotate(&a, DDSM_EV_ROTATE);
        usleep(5000);
    }
    atomic_store(&stop, 1);
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (w[i].msg[0] != '\0')
            fail_msg("thread %d: %s", i, w[i].msg);
        total += w[i].n;
    }
    ddsm_batcher_free(bt);
    assert_true(total > 100);

    struct rfinds r;
    reconcile(NULL, &r);
    if (r.n != 0) {
        print_rfinds(&r);
        fail_msg("%zu findings on a clean log (%d derivations)", r.n, total);
    }
}

static void test_reconcile__finds_each_kind_of_injected_drift(void **state)
{
    (void)state;
    char idt[DDSM_UUID_TEXT_LEN + 1];
    struct rfinds r;

    /* 1. The registry counter moved by hand: no rotation record, no ROTATE row. */
    ddsm_asset d = active("drift");
    ddsm_uuid_format(&d.id, idt);
    const char *pd[] = {idt};
    pgs_exec(g_pg,
             "UPDATE custody_keys SET derivation_counter = derivation_counter + 1"
             " WHERE asset_id = $1::uuid",
             1, pd);

    /* 2. A rotation whose ROTATE row was deleted. */
    ddsm_asset e = active("missing");
    rotate(&e, DDSM_EV_ROTATE);
    rotate(&e, DDSM_EV_ROTATE);
    char eid[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&e.id, eid);
    const char *pe[] = {eid};
    pgs_exec(g_pg,
             "DELETE FROM custody_audit_log WHERE asset_id = $1::uuid AND event = 'ROTATE'"
             " AND counter = 1",
             1, pe);
    long long rot1 = pgs_int(g_pg,
                             "SELECT id FROM custody_rotations WHERE asset_id = $1::uuid"
                             " AND to_counter = 1",
                             1, pe);

    /* 3. A derivation recorded with counter 0 after the rotation to 1 had committed. */
    ddsm_asset f = active("stale");
    derive(&f, 0);
    rotate(&f, DDSM_EV_ROTATE);
    derive(&f, 1);
    char fid[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&f.id, fid);
    const char *pf[] = {fid};
    long long stale_row = pgs_int(g_pg,
                                  "INSERT INTO custody_audit_log (asset_id, derivation_path,"
                                  " counter, state_at_derivation, event, requester)"
                                  " VALUES ($1::uuid, 'm/0', 0, 'ACTIVE', 'DERIVE', 'rogue')"
                                  " RETURNING id",
                                  1, pf);

    /* 4. An audit row with a counter the registry never reached. */
    ddsm_asset g = active("ahead");
    char gid[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&g.id, gid);
    const char *pg[] = {gid};
    long long ahead_row = pgs_int(g_pg,
                                  "INSERT INTO custody_audit_log (asset_id, derivation_path,"
                                  " counter, state_at_derivation, event)"
                                  " VALUES ($1::uuid, 'm/0', 5, 'ACTIVE', 'DERIVE') RETURNING id",
                                  1, pg);

    /* 5. Drift on a retired asset is not reconcile's business. */
    ddsm_asset h = active("retired");
    rotate(&h, DDSM_EV_RETIRE);
    char hid[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&h.id, hid);
    const char *ph[] = {hid};
    pgs_exec(g_pg, "DELETE FROM custody_audit_log WHERE asset_id = $1::uuid", 1, ph);

    reconcile(NULL, &r);
    print_rfinds(&r);

    const struct rfind *x = find(&r, "COUNTER_DRIFT", &d.id);
    assert_non_null(x);
    assert_int_equal(x->counter, 1);
    assert_int_equal(x->expected, 0);
    x = find(&r, "MISSING_AUDIT_ENTRY", &d.id);
    assert_non_null(x);
    assert_int_equal(x->counter, 1);
    assert_int_equal(count_for(&r, &d.id), 2);

    x = find(&r, "MISSING_AUDIT_ENTRY", &e.id);
    assert_non_null(x);
    assert_int_equal(x->row_id, rot1);
    assert_int_equal(x->counter, 1);
    assert_int_equal(count_for(&r, &e.id), 1);

    x = find(&r, "ROTATED_COUNTER_DERIVED", &f.id);
    assert_non_null(x);
    assert_int_equal(x->row_id, stale_row);
    assert_int_equal(x->counter, 0);
    assert_int_equal(x->expected, 1);
    assert_int_equal(count_for(&r, &f.id), 1);

    x = find(&r, "COUNTER_DRIFT", &g.id);
    assert_non_null(x);
    assert_int_equal(x->row_id, ahead_row);
    assert_int_equal(x->counter, 5);
    assert_int_equal(count_for(&r, &g.id), 1);

    assert_int_equal(count_for(&r, &h.id), 0);
    assert_int_equal(r.n, 5);

    /* --since prunes the audit rows: the row-level findings go, the registry-level ones stay. */
    ddsm_reconcile_opts o = {.has_since = true, .since_us = ((int64_t)time(NULL) + 3600) * 1000000};
    reconcile(&o, &r);
    assert_int_equal(r.n, 3);
    assert_null(find(&r, "ROTATED_COUNTER_DERIVED", &f.id));
    assert_null(find(&r, "COUNTER_DRIFT", &g.id));
}

static void test_reconcile__is_silent_again_once_repaired(void **state)
{
    (void)state;
    /* Undo every injection: retire what cannot be repaired, delete the rogue rows. */
    pgs_exec(g_pg,
             "DELETE FROM custody_audit_log WHERE requester = 'rogue'"
             " OR (event = 'DERIVE' AND counter = 5 AND requester IS NULL)",
             0, NULL);
    pgs_exec(g_pg,
             "UPDATE custody_keys SET state = 'RETIRED' WHERE state IN ('ACTIVE',"
             " 'ROTATING') AND (label LIKE 'drift-%' OR label LIKE 'missing-%')",
             0, NULL);
    struct rfinds r;
    reconcile(NULL, &r);
    if (r.n != 0) {
        print_rfinds(&r);
        fail_msg("%zu findings after the repair", r.n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconcile__silent_on_a_clean_log_written_under_rotations),
        cmocka_unit_test(test_reconcile__finds_each_kind_of_injected_drift),
        cmocka_unit_test(test_reconcile__is_silent_again_once_repaired),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
