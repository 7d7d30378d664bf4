/* SPDX-License-Identifier: Apache-2.0 */
/* C_DeriveKey with CKM_DDSM_DERIVE: the known vectors, the audit row, and every refusal (which
 * writes nothing to the store). */
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
static long audit_before;

static int setup(void **state)
{
    if (p11_start_user_session(&s) != 0)
        return -1;
    audit_before = p11_audit_count();
    return 0;
}

static int teardown(void **state)
{
    return p11_end_session(s);
}

static void assert_no_audit(void)
{
    assert_int_equal(p11_audit_count(), audit_before);
}

static void assert_signs_as(CK_OBJECT_HANDLE h, const char *key_hex)
{
    static const uint8_t data[] = "The quick brown fox";
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, data, sizeof(data) - 1, got));
    p11_hmac_expected(key_hex, data, sizeof(data) - 1, want);
    assert_memory_equal(got, want, 32);
}

static void test_derive__known_vectors_through_derive_key(void **state)
{
    CK_OBJECT_HANDLE a, a_alt, b;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &a));
    assert_true((a & 0x80000000UL) != 0);
    assert_signs_as(a, VEC_A_KEY0);
    /* Another spelling of the same path is the same object. */
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH_ALT, NULL, 0, &a_alt));
    assert_int_equal(a_alt, a);
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, VEC_B_PATH, NULL, 0, &b));
    assert_signs_as(b, VEC_B_KEY0);
    assert_int_not_equal(a, b);
}

static void test_derive__writes_one_audit_row_per_derivation(void **state)
{
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, "m/5'/6", NULL, 0, &h));
    assert_int_equal(p11_audit_count(), audit_before + 1);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' "
                                  "AND derivation_path = 'm/5''/6' AND counter = 0"),
                     1);
    /* Using the derived key needs no new derivation: the key is cached. */
    uint8_t sig[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"x", 1, sig));
    assert_int_equal(p11_audit_count(), audit_before + 1);
}

static void test_derive__base_key_may_be_named_by_the_root_handle_constant(void **state)
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &h));
    assert_signs_as(h, VEC_A_KEY0);
}

static void test_derive__rejects_null_pointers(void **state)
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE root = p11_root(s), h = 0;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_DeriveKey(s, NULL, root, NULL, 0, &h));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_DeriveKey(s, &m, root, NULL, 0, NULL));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_DeriveKey(s, &m, root, NULL, 2, &h));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_DeriveKey(s + 77, &m, root, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_no_audit();
}

static void test_derive__needs_a_logged_in_session(void **state)
{
    CK_SESSION_HANDLE pub = p11_open();
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE root = p11_root(s), h = 0;
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_DeriveKey(pub, &m, root, NULL, 0, &h));
    assert_rv(CKR_USER_NOT_LOGGED_IN, p11->C_DeriveKey(pub, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_rv(CKR_OK, p11->C_CloseSession(pub));
    assert_no_audit();
}

static void test_derive__rejects_bad_parameters(void **state)
{
    CK_OBJECT_HANDLE root = p11_root(s), h = 0;
    uint8_t buf[DDSM_DERIVE_PARAM_MAX + 8];
    size_t n = p11_param(buf, sizeof(buf), VEC_A_ID, VEC_A_PATH);
    CK_MECHANISM m = {CKM_DDSM_DERIVE, NULL, n};
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DeriveKey(s, &m, root, NULL, 0, &h));
    m.pParameter = buf;
    m.ulParameterLen = 16; /* a UUID and no path */
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DeriveKey(s, &m, root, NULL, 0, &h));
    m.ulParameterLen = 10;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DeriveKey(s, &m, root, NULL, 0, &h));
    m.ulParameterLen = DDSM_DERIVE_PARAM_MAX + 1;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DeriveKey(s, &m, root, NULL, 0, &h));

    static const char *const bad_paths[] = {
        "m",
        "m/",
        "x/1",
        "m/01",
        "m/1//2",
        "m/-1",
        "m/2147483648",
        "m/1''",
        "m/1 ",
        "M/1",
        "m/1/",
        "1/2",
        "m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17",
        "m/4294967295",
        "m/1x",
    };
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        m.ulParameterLen = p11_param(buf, sizeof(buf), VEC_A_ID, bad_paths[i]);
        CK_RV rv = p11->C_DeriveKey(s, &m, root, NULL, 0, &h);
        if (rv != CKR_MECHANISM_PARAM_INVALID)
            fail_msg("path \"%s\": %s", bad_paths[i], ddsm_rv_name(rv));
    }
    /* The nil UUID names the module's own keys. */
    m.ulParameterLen = p11_param(buf, sizeof(buf), "00000000-0000-0000-0000-000000000000", "m/0");
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DeriveKey(s, &m, root, NULL, 0, &h));
    /* A NUL inside the path. */
    m.ulParameterLen = p11_param(buf, sizeof(buf), VEC_A_ID, "m/1");
    buf[m.ulParameterLen++] = 0;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DeriveKey(s, &m, root, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_no_audit();
}

