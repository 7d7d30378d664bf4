/* SPDX-License-Identifier: Apache-2.0 */
/* Signing and verifying with virtual keys: the known vector through a label-found key, the
 * standard's output-size protocol and termination rules, multi-part operations,
 * CKM_SHA256_HMAC_GENERAL, and every refusal. */
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
static CK_OBJECT_HANDLE ka; /* vec-a, found by label */
static CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
static const uint8_t msg[] = "attack at dawn";
#define MSG_LEN (sizeof(msg) - 1)

static int setup(void **state)
{
    if (p11_start_user_session(&s) != 0)
        return -1;
    ka = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    return 0;
}

static int teardown(void **state)
{
    return p11_end_session(s);
}

static void expected(uint8_t out[32])
{
    p11_hmac_expected(VEC_A_KEY0, msg, MSG_LEN, out);
}

static void test_sign__label_found_key_matches_the_design_vector(void **state)
{
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, ka, msg, MSG_LEN, got));
    expected(want);
    assert_memory_equal(got, want, 32);
    CK_OBJECT_HANDLE kb = p11_find_label(s, "vec-b/m/0");
    assert_rv(CKR_OK, p11_hmac_sign(s, kb, msg, MSG_LEN, got));
    p11_hmac_expected(VEC_B_KEY0, msg, MSG_LEN, want);
    assert_memory_equal(got, want, 32);
}

static void test_sign__length_query_and_short_buffer_keep_the_operation(void **state)
{
    uint8_t sig[32], want[32];
    CK_ULONG len = 0;
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, NULL, &len));
    assert_int_equal(len, 32);
    len = 31;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    assert_int_equal(len, 32);
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    expected(want);
    assert_memory_equal(sig, want, 32);
    /* Success ended the operation. */
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
}

static void test_sign__bad_arguments_end_the_operation(void **state)
{
    uint8_t sig[32];
    CK_ULONG len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, NULL));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Sign(s, NULL, 5, sig, &len));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_SignFinal(s, sig, &len));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_SignInit(s, NULL, ka));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_SignInit(s + 50, &hmac, ka));
}

static void test_sign__second_init_is_operation_active(void **state)
{
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_SignInit(s, &hmac, ka));
    /* The root stays refused whatever the session's state. */
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &hmac, p11_root(s)));
    /* A different kind of operation may run at the same time. */
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
}

static void test_sign__multi_part_equals_single_part(void **state)
{
    uint8_t sig[32], want[32];
    CK_ULONG len = 0;
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg, 6));
    assert_rv(CKR_OK, p11->C_SignUpdate(s, NULL, 0));
    assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg + 6, MSG_LEN - 6));
    /* Single-part C_Sign cannot finish a multi-part operation: refused, which ends it. */
    len = sizeof(sig);
    assert_rv(CKR_OPERATION_NOT_INITIALIZED,
              p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_SignFinal(s, NULL, &len));
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg, MSG_LEN));
    assert_rv(CKR_OK, p11->C_SignFinal(s, NULL, &len));
    assert_int_equal(len, 32);
    len = 8;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_SignFinal(s, sig, &len));
    assert_int_equal(len, 32);
    assert_rv(CKR_OK, p11->C_SignFinal(s, sig, &len));
    expected(want);
    assert_memory_equal(sig, want, 32);
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_SignFinal(s, sig, &len));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg, 1));
    /* SignFinal without any update: the MAC of nothing. */
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignFinal(s, sig, &len));
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"", 0, want);
    assert_memory_equal(sig, want, 32);
}

