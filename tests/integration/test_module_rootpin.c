/* SPDX-License-Identifier: Apache-2.0 */
/* The root pin (docs/root.md): the module derives only with a root whose fingerprint the store
 * pins. A store from before the pin is refused with DDSM_DEVERR_ROOT_UNPINNED until
 * `ddsmctl db migrate` and `ddsmctl root pin`, after which the same module process derives; a key
 * carrying the root's label with another fingerprint is refused with DDSM_DEVERR_ROOT_MISMATCH,
 * and two different pinned roots on one token with DDSM_DEVERR_ROOT_AMBIGUOUS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/hsm.h"
#include "p11_support.h"

#define BACKEND "/usr/lib/softhsm/libsofthsm2.so"
/* HMAC-SHA256(00..1f, "DDSM-v1 root fingerprint"), first 16 bytes: docs/root.md's vector. */
#define DESIGN_ROOT_FP "5d02c5c109fe45418ef5953cf6b4788e"

static CK_ULONG detail_of(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO si;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &si));
    return si.ulDeviceError;
}

/* Derive vec-a and HMAC "data" with it. The base is CK_DDSM_ROOT_HANDLE: with two keys carrying
 * the root's label, a find by label names no single object. */
static CK_RV derive_mac(CK_SESSION_HANDLE s, uint8_t mac[32])
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    CK_RV rv = p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &k);
    if (rv == CKR_OK)
        rv = p11_hmac_sign(s, k, (const uint8_t *)"data", 4, mac);
    return rv;
}

static void test_rootpin__import_pins_the_design_root_fingerprint(void **state)
{
    (void)state;
    assert_int_equal(
        p11_sql_long("SELECT count(*) FROM custody_root_pins WHERE fingerprint = '" DESIGN_ROOT_FP
                     "' AND event = 'IMPORT'"),
        1);
    assert_int_equal(p11_sql_long("SELECT count(DISTINCT fingerprint) FROM custody_root_pins"), 1);
}

static void test_rootpin__store_from_before_the_pin_is_refused_until_root_pin(void **state)
{
    (void)state;
    uint8_t want[32], got[32];
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"data", 4, want);
    /* The store as it was before migration 005. */
    assert_int_equal(p11_sql_long("DROP TABLE custody_root_pins;"
                                  "DROP FUNCTION custody_root_pins_append_only();"
                                  "DELETE FROM ddsm_schema_migrations WHERE name LIKE '005%';"
                                  "SELECT 1"),
                     1);
    CK_SESSION_HANDLE s;
    assert_int_equal(p11_start_user_session(&s), 0);
    long rows = p11_audit_count();
    assert_rv(CKR_DEVICE_ERROR, derive_mac(s, got));
    assert_int_equal(detail_of(s), DDSM_DEVERR_ROOT_UNPINNED);
    assert_int_equal(p11_audit_count(), rows);

    /* The documented remedy, in order: pinning first is refused with the reason. */
    assert_int_equal(p11_ctl("root pin >/dev/null 2>&1"), 1);
    assert_int_equal(p11_ctl("db migrate >/dev/null"), 0);
    assert_rv(CKR_DEVICE_ERROR, derive_mac(s, got));
    assert_int_equal(detail_of(s), DDSM_DEVERR_ROOT_UNPINNED);
    assert_int_equal(p11_ctl("root pin >/dev/null"), 0);
    assert_int_equal(
        p11_sql_long("SELECT count(*) FROM custody_root_pins WHERE fingerprint = '" DESIGN_ROOT_FP
                     "' AND event = 'PIN'"),
        1);
    /* The same module process now derives the vector key, with its audit row. */
    rows = p11_audit_count();
    assert_rv(CKR_OK, derive_mac(s, got));
    assert_memory_equal(got, want, 32);
    assert_int_equal(p11_audit_count(), rows + 1);
    /* Pinning again adds nothing. */
    assert_int_equal(p11_ctl("root pin >/dev/null"), 0);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_root_pins"), 1);
    assert_int_equal(p11_end_session(s), 0);
}

/* On the backend directly, as the user: remove the key labelled ddsm-root when remove, then make
 * one with value (32 bytes) in its place. */
