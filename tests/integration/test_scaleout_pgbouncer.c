/* SPDX-License-Identifier: Apache-2.0 */
/* Scale-out: the module's hot path through PgBouncer in transaction pooling mode
 * (Debian's pgbouncer, started here by scripts/lib/pgbouncer with fewer server connections than
 * the module has clients, so that consecutive transactions of one client run on different server
 * connections), with the LISTEN connection going direct ([store] listen_conninfo) and
 * [store] transaction_pooler = true.
 *
 * 8 threads derive (C_DeriveKey) and sign (found keys) through it; ddsmctl rotates through it; the
 * stale handle is refused at once (the NOTIFY arrives on the direct LISTEN link) and the new key
 * signs with the counter-1 key; every derivation has its audit row, PgBouncer did carry the
 * traffic, and `ddsmctl audit verify` passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "p11_support.h"
#include "pg_support.h"

#define THREADS 8
#define ROUNDS 40

static char g_pgb_dir[2048];
static char g_pgb_conninfo[1024]; /* through PgBouncer, this test's database */
static char g_pgb_admin[1024];    /* PgBouncer's admin console */
static char g_conf[4096];

static void run_or_fail(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("%s: exit status %d", cmd, rc);
}

static int start_pgbouncer(void **state)
{
    char cmd[8192], base[256] = "";
    const char *dir = getenv("DDSM_TEST_DIR"), *src = getenv("DDSM_SOURCE_DIR");
    snprintf(g_pgb_dir, sizeof(g_pgb_dir), "%s/pgbouncer", dir);
    snprintf(cmd, sizeof(cmd), "'%s/scripts/lib/pgbouncer' start '%s' '%s' '%s' 2", src, g_pgb_dir,
             getenv("PGHOST"), getenv("PGPORT"));
    run_or_fail(cmd);
    snprintf(cmd, sizeof(cmd), "%s/conninfo", g_pgb_dir);
    FILE *f = fopen(cmd, "r");
    if (f == NULL || fgets(base, sizeof(base), f) == NULL)
        return -1;
    fclose(f);
    base[strcspn(base, "\n")] = '\0';
    snprintf(g_pgb_conninfo, sizeof(g_pgb_conninfo), "%s user=postgres dbname=%s", base,
             getenv("PGDATABASE"));
    snprintf(g_pgb_admin, sizeof(g_pgb_admin), "%s user=postgres dbname=pgbouncer", base);

    /* The hot path through PgBouncer, LISTEN direct. */
    char extra[2048];
    snprintf(extra, sizeof(extra),
             "[store]\nlisten_conninfo = %s\ntransaction_pooler = true\npool_size = 6\n",
             getenv("DDSM_TEST_CONNINFO"));
    snprintf(g_conf, sizeof(g_conf), "%s", p11_write_conf("pgbouncer", g_pgb_conninfo, extra));
    return 0;
}

static int stop_pgbouncer(void **state)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/lib/pgbouncer' stop '%s'", getenv("DDSM_SOURCE_DIR"),
             g_pgb_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* PgBouncer's count of transactions it carried for this test's database. */