static long count_events(const char *event, const char *asset)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM custody_audit_log WHERE event = '%s' AND asset_id = '%s'", event,
             asset);
    return p11_sql_long(sql);
}

static void test_derive__unknown_asset_is_a_bad_parameter_and_a_deny_row(void **state)
{
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, UNKNOWN_ID, "m/0", NULL, 0, &h));
    assert_int_equal(h, 0);
    /* The refusal is audited (docs/audit.md), no key was derived. */
    assert_int_equal(p11_audit_count(), audit_before + 1);
    assert_int_equal(count_events("DENY", UNKNOWN_ID), 1);
    assert_int_equal(count_events("DERIVE", UNKNOWN_ID), 0);
}

static void test_derive__initialized_and_retired_assets_derive_nothing(void **state)
{
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11_derive(s, FRESH_ID, "m/3", NULL, 0, &h));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11_derive(s, RETIRED_ID, "m/4", NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(count_events("DERIVE", FRESH_ID) + count_events("DERIVE", RETIRED_ID), 0);
    assert_int_equal(count_events("DENY", FRESH_ID), 1);
    assert_int_equal(count_events("DENY", RETIRED_ID), 1);
    assert_int_equal(p11_audit_count(), audit_before + 2);
}

static CK_RV derive_from(CK_OBJECT_HANDLE base)
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE h = 0;
    CK_RV rv = p11->C_DeriveKey(s, &m, base, NULL, 0, &h);
    if (rv != CKR_OK)
        assert_int_equal(h, 0);
    return rv;
}

