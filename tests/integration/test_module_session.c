/* SPDX-License-Identifier: Apache-2.0 */
/* Session management, login, operation state and the generated forwarders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"

static CK_STATE session_state(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.state;
}

static void test_session__opens_only_on_slot_zero(void **state)
{
    CK_SESSION_HANDLE s;
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL));
    /* The backend's own rule: no parallel sessions. */
    assert_rv(CKR_SESSION_PARALLEL_NOT_SUPPORTED, p11->C_OpenSession(0, 0, NULL, NULL, &s));
    s = p11_open();
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_CloseSession(s));
}

static void test_session__info_reports_slot_zero_and_the_login_state(void **state)
{
    CK_SESSION_INFO info;
    CK_SESSION_HANDLE s = p11_open();
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetSessionInfo(s, NULL));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_GetSessionInfo(s + 1000, &info));
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    assert_int_equal(info.slotID, 0);
    assert_int_equal(info.state, CKS_RW_PUBLIC_SESSION);
    assert_int_equal(info.ulDeviceError, 0);
    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_PIN_INCORRECT, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "000000", 6));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Login(s, CKU_USER, NULL, 6));
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    assert_int_equal(session_state(s), CKS_RW_USER_FUNCTIONS);
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_int_equal(session_state(s), CKS_RW_PUBLIC_SESSION);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_session__close_all_closes_only_the_application_sessions(void **state)
{
    uint8_t sig[32];
    CK_SESSION_HANDLE a = p11_open_user(), b = p11_open(), c = p11_open();
    /* A derivation makes the module open its own backend session. */
    CK_OBJECT_HANDLE h = p11_find_label(a, "vec-a/" VEC_A_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(a, h, (const uint8_t *)"x", 1, sig));
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_CloseAllSessions(2));
    assert_rv(CKR_OK, p11->C_CloseAllSessions(0));
    CK_SESSION_INFO info;
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_GetSessionInfo(a, &info));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_GetSessionInfo(b, &info));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_GetSessionInfo(c, &info));
    /* The module's own sessions did not keep the login alive. */
    CK_SESSION_HANDLE d = p11_open();
    assert_int_equal(session_state(d), CKS_RW_PUBLIC_SESSION);
    assert_rv(CKR_OK, p11->C_CloseSession(d));
}

static void test_session__closing_the_last_session_ends_the_login(void **state)
{
    uint8_t sig[32];
    CK_SESSION_HANDLE a = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(a, "vec-b/" VEC_B_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(a, h, (const uint8_t *)"y", 1, sig));
    assert_rv(CKR_OK, p11->C_CloseSession(a));
    CK_SESSION_HANDLE b = p11_open();
    assert_int_equal(session_state(b), CKS_RW_PUBLIC_SESSION);
    /* No PIN, no derivation: the handle is still known, but unusable without a login. */
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_SignInit(b, &m, h));
    assert_rv(CKR_OK, p11->C_CloseSession(b));
}

static void test_session__logout_ends_operations_on_virtual_keys(void **state)
{
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    uint8_t sig[32];
    CK_ULONG len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, h));
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, (CK_BYTE_PTR) "z", 1, sig, &len));
    /* Logged out, finds return no virtual object. */
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "vec-a/" VEC_A_PATH, strlen("vec-a/" VEC_A_PATH)}};
    CK_OBJECT_HANDLE found[4];
    assert_int_equal(p11_find(s, t, 1, found, 4), 0);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_session__operation_state_of_a_virtual_operation_is_unsaveable(void **state)
{
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG len = 0;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetOperationState(s, NULL, NULL));
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, h));
    assert_rv(CKR_STATE_UNSAVEABLE, p11->C_GetOperationState(s, NULL, &len));
    uint8_t blob[8] = {0};
    assert_rv(CKR_KEY_NOT_NEEDED, p11->C_SetOperationState(s, blob, sizeof(blob), h, 0));
    assert_rv(CKR_KEY_NOT_NEEDED, p11->C_SetOperationState(s, blob, sizeof(blob), p11_root(s), 0));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_session__forwarded_functions_reach_the_backend(void **state)
{
    CK_SESSION_HANDLE s = p11_open();
    CK_BYTE rnd[32];
    memset(rnd, 0, sizeof(rnd));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_GenerateRandom(s + 999, rnd, sizeof(rnd)));
    assert_rv(CKR_OK, p11->C_GenerateRandom(s, rnd, sizeof(rnd)));
    static const uint8_t zero[32];
    assert_memory_not_equal(rnd, zero, sizeof(zero));

    /* SHA-256("abc") through C_Digest. */
    static const char abc_hex[] =
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    uint8_t want[32], got[32];
    CK_ULONG len = sizeof(got);
    CK_MECHANISM m = {CKM_SHA256, NULL, 0};
    p11_unhex(abc_hex, want, 32);
    assert_rv(CKR_OK, p11->C_DigestInit(s, &m));
    assert_rv(CKR_OK, p11->C_Digest(s, (CK_BYTE_PTR) "abc", 3, got, &len));
    assert_int_equal(len, 32);
    assert_memory_equal(got, want, 32);
    assert_rv(CKR_OK, p11->C_DigestInit(s, &m));
    assert_rv(CKR_OK, p11->C_DigestUpdate(s, (CK_BYTE_PTR) "ab", 2));
    assert_rv(CKR_OK, p11->C_DigestUpdate(s, (CK_BYTE_PTR) "c", 1));
    len = sizeof(got);
    assert_rv(CKR_OK, p11->C_DigestFinal(s, got, &len));
    assert_memory_equal(got, want, 32);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_session__set_pin_is_forwarded(void **state)
{
    const char *pin = getenv("DDSM_TEST_PIN");
    CK_SESSION_HANDLE s = p11_open_user();
    assert_rv(CKR_OK,
              p11->C_SetPIN(s, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR) "654321", 6));
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_PIN_INCORRECT, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "654321", 6));
    assert_rv(CKR_OK,
              p11->C_SetPIN(s, (CK_UTF8CHAR_PTR) "654321", 6, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_session__ul_device_error_is_zero_after_a_derivation(void **state)
{
    /* A healthy store leaves ulDeviceError at 0 after a derivation. */
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, "m/9", NULL, 0, &h));
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    assert_int_equal(info.ulDeviceError, 0);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static int setup(void **state)
{
    return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_session__opens_only_on_slot_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session__info_reports_slot_zero_and_the_login_state,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_session__close_all_closes_only_the_application_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session__closing_the_last_session_ends_the_login,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_session__logout_ends_operations_on_virtual_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_session__operation_state_of_a_virtual_operation_is_unsaveable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session__forwarded_functions_reach_the_backend, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session__set_pin_is_forwarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session__ul_device_error_is_zero_after_a_derivation,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
