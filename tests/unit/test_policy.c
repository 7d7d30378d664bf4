/* SPDX-License-Identifier: Apache-2.0 */
/* The policy gate's pure logic (ddsm/policy.h): rate syntax, the local token buckets against a
 * simulated database shared by several "processes" (limiters), windows, refusals, the refill
 * plan, concurrency; zone names and notifications; the new configuration keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddsm/config.h"
#include "ddsm/policy.h"

/* ------------------------------------------------------------------------------------------ */
/* Rates                                                                                       */

static void test_rate__parses_every_unit(void **state)
{
    ddsm_rate r;
    assert_int_equal(ddsm_rate_parse("100/s", &r, NULL), DDSM_OK);
    assert_int_equal(r.limit, 100);
    assert_int_equal(r.window_s, 1);
    assert_int_equal(ddsm_rate_parse("6000 / min", &r, NULL), DDSM_OK);
    assert_int_equal(r.limit, 6000);
    assert_int_equal(r.window_s, 60);
    assert_int_equal(ddsm_rate_parse("5/h", &r, NULL), DDSM_OK);
    assert_int_equal(r.window_s, 3600);
    assert_int_equal(ddsm_rate_parse("1000000000/d", &r, NULL), DDSM_OK);
    assert_int_equal(r.window_s, 86400);
    assert_int_equal(ddsm_rate_parse("7/sec", &r, NULL), DDSM_OK);
    assert_int_equal(r.window_s, 1);
    assert_int_equal(ddsm_rate_parse("0", &r, NULL), DDSM_OK);
    assert_int_equal(r.limit, 0);
    assert_int_equal(ddsm_rate_parse("0/s", &r, NULL), DDSM_OK);
    assert_int_equal(r.limit, 0);
}

static void test_rate__rejects_malformed_rates_with_a_reason(void **state)
{
    static const char *const bad[] = {"",        "/s",           "-1/s",  "+5/s",  "05/s",  "10",
                                      "10/",     "10/w",         "10/ss", "1e3/s", "10/s ", "x/s",
                                      "10/min/", "1000000001/s", " 10/s", "10.5/s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ddsm_rate r = {77, 77};
        const char *why = NULL;
        if (ddsm_rate_parse(bad[i], &r, &why) != DDSM_E_INPUT)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_non_null(why);
        assert_int_equal(r.limit, 77); /* untouched */
    }
}

static void test_rate__chunk_is_a_tenth_of_the_limit_within_bounds(void **state)
{
    ddsm_rate r = {0, 1};
    assert_int_equal(ddsm_rate_chunk(&r), 0);
    r.limit = 4;
    assert_int_equal(ddsm_rate_chunk(&r), 1);
    r.limit = 100;
    assert_int_equal(ddsm_rate_chunk(&r), 10);
    r.limit = 1000000;
    assert_int_equal(ddsm_rate_chunk(&r), 1000);
}

/* ------------------------------------------------------------------------------------------ */
/* A simulated database: ddsm_rate_lease's rules, windows on a fake server clock               */

#define FAKE_ROWS 64
struct fake_db {
    pthread_mutex_t lock;
    int64_t now_ms; /* the server's clock */
    struct {
        char requester[DDSM_REQUESTER_MAX + 1];
        ddsm_uuid asset;
        int64_t window_at;
        uint64_t granted;
    } rows[FAKE_ROWS];
    size_t n;
    unsigned leases;
};

static struct fake_db db = {PTHREAD_MUTEX_INITIALIZER, 0, {{"", {{0}}, 0, 0}}, 0, 0};

static void db_reset(int64_t now_ms)
{
    pthread_mutex_lock(&db.lock);
    db.n = 0;
    db.leases = 0;
    db.now_ms = now_ms;
    pthread_mutex_unlock(&db.lock);
}

