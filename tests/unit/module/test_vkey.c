/* Virtual key internals without services: C_DeriveKey template rules, attribute values, CKA_ID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <openssl/evp.h>

#include "ddsm/pkcs11-ddsm.h"
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
    uint8_t id[16];
    ddsm_vkey_label(&a, "m/44'/0'/0'/0/0", label);
    ddsm_vkey_id(&a, "m/44'/0'/0'/0/0", id);
    CK_ATTRIBUTE good[] = {{CKA_LABEL, label, strlen(label)},
                           {CKA_ID, id, 16},
                           {CKA_DDSM_ASSET_ID, a.b, 16},
                           {CKA_DDSM_PATH, "m/44h/0h/0h/0/0", 15}};
    assert_int_equal(parse(good, 4, false, &v), CKR_OK);
    id[0] ^= 1;
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    id[0] ^= 1;
    good[0].ulValueLen--;
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    good[0].ulValueLen++;
    good[3].pValue = "m/44h/0h/0h/0/1";
    assert_int_equal(parse(good, 4, false, &v), CKR_TEMPLATE_INCONSISTENT);
    good[3].pValue = "m/0x";
    good[3].ulValueLen = 4;
    assert_int_equal(parse(good, 4, false, &v), CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_vkey__id_is_the_documented_hash(void **state)
{
    ddsm_uuid a = asset();
    uint8_t id[16], md[32], buf[64];
    unsigned int md_len = 0;
    size_t n = 0;
    memcpy(buf, "DDSM-v1 id", 10);
    n = 10;
    memcpy(buf + n, a.b, 16);
    n += 16;
    memcpy(buf + n, "m/0", 3);
    n += 3;
    assert_int_equal(EVP_Digest(buf, n, md, &md_len, EVP_sha256(), NULL), 1);
    ddsm_vkey_id(&a, "m/0", id);
    assert_memory_equal(id, md, 16);
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
        cmocka_unit_test(test_vkey__id_is_the_documented_hash),
        cmocka_unit_test(test_vkey__attribute_values_follow_the_variant),
        cmocka_unit_test(test_vkey__found_variant_follows_the_asset_key_type),
    };
    return cmocka_run_group_tests_name("vkey", tests, NULL, NULL);
}
