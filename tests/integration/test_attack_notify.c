/* SPDX-License-Identifier: Apache-2.0 */
/* Attack: any role that can connect to the database may NOTIFY on the module's channels
 * (PostgreSQL does not restrict NOTIFY), so a payload is a hint, never a fact. A role with nothing
 * but LOGIN forges "retired" and "zone off" notifications and floods the channels; the running
 * module keeps finding and using the keys the store holds, the flood costs a bounded number of
 * store reads (counted by the module's own metrics), and a real rotation through ddsmctl still
 * kills the old handle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"
#include "pg_support.h"

/* The module's bound on the store reads that notifications cause (module/src/ctx.c). */
#define HINT_READ_BURST 64
#define HINT_READS_PER_S 64

static const uint8_t msg[] = "forged";
#define MSG_LEN (sizeof(msg) - 1)

static char metrics_file[4096];
static char forger_conninfo[4096];

/* A counter or gauge of the module's metrics textfile; -1 when the file or series is absent. */
static long long metric(const char *name)
{
    FILE *f = fopen(metrics_file, "r");
    if (f == NULL)
        return -1;
    char line[1024];
    long long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == '{') {
            const char *sp = strrchr(line, ' ');
            if (sp != NULL)
                v = strtoll(sp + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Wait (at most 20 s; the waits are not what is tested) until metric name reaches at least v. */
static bool wait_metric(const char *name, long long v)
{
    for (int i = 0; i < 2000; i++) {
        if (metric(name) >= v)
            return true;
        p11_sleep_ms(10);
    }
    return false;
}

static void forge(const char *sql)
{
    PGconn *c = pgs_connect(forger_conninfo);
    pgs_exec(c, sql, 0, NULL);
    PQfinish(c);
}

static void assert_still_usable(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const uint8_t key[32])
{
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, got));
    p11_hmac_raw(key, msg, MSG_LEN, want);
    assert_memory_equal(got, want, 32);
    /* Found again by label, at the counter and state the store holds. */
    CK_OBJECT_HANDLE again = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_int_equal(again, h);
    assert_int_equal(p11_attr_ulong(s, h, CKA_DDSM_COUNTER), 0);
    assert_int_equal(p11_attr_ulong(s, h, CKA_DDSM_STATE), CK_DDSM_STATE_ACTIVE);
    CK_OBJECT_HANDLE d = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &d));
    assert_int_equal(d, h);
}

static CK_SESSION_HANDLE start(CK_OBJECT_HANDLE *h, uint8_t k0[32])
{
    p11_unhex(VEC_A_KEY0, k0, 32);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    *h = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_still_usable(s, *h, k0);
    assert_true(wait_metric("ddsm_store_listen_up", 1));
    return s;
}

static void test_attack_notify__forged_retire_and_zone_off_change_nothing(void **state)
{
    uint8_t k0[32];
    CK_OBJECT_HANDLE h;
    CK_SESSION_HANDLE s = start(&h, k0);
    long long hints0 = metric("ddsm_notify_hints_total");

    forge("NOTIFY ddsm_asset, '" VEC_A_ID " 999999 RETIRED'");
    forge("NOTIFY ddsm_zone, '" VEC_A_ID " off default'");
    forge("NOTIFY ddsm_asset, '" VEC_A_ID " 0 INITIALIZED'");
    /* Until the module has taken them in (old code: no such metric; the wait just ends). */
    bool heard = wait_metric("ddsm_notify_hints_total", (hints0 < 0 ? 0 : hints0) + 3);
    assert_still_usable(s, h, k0);
    assert_true(heard);
    /* The store was asked, not believed: at least the re-read of the named asset happened. */
    assert_true(metric("ddsm_notify_rereads_total") >= 1);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_keys WHERE asset_id = '" VEC_A_ID
                                  "' AND state = 'ACTIVE' AND derivation_counter = 0"),
                     1);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

#define FLOOD 3000