static void fake_lease(const ddsm_rate_lease_req *req, ddsm_rate_lease_ans *ans)
{
    pthread_mutex_lock(&db.lock);
    int64_t w = (int64_t)req->window_s * 1000;
    int64_t at = db.now_ms / w * w;
    size_t i;
    for (i = 0; i < db.n; i++)
        if (db.rows[i].window_at == at && strcmp(db.rows[i].requester, req->requester) == 0 &&
            memcmp(db.rows[i].asset.b, req->asset.b, 16) == 0)
            break;
    if (i == db.n) {
        assert_true(db.n < FAKE_ROWS);
        snprintf(db.rows[i].requester, sizeof(db.rows[i].requester), "%s", req->requester);
        db.rows[i].asset = req->asset;
        db.rows[i].window_at = at;
        db.rows[i].granted = 0;
        db.n++;
    }
    uint64_t left = req->limit > db.rows[i].granted ? req->limit - db.rows[i].granted : 0;
    ans->granted = req->want < left ? req->want : left;
    db.rows[i].granted += ans->granted;
    ans->window_at_us = at * 1000;
    ans->left_ms = at + w - db.now_ms;
    db.leases++;
    pthread_mutex_unlock(&db.lock);
}

static const ddsm_uuid asset_a = {{0xaa, 1}};
static const ddsm_uuid asset_b = {{0xbb, 2}};

/* take, leasing from the fake database as the module does (local clock = server clock here). */
static ddsm_rate_verdict take(ddsm_ratelimit *rl, const char *req, const ddsm_uuid *a,
                              ddsm_rate_scope *scope)
{
    for (int round = 0; round < 8; round++) {
        ddsm_rate_lease_req lr;
        ddsm_rate_lease_ans ans;
        ddsm_rate_verdict v = ddsm_ratelimit_take(rl, req, a, db.now_ms, 1000, scope, &lr);
        if (v != DDSM_RATE_LEASE)
            return v;
        fake_lease(&lr, &ans);
        ddsm_ratelimit_apply(rl, &lr, &ans, db.now_ms);
    }
    fail_msg("take needed more than 8 leases");
    return DDSM_RATE_DENY;
}

static ddsm_ratelimit *limiter(uint64_t per_asset, uint64_t per_req, unsigned window_s)
{
    ddsm_rate a = {per_asset, window_s}, r = {per_req, window_s};
    ddsm_ratelimit *rl = NULL;
    assert_int_equal(ddsm_ratelimit_new(&a, &r, 64, &rl), DDSM_OK);
    return rl;
}

static void test_ratelimit__without_limits_everything_is_allowed_with_no_lease(void **state)
{
    db_reset(1000000);
    ddsm_ratelimit *rl = limiter(0, 0, 1);
    assert_false(ddsm_ratelimit_active(rl));
    ddsm_rate_scope sc;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(db.leases, 0);
    ddsm_ratelimit_free(rl);
}

static void test_ratelimit__two_processes_share_a_limit_and_never_exceed_it(void **state)
{
    db_reset(60000 * 1000);
    ddsm_ratelimit *p1 = limiter(100, 0, 60), *p2 = limiter(100, 0, 60);
    ddsm_rate_scope sc;
    int ok = 0, denied = 0;
    /* Interleaved, each asking more than the whole limit. */
    for (int i = 0; i < 150; i++) {
        for (int k = 0; k < 2; k++) {
            ddsm_rate_verdict v = take(k == 0 ? p1 : p2, "app", &asset_a, &sc);
            if (v == DDSM_RATE_ALLOW) {
                ok++;
            } else {
                assert_int_equal(v, DDSM_RATE_DENY);
                assert_int_equal(sc, DDSM_RATE_ASSET);
                denied++;
            }
        }
    }
    /* Both kept asking: no token was left unused, so the limit was reached exactly. */
    assert_int_equal(ok, 100);
    assert_int_equal(denied, 200);
    /* A lease is a chunk (a tenth) at a time: about limit / chunk leases, not one per take. */
    assert_true(db.leases <= 100 / 10 + 4);
    ddsm_ratelimit_free(p1);
    ddsm_ratelimit_free(p2);
}

