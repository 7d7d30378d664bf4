/* SPDX-License-Identifier: Apache-2.0 */
/* The root seed key is usable through the module only by CKM_DDSM_DERIVE: every other use of its
 * handle is refused, and a refused call changes nothing in the store or on the token. */
#include <dlfcn.h>
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
static CK_OBJECT_HANDLE root;
static long audit_before;
static size_t objects_before;

static int setup(void **state)
{
    if (p11_start_user_session(&s) != 0)
        return -1;
    root = p11_root(s);
    audit_before = p11_audit_count();
    objects_before = p11_backend_object_count(s);
    return 0;
}

/* Nothing changed: no audit row, no object appeared or vanished, the root is still there. */
static int teardown(void **state)
{
    assert_int_equal(p11_audit_count(), audit_before);
    assert_int_equal(p11_backend_object_count(s), objects_before);
    assert_int_equal(p11_root(s), root);
    return p11_end_session(s);
}

/* A session AES key that may wrap, for the wrap tests. */
static CK_OBJECT_HANDLE session_aes_key(void)
{
    CK_OBJECT_HANDLE k;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &no, 1},
        {CKA_WRAP, &yes, 1},
        {CKA_UNWRAP, &yes, 1},
        {CKA_ENCRYPT, &yes, 1},
        {CKA_EXTRACTABLE, &yes, 1},
    };
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    assert_rv(CKR_OK, p11->C_GenerateKey(s, &gen, t, 6, &k));
    return k;
}

static void test_guard__sign_and_verify_with_the_root_are_refused(void **state)
{
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0}, sha1 = {CKM_SHA_1_HMAC, NULL, 0};
    CK_ULONG glen = 16;
    CK_MECHANISM general = {CKM_SHA256_HMAC_GENERAL, &glen, sizeof(glen)};
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &hmac, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &sha1, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &general, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_VerifyInit(s, &hmac, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignRecoverInit(s, &hmac, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_VerifyRecoverInit(s, &hmac, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &hmac, CK_DDSM_ROOT_HANDLE));
    /* Nothing was left running: a legitimate operation can start. */
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
    uint8_t d[32];
    CK_ULONG dl = sizeof(d);
    assert_rv(CKR_OK, p11->C_Digest(s, (CK_BYTE_PTR) "a", 1, d, &dl));
}

static void test_guard__encrypt_decrypt_and_digest_key_with_the_root_are_refused(void **state)
{
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_EncryptInit(s, &ecb, root));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_DecryptInit(s, &ecb, root));
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
    assert_rv(CKR_KEY_INDIGESTIBLE, p11->C_DigestKey(s, root));
    uint8_t d[32];
    CK_ULONG dl = sizeof(d);
    assert_rv(CKR_OK, p11->C_DigestFinal(s, d, &dl));
}

static void test_guard__other_derive_mechanisms_on_the_root_are_refused(void **state)
{
    CK_OBJECT_HANDLE out = 0;
    CK_MECHANISM sha = {CKM_SHA256_KEY_DERIVATION, NULL, 0};
    CK_KEY_DERIVATION_STRING_DATA sd = {(CK_BYTE_PTR) "abc", 3};
    CK_MECHANISM concat = {CKM_CONCATENATE_DATA_AND_BASE, &sd, sizeof(sd)};
    CK_MECHANISM kdf = {CKM_SP800_108_COUNTER_KDF, NULL, 0};
    /* Outside the root's allowed mechanisms (2.40 gives C_DeriveKey no
     * KEY_FUNCTION_NOT_PERMITTED). */
    assert_rv(CKR_MECHANISM_INVALID, p11->C_DeriveKey(s, &sha, root, NULL, 0, &out));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_DeriveKey(s, &concat, root, NULL, 0, &out));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_DeriveKey(s, &kdf, root, NULL, 0, &out));
    assert_int_equal(out, 0);
}

static void test_guard__wrapping_with_or_of_the_root_is_refused(void **state)
{
    CK_OBJECT_HANDLE aes = session_aes_key();
    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP, NULL, 0};
    uint8_t blob[128];
    CK_ULONG len = sizeof(blob);
    assert_rv(CKR_MECHANISM_INVALID, p11->C_WrapKey(s, &wrap, root, aes, blob, &len));
    assert_rv(CKR_KEY_UNEXTRACTABLE, p11->C_WrapKey(s, &wrap, aes, root, blob, &len));
    /* Wrapping an ordinary key still works. */
    CK_OBJECT_HANDLE other = session_aes_key();
    len = sizeof(blob);
    assert_rv(CKR_OK, p11->C_WrapKey(s, &wrap, aes, other, blob, &len));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE out = 0;
    assert_rv(CKR_MECHANISM_INVALID,
              p11->C_UnwrapKey(s, &wrap, root, blob, len, t, 3, &out));
    assert_rv(CKR_OK, p11->C_DestroyObject(s, aes));
    assert_rv(CKR_OK, p11->C_DestroyObject(s, other));
}