static void test_derive__base_key_must_be_the_root(void **state)
{
    CK_OBJECT_HANDLE v = p11_find_label(s, "vec-b/m/0");
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, derive_from(v));
    assert_rv(CKR_KEY_HANDLE_INVALID, derive_from(0x80000000UL | 0x0abcdef));
    assert_rv(CKR_KEY_HANDLE_INVALID, derive_from(0x7ffff000UL));
    assert_rv(CKR_KEY_HANDLE_INVALID, derive_from(CK_INVALID_HANDLE));
    /* Any other backend key: wrong type for the mechanism. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    uint8_t val[32] = {9};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_DERIVE, &yes, 1},
                        {CKA_LABEL, "other", 5},
                        {CKA_VALUE, val, sizeof(val)}};
    CK_OBJECT_HANDLE other;
    assert_rv(CKR_OK, p11->C_CreateObject(s, t, 6, &other));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, derive_from(other));
    assert_rv(CKR_OK, p11->C_DestroyObject(s, other));
    assert_no_audit();
}

static CK_RV derive_with(CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *h)
{
    *h = 0;
    return p11_derive(s, VEC_A_ID, VEC_A_PATH, t, n, h);
}

static void test_derive__rejects_contradictory_or_unsupported_templates(void **state)
{
    CK_OBJECT_HANDLE h;
    CK_OBJECT_CLASS pub = CKO_PUBLIC_KEY;
    CK_KEY_TYPE rsa = CKK_RSA, aes = CKK_AES;
    CK_ULONG len16 = 16;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, two = 2;
    char wrong_label[] = "vec-a/m/44'/0'/0'/0/1";
    struct {
        CK_ATTRIBUTE a[2];
        CK_ULONG n;
        CK_RV want;
    } cases[] = {
        {{{CKA_CLASS, &pub, sizeof(pub)}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_KEY_TYPE, &rsa, sizeof(rsa)}}, 1, CKR_ATTRIBUTE_VALUE_INVALID},
        {{{CKA_KEY_TYPE, &rsa, 3}}, 1, CKR_ATTRIBUTE_VALUE_INVALID},
        {{{CKA_VALUE_LEN, &len16, sizeof(len16)}}, 1, CKR_ATTRIBUTE_VALUE_INVALID},
        {{{CKA_LABEL, wrong_label, strlen(wrong_label)}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_SIGN, &yes, 1}}, 2, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_ENCRYPT, &yes, 1}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_EXTRACTABLE, &yes, 1}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_SENSITIVE, &no, 1}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_PRIVATE, &no, 1}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_MODIFIABLE, &yes, 1}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_DERIVE, &yes, 1}}, 1, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_SIGN, &two, 1}}, 1, CKR_ATTRIBUTE_VALUE_INVALID},
        {{{CKA_SIGN, &yes, 4}}, 1, CKR_ATTRIBUTE_VALUE_INVALID},
        {{{CKA_SIGN, &yes, 1}, {CKA_SIGN, &no, 1}}, 2, CKR_TEMPLATE_INCONSISTENT},
        {{{CKA_MODULUS, &yes, 1}}, 1, CKR_ATTRIBUTE_TYPE_INVALID},
        {{{CKA_VALUE, &yes, 1}}, 1, CKR_ATTRIBUTE_READ_ONLY},
        {{{CKA_DDSM_COUNTER, &len16, sizeof(len16)}}, 1, CKR_ATTRIBUTE_READ_ONLY},
        {{{CKA_DDSM_PATH, "m/1", 3}}, 1, CKR_TEMPLATE_INCONSISTENT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CK_RV rv = derive_with(cases[i].a, cases[i].n, &h);
        if (rv != cases[i].want)
            fail_msg("template case %zu: %s, expected %s", i, ddsm_rv_name(rv),
                     ddsm_rv_name(cases[i].want));
        assert_int_equal(h, 0);
    }
    assert_no_audit();
}

static void test_derive__accepts_consistent_templates(void **state)
{
    CK_OBJECT_HANDLE plain, h;
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
    CK_KEY_TYPE gen = CKK_GENERIC_SECRET, aes = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    char label[] = VEC_A_ID "/" VEC_A_PATH;
    assert_rv(CKR_OK, derive_with(NULL, 0, &plain));
    CK_ATTRIBUTE full[] = {{CKA_CLASS, &sec, sizeof(sec)},
                           {CKA_KEY_TYPE, &gen, sizeof(gen)},
                           {CKA_VALUE_LEN, &len, sizeof(len)},
                           {CKA_LABEL, label, strlen(label)},
                           {CKA_TOKEN, &yes, 1},
                           {CKA_SENSITIVE, &yes, 1},
                           {CKA_EXTRACTABLE, &no, 1},
                           {CKA_SIGN, &yes, 1}};
    assert_rv(CKR_OK, derive_with(full, 8, &h));
    assert_int_equal(h, plain); /* the same object: same variant */

    CK_ATTRIBUTE verify_only[] = {{CKA_SIGN, &no, 1}};
    assert_rv(CKR_OK, derive_with(verify_only, 1, &h));
    assert_int_not_equal(h, plain);
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &m, h));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &m, h));
    uint8_t sig[32];
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"m", 1, sig);
    assert_rv(CKR_OK, p11->C_Verify(s, (CK_BYTE_PTR) "m", 1, sig, 32));

    /* An AES key of an asset of key type aes. */
    CK_ATTRIBUTE as_aes[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};
    assert_rv(CKR_OK, p11_derive(s, AES_ID, "m/1", as_aes, 1, &h));
    assert_int_equal(p11_attr_ulong(s, h, CKA_KEY_TYPE), CKK_AES);
    CK_BBOOL enc = CK_FALSE;
    CK_ATTRIBUTE q = {CKA_ENCRYPT, &enc, 1};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, &q, 1));
    assert_int_equal(enc, CK_TRUE);
}

