/* SPDX-License-Identifier: Apache-2.0 */
/* The sign path without the backend (docs/benchmark.md), through the fault-injecting
 * wrapper's call log ($DDSM_FAULTP11, DDSM_FAULT_LOG): structure and correctness, never speed.
 *  - C_SignInit + C_Sign on a virtual key and a find of one asset by label never ask the backend
 *    for C_GetSessionInfo (SoftHSM answers it under a mutex every session shares); the backend's
 *    own C_FindObjectsInit still runs once per find (its objects are merged into ours);
 *  - the module's record of the login follows PKCS#11: one login per application, shared by every
 *    session, ended by C_Logout, by closing the last session and by C_CloseAllSessions; the
 *    security officer is not the user;
 *  - a logout the module did not see (made straight in the backend) is honoured as soon as the
 *    backend answers CKR_USER_NOT_LOGGED_IN: the module then asks the backend once and believes it;
 *  - a thread signing with several keys in turn (its HMAC context kept keyed with the last one)
 *    gets every MAC under the right key, also after the keys were wiped by a logout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_support.h"
#include "p11_support.h"

static char good_conf[4096];

static int setup(void **state)
{
    (void)state;
    char log[4096];
    snprintf(log, sizeof(log), "%s/calls.log", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_LOG", log, 1);
    unsetenv("DDSM_FAULT_CTL");
    fs_write_conf("perf_sign", getenv("DDSM_FAULTP11"), NULL, NULL, NULL);
    fs_log_reset();
    return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    setenv("DDSM_CONF", good_conf, 1);
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

static const uint8_t msg[64] = "sixty-four bytes of message, as ddsm-bench signs them, padded..";

/* The MAC the module must give for (asset, path) at the key's counter. */
static void expected_mac(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *uuid,
                         const char *path, uint8_t out[32])
{
    uint8_t key[32];
    CK_ULONG counter = p11_attr_ulong(s, h, CKA_DDSM_COUNTER);
    assert_true(counter != (CK_ULONG)-1);
    p11_expected_key(uuid, path, counter, key);
    p11_hmac_raw(key, msg, sizeof(msg), out);
}

static void sign_ok(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const uint8_t want[32])
{
    uint8_t got[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, sizeof(msg), got));
    assert_memory_equal(got, want, 32);
}

static CK_RV sign_init(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    CK_RV rv = p11->C_SignInit(s, &m, h);
    if (rv == CKR_OK) {
        uint8_t mac[32];
        CK_ULONG len = sizeof(mac);
        assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), mac, &len));
    }
    return rv;
}

static size_t virtual_found(CK_SESSION_HANDLE s, const char *label)
{
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE found[4];
    size_t n = p11_find(s, t, 1, found, 4), virt = 0;
    for (size_t i = 0; i < n; i++)
        virt += found[i] >= 0x80000000UL;
    return virt;
}

static void test_perf_sign__sign_and_find_never_ask_the_backend_for_session_info(void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    uint8_t want[32];
    expected_mac(s, h, VEC_A_ID, VEC_A_PATH, want);
    char label[128];
    snprintf(label, sizeof(label), "%s/%s", VEC_A_ID, VEC_A_PATH);
    assert_int_equal(p11_find_label(s, label), h); /* warms the asset's record */

    fs_log_reset();
    for (int i = 0; i < 50; i++) {
        sign_ok(s, h, want);
        assert_int_equal(p11_find_label(s, label), h);
    }
    assert_int_equal(fs_log_count("C_GetSessionInfo"), 0);
    assert_int_equal(fs_log_count("C_SignInit"), 0); /* the HMAC is the module's own */
    /* The backend's objects are part of every find: its search runs each time. */
    assert_int_equal(fs_log_count("C_FindObjectsInit"), 50);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_perf_sign__logout_ends_virtual_keys_in_every_session_until_the_next_login(
    void **state)
{
    (void)state;
    CK_SESSION_HANDLE s1 = p11_open_user(), s2 = p11_open();
    CK_OBJECT_HANDLE h = 0;
    uint8_t want[32];
    char label[128];
    snprintf(label, sizeof(label), "%s/%s", VEC_B_ID, VEC_B_PATH);
    assert_rv(CKR_OK, p11_derive(s1, VEC_B_ID, VEC_B_PATH, NULL, 0, &h));
    expected_mac(s1, h, VEC_B_ID, VEC_B_PATH, want);
    /* One login for the application: the session that never logged in signs too. */
    sign_ok(s2, h, want);
    assert_int_equal(virtual_found(s2, label), 1);

    assert_rv(CKR_OK, p11->C_Logout(s2));
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s1, h));
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s2, h));
    assert_int_equal(virtual_found(s1, label), 0);
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_Logout(s1));

    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_OK, p11->C_Login(s1, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    sign_ok(s2, h, want);
    assert_int_equal(virtual_found(s1, label), 1);
    /* A second login of the same user is refused by the backend and changes nothing. */
    assert_rv(CKR_USER_ALREADY_LOGGED_IN,
              p11->C_Login(s2, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    sign_ok(s1, h, want);
    assert_rv(CKR_OK, p11->C_CloseSession(s1));
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
}

static void test_perf_sign__closing_the_last_session_or_all_sessions_logs_out(void **state)
{
    (void)state;
    CK_SESSION_HANDLE s1 = p11_open_user();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s1, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    CK_SESSION_HANDLE s2 = p11_open();
    assert_int_equal(sign_init(s2, h), CKR_OK);
    /* Not the last one: the login stays. */
    assert_rv(CKR_OK, p11->C_CloseSession(s1));
    assert_int_equal(sign_init(s2, h), CKR_OK);
    /* The last one: logged out, for the module as for the backend. */
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
    CK_SESSION_HANDLE s3 = p11_open();
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s3, h));
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s3, &info));
    assert_int_equal(info.state, CKS_RW_PUBLIC_SESSION);

    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_OK, p11->C_Login(s3, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    CK_SESSION_HANDLE s4 = p11_open();
    assert_int_equal(sign_init(s4, h), CKR_OK);
    assert_rv(CKR_OK, p11->C_CloseAllSessions(0));
    CK_SESSION_HANDLE s5 = p11_open();
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s5, h));
    assert_rv(CKR_OK, p11->C_CloseSession(s5));
}

