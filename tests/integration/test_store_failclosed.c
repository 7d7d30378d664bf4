/* SPDX-License-Identifier: Apache-2.0 */
/* The store fails closed and recovers by itself. It runs its own private PostgreSQL cluster
 * (scripts/lib/services start/halt/stop on $DDSM_TEST_DIR/pg) so that stopping, restarting and
 * freezing the server never disturbs the tests running in parallel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddsm/store.h"
#include "fault_support.h"
#include "pg_support.h"

static char g_dir[PATH_MAX];
static char g_conninfo[512];
static pid_t g_frozen[4]; /* processes we SIGSTOPped: always resumed in teardown */
static int g_nfrozen;

/* scripts/lib/services CMD on our private cluster. */
static int services(const char *cmd)
{
    return fs_services(cmd, g_dir);
}

/* The value of `export NAME=value` in DIR/env.sh. */
static void env_value(const char *name, char *out, size_t cap)
{
    char path[PATH_MAX + 16], line[1024], prefix[64];
    snprintf(path, sizeof path, "%s/env.sh", g_dir);
    snprintf(prefix, sizeof prefix, "export %s=", name);
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            snprintf(out, cap, "%s", line + strlen(prefix));
            out[strcspn(out, "\n")] = '\0';
        }
    }
    fclose(f);
}

static pid_t postmaster_pid(void)
{
    char root[PATH_MAX], path[PATH_MAX + 32];
    env_value("DDSM_PG_ROOT", root, sizeof root);
    snprintf(path, sizeof path, "%s/data/postmaster.pid", root);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s", path);
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0)
        fail_msg("no pid in %s", path);
    return (pid_t)pid;
}

static void freeze(pid_t pid)
{
    assert_true(g_nfrozen < 4);
    g_frozen[g_nfrozen++] = pid;
    assert_int_equal(kill(pid, SIGSTOP), 0);
}

static void thaw_all(void)
{
    for (int i = 0; i < g_nfrozen; i++)
        kill(g_frozen[i], SIGCONT);
    g_nfrozen = 0;
}

static int group_setup(void **state)
{
    (void)state;
    /* Our own cluster: its "postgres" database, whatever PGDATABASE says. */
    fs_cluster_start("pg", g_dir, sizeof g_dir, g_conninfo, sizeof g_conninfo);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    thaw_all();
    return services("stop") == 0 ? 0 : -1;
}

/* Also after a failed test: never leave a frozen server behind. */
static int test_teardown(void **state)
{
    (void)state;
    thaw_all();
    return 0;
}

static ddsm_store *open_store(unsigned statement_timeout_ms, const char *app)
{
    ddsm_store *st = NULL;
    ddsm_store_opts opts = {.connect_timeout_s = 2, .statement_timeout_ms = statement_timeout_ms,
                            .application_name = app};
    assert_int_equal(ddsm_store_open(g_conninfo, &opts, &st), DDSM_OK);
    return st;
}

static void must(ddsm_store *st, ddsm_err got, const char *what)
{
    if (got != DDSM_OK)
        fail_msg("%s: %s: %s", what, ddsm_err_str(got), ddsm_store_errmsg(st));
}

static ddsm_asset active_asset(ddsm_store *st, const char *label)
{
    ddsm_asset a;
    unsigned applied;
    must(st, ddsm_store_migrate(st, &applied), "migrate");
    must(st, ddsm_store_asset_register(st, NULL, label, "hmac", NULL, NULL, &a), "register");
    must(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ACTIVATE, 0, NULL, &a), "activate");
    return a;
}

