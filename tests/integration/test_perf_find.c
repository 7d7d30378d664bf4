/* SPDX-License-Identifier: Apache-2.0 */
/* A find of one asset answered from the module's records (docs/benchmark.md): no store
 * round trip while the LISTEN link covers the record, the staleness rule when it does not.
 *
 * The probe: the module's LISTEN link is pointed at a second, private PostgreSQL cluster
 * ([store] listen_conninfo), where no NOTIFY of the test's database ever arrives. While that link
 * is up the module trusts its records, so a rotation made behind its back stays unseen by finds
 * (which proves they made no store round trip); once that cluster is stopped the link is down and,
 * after [cache] staleness_ms, finds read the store again and see the rotation. With the link on
 * the right database, a rotation is seen through its NOTIFY. A label renamed in SQL (no NOTIFY
 * announces that) is trusted for staleness_ms only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/store.h"
#include "fault_support.h"
#include "p11_support.h"

#define STALENESS_MS 300

static char good_conf[4096];
static char g_other_dir[4096]; /* the second cluster, stopped by the teardown whatever happened */

/* Whether the module's LISTEN connection is up on the server of conninfo, idle in its wait. */
static bool module_listens_on(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    bool yes = false;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity"
                                " WHERE application_name = 'ddsm-pkcs11' AND state = 'idle'");
        yes = PQresultStatus(r) == PGRES_TUPLES_OK && strtol(PQgetvalue(r, 0, 0), NULL, 10) > 0;
        PQclear(r);
    }
    PQfinish(c);
    return yes;
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, const char *label)
{
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE found[4];
    size_t n = p11_find(s, t, 1, found, 4);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    for (size_t i = 0; i < n; i++) {
        if (found[i] >= 0x80000000UL) {
            assert_int_equal(h, CK_INVALID_HANDLE);
            h = found[i];
        }
    }
    return h;
}

static CK_ULONG counter_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    return p11_attr_ulong(s, h, CKA_DDSM_COUNTER);
}

static void test_perf_find__records_answer_while_the_listen_link_covers_them(void **state)
{
    (void)state;
    char other[4096], extra[4096 + 128];
    const char *dir = g_other_dir;
    fs_cluster_start("listen-elsewhere", g_other_dir, sizeof(g_other_dir), other, sizeof(other));
    /* The LISTEN connection reads the store it listens on (a NOTIFY only makes it re-read):
     * the other server holds the same schema, with none of this database's rows or NOTIFYs. */
    ddsm_store *other_st = NULL;
    assert_int_equal(ddsm_store_open(other, NULL, &other_st), DDSM_OK);
    if (ddsm_store_migrate(other_st, NULL) != DDSM_OK)
        fail_msg("migrate the other server: %s", ddsm_store_errmsg(other_st));
    ddsm_store_close(other_st);
    snprintf(extra, sizeof(extra), "listen_conninfo = %s\n\n[cache]\nstaleness_ms = %d\n", other,
             STALENESS_MS);
    p11_write_conf("perf_find_elsewhere", NULL, extra);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));

    CK_SESSION_HANDLE s = p11_open_user();
    char label[128];
    snprintf(label, sizeof(label), "%s/%s", VEC_B_ID, VEC_B_PATH);
    CK_OBJECT_HANDLE h1 = find_one(s, label); /* the store: the record is made, LISTEN starts */
    assert_int_not_equal(h1, CK_INVALID_HANDLE);
    CK_ULONG c0 = counter_of(s, h1);
    while (!module_listens_on(other)) /* a module that never listens runs into ctest's timeout */
        p11_sleep_ms(50);
    /* Past the staleness bound the record is read again, now under the link's cover. */
    p11_sleep_ms(STALENESS_MS + 200);
    assert_int_equal(find_one(s, label), h1);

    assert_int_equal(p11_ctl("asset rotate %s >/dev/null", VEC_B_ID), 0);
    /* No NOTIFY reaches a link on the other server: finds answered by the record alone keep
     * the counter they knew, however long we wait. */
    for (int i = 0; i < 3; i++) {
        p11_sleep_ms(STALENESS_MS);
        CK_OBJECT_HANDLE h = find_one(s, label);
        assert_int_equal(h, h1);
        assert_int_equal(counter_of(s, h), c0);
    }

    /* The link goes down: after the staleness bound, finds ask the store and see the rotation. */
    assert_int_equal(fs_services("stop", dir), 0);
    p11_sleep_ms(STALENESS_MS + 700);
    CK_OBJECT_HANDLE h2 = find_one(s, label);
    assert_int_not_equal(h2, CK_INVALID_HANDLE);
    assert_int_not_equal(h2, h1);
    assert_int_equal(counter_of(s, h2), c0 + 1);
    /* And the key of the old counter no longer signs. */
    uint8_t mac[32];
    assert_rv(CKR_KEY_HANDLE_INVALID, p11_hmac_sign(s, h1, (const uint8_t *)"x", 1, mac));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* Initialise the module under a configuration of its own (name) whose cache trusts what it
 * holds for STALENESS_MS; a user session. */
