/* SPDX-License-Identifier: Apache-2.0 */
/* Rotation and retirement reach a running module: `ddsmctl asset rotate` in another process, the
 * old handle fails within the staleness bound (at once with the LISTEN link, within
 * cache.staleness_ms without it), a fresh find gives the new counter and the new key; during a
 * grace window the old key verifies but does not sign. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11_support.h"

static CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
static const uint8_t msg[] = "rotate me";
#define MSG_LEN (sizeof(msg) - 1)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sign with h until the module refuses (no deadline: a module that never refuses runs into
 * ctest's timeout); returns the refusal, how long it took, and when (from the start) the last
 * signature that still succeeded had been asked for. */
static CK_RV sign_until_refused(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, double *took,
                                double *last_ok_asked)
{
    double t0 = now_s();
    uint8_t sig[32];
    CK_RV rv;
    *last_ok_asked = -1;
    for (;;) {
        double asked = now_s() - t0;
        if ((rv = p11_hmac_sign(s, h, msg, MSG_LEN, sig)) != CKR_OK)
            break;
        *last_ok_asked = asked;
        p11_sleep_ms(10);
    }
    *took = now_s() - t0;
    return rv;
}

static void assert_signs_with(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const uint8_t key[32])
{
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, got));
    p11_hmac_raw(key, msg, MSG_LEN, want);
    assert_memory_equal(got, want, 32);
}

static void test_rotation__old_handle_dies_and_a_fresh_find_gives_the_new_key(void **state)
{
    uint8_t k0[32], k1[32];
    p11_unhex(VEC_A_KEY0, k0, 32);
    p11_unhex(VEC_A_KEY1, k1, 32);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user(), s2 = p11_open_user();
    CK_OBJECT_HANDLE h0 = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_signs_with(s, h0, k0);
    /* An operation started before the rotation must not finish with the old key. */
    assert_rv(CKR_OK, p11->C_SignInit(s2, &hmac, h0));
    assert_rv(CKR_OK, p11->C_SignUpdate(s2, (CK_BYTE_PTR)msg, MSG_LEN));

    assert_int_equal(p11_ctl("asset rotate vec-a >/dev/null"), 0);
    double took = 0, last_ok = 0;
    /* When the NOTIFY arrives is the machine's business: shown, not asserted. */
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_until_refused(s, h0, &took, &last_ok));
    print_message("old handle refused %.3f s after the rotation returned\n", took);

    uint8_t sig[32];
    CK_ULONG len = sizeof(sig);
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_SignFinal(s2, sig, &len));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_SignFinal(s2, sig, &len));
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_VerifyInit(s, &hmac, h0));
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetAttributeValue(s, h0, &a, 1));

    CK_OBJECT_HANDLE h1 = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH_ALT);
    assert_int_not_equal(h1, h0);
    assert_int_equal(p11_attr_ulong(s, h1, CKA_DDSM_COUNTER), 1);
    assert_signs_with(s, h1, k1);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'"
                                  " AND asset_id = '" VEC_A_ID "' AND counter = 1"),
                     1);
    /* C_DeriveKey now derives the new counter too. */
    CK_OBJECT_HANDLE d;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &d));
    assert_int_equal(d, h1);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_rotation__grace_window_keys_verify_but_do_not_sign(void **state)
{
    uint8_t k0[32], k1[32];
    p11_unhex(VEC_B_KEY0, k0, 32);
    p11_expected_key(VEC_B_ID, VEC_B_PATH, 1, k1);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h0 = p11_find_label(s, "vec-b/m/0");
    assert_signs_with(s, h0, k0);

    assert_int_equal(p11_ctl("asset rotate vec-b --grace 1h >/dev/null"), 0);
    double t0 = now_s();
    CK_RV rv;
    (void)t0; /* until refused: when the NOTIFY arrives is the machine's business */
    while ((rv = p11->C_SignInit(s, &hmac, h0)) == CKR_OK) {
        uint8_t sig[32];
        CK_ULONG len = sizeof(sig);
        assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
        p11_sleep_ms(10);
    }
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, rv);

    uint8_t sig0[32];
    p11_hmac_raw(k0, msg, MSG_LEN, sig0);
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, h0));
    assert_rv(CKR_OK, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig0, 32));
    assert_int_equal(p11_attr_ulong(s, h0, CKA_DDSM_STATE), CK_DDSM_STATE_ROTATING);

    CK_OBJECT_HANDLE h1 = p11_find_label(s, "vec-b/m/0");
    assert_int_not_equal(h1, h0);
    assert_int_equal(p11_attr_ulong(s, h1, CKA_DDSM_COUNTER), 1);
    assert_signs_with(s, h1, k1);

    /* Retirement ends everything, grace or not. */
    assert_int_equal(p11_ctl("asset retire vec-b >/dev/null"), 0);
    double took = 0, last_ok = 0;
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_until_refused(s, h1, &took, &last_ok));
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_VerifyInit(s, &hmac, h0));
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetAttributeValue(s, h1, &a, 1));
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "vec-b/m/0", 9}};
    CK_OBJECT_HANDLE found[4];
    assert_int_equal(p11_find(s, t, 1, found, 4), 0);
    CK_OBJECT_HANDLE d = 0;
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11_derive(s, VEC_B_ID, "m/0", NULL, 0, &d));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_rotation__without_the_listener_the_staleness_bound_applies(void **state)
{
    /* No thread may be created: no LISTEN link, so cached state is re-validated once it is older
     * than cache.staleness_ms (default 1000 ms). */
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK;
    uint8_t k1[32];
    assert_int_equal(p11_ctl("asset register --label stale --id 44444444-5555-4666-8777-"
                             "888888888888 --default-path m/7 >/dev/null"),
                     0);
    assert_int_equal(p11_ctl("asset activate stale >/dev/null"), 0);
    assert_rv(CKR_OK, p11->C_Initialize(&args));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h0 = p11_find_label(s, "stale/m/7");
    uint8_t sig[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h0, msg, MSG_LEN, sig));
    assert_int_equal(p11_ctl("asset rotate stale >/dev/null"), 0);
    double took = 0, last_ok = 0;
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_until_refused(s, h0, &took, &last_ok));
    print_message("without LISTEN: old handle refused after %.3f s\n", took);
    /* The key was validated before the rotation returned, so a signature asked for a staleness
     * bound (1 s) after that is re-validated first and refused: no old-key signature was asked
     * for later than that (measured from before each call, so no scheduling slack is needed). */
    assert_true(last_ok < 1.0);
    CK_OBJECT_HANDLE h1 = p11_find_label(s, "stale/m/7");
    p11_expected_key("44444444-5555-4666-8777-888888888888", "m/7", 1, k1);
    assert_signs_with(s, h1, k1);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation__old_handle_dies_and_a_fresh_find_gives_the_new_key),
        cmocka_unit_test(test_rotation__grace_window_keys_verify_but_do_not_sign),
        cmocka_unit_test(test_rotation__without_the_listener_the_staleness_bound_applies),
    };
    return cmocka_run_group_tests_name("rotation", tests, NULL, NULL);
}
