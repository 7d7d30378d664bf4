/* SPDX-License-Identifier: Apache-2.0 */
/* Smaller custody rules, each tried as an attacker would through the module:
 *  - virtual objects are private: without a login no call answers differently for a live virtual
 *    handle than for a handle that names nothing (C_DestroyObject, C_CopyObject,
 *    C_SetAttributeValue, C_DigestKey, C_GetAttributeValue);
 *  - the registry's key type holds: the 32 bytes of an hmac asset never become an AES key, nor
 *    those of an aes asset an HMAC key;
 *  - with [policy] extractable = true no handle of a key claims CKA_ALWAYS_SENSITIVE or
 *    CKA_NEVER_EXTRACTABLE, since its value is readable through a found handle. */
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
    (void)p11->C_Logout(s); /* a test that failed half-way may have logged out already */
    return p11_end_session(s);
}

/* A handle with the top bit set that names no object. */
static CK_OBJECT_HANDLE forged_handle(void)
{
    return (CK_OBJECT_HANDLE)0x80000000UL | 0x7ffffff0UL;
}

static void test_object__private_virtual_objects_are_invisible_without_login(void **state)
{
    CK_OBJECT_HANDLE live = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    CK_OBJECT_HANDLE nothing = forged_handle();
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    /* Logged in, the refusals say what they are about (C_DestroyObject would release the
     * handle: test_handles_live.c). */
    CK_ATTRIBUTE relabel[] = {{CKA_LABEL, "x", 1}};
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_SetAttributeValue(s, live, relabel, 1));
    assert_rv(CKR_OK, p11->C_Logout(s));

    CK_OBJECT_HANDLE hs[] = {live, nothing};
    for (int i = 0; i < 2; i++) {
        CK_OBJECT_HANDLE h = hs[i], copy = 0;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE t[] = {{CKA_LABEL, "x", 1}};
        CK_ATTRIBUTE tok[] = {{CKA_TOKEN, &no, 1}};
        CK_ULONG cls = 0;
        CK_ATTRIBUTE g[] = {{CKA_CLASS, &cls, sizeof(cls)}};
        assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_DestroyObject(s, h));
        assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_CopyObject(s, h, tok, 1, &copy));
        assert_int_equal(copy, 0);
        assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_SetAttributeValue(s, h, t, 1));
        assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetAttributeValue(s, h, g, 1));
        assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
        assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_DigestKey(s, h));
        uint8_t d[32];
        CK_ULONG dn = sizeof(d);
        (void)p11->C_DigestFinal(s, d, &dn);
    }
    /* Logged in again, the live handle is the same object as before. */
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)getenv("DDSM_TEST_PIN"),
                                   strlen(getenv("DDSM_TEST_PIN"))));
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_SetAttributeValue(s, live, relabel, 1));
    assert_int_equal(p11_audit_count(), audit_before);
}

static CK_RV derive_typed(const char *id, const char *path, CK_KEY_TYPE kt, CK_OBJECT_HANDLE *h)
{
    CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}};
    *h = 0;
    return p11_derive(s, id, path, t, 1, h);
}

static void test_derive__an_hmac_asset_never_gives_an_aes_key(void **state)
{
    CK_OBJECT_HANDLE h;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE enc[] = {{CKA_ENCRYPT, &yes, 1}};
    assert_rv(CKR_TEMPLATE_INCONSISTENT, derive_typed(VEC_A_ID, VEC_A_PATH, CKK_AES, &h));
    assert_int_equal(h, 0);
    assert_rv(CKR_TEMPLATE_INCONSISTENT, p11_derive(s, VEC_A_ID, VEC_A_PATH, enc, 1, &h));
    assert_int_equal(h, 0);
    assert_int_equal(p11_audit_count(), audit_before);
    /* Its keys sign; they never encrypt. */
    assert_rv(CKR_OK, derive_typed(VEC_A_ID, VEC_A_PATH, CKK_GENERIC_SECRET, &h));
    uint8_t iv[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m_gcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_EncryptInit(s, &m_gcm, h));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_DecryptInit(s, &m_gcm, h));
}