static void test_perf_sign__the_security_officer_is_not_the_user(void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, VEC_B_PATH, NULL, 0, &h));
    assert_rv(CKR_OK, p11->C_Logout(s));
    const char *so = getenv("DDSM_TEST_SO_PIN");
    assert_rv(CKR_OK, p11->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so, strlen(so)));
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s, h));
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_B_ID, VEC_B_PATH)};
    CK_OBJECT_HANDLE nh = 0;
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &nh));
    /* The user cannot log in beside the SO; the state stays the SO's. */
    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
              p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s, h));
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    assert_int_equal(sign_init(s, h), CKR_OK);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_perf_sign__a_logout_behind_the_modules_back_counts_once_the_backend_says_so(
    void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(sign_init(s, h), CKR_OK);

    /* The backend library the wrapper loaded, logged out directly: the module never sees it.
     * Session handles are the backend's own (they pass through unchanged). */
    void *dl = dlopen("/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
    CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) =
        (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(dl, "C_GetFunctionList");
    assert_non_null(gfl);
    CK_FUNCTION_LIST_PTR be = NULL;
    assert_rv(CKR_OK, gfl(&be));
    assert_rv(CKR_OK, be->C_Logout(s));

    /* The module keeps its record until the backend contradicts it: a cached key still signs. */
    assert_int_equal(sign_init(s, h), CKR_OK);
    /* A private object needs the login: the backend says CKR_USER_NOT_LOGGED_IN... */
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &no, sizeof(no)},
                        {CKA_PRIVATE, &yes, sizeof(yes)},
                        {CKA_LABEL, "perf-private", 12}};
    CK_OBJECT_HANDLE obj = 0;
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_CreateObject(s, t, 4, &obj));
    /* ...and from then on the module asks the backend once, and believes it. */
    fs_log_reset();
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s, h));
    assert_int_equal(fs_log_count("C_GetSessionInfo"), 1);
    assert_rv(CKR_USER_NOT_LOGGED_IN, sign_init(s, h));
    assert_int_equal(fs_log_count("C_GetSessionInfo"), 1);

    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    assert_int_equal(sign_init(s, h), CKR_OK);
    assert_int_equal(fs_log_count("C_GetSessionInfo"), 1);
    dlclose(dl);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_perf_sign__a_thread_alternating_keys_signs_each_with_its_own(void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    static const struct {
        const char *uuid, *path;
    } keys[] = {{VEC_A_ID, VEC_A_PATH}, {VEC_B_ID, VEC_B_PATH}, {VEC_A_ID, "m/7/7"}};
    CK_OBJECT_HANDLE h[3];
    uint8_t want[3][32];
    for (int k = 0; k < 3; k++) {
        assert_rv(CKR_OK, p11_derive(s, keys[k].uuid, keys[k].path, NULL, 0, &h[k]));
        expected_mac(s, h[k], keys[k].uuid, keys[k].path, want[k]);
    }
    static const int order[] = {0, 0, 1, 0, 2, 2, 1, 1, 0, 2, 1, 0};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        sign_ok(s, h[order[i]], want[order[i]]);

    /* A logout wipes the keys (and every thread's HMAC context); after the next login they are
     * derived again (new audit rows) and sign as before. */
    long audit = p11_audit_count();
    assert_rv(CKR_OK, p11->C_Logout(s));
    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        sign_ok(s, h[order[i]], want[order[i]]);
    assert_int_equal(p11_audit_count(), audit + 3);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_perf_sign__sign_and_find_never_ask_the_backend_for_session_info),
        T(test_perf_sign__logout_ends_virtual_keys_in_every_session_until_the_next_login),
        T(test_perf_sign__closing_the_last_session_or_all_sessions_logs_out),
        T(test_perf_sign__the_security_officer_is_not_the_user),
        T(test_perf_sign__a_logout_behind_the_modules_back_counts_once_the_backend_says_so),
        T(test_perf_sign__a_thread_alternating_keys_signs_each_with_its_own),
    };
    return cmocka_run_group_tests_name("perf_sign", tests, NULL, NULL);
}
