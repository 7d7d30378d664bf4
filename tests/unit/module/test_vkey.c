/* SPDX-License-Identifier: Apache-2.0 */
/* Virtual key internals without services: C_DeriveKey template rules, attribute values, CKA_ID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "ddsm/pkcs11-ddsm.h"
#include "vattr.h"
#include "vkey.h"

static ddsm_uuid asset(void)
{
    ddsm_uuid u;
    static const char text[] = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    assert_int_equal(ddsm_uuid_parse(text, strlen(text), &u), DDSM_OK);
    return u;
}

static CK_RV parse(CK_ATTRIBUTE *t, CK_ULONG n, bool extractable, uint32_t *v)
{
    ddsm_uuid a = asset();
    return ddsm_vkey_template_parse(t, n, &a, "m/44'/0'/0'/0/0", extractable, v);
}

static void test_vkey__empty_template_gives_a_sensitive_hmac_key(void **state)
{
    uint32_t v = 0;
    assert_int_equal(parse(NULL, 0, false, &v), CKR_OK);
    assert_int_equal(v, DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_SENSITIVE);
    assert_int_equal(parse(NULL, 0, true, &v), CKR_OK);
    assert_int_equal(v, DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_EXTRACTABLE | DDSM_VK_KEY_READABLE);
    assert_int_equal(parse(NULL, 3, false, &v), CKR_ARGUMENTS_BAD);
}

static void test_vkey__aes_keys_encrypt_and_never_sign(void **state)
{
    uint32_t v = 0;
    CK_KEY_TYPE aes = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_DECRYPT, &no, 1}};
    assert_int_equal(parse(t, 1, false, &v), CKR_OK);
    assert_int_equal(v, DDSM_VK_AES | DDSM_VK_ENCRYPT | DDSM_VK_DECRYPT | DDSM_VK_SENSITIVE);
    assert_int_equal(parse(t, 2, false, &v), CKR_OK);
    assert_int_equal(v, DDSM_VK_AES | DDSM_VK_ENCRYPT | DDSM_VK_SENSITIVE);
    CK_ATTRIBUTE sign[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_VERIFY, &yes, 1}};
    assert_int_equal(parse(sign, 2, false, &v), CKR_TEMPLATE_INCONSISTENT);
}

static void test_vkey__label_id_and_vendor_attributes_must_name_this_key(void **state)
{
    uint32_t v = 0;
    ddsm_uuid a = asset();
    char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
    uint8_t id[DDSM_KEY_ID_MAX];
    ddsm_vkey_label(&a, "m/44'/0'/0'/0/0", label);
    size_t id_len = ddsm_vkey_id(&a, "m/44'/0'/0'/0/0", id);
    assert_int_equal(id_len, 16 + 15);
    CK_ATTRIBUTE good[] = {{CKA_LABEL, label, strlen(label)},
                           {CKA_ID, id, id_len},
                           {CKA_DDSM_ASSET_ID, a.b, 16},
                           {CKA_DDSM_PATH, "m/44h/0h/0h/0/0", 15}};
    assert_int_equal(parse(good, 4, false, &v), CKR_OK);
    id[0] ^= 1;
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    id[0] ^= 1;
    /* Another hardening spelling of the same path names the same key; another path does not. */
    memcpy(id + 16, "m/44h/0H/0'/0/0", 15);
    assert_int_equal(parse(good, 4, false, &v), CKR_OK);
    id[16 + 14] = '1';
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    id[16 + 14] = '0';
    good[1].ulValueLen = 16;
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    good[1].ulValueLen = id_len;
    good[0].ulValueLen--;
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    good[0].ulValueLen++;
    good[3].pValue = "m/44h/0h/0h/0/1";
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    good[3].pValue = "m/0x";
    good[3].ulValueLen = 4;
    assert_int_equal(parse(good, 4, false, &v), CKR_ATTRIBUTE_VALUE_INVALID);
}

/* CKA_ID is the CKM_DDSM_DERIVE parameter's bytes: the UUID, then the canonical path. */
static void test_vkey__id_is_the_uuid_then_the_canonical_path(void **state)
{
    ddsm_uuid a = asset();
    uint8_t id[DDSM_KEY_ID_MAX], want[16 + 3];
    memcpy(want, a.b, 16);
    memcpy(want + 16, "m/0", 3);
    assert_int_equal(ddsm_vkey_id(&a, "m/0", id), sizeof(want));
    assert_memory_equal(id, want, sizeof(want));

    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    e.asset = a;
    strcpy(e.path, "m/44'/0'/0'/0/0");
    e.variant = DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_SENSITIVE;
    uint8_t buf[DDSM_VKEY_ATTR_MAX];
    CK_ULONG len = 0;
    assert_int_equal(ddsm_vkey_attr(&e, CKA_ID, buf, &len), CKR_OK);
    assert_int_equal(len, 16 + 15);
    assert_memory_equal(buf, a.b, 16);
    assert_memory_equal(buf + 16, "m/44'/0'/0'/0/0", 15);
}

/* The find filter: an id matches its key in any hardening spelling, and an id that decodes to
 * nothing valid, or to another key, matches nothing. */