static void test_derive__an_aes_asset_never_gives_an_hmac_key(void **state)
{
    CK_OBJECT_HANDLE h;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE sign[] = {{CKA_SIGN, &yes, 1}};
    assert_rv(CKR_TEMPLATE_INCONSISTENT, derive_typed(AES_ID, "m/1", CKK_GENERIC_SECRET, &h));
    assert_int_equal(h, 0);
    assert_rv(CKR_TEMPLATE_INCONSISTENT, p11_derive(s, AES_ID, "m/1", sign, 1, &h));
    assert_int_equal(h, 0);
    assert_int_equal(p11_audit_count(), audit_before);
    /* Without a key type in the template an aes asset gives an AES key, the one a find lists. */
    assert_rv(CKR_OK, p11_derive(s, AES_ID, "m/1", NULL, 0, &h));
    assert_int_equal(p11_attr_ulong(s, h, CKA_KEY_TYPE), CKK_AES);
    assert_int_equal(h, p11_find_label(s, AES_ID "/m/1"));
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &hmac, h));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_VerifyInit(s, &hmac, h));
}

static CK_BBOOL attr_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL b = 2;
    CK_ATTRIBUTE a = {t, &b, 1};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, &a, 1));
    return b;
}

static void test_attrs__extractable_policy_is_told_alike_on_every_handle_of_a_key(void **state)
{
    char keep[4096];
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    snprintf(keep, sizeof(keep), "%s", getenv("DDSM_CONF"));
    p11_write_conf("extractable", NULL, "[policy]\nextractable = true\n");
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();

    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE sens[] = {{CKA_SENSITIVE, &yes, 1}};
    CK_ATTRIBUTE sens_noextr[] = {{CKA_SENSITIVE, &yes, 1}, {CKA_EXTRACTABLE, &no, 1}};
    CK_OBJECT_HANDLE found = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH), plain = 0, sealed = 0,
                     closed = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &plain));
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, sens, 1, &sealed));
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, sens_noextr, 2, &closed));
    /* The value is readable through the found handle: the key was never always sensitive nor
     * never extractable, whatever the handle it is seen through. */
    uint8_t value[32], want[32];
    CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, found, &v, 1));
    p11_unhex(VEC_A_KEY0, want, 32);
    assert_memory_equal(value, want, 32);
    CK_OBJECT_HANDLE hs[] = {found, plain, sealed, closed};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(attr_bool(hs[i], CKA_ALWAYS_SENSITIVE), CK_FALSE);
        assert_int_equal(attr_bool(hs[i], CKA_NEVER_EXTRACTABLE), CK_FALSE);
        /* The standard's own rules between the four attributes of one object. */
        if (attr_bool(hs[i], CKA_EXTRACTABLE) == CK_TRUE)
            assert_int_equal(attr_bool(hs[i], CKA_NEVER_EXTRACTABLE), CK_FALSE);
        if (attr_bool(hs[i], CKA_SENSITIVE) == CK_FALSE)
            assert_int_equal(attr_bool(hs[i], CKA_ALWAYS_SENSITIVE), CK_FALSE);
    }
    /* The found and the plain derived handle are one object; the sensitive ones hide the value. */
    assert_int_equal(found, plain);
    assert_int_equal(attr_bool(found, CKA_SENSITIVE), CK_FALSE);
    assert_int_equal(attr_bool(sealed, CKA_SENSITIVE), CK_TRUE);
    assert_rv(CKR_ATTRIBUTE_SENSITIVE, p11->C_GetAttributeValue(s, sealed, &v, 1));
    /* No third kind of handle: a virtual key cannot be copied. */
    CK_OBJECT_HANDLE copy = 0;
    CK_ATTRIBUTE tok[] = {{CKA_SENSITIVE, &yes, 1}};
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_CopyObject(s, found, tok, 1, &copy));
    assert_int_equal(copy, 0);

    /* Back under the default policy: every handle claims both. */
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    setenv("DDSM_CONF", keep, 1);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();
    found = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, sens, 1, &sealed));
    assert_int_equal(found, sealed);
    assert_int_equal(attr_bool(found, CKA_ALWAYS_SENSITIVE), CK_TRUE);
    assert_int_equal(attr_bool(found, CKA_NEVER_EXTRACTABLE), CK_TRUE);
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_object__private_virtual_objects_are_invisible_without_login),
        T(test_derive__an_hmac_asset_never_gives_an_aes_key),
        T(test_derive__an_aes_asset_never_gives_an_hmac_key),
        T(test_attrs__extractable_policy_is_told_alike_on_every_handle_of_a_key),
    };
    return cmocka_run_group_tests_name("keyrules", tests, NULL, NULL);
}
