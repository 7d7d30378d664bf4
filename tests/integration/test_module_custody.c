/* SPDX-License-Identifier: Apache-2.0 */
/* The root on a separate custody token ([backend] root_token_label + root_pin_file): the module
 * logs in there itself, the application's token holds no root and its PIN never reaches it, and
 * derivation still gives the docs/design.md vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p11_support.h"

#define VAULT_PIN "24682468"

static char good_conf[4096], bad_conf[4096];

static void custody_setup(void)
{
    const char *dir = getenv("DDSM_TEST_DIR");
    char pin_path[4096], bad_pin_path[4096], seed[4096];
    p11_init_token("vault", VAULT_PIN);
    snprintf(pin_path, sizeof(pin_path), "%s/vault.pin", dir);
    snprintf(bad_pin_path, sizeof(bad_pin_path), "%s/wrong.pin", dir);
    p11_write_file(pin_path, VAULT_PIN "\n");
    p11_write_file(bad_pin_path, "11112222\n");
    snprintf(good_conf, sizeof(good_conf), "%s/custody.conf", dir);
    snprintf(bad_conf, sizeof(bad_conf), "%s/custody-bad.conf", dir);
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(i == 0 ? good_conf : bad_conf, "w");
        assert_non_null(f);
        fprintf(f,
                "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = custody\n"
                "root_key_label = ddsm-root\nroot_token_label = vault\nroot_pin_file = %s\n\n"
                "[store]\nconninfo = %s\n",
                i == 0 ? pin_path : bad_pin_path, getenv("DDSM_TEST_CONNINFO"));
        fclose(f);
        chmod(i == 0 ? good_conf : bad_conf, 0600);
    }
    setenv("DDSM_CONF", good_conf, 1);
    snprintf(seed, sizeof(seed), "%s/seed.hex", dir);
    FILE *f = fopen(seed, "w");
    for (int i = 0; i < 32; i++)
        fprintf(f, "%02x", i);
    fclose(f);
    assert_int_equal(p11_ctl("db migrate >/dev/null"), 0);
    assert_int_equal(p11_ctl("root import --hex-file '%s' >/dev/null", seed), 0);
    assert_int_equal(p11_ctl("asset register --label vec-a --id %s --default-path \"%s\" "
                             ">/dev/null",
                             VEC_A_ID, VEC_A_PATH),
                     0);
    assert_int_equal(p11_ctl("asset activate vec-a >/dev/null"), 0);
}

static void test_custody__derives_the_vectors_with_the_root_on_its_own_token(void **state)
{
    setenv("DDSM_CONF", good_conf, 1);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_ULONG n = 0;
    assert_rv(CKR_OK, p11->C_GetSlotList(CK_TRUE, NULL, &n));
    assert_int_equal(n, 1); /* the custody token is not exposed */
    CK_SESSION_HANDLE s = p11_open_user();
    /* The application's token has no root key. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "ddsm-root", 9}};
    CK_OBJECT_HANDLE h[4];
    assert_int_equal(p11_find(s, t, 2, h, 4), 0);

    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE d;
    assert_rv(CKR_OK, p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &d));
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, d, (const uint8_t *)"vault", 5, got));
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"vault", 5, want);
    assert_memory_equal(got, want, 32);
    assert_int_equal(p11_find_label(s, "vec-a/" VEC_A_PATH), d);

    /* Still no PIN, no derivation for the application. */
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &d));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_custody__a_wrong_custody_pin_fails_closed(void **state)
{
    setenv("DDSM_CONF", bad_conf, 1);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    long audit = p11_audit_count();
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE d = 0;
    assert_rv(CKR_DEVICE_ERROR, p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &d));
    assert_int_equal(d, 0);
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    assert_int_equal(info.ulDeviceError, DDSM_DEVERR_CUSTODY_LOGIN);
    assert_int_equal(p11_audit_count(), audit);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    setenv("DDSM_CONF", good_conf, 1);
}

int main(void)
{
    p11_load();
    custody_setup();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_custody__derives_the_vectors_with_the_root_on_its_own_token),
        cmocka_unit_test(test_custody__a_wrong_custody_pin_fails_closed),
    };
    return cmocka_run_group_tests_name("custody", tests, NULL, NULL);
}
