/* SPDX-License-Identifier: Apache-2.0 */
/* The backend HSM failing under the module (through the fault-injecting wrapper $DDSM_FAULTP11),
 * and a token without the root: precise CK_RVs, ulDeviceError detail codes, and no audit row
 * when the HSM fails before the store is asked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_support.h"
#include "p11_support.h"

static char good_conf[4096], ctl[4096];

static CK_ULONG device_error(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.ulDeviceError;
}

static int setup(void **state)
{
    snprintf(ctl, sizeof(ctl), "%s/faults", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_CTL", ctl, 1);
    fs_faults("");
    /* The same database and token, but the backend library is the wrapper. */
    fs_write_conf("fault", getenv("DDSM_FAULTP11"), NULL, NULL, NULL);
    return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    fs_faults("");
    setenv("DDSM_CONF", good_conf, 1);
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

static void test_hsm__no_derivation_session_means_no_audit_row(void **state)
{
    CK_SESSION_HANDLE s = p11_open_user();
    long audit = p11_audit_count();
    fs_faults("C_OpenSession rv=CKR_DEVICE_ERROR\n");
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_DEVICE_ERROR, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(device_error(s), DDSM_DEVERR_HSM_FAILED);
    assert_int_equal(p11_audit_count(), audit);
    /* The HSM recovers: so does the module, and the detail clears. */
    fs_faults("");
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(device_error(s), 0);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_hsm__hmac_failure_is_a_device_error_and_cached_keys_still_sign(void **state)
{
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE a, b = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &a));
    fs_faults("C_Sign rv=CKR_DEVICE_ERROR\n");
    assert_rv(CKR_DEVICE_ERROR, p11_derive(s, VEC_B_ID, VEC_B_PATH, NULL, 0, &b));
    assert_int_equal(b, 0);
    assert_int_equal(device_error(s), DDSM_DEVERR_HSM_FAILED);
    /* In-process signing with an already derived key needs no HSM. */
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, a, (const uint8_t *)"ok", 2, got));
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"ok", 2, want);
    assert_memory_equal(got, want, 32);
    fs_faults("");
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, VEC_B_PATH, NULL, 0, &b));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_hsm__a_token_without_the_root_says_so(void **state)
{
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    p11_write_conf("noroot", NULL, NULL);
    FILE *f = fopen(getenv("DDSM_CONF"), "w");
    assert_non_null(f);
    fprintf(f,
            "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = custody\n"
            "root_key_label = no-such-root\n\n[store]\nconninfo = %s\n",
            getenv("DDSM_TEST_CONNINFO"));
    fclose(f);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    long audit = p11_audit_count();
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_DEVICE_ERROR, p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &h));
    assert_int_equal(device_error(s), DDSM_DEVERR_ROOT_MISSING);
    assert_int_equal(p11_audit_count(), audit);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hsm__no_derivation_session_means_no_audit_row),
        T(test_hsm__hmac_failure_is_a_device_error_and_cached_keys_still_sign),
        T(test_hsm__a_token_without_the_root_says_so),
    };
    return cmocka_run_group_tests_name("hsm_fault", tests, NULL, NULL);
}