static void test_attack_notify__a_flood_costs_a_bounded_number_of_store_reads(void **state)
{
    uint8_t k0[32];
    CK_OBJECT_HANDLE h;
    CK_SESSION_HANDLE s = start(&h, k0);
    long long hints0 = metric("ddsm_notify_hints_total");
    long long reads0 = metric("ddsm_notify_rereads_total");
    assert_true(hints0 >= 0 && reads0 >= 0);

    long long t0 = pgs_now_ms();
    /* Distinct payloads (PostgreSQL folds identical ones within a transaction), in one commit and
     * in separate ones, for a known asset, its zone, and assets this process never saw. */
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT pg_notify('ddsm_asset', '" VEC_A_ID " ' || i || ' RETIRED'),"
             "       pg_notify('ddsm_zone', '" VEC_A_ID " off z' || i),"
             "       pg_notify('ddsm_asset', lpad(to_hex(i), 8, '0') || "
             "'-0000-4000-8000-000000000000 1 RETIRED')"
             "  FROM generate_series(1, %d) i",
             FLOOD / 3);
    forge(sql);
    PGconn *c = pgs_connect(forger_conninfo);
    for (int i = 0; i < 100; i++) {
        char one[256];
        snprintf(one, sizeof(one), "NOTIFY ddsm_asset, '" VEC_A_ID " %d RETIRED'", 5000 + i);
        pgs_exec(c, one, 0, NULL);
    }
    PQfinish(c);
    bool heard = wait_metric("ddsm_notify_hints_total", hints0 + FLOOD + 100);
    /* Every hint is counted before its reads: one more writer round settles them. */
    long long writes = metric("ddsm_metrics_writes_total");
    assert_true(wait_metric("ddsm_metrics_writes_total", writes + 2));
    long long t1 = pgs_now_ms();
    assert_true(heard);

    long long reads = metric("ddsm_notify_rereads_total") - reads0;
    long long bound = HINT_READ_BURST + HINT_READS_PER_S * ((t1 - t0) / 1000 + 1);
    print_message("%d forged notifications cost %lld store reads (bound %lld over %lld ms)\n",
                  FLOOD + 100, reads, bound, t1 - t0);
    assert_true(reads <= bound);
    assert_true(reads < FLOOD);
    assert_still_usable(s, h, k0);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_attack_notify__a_real_rotation_still_kills_the_old_handle(void **state)
{
    uint8_t k0[32], k1[32];
    CK_OBJECT_HANDLE h;
    CK_SESSION_HANDLE s = start(&h, k0);
    p11_unhex(VEC_A_KEY1, k1, 32);
    /* A forged hint first, then the real rotation among more forged ones. */
    forge("NOTIFY ddsm_asset, '" VEC_A_ID " 0 ACTIVE'");
    assert_int_equal(p11_ctl("asset rotate vec-a >/dev/null"), 0);
    forge("NOTIFY ddsm_asset, '" VEC_A_ID " 0 ACTIVE'");
    uint8_t sig[32];
    CK_RV rv = CKR_OK;
    for (int i = 0; i < 500 && rv == CKR_OK; i++) {
        rv = p11_hmac_sign(s, h, msg, MSG_LEN, sig);
        if (rv == CKR_OK)
            p11_sleep_ms(10);
    }
    assert_rv(CKR_KEY_HANDLE_INVALID, rv);
    CK_OBJECT_HANDLE h1 = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_int_not_equal(h1, h);
    assert_int_equal(p11_attr_ulong(s, h1, CKA_DDSM_COUNTER), 1);
    uint8_t want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h1, msg, MSG_LEN, sig));
    p11_hmac_raw(k1, msg, MSG_LEN, want);
    assert_memory_equal(sig, want, 32);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

int main(void)
{
    p11_load();
    const char *dir = getenv("DDSM_TEST_DIR");
    assert_non_null(dir);
    snprintf(metrics_file, sizeof(metrics_file), "%s/notify.prom", dir);
    char extra[4400];
    snprintf(extra, sizeof(extra), "[metrics]\ntextfile = %s\ninterval_ms = 100\n", metrics_file);
    p11_write_conf("notify", NULL, extra);
    p11_setup_store();
    /* A role that can connect and nothing more. */
    PGconn *su = pgs_connect(pgs_conninfo());
    pgs_exec(su, "DROP ROLE IF EXISTS ddsm_forger", 0, NULL);
    pgs_exec(su, "CREATE ROLE ddsm_forger LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE", 0, NULL);
    /* The migrations take CONNECT from PUBLIC; a deployment lets its own roles connect, and any
     * of them can NOTIFY: the forger is one of those, with nothing else. */
    pgs_exec(su,
             "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO ddsm_forger',"
             " current_database()); END $$",
             0, NULL);
    PQfinish(su);
    snprintf(forger_conninfo, sizeof(forger_conninfo), "%s user=ddsm_forger", pgs_conninfo());

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_attack_notify__forged_retire_and_zone_off_change_nothing, p11_finalize_teardown),
        cmocka_unit_test_teardown(test_attack_notify__a_flood_costs_a_bounded_number_of_store_reads, p11_finalize_teardown),
        cmocka_unit_test_teardown(test_attack_notify__a_real_rotation_still_kills_the_old_handle, p11_finalize_teardown),
    };
    return cmocka_run_group_tests_name("attack_notify", tests, NULL, NULL);
}