/* Close the session and restart the module under a configuration of its own (extra appended),
 * in a new user session; keep gets the current configuration's path, for the test to restore. */
static void restart_with_conf(const char *name, const char *extra, char keep[4096])
{
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    snprintf(keep, 4096, "%s", getenv("DDSM_CONF"));
    p11_write_conf(name, NULL, extra);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();
}

static void test_derive__policy_refuses_paths_outside_its_patterns(void **state)
{
    char keep[4096];
    restart_with_conf("policy", "[policy]\npath_pattern = m/44'/*'/*'/*/*\n", keep);
    long derived = count_events("DERIVE", VEC_B_ID) + count_events("DERIVE", VEC_A_ID);
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_B_ID, "m/0", NULL, 0, &h));
    assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_A_ID, "m/44'/0'/0'/0'/0", NULL, 0, &h));
    assert_int_equal(h, 0);
    /* Each refusal is one DENY row with the reason; nothing was derived. */
    assert_int_equal(p11_audit_count(), audit_before + 2);
    assert_int_equal(count_events("DENY", VEC_B_ID), 1);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' "
                                  "AND detail LIKE '%policy%'"),
                     2);
    assert_int_equal(count_events("DERIVE", VEC_B_ID) + count_events("DERIVE", VEC_A_ID), derived);
    /* Refused paths are not listed by finds either. */
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "vec-b/m/0", 9}};
    CK_OBJECT_HANDLE found[4];
    assert_int_equal(p11_find(s, t, 1, found, 4), 0);
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_signs_as(h, VEC_A_KEY0);
    setenv("DDSM_CONF", keep, 1);
}

static void test_derive__extractable_policy_makes_the_value_readable(void **state)
{
    char keep[4096];
    restart_with_conf("extractable", "[policy]\nextractable = true\n", keep);
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, derive_with(t, 1, &h));
    uint8_t value[32], want[32];
    CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, &v, 1));
    assert_int_equal(v.ulValueLen, 32);
    p11_unhex(VEC_A_KEY0, want, 32);
    assert_memory_equal(value, want, 32);
    setenv("DDSM_CONF", keep, 1);
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_derive__known_vectors_through_derive_key),
        T(test_derive__writes_one_audit_row_per_derivation),
        T(test_derive__base_key_may_be_named_by_the_root_handle_constant),
        T(test_derive__rejects_null_pointers),
        T(test_derive__needs_a_logged_in_session),
        T(test_derive__rejects_bad_parameters),
        T(test_derive__unknown_asset_is_a_bad_parameter_and_a_deny_row),
        T(test_derive__initialized_and_retired_assets_derive_nothing),
        T(test_derive__base_key_must_be_the_root),
        T(test_derive__rejects_contradictory_or_unsupported_templates),
        T(test_derive__accepts_consistent_templates),
        T(test_derive__policy_refuses_paths_outside_its_patterns),
        T(test_derive__extractable_policy_makes_the_value_readable),
    };
    return cmocka_run_group_tests_name("derive", tests, NULL, NULL);
}
