/* SPDX-License-Identifier: Apache-2.0 */
/* A logged-in caller provoking refusals at will (derivations of random, unregistered UUIDs; paths
 * the policy refuses) cannot flood the audit log: their DENY rows go through a per-process bucket
 * ([policy] deny_burst, deny_per_minute). The refusals themselves are unchanged, and refusals of
 * registered assets (a retired one) are not limited. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"

static CK_SESSION_HANDLE s;
static char good_conf[4096];

static void start(const char *name, const char *extra)
{
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
    p11_write_conf(name, NULL, extra);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();
}

static int teardown(void **state)
{
    setenv("DDSM_CONF", good_conf, 1);
    return p11_end_session(s);
}

static long denies(const char *like)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' AND detail LIKE '%s'",
             like);
    return p11_sql_long(sql);
}

/* A distinct, never registered UUID per i. */
static void random_uuid(unsigned i, char out[37])
{
    snprintf(out, 37, "d0d0d0d0-%04x-4000-8000-%012x", i & 0xffffu, i * 2654435761u);
}

static void test_deny__unknown_assets_and_refused_paths_cannot_flood_the_log(void **state)
{
    start("flood", "[policy]\ndeny_burst = 5\ndeny_per_minute = 0\n"
                   "path_pattern = m/44'/*'/*'/*/*\n");
    long unknown0 = denies("no such asset%"), path0 = denies("path refused%");
    CK_OBJECT_HANDLE h = 0;
    char id[37];
    for (unsigned i = 0; i < 300; i++) {
        random_uuid(i, id);
        assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, id, "m/44'/0'/0'/0/0", NULL, 0, &h));
    }
    for (unsigned i = 0; i < 20; i++)
        assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_A_ID, "m/0", NULL, 0, &h));
    assert_int_equal(h, 0);
    /* 320 refusals, 5 rows: the bucket, never refilled here. */
    assert_int_equal(denies("no such asset%") - unknown0 + denies("path refused%") - path0, 5);
    /* A refusal of a registered asset is the store's own row: not limited. */
    long others = denies("%") ;
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11_derive(s, RETIRED_ID, "m/44'/0'/0'/0/0", NULL, 0,
                                                          &h));
    assert_int_equal(denies("%"), others + 1);
    /* Derivations go on. */
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
}

/* Every refusal is accounted for: either its own row, or counted in the next row written. */
static void test_deny__rows_left_out_are_counted_in_the_next_row(void **state)
{
    start("account", "[policy]\ndeny_burst = 1\ndeny_per_minute = 600\n");
    const char *mentioned = "SELECT coalesce(sum(substring(detail from 'and ([0-9]+) such "
                            "refusals')::bigint), 0) FROM custody_audit_log WHERE event = 'DENY' "
                            "AND detail LIKE 'no such asset%'";
    long rows0 = denies("no such asset%"), mentioned0 = p11_sql_long(mentioned);
    CK_OBJECT_HANDLE h = 0;
    char id[37];
    unsigned attempts = 0;
    /* A burst, then more until the last attempt wrote a row (the bucket refills at 10/s; the
     * bound on attempts only stops a broken module). */
    for (; attempts < 50; attempts++) {
        random_uuid(1000 + attempts, id);
        assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, id, "m/0", NULL, 0, &h));
    }
    for (;;) {
        long before = denies("no such asset%");
        random_uuid(1000 + attempts, id);
        assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, id, "m/0", NULL, 0, &h));
        attempts++;
        if (denies("no such asset%") > before)
            break;
        if (attempts > 5000)
            fail_msg("no DENY row written in %u attempts", attempts);
        p11_sleep_ms(20);
    }
    long rows = denies("no such asset%") - rows0;
    long counted = p11_sql_long(mentioned) - mentioned0;
    assert_int_equal(rows + counted, attempts);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_deny__unknown_assets_and_refused_paths_cannot_flood_the_log, teardown),
        cmocka_unit_test_teardown(test_deny__rows_left_out_are_counted_in_the_next_row,
                                  teardown),
    };
    return cmocka_run_group_tests_name("deny_flood", tests, NULL, NULL);
}