static void test_guard__object_management_of_the_root_is_prohibited(void **state)
{
    CK_OBJECT_HANDLE copy = 0;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tok[] = {{CKA_TOKEN, &no, 1}};
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_CopyObject(s, root, tok, 1, &copy));
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_CopyObject(s, root, NULL, 0, &copy));
    assert_int_equal(copy, 0);
    CK_ATTRIBUTE relabel[] = {{CKA_LABEL, "stolen", 6}};
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_SetAttributeValue(s, root, relabel, 1));
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE allow_sign[] = {{CKA_SIGN, &yes, 1}};
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_SetAttributeValue(s, root, allow_sign, 1));
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_DestroyObject(s, root));
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_DestroyObject(s, CK_DDSM_ROOT_HANDLE));
}

static void test_guard__reading_the_root_value_is_sensitive(void **state)
{
    uint8_t value[64];
    char label[32];
    CK_ATTRIBUTE t[] = {{CKA_LABEL, label, sizeof(label)}, {CKA_VALUE, value, sizeof(value)}};
    /* Section 5.7: CK_UNAVAILABLE_INFORMATION and CKR_ATTRIBUTE_SENSITIVE; the rest is read. */
    assert_rv(CKR_ATTRIBUTE_SENSITIVE, p11->C_GetAttributeValue(s, root, t, 2));
    assert_int_equal(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[0].ulValueLen, 9);
    assert_memory_equal(label, "ddsm-root", 9);
    CK_ATTRIBUTE v[] = {{CKA_VALUE, NULL, 0}};
    assert_rv(CKR_ATTRIBUTE_SENSITIVE, p11->C_GetAttributeValue(s, root, v, 1));
    assert_int_equal(v[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetAttributeValue(s, CK_DDSM_ROOT_HANDLE, v, 1));
    /* Harmless attributes still read, so tools can list it. */
    CK_ATTRIBUTE l[] = {{CKA_LABEL, label, sizeof(label)}};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, root, l, 1));
    assert_int_equal(l[0].ulValueLen, 9);
    assert_memory_equal(label, "ddsm-root", 9);
}

static void test_guard__a_second_key_with_the_root_label_is_guarded_too(void **state)
{
    /* A copy of the label on another key (imported by mistake) is no bypass. The module refuses
     * to make one (test_attacks_guard), so it is made on the backend directly, as an application
     * sharing the process could: SoftHSM is loaded once per process, its session handles are the
     * module's. */
    CK_SESSION_HANDLE s2 = p11_open_user();
    void *dl = dlopen("/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
    CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) =
        (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))(uintptr_t)dlsym(dl, "C_GetFunctionList");
    CK_FUNCTION_LIST_PTR be = NULL;
    assert_non_null(gfl);
    assert_rv(CKR_OK, gfl(&be));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    uint8_t val[32] = {1, 2, 3};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_LABEL, "ddsm-root", 9},
                        {CKA_VALUE, val, sizeof(val)}};
    CK_OBJECT_HANDLE fake;
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_CreateObject(s2, t, 6, &fake));
    assert_rv(CKR_OK, be->C_CreateObject(s2, t, 6, &fake));
    dlclose(dl);
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s2, &hmac, fake));
    /* Session objects go with their session. */
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
}

static void test_guard__ordinary_backend_keys_are_forwarded(void **state)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0xa0 + i);
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_LABEL, "plain", 5},
                        {CKA_VALUE, key, sizeof(key)}};
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, p11->C_CreateObject(s, t, 6, &h));
    uint8_t got[32], want[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"data", 4, got));
    p11_hmac_expected("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
                      (const uint8_t *)"data", 4, want);
    assert_memory_equal(got, want, 32);
    assert_rv(CKR_OK, p11->C_DestroyObject(s, h));
}

static void test_guard__handles_with_the_top_bit_are_never_forwarded(void **state)
{
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_SignInit(s, &hmac, 0x80000000UL | 0x12345));
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_SignInit(s, &hmac, (CK_OBJECT_HANDLE)1 << 40));
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_EncryptInit(s, &hmac, 0xC0000000UL));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_DestroyObject(s, 0x80777777UL));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_DestroyObject(s, (CK_OBJECT_HANDLE)1 << 33));
    CK_ULONG size;
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetObjectSize(s, (CK_OBJECT_HANDLE)1 << 33, &size));
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_DigestKey(s, 0x80001111UL));
    uint8_t d[32];
    CK_ULONG dl = sizeof(d);
    assert_rv(CKR_OK, p11->C_DigestFinal(s, d, &dl));
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_guard__sign_and_verify_with_the_root_are_refused),
        T(test_guard__encrypt_decrypt_and_digest_key_with_the_root_are_refused),
        T(test_guard__other_derive_mechanisms_on_the_root_are_refused),
        T(test_guard__wrapping_with_or_of_the_root_is_refused),
        T(test_guard__object_management_of_the_root_is_prohibited),
        T(test_guard__reading_the_root_value_is_sensitive),
        T(test_guard__a_second_key_with_the_root_label_is_guarded_too),
        T(test_guard__ordinary_backend_keys_are_forwarded),
        T(test_guard__handles_with_the_top_bit_are_never_forwarded),
    };
    return cmocka_run_group_tests_name("guard", tests, NULL, NULL);
}