static void test_ratelimit__tokens_a_process_leaves_unused_are_at_most_a_chunk(void **state)
{
    db_reset(3600 * 1000);
    ddsm_ratelimit *p1 = limiter(100, 0, 60), *p2 = limiter(100, 0, 60);
    ddsm_rate_scope sc;
    assert_int_equal(take(p1, "app", &asset_a, &sc), DDSM_RATE_ALLOW); /* p1 leased 10 */
    int ok = 1;
    while (take(p2, "app", &asset_a, &sc) == DDSM_RATE_ALLOW)
        ok++;
    /* p1 stopped deriving: its 9 leased tokens are lost to p2 in this window. */
    assert_int_equal(ok, 100 - 9);
    assert_true(ok >= 100 - 10); /* the documented bound: one chunk per process */
    ddsm_ratelimit_free(p1);
    ddsm_ratelimit_free(p2);
}

static void test_ratelimit__a_new_window_starts_from_zero(void **state)
{
    db_reset(10 * 1000);
    ddsm_ratelimit *rl = limiter(3, 0, 1);
    ddsm_rate_scope sc;
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < 3; i++)
            assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
        assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_DENY);
        assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_DENY);
        db.now_ms += 1000;
    }
    ddsm_ratelimit_free(rl);
}

static void test_ratelimit__requester_limit_spans_assets_and_requesters_are_apart(void **state)
{
    db_reset(5 * 3600 * 1000);
    ddsm_ratelimit *rl = limiter(0, 5, 3600);
    ddsm_rate_scope sc;
    for (int i = 0; i < 5; i++)
        assert_int_equal(take(rl, "app/alice", i % 2 ? &asset_a : &asset_b, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(take(rl, "app/alice", &asset_a, &sc), DDSM_RATE_DENY);
    assert_int_equal(sc, DDSM_RATE_REQUESTER);
    assert_int_equal(take(rl, "app/bob", &asset_a, &sc), DDSM_RATE_ALLOW);
    ddsm_ratelimit_free(rl);
}

static void test_ratelimit__both_limits_apply_and_the_tighter_one_refuses(void **state)
{
    db_reset(7 * 3600 * 1000);
    ddsm_ratelimit *rl = limiter(2, 3, 3600);
    ddsm_rate_scope sc;
    assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_DENY);
    assert_int_equal(sc, DDSM_RATE_ASSET);
    assert_int_equal(take(rl, "app", &asset_b, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(take(rl, "app", &asset_b, &sc), DDSM_RATE_DENY);
    assert_int_equal(sc, DDSM_RATE_REQUESTER);
    ddsm_ratelimit_stats st;
    ddsm_ratelimit_stats_get(rl, &st);
    assert_int_equal(st.allowed, 3);
    assert_int_equal(st.denied[DDSM_RATE_ASSET], 1);
    assert_int_equal(st.denied[DDSM_RATE_REQUESTER], 1);
    ddsm_ratelimit_free(rl);
}

static void test_ratelimit__refill_plan_asks_only_for_low_active_buckets(void **state)
{
    db_reset(9 * 3600 * 1000);
    ddsm_ratelimit *rl = limiter(100, 0, 3600); /* chunk 10, low water 5 */
    ddsm_rate_scope sc;
    ddsm_rate_lease_req out[4];
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out, 4), 0); /* nothing used yet */
    for (int i = 0; i < 4; i++)
        assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out, 4), 0); /* 6 left */
    assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out, 4), 1); /* 5 left: refill */
    assert_int_equal(out[0].want, 10);
    assert_int_equal(out[0].scope, DDSM_RATE_ASSET);
    assert_string_equal(out[0].requester, "app");
    /* Being leased: not asked for twice. */
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out + 1, 3), 0);
    ddsm_rate_lease_ans ans;
    fake_lease(&out[0], &ans);
    ddsm_ratelimit_apply(rl, &out[0], &ans, db.now_ms);
    unsigned before = db.leases;
    for (int i = 0; i < 15; i++)
        assert_int_equal(take(rl, "app", &asset_a, &sc), DDSM_RATE_ALLOW);
    assert_int_equal(db.leases, before); /* the 15 came from the bucket: no round trip */
    /* A failed lease frees the bucket for the next one. */
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out, 4), 1);
    ddsm_ratelimit_apply_failed(rl, &out[0]);
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out, 4), 1);
    ddsm_ratelimit_apply_failed(rl, &out[0]);
    /* A spent limit is not refilled. */
    while (take(rl, "app", &asset_a, &sc) == DDSM_RATE_ALLOW) {
    }
    assert_int_equal(ddsm_ratelimit_wanted(rl, db.now_ms, out, 4), 0);
    ddsm_ratelimit_free(rl);
}

