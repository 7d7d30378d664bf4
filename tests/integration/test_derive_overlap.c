/* SPDX-License-Identifier: Apache-2.0 */
/* The HSM's HMAC started ahead of the audit row (module/src/vkey_derive.c): the counter it is
 * started with is the module's record of the asset, a guess; the statement's counter decides.
 *
 * The probe: the module's LISTEN link is pointed at another database of the same server
 * ([store] listen_conninfo), where no NOTIFY of the test's database arrives, so a rotation made
 * through ddsmctl stays unseen by the record until the module's own statement reports it: the
 * next derivation starts its HMAC for the old counter every time, not only when a race allows.
 * The backend is the fault wrapper, whose call log counts the HMACs (C_Sign) the HSM made. */
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
#include "pg_support.h"

static char good_conf[4096], log_path[4096];
static char *drop_elsewhere; /* the statement dropping the LISTEN database */

static const uint8_t msg[] = "overlap";
#define MSG_LEN (sizeof(msg) - 1)

static long derive_rows(const char *path)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND asset_id = '%s' "
             "AND derivation_path = '%s'",
             VEC_A_ID, path);
    return p11_sql_long(sql);
}

static long counter_of_a(void)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT derivation_counter FROM custody_keys WHERE asset_id = '%s'", VEC_A_ID);
    return p11_sql_long(sql);
}

/* h signs as the key of (VEC_A, path, counter) does. */
static void assert_key_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *path,
                          uint64_t counter)
{
    uint8_t key[32], got[32], want[32];
    p11_expected_key(VEC_A_ID, path, counter, key);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, got));
    p11_hmac_raw(key, msg, MSG_LEN, want);
    assert_memory_equal(got, want, 32);
    assert_int_equal(p11_attr_ulong(s, h, CKA_DDSM_COUNTER), counter);
}

/* The HMACs the HSM made for one C_DeriveKey of (VEC_A, path), which must return want. */
static long derive_counting(CK_SESSION_HANDLE s, const char *path, CK_RV want,
                            CK_OBJECT_HANDLE *h)
{
    fs_log_reset();
    *h = CK_INVALID_HANDLE;
    assert_rv(want, p11_derive(s, VEC_A_ID, path, NULL, 0, h));
    return fs_log_count("C_Sign");
}

static void test_derive_overlap__a_rotation_the_record_missed_gives_the_new_counters_key(
    void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h;
    /* The record learns the asset's counter from this derivation's statement. */
    long c0 = counter_of_a();
    assert_int_equal(derive_counting(s, "m/1/1", CKR_OK, &h) >= 1, 1);
    assert_key_of(s, h, "m/1/1", (uint64_t)c0);

    /* A guessed right: one HMAC, started ahead of the row, used. */
    assert_int_equal(derive_counting(s, "m/1/2", CKR_OK, &h), 1);
    assert_key_of(s, h, "m/1/2", (uint64_t)c0);

    /* Rotated behind the record's back: the HMAC started for c0 is wiped and made again for the
     * statement's counter. Never the old counter's key. */
    assert_int_equal(p11_ctl("asset rotate vec-a >/dev/null"), 0);
    assert_int_equal(counter_of_a(), c0 + 1);
    assert_int_equal(derive_counting(s, "m/1/3", CKR_OK, &h), 2);
    assert_key_of(s, h, "m/1/3", (uint64_t)c0 + 1);
    assert_int_equal(derive_rows("m/1/3"), 1);

    /* The statement's answer taught the record: the guess is right again. */
    assert_int_equal(derive_counting(s, "m/1/4", CKR_OK, &h), 1);
    assert_key_of(s, h, "m/1/4", (uint64_t)c0 + 1);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_derive_overlap__a_failed_statement_caches_nothing(void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, "m/2/1", NULL, 0, &h)); /* the record knows A */
    long c = counter_of_a();

    /* The audit statement fails for one path (a trigger raising on its row), after the HMAC for
     * that path was started ahead. */
    PGconn *pg = pgs_connect(pgs_conninfo());
    pgs_exec(pg,
             "CREATE FUNCTION overlap_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "IF NEW.derivation_path = 'm/2/2' THEN RAISE EXCEPTION 'refused by the test'; "
             "END IF; RETURN NEW; END $$",
             0, NULL);
    pgs_exec(pg,
             "CREATE TRIGGER overlap_refuse BEFORE INSERT ON custody_audit_log FOR EACH ROW "
             "EXECUTE FUNCTION overlap_refuse()",
             0, NULL);
    long hmacs = derive_counting(s, "m/2/2", CKR_DEVICE_ERROR, &h);
    assert_int_equal(h, CK_INVALID_HANDLE);
    assert_int_equal(hmacs, 1); /* the key was computed ahead, and then not handed on */
    pgs_exec(pg, "DROP TRIGGER overlap_refuse ON custody_audit_log", 0, NULL);
    pgs_exec(pg, "DROP FUNCTION overlap_refuse()", 0, NULL);
    PQfinish(pg);
    assert_int_equal(derive_rows("m/2/2"), 0);

    /* Nothing was cached: the first use of that key derives it, with its row. A cached key
     * would sign here with no DERIVE row. */
    char label[128];
    snprintf(label, sizeof(label), "%s/m/2/2", VEC_A_ID);
    CK_OBJECT_HANDLE found = p11_find_label(s, label);
    assert_key_of(s, found, "m/2/2", (uint64_t)c);
    assert_int_equal(derive_rows("m/2/2"), 1);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static int setup(void **state)
{
    (void)state;
    snprintf(log_path, sizeof(log_path), "%s/fault.log", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_LOG", log_path, 1);
    unsetenv("DDSM_FAULT_CTL");
    PGconn *pg = pgs_connect(pgs_conninfo());
    char elsewhere[4096], extra[4096 + 64];
    drop_elsewhere = pgs_fresh_db(pg, "elsewhere", elsewhere, sizeof(elsewhere));
    PQfinish(pg);
    /* The LISTEN connection reads the database it listens on: give it the schema. */
    ddsm_store *st = NULL;
    assert_int_equal(ddsm_store_open(elsewhere, NULL, &st), DDSM_OK);
    if (ddsm_store_migrate(st, NULL) != DDSM_OK)
        fail_msg("migrate the LISTEN database: %s", ddsm_store_errmsg(st));
    ddsm_store_close(st);
    snprintf(extra, sizeof(extra), "listen_conninfo = %s\n", elsewhere);
    fs_write_conf("overlap", getenv("DDSM_FAULTP11"), NULL, NULL, extra);
    return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
    setenv("DDSM_CONF", good_conf, 1);
    PGconn *pg = pgs_connect(pgs_conninfo());
    pgs_exec(pg, drop_elsewhere, 0, NULL);
    PQfinish(pg);
    free(drop_elsewhere);
    drop_elsewhere = NULL;
    return rc;
}

int main(void)
{
    p11_load();
    p11_setup_store();
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_derive_overlap__a_rotation_the_record_missed_gives_the_new_counters_key),
        T(test_derive_overlap__a_failed_statement_caches_nothing),
    };
    return cmocka_run_group_tests_name("derive_overlap", tests, NULL, NULL);
}
