/* SPDX-License-Identifier: Apache-2.0 */
/* The CK_RV mapping when PostgreSQL cannot be reached (a conninfo pointing at a closed port; the
 * stop/restart behaviour of the store itself is tested by the store's own tests): derivation fails
 * closed with CKR_DEVICE_ERROR and ulDeviceError DDSM_DEVERR_STORE_DOWN, a find that needs the
 * store fails at C_FindObjectsInit and leaves nothing active, finds that do not need it still
 * work, and nothing but the store is affected. */
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

static int setup(void **state)
{
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
    /* Port 1 on localhost: connection refused at once. */
    p11_write_conf("down", "host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=2",
                   NULL);
    return p11_start_user_session(&s);
}

static int teardown(void **state)
{
    setenv("DDSM_CONF", good_conf, 1);
    return p11_end_session(s);
}

static CK_ULONG device_error(void)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.ulDeviceError;
}

static void test_store_down__derive_fails_closed_with_the_detail_code(void **state)
{
    assert_int_equal(device_error(), 0);
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_DEVICE_ERROR, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(device_error(), DDSM_DEVERR_STORE_DOWN);
    /* Bad input is still reported as such, before the store is needed. */
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, VEC_A_ID, "m/01", NULL, 0, &h));
}

static void test_store_down__find_fails_at_init_and_leaves_nothing_active(void **state)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG got = 0;
    assert_rv(CKR_DEVICE_ERROR, p11->C_FindObjectsInit(s, NULL, 0));
    assert_int_equal(device_error(), DDSM_DEVERR_STORE_DOWN);
    /* No operation is left (neither ours nor the backend's): a client that never calls
     * C_FindObjectsFinal after an error is not wedged. */
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_FindObjects(s, h, 64, &got));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_FindObjectsFinal(s));
    assert_rv(CKR_DEVICE_ERROR, p11->C_FindObjectsInit(s, NULL, 0));
    /* A class-only template lists virtual objects too: it needs the store as well. */
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
    CK_ATTRIBUTE ts[] = {{CKA_CLASS, &sec, sizeof(sec)}};
    assert_rv(CKR_DEVICE_ERROR, p11->C_FindObjectsInit(s, ts, 1));
    /* A template only backend objects can match needs no store. */
    CK_OBJECT_CLASS cert = CKO_CERTIFICATE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cert, sizeof(cert)}};
    assert_int_equal(p11_find(s, t, 1, h, 64), 0);
}

static void test_store_down__the_rest_of_the_module_still_works(void **state)
{
    CK_OBJECT_HANDLE root = p11_root(s);
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &m, root));
    CK_BYTE rnd[16];
    assert_rv(CKR_OK, p11->C_GenerateRandom(s, rnd, sizeof(rnd)));
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_store_down__derive_fails_closed_with_the_detail_code),
        T(test_store_down__find_fails_at_init_and_leaves_nothing_active),
        T(test_store_down__the_rest_of_the_module_still_works),
    };
    return cmocka_run_group_tests_name("store_down", tests, NULL, NULL);
}