struct worker {
    ddsm_ratelimit *rl;
    int ok;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 500; i++) {
        ddsm_rate_scope sc;
        ddsm_rate_lease_req lr;
        ddsm_rate_lease_ans ans;
        for (;;) {
            ddsm_rate_verdict v =
                ddsm_ratelimit_take(w->rl, "app", &asset_a, 3600 * 1000, 2000, &sc, &lr);
            if (v == DDSM_RATE_ALLOW)
                w->ok++;
            if (v != DDSM_RATE_LEASE)
                break;
            fake_lease(&lr, &ans);
            ddsm_ratelimit_apply(w->rl, &lr, &ans, 3600 * 1000);
        }
    }
    return NULL;
}

static void test_ratelimit__threads_of_two_processes_never_exceed_the_limit(void **state)
{
    db_reset(3600 * 1000);
    ddsm_ratelimit *p1 = limiter(777, 0, 3600), *p2 = limiter(777, 0, 3600);
    struct worker w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        w[i].rl = i % 2 ? p1 : p2;
        w[i].ok = 0;
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        ok += w[i].ok;
    }
    /* 4000 asked for; everything leased was used (every thread kept asking). */
    assert_int_equal(ok, 777);
    ddsm_ratelimit_free(p1);
    ddsm_ratelimit_free(p2);
}

static void test_ratelimit__new_rejects_bad_sizes(void **state)
{
    ddsm_rate a = {1, 1}, r = {0, 1};
    ddsm_ratelimit *rl = NULL;
    assert_int_equal(ddsm_ratelimit_new(&a, &r, 15, &rl), DDSM_E_INPUT);
    assert_int_equal(ddsm_ratelimit_new(&a, &r, 2000000, &rl), DDSM_E_INPUT);
    assert_null(rl);
    assert_int_equal(ddsm_ratelimit_new(&a, &r, 16, &rl), DDSM_OK);
    /* More (requester, asset) pairs than buckets: old ones are reused, limits still hold. */
    db_reset(3600 * 1000);
    ddsm_rate_scope sc;
    for (int i = 0; i < 40; i++) {
        ddsm_uuid u = {{(uint8_t)i, 9}};
        assert_int_equal(take(rl, "app", &u, &sc), DDSM_RATE_ALLOW);
        assert_int_equal(take(rl, "app", &u, &sc), DDSM_RATE_DENY);
    }
    ddsm_ratelimit_free(rl);
}

/* ------------------------------------------------------------------------------------------ */
/* Zones                                                                                       */