static long long pgbouncer_transactions(void)
{
    PGconn *c = PQconnectdb(g_pgb_admin);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("PgBouncer admin console: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SHOW STATS");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("SHOW STATS: %s", PQerrorMessage(c));
    int db = PQfnumber(r, "database"), xact = PQfnumber(r, "total_xact_count");
    long long n = 0; /* no row until a client used the database */
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, db), getenv("PGDATABASE")) == 0)
            n = strtoll(PQgetvalue(r, i, xact), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

struct worker {
    pthread_t t;
    int id;
    int derived, signed_ok;
    CK_RV failure;
    char where[128];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK_RV rv = p11->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    for (int i = 0; rv == CKR_OK && i < ROUNDS; i++) {
        /* A fresh path every round: a derivation, its audit row, through PgBouncer. */
        char path[64];
        snprintf(path, sizeof(path), "m/%d/%d", w->id, i);
        CK_OBJECT_HANDLE h = 0;
        rv = p11_derive(s, VEC_A_ID, path, NULL, 0, &h);
        if (rv != CKR_OK) {
            snprintf(w->where, sizeof(w->where), "C_DeriveKey %s", path);
            break;
        }
        w->derived++;
        uint8_t sig[32], want[32];
        CK_ULONG n = sizeof(sig);
        if ((rv = p11->C_SignInit(s, &hmac, h)) != CKR_OK ||
            (rv = p11->C_Sign(s, (CK_BYTE_PTR) "pool", 4, sig, &n)) != CKR_OK) {
            snprintf(w->where, sizeof(w->where), "C_Sign %s", path);
            break;
        }
        uint8_t key[32];
        p11_expected_key(VEC_A_ID, path, 0, key);
        p11_hmac_raw(key, (const uint8_t *)"pool", 4, want);
        if (memcmp(sig, want, 32) != 0) {
            rv = CKR_GENERAL_ERROR;
            snprintf(w->where, sizeof(w->where), "wrong MAC for %s", path);
            break;
        }
        w->signed_ok++;
    }
    w->failure = rv;
    if (s != CK_INVALID_HANDLE)
        (void)p11->C_CloseSession(s);
    return NULL;
}

static void test_scaleout__derive_sign_and_rotate_through_pgbouncer(void **state)
{
    long audit_before = p11_audit_count();
    long long xact_before = pgbouncer_transactions();
    assert_true(xact_before >= 0);

    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user(); /* the login holds for every session */
    struct worker w[THREADS];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < THREADS; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&w[i].t, NULL, work, &w[i]), 0);
    }
    int derived = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].t, NULL);
        if (w[i].failure != CKR_OK)
            fail_msg("thread %d: %s: %s", i, w[i].where, ddsm_rv_name(w[i].failure));
        assert_int_equal(w[i].signed_ok, ROUNDS);
        derived += w[i].derived;
    }
    /* Every derivation has its row (and a few DENY-free extras: none expected). */
    assert_int_equal(p11_audit_count() - audit_before, derived);
    /* Group commit puts concurrent rows in one statement; each thread waits for its own. */
    assert_true(pgbouncer_transactions() - xact_before >= ROUNDS);

    /* A rotation by ddsmctl through PgBouncer reaches the module by the direct LISTEN link. */
    CK_OBJECT_HANDLE old = p11_find_label(s, "vec-b/" VEC_B_PATH);
    uint8_t sig[32], want[32], key[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, old, (const uint8_t *)"b", 1, sig));
    assert_int_equal(p11_ctl("asset rotate vec-b >/dev/null"), 0);
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK_RV rv = CKR_OK;
    long long t0 = pgs_now_ms();
    /* Until the NOTIFY arrives (when is the machine's business: printed, not asserted; a module
     * that never hears it runs into ctest's timeout). */
    while ((rv = p11->C_SignInit(s, &hmac, old)) == CKR_OK) {
        CK_ULONG n = sizeof(sig);
        assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR) "b", 1, sig, &n));
        p11_sleep_ms(20);
    }
    assert_rv(CKR_KEY_HANDLE_INVALID, rv);
    print_message("stale handle refused %lld ms after the rotation returned\n", pgs_now_ms() - t0);
    CK_OBJECT_HANDLE fresh = p11_find_label(s, "vec-b/" VEC_B_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(s, fresh, (const uint8_t *)"b", 1, sig));
    p11_expected_key(VEC_B_ID, VEC_B_PATH, 1, key);
    p11_hmac_raw(key, (const uint8_t *)"b", 1, want);
    assert_memory_equal(sig, want, 32);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));

    /* The chains verify (ddsmctl through PgBouncer too). */
    assert_int_equal(p11_ctl("audit verify >/dev/null"), 0);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scaleout__derive_sign_and_rotate_through_pgbouncer),
    };
    return cmocka_run_group_tests_name("scale-out through PgBouncer", tests, start_pgbouncer,
                                       stop_pgbouncer);
}