static void test_vkey__find_by_id_matches_any_spelling_and_nothing_else(void **state)
{
    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    e.asset = asset();
    strcpy(e.path, "m/44'/0'/0'/0/0");
    e.variant = DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_SENSITIVE;
    static const char *const same[] = {"m/44'/0'/0'/0/0", "m/44h/0h/0h/0/0", "m/44H/0'/0h/0/0"};
    static const char *const other[] = {"m/44'/0'/0'/0/1",  "m/44/0'/0'/0/0",
                                        "m/44'/0'/0'/0/00", "m/44'/0'/0'/0/0/",
                                        "M/44'/0'/0'/0/0",  "m/44\xe2\x80\x99/0"};
    uint8_t id[16 + 64];
    memcpy(id, e.asset.b, 16);
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        memcpy(id + 16, same[i], strlen(same[i]));
        CK_ATTRIBUTE t = {CKA_ID, id, 16 + strlen(same[i])};
        assert_true(ddsm_vattr_match(&e, &t, 1, false));
    }
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        memcpy(id + 16, other[i], strlen(other[i]));
        CK_ATTRIBUTE t = {CKA_ID, id, 16 + strlen(other[i])};
        assert_false(ddsm_vattr_match(&e, &t, 1, false));
    }
    /* Invalid UTF-8 (a lone continuation byte, an overlong slash) is no path. */
    static const uint8_t bad_utf8[][4] = {{'m', '/', 0x80, '0'}, {'m', 0xc0, 0xaf, '0'}};
    for (size_t i = 0; i < 2; i++) {
        memcpy(id + 16, bad_utf8[i], 4);
        CK_ATTRIBUTE t = {CKA_ID, id, 20};
        assert_false(ddsm_vattr_match(&e, &t, 1, false));
    }
    /* Too short (the UUID alone, less), another asset, the nil UUID, a NULL value. */
    memcpy(id + 16, same[0], strlen(same[0]));
    CK_ATTRIBUTE t = {CKA_ID, id, 16};
    assert_false(ddsm_vattr_match(&e, &t, 1, false));
    t.ulValueLen = 3;
    assert_false(ddsm_vattr_match(&e, &t, 1, false));
    t.ulValueLen = 16 + strlen(same[0]);
    id[15] ^= 1;
    assert_false(ddsm_vattr_match(&e, &t, 1, false));
    memset(id, 0, 16);
    assert_false(ddsm_vattr_match(&e, &t, 1, false));
    t.pValue = NULL;
    assert_false(ddsm_vattr_match(&e, &t, 1, false));
}

static void test_vkey__attribute_values_follow_the_variant(void **state)
{
    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    e.asset = asset();
    strcpy(e.path, "m/0");
    e.counter = 7;
    e.variant = DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_SENSITIVE;
    uint8_t buf[DDSM_VKEY_ATTR_MAX];
    CK_ULONG len = 0, ul = 0;
    assert_int_equal(ddsm_vkey_attr(&e, CKA_KEY_TYPE, buf, &len), CKR_OK);
    memcpy(&ul, buf, sizeof(ul));
    assert_int_equal(ul, CKK_GENERIC_SECRET);
    assert_int_equal(ddsm_vkey_attr(&e, CKA_UNIQUE_ID, buf, &len), CKR_OK);
    assert_int_equal(len, strlen("6f9619ff-8b86-d011-b42d-00c04fc964ff/m/0#7"));
    assert_memory_equal(buf, "6f9619ff-8b86-d011-b42d-00c04fc964ff/m/0#7", len);
    assert_int_equal(ddsm_vkey_attr(&e, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(ddsm_vkey_attr(&e, CKA_MODULUS, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(ddsm_vkey_attr(&e, CKA_ENCRYPT, buf, &len), CKR_OK);
    assert_int_equal(buf[0], CK_FALSE);
    e.variant = DDSM_VK_AES | DDSM_VK_ENCRYPT | DDSM_VK_EXTRACTABLE;
    assert_int_equal(ddsm_vkey_attr(&e, CKA_VALUE, buf, &len), CKR_KEY_NEEDED);
    assert_int_equal(ddsm_vkey_attr(&e, CKA_NEVER_EXTRACTABLE, buf, &len), CKR_OK);
    assert_int_equal(buf[0], CK_FALSE);
    assert_int_equal(ddsm_vkey_attr(&e, CKA_ALLOWED_MECHANISMS, buf, &len), CKR_OK);
    assert_int_equal(len, sizeof(CK_MECHANISM_TYPE));
}

static void test_vkey__found_variant_follows_the_asset_key_type(void **state)
{
    uint32_t v = 0;
    assert_true(ddsm_vkey_found_variant("hmac", false, &v));
    assert_int_equal(v, DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_SENSITIVE);
    assert_true(ddsm_vkey_found_variant("aes", true, &v));
    assert_int_equal(v, DDSM_VK_AES | DDSM_VK_ENCRYPT | DDSM_VK_DECRYPT | DDSM_VK_EXTRACTABLE |
                            DDSM_VK_KEY_READABLE);
    assert_false(ddsm_vkey_found_variant("secp256k1", false, &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vkey__empty_template_gives_a_sensitive_hmac_key),
        cmocka_unit_test(test_vkey__aes_keys_encrypt_and_never_sign),
        cmocka_unit_test(test_vkey__label_id_and_vendor_attributes_must_name_this_key),
        cmocka_unit_test(test_vkey__id_is_the_uuid_then_the_canonical_path),
        cmocka_unit_test(test_vkey__find_by_id_matches_any_spelling_and_nothing_else),
        cmocka_unit_test(test_vkey__attribute_values_follow_the_variant),
        cmocka_unit_test(test_vkey__found_variant_follows_the_asset_key_type),
    };
    return cmocka_run_group_tests_name("vkey", tests, NULL, NULL);
}