static void test_zone__names_are_short_plain_words(void **state)
{
    assert_true(ddsm_zone_name_valid("default"));
    assert_true(ddsm_zone_name_valid("eu-west.1_a"));
    assert_true(ddsm_zone_name_valid("9"));
    char n63[64], n64[65];
    memset(n63, 'z', 63);
    n63[63] = '\0';
    memset(n64, 'z', 64);
    n64[64] = '\0';
    assert_true(ddsm_zone_name_valid(n63));
    assert_false(ddsm_zone_name_valid(n64));
    static const char *const bad[] = {"", "-eu", ".x", "a b", "a/b", "zoné", "a\n", "a;b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ddsm_zone_name_valid(bad[i]))
            fail_msg("\"%s\" was accepted", bad[i]);
    assert_false(ddsm_zone_name_valid(NULL));
}

static void test_zone__notifications_parse_exactly(void **state)
{
    ddsm_uuid u;
    bool on = true;
    char z[DDSM_ZONE_NAME_MAX + 1];
    assert_true(
        ddsm_zone_notify_parse("6f9619ff-8b86-d011-b42d-00c04fc964ff off eu-west", &u, &on, z));
    assert_false(on);
    assert_string_equal(z, "eu-west");
    assert_int_equal(u.b[0], 0x6f);
    assert_true(
        ddsm_zone_notify_parse("6f9619ff-8b86-d011-b42d-00c04fc964ff on default", &u, &on, z));
    assert_true(on);
    static const char *const bad[] = {"",
                                      "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                                      "6f9619ff-8b86-d011-b42d-00c04fc964ff on",
                                      "6f9619ff-8b86-d011-b42d-00c04fc964ff on ",
                                      "6f9619ff-8b86-d011-b42d-00c04fc964ff ON x",
                                      "6f9619ff-8b86-d011-b42d-00c04fc964ff off a b",
                                      "not-a-uuid-8b86-d011-b42d-00c04fc964 on x",
                                      "6f9619ff-8b86-d011-b42d-00c04fc964ff  on x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ddsm_zone_notify_parse(bad[i], &u, &on, z))
            fail_msg("\"%s\" was accepted", bad[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* Configuration keys                                                                          */

static char dir[] = "/tmp/ddsm-test-policy-XXXXXX";
static char conf_path[sizeof(dir) + 32];

#define MINIMAL                                                                                    \
    "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = custody\n"                 \
    "[store]\nconninfo = dbname=ddsm\n"

static ddsm_err load(const char *extra, ddsm_config **cfg, char *why, size_t n)
{
    snprintf(conf_path, sizeof(conf_path), "%s/ddsm.conf", dir);
    FILE *f = fopen(conf_path, "w");
    assert_non_null(f);
    fprintf(f, "%s%s", MINIMAL, extra);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(conf_path, 0600), 0);
    *cfg = NULL;
    return ddsm_config_load(conf_path, cfg, why, n);
}

static void test_config_policy__reads_rates_mechanisms_and_metrics(void **state)
{
    ddsm_config *cfg;
    char why[512];
    assert_int_equal(load("", &cfg, why, sizeof(why)), DDSM_OK);
    assert_int_equal(cfg->policy.rate_per_requester_asset.limit, 0);
    assert_int_equal(cfg->policy.rate_per_requester.limit, 0);
    assert_int_equal(cfg->policy.n_mechanisms, 0);
    assert_null(cfg->metrics.textfile);
    assert_int_equal(cfg->metrics.interval_ms, 10000);
    ddsm_config_free(cfg);

    assert_int_equal(load("[policy]\nrate_per_requester_asset = 100/s\nrate_per_requester = "
                          "6000/min\nmechanism = CKM_SHA256_HMAC\nmechanism = 0x1087\n"
                          "[metrics]\ntextfile = /var/lib/x/ddsm-%p.prom\ninterval_ms = 250\n",
                          &cfg, why, sizeof(why)),
                     DDSM_OK);
    assert_int_equal(cfg->policy.rate_per_requester_asset.limit, 100);
    assert_int_equal(cfg->policy.rate_per_requester_asset.window_s, 1);
    assert_int_equal(cfg->policy.rate_per_requester.limit, 6000);
    assert_int_equal(cfg->policy.rate_per_requester.window_s, 60);
    assert_int_equal(cfg->policy.n_mechanisms, 2);
    assert_string_equal(cfg->policy.mechanisms[1], "0x1087");
    assert_string_equal(cfg->metrics.textfile, "/var/lib/x/ddsm-%p.prom");
    assert_int_equal(cfg->metrics.interval_ms, 250);
    ddsm_config_free(cfg);
}

static void test_config_policy__bad_values_name_file_and_line(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        {"[policy]\nrate_per_requester = 100/week\n", ":7: \"rate_per_requester\" in [policy]"},
        {"[policy]\nrate_per_requester_asset = fast\n", ":7: \"rate_per_requester_asset\""},
        {"[policy]\nrate_per_requester = 1/s\nrate_per_requester = 2/s\n", ":8:"},
        {"[policy]\nmechanism = hmac\n", ":7: \"mechanism\" in [policy]"},
        {"[policy]\nmechanism = 0x\n", ":7:"},
        {"[metrics]\ntextfile = relative.prom\n", ":7: \"textfile\" in [metrics]"},
        {"[metrics]\ntextfile = /x/%d.prom\n", ":7:"},
        {"[metrics]\ntextfile = /x/a%\n", ":7:"},
        {"[metrics]\ninterval_ms = 10\n", ":7: \"interval_ms\" in [metrics]"},
        {"[metrics]\nport = 9100\n", ":7: unknown key \"port\" in [metrics]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ddsm_config *cfg;
        char why[512] = "";
        assert_int_equal(load(bad[i].text, &cfg, why, sizeof(why)), DDSM_E_CONFIG);
        assert_null(cfg);
        if (strstr(why, bad[i].want) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why, bad[i].want);
    }
    char text[4096] = "[policy]\n";
    for (int i = 0; i < DDSM_POLICY_MAX_MECHANISMS + 1; i++)
        strcat(text, "mechanism = CKM_SHA256_HMAC\n");
    ddsm_config *cfg;
    char why[512] = "";
    assert_int_equal(load(text, &cfg, why, sizeof(why)), DDSM_E_CONFIG);
    assert_non_null(strstr(why, "too many \"mechanism\" lines"));
}

static int make_dir(void **state)
{
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int remove_dir(void **state)
{
    unlink(conf_path);
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate__parses_every_unit),
        cmocka_unit_test(test_rate__rejects_malformed_rates_with_a_reason),
        cmocka_unit_test(test_rate__chunk_is_a_tenth_of_the_limit_within_bounds),
        cmocka_unit_test(test_ratelimit__without_limits_everything_is_allowed_with_no_lease),
        cmocka_unit_test(test_ratelimit__two_processes_share_a_limit_and_never_exceed_it),
        cmocka_unit_test(test_ratelimit__tokens_a_process_leaves_unused_are_at_most_a_chunk),
        cmocka_unit_test(test_ratelimit__a_new_window_starts_from_zero),
        cmocka_unit_test(test_ratelimit__requester_limit_spans_assets_and_requesters_are_apart),
        cmocka_unit_test(test_ratelimit__both_limits_apply_and_the_tighter_one_refuses),
        cmocka_unit_test(test_ratelimit__refill_plan_asks_only_for_low_active_buckets),
        cmocka_unit_test(test_ratelimit__threads_of_two_processes_never_exceed_the_limit),
        cmocka_unit_test(test_ratelimit__new_rejects_bad_sizes),
        cmocka_unit_test(test_zone__names_are_short_plain_words),
        cmocka_unit_test(test_zone__notifications_parse_exactly),
        cmocka_unit_test(test_config_policy__reads_rates_mechanisms_and_metrics),
        cmocka_unit_test(test_config_policy__bad_values_name_file_and_line),
    };
    return cmocka_run_group_tests_name("policy", tests, make_dir, remove_dir);
}