static void put_root_on_backend(bool remove, const uint8_t value[32])
{
    ddsm_hsm *h = NULL;
    char why[256];
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE root = CK_INVALID_HANDLE, obj = CK_INVALID_HANDLE;
    unsigned count = 0;
    const char *pin = getenv("DDSM_TEST_PIN");
    assert_int_equal(ddsm_hsm_load(BACKEND, &h, why, sizeof(why)), CKR_OK);
    CK_FUNCTION_LIST_PTR fl = ddsm_hsm_functions(h);
    assert_int_equal(ddsm_hsm_find_token(h, "custody", &slot), CKR_OK);
    assert_int_equal(fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
                     CKR_OK);
    assert_int_equal(ddsm_hsm_login_secret(h, s, pin, strlen(pin)), CKR_OK);
    if (remove) {
        assert_int_equal(ddsm_hsm_find_object(h, s, CKO_SECRET_KEY, "ddsm-root", &root, &count),
                         CKR_OK);
        assert_int_equal(count, 1);
        assert_int_equal(fl->C_DestroyObject(s, root), CKR_OK);
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},   {CKA_SENSITIVE, &t, sizeof(t)},  {CKA_SIGN, &t, sizeof(t)},
        {CKA_LABEL, "ddsm-root", 9},    {CKA_VALUE, (void *)value, 32},
    };
    assert_int_equal(fl->C_CreateObject(s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj), CKR_OK);
    (void)fl->C_Logout(s);
    (void)fl->C_CloseSession(s);
    ddsm_hsm_unload(h);
}

static void test_rootpin__root_with_another_fingerprint_is_refused(void **state)
{
    (void)state;
    uint8_t vec[32], got[32];
    uint8_t other[32];
    for (int i = 0; i < 32; i++)
        other[i] = (uint8_t)(0xa0 + i);
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"data", 4, vec);
    put_root_on_backend(true, other);
    CK_SESSION_HANDLE s;
    assert_int_equal(p11_start_user_session(&s), 0);
    long rows = p11_audit_count();
    assert_rv(CKR_DEVICE_ERROR, derive_mac(s, got));
    assert_int_equal(detail_of(s), DDSM_DEVERR_ROOT_MISMATCH);
    assert_int_equal(p11_audit_count(), rows);
    assert_int_equal(p11_end_session(s), 0);
    /* Only an administrator's `root pin` makes it the root (and then it derives other keys). */
    assert_int_equal(p11_ctl("root pin >/dev/null"), 0);
    assert_int_equal(p11_start_user_session(&s), 0);
    assert_rv(CKR_OK, derive_mac(s, got));
    assert_memory_not_equal(got, vec, 32);
    assert_int_equal(p11_end_session(s), 0);
}

/* Runs after the test above: the store pins both the docs/design.md root and the other one. */
static void test_rootpin__two_different_pinned_roots_on_the_token_are_refused(void **state)
{
    (void)state;
    uint8_t design[32], got[32];
    for (int i = 0; i < 32; i++)
        design[i] = (uint8_t)i;
    assert_int_equal(p11_sql_long("SELECT count(DISTINCT fingerprint) FROM custody_root_pins"), 2);
    put_root_on_backend(false, design);
    CK_SESSION_HANDLE s;
    assert_int_equal(p11_start_user_session(&s), 0);
    long rows = p11_audit_count();
    assert_rv(CKR_DEVICE_ERROR, derive_mac(s, got));
    assert_int_equal(detail_of(s), DDSM_DEVERR_ROOT_AMBIGUOUS);
    assert_int_equal(p11_audit_count(), rows);
    assert_int_equal(p11_end_session(s), 0);
}

static int setup(void **state)
{
    (void)state;
    p11_load();
    p11_setup_store();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rootpin__import_pins_the_design_root_fingerprint),
        cmocka_unit_test_teardown(test_rootpin__store_from_before_the_pin_is_refused_until_root_pin,
                                  p11_finalize_teardown),
        cmocka_unit_test_teardown(test_rootpin__root_with_another_fingerprint_is_refused,
                                  p11_finalize_teardown),
        cmocka_unit_test_teardown(test_rootpin__two_different_pinned_roots_on_the_token_are_refused,
                                  p11_finalize_teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