static void test_sign__hmac_general_truncates(void **state)
{
    CK_ULONG n = 16;
    CK_MECHANISM general = {CKM_SHA256_HMAC_GENERAL, &n, sizeof(n)};
    uint8_t sig[32], want[32];
    CK_ULONG len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, &general, ka));
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    assert_int_equal(len, 16);
    expected(want);
    assert_memory_equal(sig, want, 16);
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &general, ka));
    assert_rv(CKR_OK, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, want, 16));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &general, ka));
    assert_rv(CKR_SIGNATURE_LEN_RANGE, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, want, 32));

    CK_ULONG bad_values[] = {0, 33, 1000};
    for (size_t i = 0; i < 3; i++) {
        n = bad_values[i];
        assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &general, ka));
    }
    n = 16;
    general.ulParameterLen = 4;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &general, ka));
    general.pParameter = NULL;
    general.ulParameterLen = sizeof(n);
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &general, ka));
    CK_MECHANISM with_param = {CKM_SHA256_HMAC, &n, sizeof(n)};
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &with_param, ka));
}

static void test_sign__other_mechanisms_and_key_types_are_refused(void **state)
{
    CK_MECHANISM sha1 = {CKM_SHA_1_HMAC, NULL, 0}, ecdsa = {CKM_ECDSA, NULL, 0};
    assert_rv(CKR_MECHANISM_INVALID, p11->C_SignInit(s, &sha1, ka));
    /* An EC mechanism the module has, on a secret key (test_module_ec_sign.c covers the rest). */
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &ecdsa, ka));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_VerifyInit(s, &sha1, ka));
    CK_OBJECT_HANDLE aes = p11_find_label(s, "aes-a/m/1");
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &hmac, aes));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignRecoverInit(s, &hmac, ka));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_VerifyRecoverInit(s, &hmac, ka));
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
    assert_rv(CKR_KEY_INDIGESTIBLE, p11->C_DigestKey(s, ka));
    /* Nothing was started by the refusals. */
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
}

static void test_verify__accepts_good_and_rejects_bad_signatures(void **state)
{
    uint8_t sig[32];
    expected(sig);
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, 32));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, 32));
    sig[31] ^= 1;
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_SIGNATURE_INVALID, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, 32));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, 32));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_SIGNATURE_LEN_RANGE, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, 31));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, NULL, 32));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_VerifyFinal(s, sig, 32));

    sig[31] ^= 1;
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 3));
    assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg + 3, MSG_LEN - 3));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED,
              p11->C_Verify(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, 32));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_VerifyFinal(s, sig, 32));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, MSG_LEN));
    assert_rv(CKR_OK, p11->C_VerifyFinal(s, sig, 32));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, ka));
    assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, MSG_LEN));
    assert_rv(CKR_SIGNATURE_LEN_RANGE, p11->C_VerifyFinal(s, sig, 20));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 1));
}

static void test_sign__needs_a_logged_in_session(void **state)
{
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_VerifyInit(s, &hmac, ka));
}

static void test_sign__backend_and_virtual_operations_exclude_each_other(void **state)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    uint8_t key[32] = {0x42};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_VALUE, key, sizeof(key)}};
    CK_OBJECT_HANDLE hw;
    assert_rv(CKR_OK, p11->C_CreateObject(s, t, 5, &hw));
    uint8_t sig[32];
    CK_ULONG len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, hw));
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_SignInit(s, &hmac, ka));
    len = 0;
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, NULL, &len)); /* still running */
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_SignInit(s, &hmac, ka));
    len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    /* The backend's operation ended: a virtual one may start, and then excludes the backend. */
    assert_rv(CKR_OK, p11->C_SignInit(s, &hmac, ka));
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_SignInit(s, &hmac, hw));
    len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    assert_rv(CKR_OK, p11->C_DestroyObject(s, hw));
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sign__label_found_key_matches_the_design_vector),
        T(test_sign__length_query_and_short_buffer_keep_the_operation),
        T(test_sign__bad_arguments_end_the_operation),
        T(test_sign__second_init_is_operation_active),
        T(test_sign__multi_part_equals_single_part),
        T(test_sign__hmac_general_truncates),
        T(test_sign__other_mechanisms_and_key_types_are_refused),
        T(test_verify__accepts_good_and_rejects_bad_signatures),
        T(test_sign__needs_a_logged_in_session),
        T(test_sign__backend_and_virtual_operations_exclude_each_other),
    };
    return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