static CK_SESSION_HANDLE start_with_staleness(const char *name)
{
    char extra[128];
    snprintf(extra, sizeof(extra), "[cache]\nstaleness_ms = %d\n", STALENESS_MS);
    p11_write_conf(name, NULL, extra);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    return p11_open_user();
}

static void test_perf_find__a_rotation_reaches_finds_through_its_notify(void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = start_with_staleness("perf_find_notify");
    char label[128];
    snprintf(label, sizeof(label), "%s/%s", VEC_A_ID, VEC_A_PATH);
    CK_OBJECT_HANDLE h1 = find_one(s, label);
    CK_ULONG c0 = counter_of(s, h1);
    p11_sleep_ms(STALENESS_MS + 200); /* the LISTEN link is up and covers the next read */
    assert_int_equal(find_one(s, label), h1);

    assert_int_equal(p11_ctl("asset rotate %s >/dev/null", VEC_A_ID), 0);
    /* The link covers the record, which is therefore never re-read for its age: only the NOTIFY
     * can tell the module (when it arrives is the machine's business; a module that never hears
     * it runs into ctest's timeout). */
    CK_OBJECT_HANDLE h = h1;
    while (h == h1) {
        p11_sleep_ms(5);
        h = find_one(s, label);
    }
    assert_int_equal(counter_of(s, h), c0 + 1);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_perf_find__a_label_renamed_in_sql_is_trusted_for_the_staleness_bound_only(
    void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = start_with_staleness("perf_find_rename");
    CK_OBJECT_HANDLE h = find_one(s, "vec-b/m/0");
    assert_int_not_equal(h, CK_INVALID_HANDLE);
    assert_int_equal(find_one(s, "vec-b/m/0"), h);

    assert_int_equal(p11_sql_long("WITH u AS (UPDATE custody_keys SET label = 'vec-b-renamed'"
                                  " WHERE label = 'vec-b' RETURNING 1) SELECT count(*) FROM u"),
                     1);
    p11_sleep_ms(STALENESS_MS + 200);
    assert_int_equal(find_one(s, "vec-b/m/0"), CK_INVALID_HANDLE);
    assert_int_equal(find_one(s, "vec-b-renamed/m/0"), h);
    assert_int_equal(p11_sql_long("WITH u AS (UPDATE custody_keys SET label = 'vec-b'"
                                  " WHERE label = 'vec-b-renamed' RETURNING 1)"
                                  " SELECT count(*) FROM u"),
                     1);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static int teardown(void **state)
{
    (void)state;
    if (g_other_dir[0] != '\0') {
        (void)fs_services("stop", g_other_dir);
        g_other_dir[0] = '\0';
    }
    (void)p11->C_Finalize(NULL); /* after a failure midway; else CKR_CRYPTOKI_NOT_INITIALIZED */
    setenv("DDSM_CONF", good_conf, 1);
    return 0;
}

int main(void)
{
    p11_load();
    p11_setup_store();
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_perf_find__records_answer_while_the_listen_link_covers_them),
        T(test_perf_find__a_rotation_reaches_finds_through_its_notify),
        T(test_perf_find__a_label_renamed_in_sql_is_trusted_for_the_staleness_bound_only),
    };
    return cmocka_run_group_tests_name("perf_find", tests, NULL, NULL);
}