static long long derive_rows(const ddsm_uuid *id)
{
    char t[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(id, t);
    const char *p[] = {t};
    PGconn *c = pgs_connect(g_conninfo);
    long long n = pgs_int(c, "SELECT count(*) FROM custody_audit_log WHERE asset_id = $1::uuid"
                             " AND event = 'DERIVE'", 1, p);
    PQfinish(c);
    return n;
}

struct heard {
    int n;
    uint64_t counter;
};

static void heard_cb(const ddsm_uuid *id, uint64_t counter, ddsm_state state, void *arg)
{
    (void)id;
    (void)state;
    struct heard *h = arg;
    h->n++;
    h->counter = counter;
}

static void test_store_failclosed__down_server_fails_fast_and_the_same_store_recovers(void **s)
{
    (void)s;
    ddsm_store *st = open_store(2000, "fc-down");
    ddsm_asset a = active_asset(st, "down"), b;
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    uint64_t c = 99;
    must(st, ddsm_store_derive(st, &req, &c, NULL), "derive before");
    assert_int_equal(c, 0);
    ddsm_listener *l = NULL;
    assert_int_equal(ddsm_listener_open(g_conninfo, NULL, &l), DDSM_OK);
    assert_int_equal(ddsm_listener_generation(l), 1);

    assert_int_equal(services("halt"), 0);

    for (int i = 0; i < 3; i++) {
        c = 99;
        long long t0 = pgs_now_ms();
        ddsm_err e = ddsm_store_derive(st, &req, &c, NULL);
        long long took = pgs_now_ms() - t0;
        if (e != DDSM_E_STORE_DOWN)
            fail_msg("derive #%d while down: %s", i, ddsm_err_str(e));
        /* Bounded by the 2 s connect timeout; how long it took is not asserted (it depends on the
         * machine's load): a wait without a bound would hang until ctest's timeout. */
        (void)took;
        assert_int_equal(c, 99);
        assert_non_null(strstr(ddsm_store_errmsg(st), "store unavailable"));
    }
    assert_int_equal(ddsm_store_asset_transition(st, &a.id, DDSM_EV_ROTATE, 0, NULL, &b),
                     DDSM_E_STORE_DOWN);
    assert_int_equal(ddsm_store_asset_get(st, &a.id, &b), DDSM_E_STORE_DOWN);
    struct heard h = {0};
    assert_int_equal(ddsm_listener_wait(l, 200, heard_cb, &h), DDSM_E_STORE_DOWN);
    assert_int_equal(ddsm_listener_wait(l, 200, heard_cb, &h), DDSM_E_STORE_DOWN);

    /* A listener opened while the server is down is not an error either: it reports the link
     * down and picks it up later. */
    ddsm_listener *late = NULL;
    assert_int_equal(ddsm_listener_open(g_conninfo, NULL, &late), DDSM_OK);
    assert_int_equal(ddsm_listener_generation(late), 0);
    assert_int_equal(ddsm_listener_wait(late, 100, heard_cb, &h), DDSM_E_STORE_DOWN);

    assert_int_equal(services("start"), 0);

    assert_int_equal(ddsm_listener_wait(late, 100, heard_cb, &h), DDSM_OK);
    assert_int_equal(ddsm_listener_generation(late), 1);
    ddsm_listener_close(late);

    /* No reopen: the same store and listener reconnect by themselves. */
    must(st, ddsm_store_derive(st, &req, &c, NULL), "derive after restart");
    assert_int_equal(c, 0);
    assert_int_equal(derive_rows(&a.id), 2);
    long long deadline = pgs_now_ms() + 10000;
    ddsm_err le;
    while ((le = ddsm_listener_wait(l, 100, heard_cb, &h)) != DDSM_OK &&
           pgs_now_ms() < deadline) {
    }
    assert_int_equal(le, DDSM_OK);
    assert_int_equal(ddsm_listener_generation(l), 2); /* caller knows to re-validate */
    must(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ROTATE, 0, NULL, &b), "rotate");
    while (h.n == 0 && pgs_now_ms() < deadline)
        assert_int_equal(ddsm_listener_wait(l, 200, heard_cb, &h), DDSM_OK);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.counter, 1);
    ddsm_listener_close(l);
    ddsm_store_close(st);
}

static void test_store_failclosed__restart_between_two_calls_is_not_an_error(void **state)
{
    (void)state;
    ddsm_store *st = open_store(2000, "fc-restart");
    ddsm_asset a = active_asset(st, "restart");
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    uint64_t c;
    must(st, ddsm_store_derive(st, &req, &c, NULL), "derive before");
    assert_int_equal(services("halt"), 0);
    assert_int_equal(services("start"), 0);
    /* The old session is dead; the store notices before sending and uses a new one. */
    must(st, ddsm_store_derive(st, &req, &c, NULL), "derive after restart");
    assert_int_equal(derive_rows(&a.id), 2);
    ddsm_store_close(st);
}

/* A server that accepts but never answers (frozen) cannot hang a caller: connecting gives up at
 * the connect timeout, a statement at the statement timeout plus a margin. */
static void test_store_failclosed__frozen_server_cannot_hang_a_caller(void **state)
{
    (void)state;
    ddsm_store *st = open_store(500, "fc-frozen");
    ddsm_asset a = active_asset(st, "frozen");
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    uint64_t c = 99;
    must(st, ddsm_store_derive(st, &req, &c, NULL), "derive before");

    /* Freeze the session's own backend: the statement is sent and never answered. */
    PGconn *pg = pgs_connect(g_conninfo);
    long long backend = pgs_int(pg, "SELECT pid FROM pg_stat_activity"
                                    " WHERE application_name = 'fc-frozen'", 0, NULL);
    PQfinish(pg);
    freeze((pid_t)backend);
    c = 99;
    long long t0 = pgs_now_ms();
    ddsm_err e = ddsm_store_derive(st, &req, &c, NULL);
    long long took = pgs_now_ms() - t0;
    if (e != DDSM_E_STORE_DOWN)
        fail_msg("derive on a frozen backend: %s", ddsm_err_str(e));
    assert_true(took >= 400); /* it waited for the 500 ms bound, not for ever: "no answer" */
    assert_int_equal(c, 99);
    assert_non_null(strstr(ddsm_store_errmsg(st), "no answer"));
    thaw_all();

    /* Freeze the postmaster: a new connection is never accepted. */
    freeze(postmaster_pid());
    ddsm_store *st2 = open_store(500, "fc-frozen-2");
    t0 = pgs_now_ms();
    e = ddsm_store_derive(st2, &req, &c, NULL);
    took = pgs_now_ms() - t0;
    if (e != DDSM_E_STORE_DOWN)
        fail_msg("derive on a frozen postmaster: %s", ddsm_err_str(e));
    (void)took; /* bounded by the connect timeout; a hang would run into ctest's timeout */
    thaw_all();

    /* Both recover. */
    must(st, ddsm_store_derive(st, &req, &c, NULL), "derive after thaw");
    must(st2, ddsm_store_derive(st2, &req, &c, NULL), "derive after thaw (2)");
    assert_int_equal(c, 0);
    ddsm_store_close(st2);
    ddsm_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_store_failclosed__down_server_fails_fast_and_the_same_store_recovers,
            test_teardown),
        cmocka_unit_test_teardown(
            test_store_failclosed__restart_between_two_calls_is_not_an_error, test_teardown),
        cmocka_unit_test_teardown(test_store_failclosed__frozen_server_cannot_hang_a_caller,
                                  test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
