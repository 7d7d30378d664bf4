/* SPDX-License-Identifier: Apache-2.0 */
/* EC signing-key internals without services (module/src/ec.h): variants, DER forms against the
 * published BIP-32 / SLIP-10 vectors, HD keys from a seed, attributes per class, C_DeriveKey
 * templates, and which objects a key type lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ddsm/pkcs11-ddsm.h"
#include "ec.h"
#include "hex_support.h"

static ddsm_path path(const char *text)
{
    ddsm_path p;
    assert_int_equal(ddsm_path_parse(text, strlen(text), &p, NULL), DDSM_OK);
    return p;
}

static ddsm_hentry entry(ddsm_curve curve, bool pub)
{
    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    assert_int_equal(ddsm_uuid_parse("6f9619ff-8b86-d011-b42d-00c04fc964ff", 36, &e.asset),
                     DDSM_OK);
    strcpy(e.path, "m/44'/0'/0'/0/0");
    e.variant = ddsm_ec_variant(curve, pub);
    return e;
}

static void test_ec__variants_name_curve_and_class(void **state)
{
    const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_ED25519, DDSM_CURVE_P256};
    for (size_t i = 0; i < 3; i++) {
        for (int pub = 0; pub < 2; pub++) {
            ddsm_curve c;
            uint32_t v = ddsm_ec_variant(curves[i], pub);
            assert_true(ddsm_ec_is_ec(v));
            assert_true(ddsm_ec_variant_curve(v, &c));
            assert_int_equal(c, curves[i]);
            assert_int_equal((v & DDSM_VK_SIGN) != 0, !pub);
            assert_int_equal((v & DDSM_VK_VERIFY) != 0, pub);
            assert_int_equal(v & (DDSM_VK_EXTRACTABLE | DDSM_VK_ENCRYPT | DDSM_VK_AES), 0);
        }
    }
    ddsm_curve c;
    assert_false(ddsm_ec_variant_curve(DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_SENSITIVE, &c));
}

static void test_ec__params_are_the_der_oids(void **state)
{
    uint8_t out[DDSM_EC_PARAMS_MAX];
    static const uint8_t k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
    static const uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const uint8_t ed[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    assert_int_equal(ddsm_ec_params_der(DDSM_CURVE_SECP256K1, out), sizeof(k1));
    assert_memory_equal(out, k1, sizeof(k1));
    assert_int_equal(ddsm_ec_params_der(DDSM_CURVE_P256, out), sizeof(p256));
    assert_memory_equal(out, p256, sizeof(p256));
    assert_int_equal(ddsm_ec_params_der(DDSM_CURVE_ED25519, out), sizeof(ed));
    assert_memory_equal(out, ed, sizeof(ed));
}

static void test_ec__point_der_of_the_published_master_keys(void **state)
{
    uint8_t priv[32], out[DDSM_EC_POINT_DER_MAX], want[32];
    size_t n = 0;
    /* SLIP-10 ed25519 test vector 1, master key. */
    hexs_exact("2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7", priv, 32);
    hexs_exact("a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed", want, 32);
    assert_int_equal(ddsm_ec_point_der_secret(DDSM_CURVE_ED25519, priv, out, &n), CKR_OK);
    assert_int_equal(n, 34);
    assert_int_equal(out[0], 0x04);
    assert_int_equal(out[1], 32);
    assert_memory_equal(out + 2, want, 32);
    /* BIP-32 test vector 1, master key: 0339a360...c2 compressed, so X and an odd Y. */
    hexs_exact("e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35", priv, 32);
    hexs_exact("39a36013301597daef41fbe593a02cc513d0b55527ec2df1050e2e8ff49c85c2", want, 32);
    assert_int_equal(ddsm_ec_point_der_secret(DDSM_CURVE_SECP256K1, priv, out, &n), CKR_OK);
    assert_int_equal(n, 67);
    assert_int_equal(out[0], 0x04);
    assert_int_equal(out[1], 65);
    assert_int_equal(out[2], 0x04);
    assert_memory_equal(out + 3, want, 32);
    assert_int_equal(out[66] & 1, 1);
    assert_int_equal(ddsm_ec_point_der_len(DDSM_CURVE_P256), 67);
}

static void test_ec__key_from_seed_follows_bip32_and_refuses_ed25519_normal(void **state)
{
    uint8_t key[32], want[32];
    ddsm_path p = path("m/0'");
    /* The published BIP-32 test vector 1 (seed 000102...0f, m/0') through hd.h, which the
     * module builds on; then the module's in-place helper against hd.h for a 32-byte seed. */
    hexs_exact("edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea", want, 32);
    ddsm_hd_node node;
    uint8_t seed16[16];
    for (int i = 0; i < 16; i++)
        seed16[i] = (uint8_t)i;
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_SECP256K1, seed16, 16, &p, &node, NULL),
                     DDSM_OK);
    assert_memory_equal(node.secret_key, want, 32);

    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_P256, seed, 32, &p, &node, NULL),
                     DDSM_OK);
    memcpy(key, seed, 32);
    assert_int_equal(ddsm_ec_key_from_seed_secret(DDSM_CURVE_P256, &p, key), DDSM_OK);
    assert_memory_equal(key, node.secret_key, 32);

    ddsm_path normal = path("m/44'/0");
    memcpy(key, seed, 32);
    assert_int_equal(ddsm_ec_key_from_seed_secret(DDSM_CURVE_ED25519, &normal, key), DDSM_E_PATH);
    static const uint8_t zero[32];
    assert_memory_equal(key, zero, 32); /* the seed is wiped on failure */
    assert_false(ddsm_ec_path_ok(DDSM_CURVE_ED25519, &normal));
    assert_true(ddsm_ec_path_ok(DDSM_CURVE_SECP256K1, &normal));
}

static CK_RV attr(const ddsm_hentry *e, CK_ATTRIBUTE_TYPE t, uint8_t *buf, CK_ULONG *len)
{
    bool handled = false;
    CK_RV rv = ddsm_ec_attr(e, t, buf, len, &handled);
    assert_true(handled);
    return rv;
}

static void test_ec__attributes_follow_the_object_class(void **state)
{
    uint8_t buf[DDSM_VKEY_ATTR_MAX];
    CK_ULONG len = 0, v = 0;
    ddsm_hentry priv = entry(DDSM_CURVE_ED25519, false), pub = entry(DDSM_CURVE_ED25519, true);
    assert_int_equal(attr(&priv, CKA_CLASS, buf, &len), CKR_OK);
    memcpy(&v, buf, sizeof(v));
    assert_int_equal(v, CKO_PRIVATE_KEY);
    assert_int_equal(attr(&pub, CKA_KEY_TYPE, buf, &len), CKR_OK);
    memcpy(&v, buf, sizeof(v));
    assert_int_equal(v, CKK_EC_EDWARDS);
    assert_int_equal(attr(&priv, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(attr(&pub, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(attr(&pub, CKA_EC_POINT, buf, &len), CKR_KEY_NEEDED);
    assert_int_equal(attr(&priv, CKA_EC_POINT, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(attr(&pub, CKA_SIGN, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(attr(&priv, CKA_VERIFY, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(attr(&priv, CKA_VALUE_LEN, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(attr(&priv, CKA_ALWAYS_AUTHENTICATE, buf, &len), CKR_OK);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], CK_FALSE);
    assert_int_equal(attr(&pub, CKA_UNIQUE_ID, buf, &len), CKR_OK);
    assert_true(len > 4 && memcmp(buf + len - 4, ".pub", 4) == 0);
    /* Common attributes are the caller's (vkey_attr.c). */
    bool handled = true;
    assert_int_equal(ddsm_ec_attr(&priv, CKA_LABEL, buf, &len, &handled), CKR_OK);
    assert_false(handled);
}

static CK_RV parse(CK_ATTRIBUTE *t, CK_ULONG n, uint32_t *v)
{
    ddsm_hentry e = entry(DDSM_CURVE_SECP256K1, false);
    return ddsm_ec_template_parse(t, n, &e.asset, e.path, DDSM_CURVE_SECP256K1, v);
}

static void test_ec__derive_templates(void **state)
{
    uint32_t v = 0;
    CK_OBJECT_CLASS pub = CKO_PUBLIC_KEY, sec = CKO_SECRET_KEY;
    CK_KEY_TYPE ec = CKK_EC, edw = CKK_EC_EDWARDS;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, bad = 7;
    assert_int_equal(parse(NULL, 0, &v), CKR_OK);
    assert_int_equal(v, ddsm_ec_variant(DDSM_CURVE_SECP256K1, false));
    CK_ATTRIBUTE t1[] = {
        {CKA_KEY_TYPE, &ec, sizeof(ec)}, {CKA_CLASS, &pub, sizeof(pub)}, {CKA_VERIFY, &yes, 1}};
    assert_int_equal(parse(t1, 3, &v), CKR_OK);
    assert_int_equal(v, ddsm_ec_variant(DDSM_CURVE_SECP256K1, true));
    CK_ATTRIBUTE t2[] = {{CKA_CLASS, &sec, sizeof(sec)}};
    assert_int_equal(parse(t2, 1, &v), CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE t3[] = {{CKA_KEY_TYPE, &edw, sizeof(edw)}};
    assert_int_equal(parse(t3, 1, &v), CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE t4[] = {{CKA_EXTRACTABLE, &yes, 1}};
    assert_int_equal(parse(t4, 1, &v), CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE t5[] = {{CKA_SENSITIVE, &bad, 1}};
    assert_int_equal(parse(t5, 1, &v), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t6[] = {{CKA_VALUE, &yes, 1}};
    assert_int_equal(parse(t6, 1, &v), CKR_ATTRIBUTE_READ_ONLY);
    CK_ATTRIBUTE t7[] = {{CKA_ENCRYPT, &no, 1}}; /* a public-key attribute on the private key */
    assert_int_equal(parse(t7, 1, &v), CKR_ATTRIBUTE_TYPE_INVALID);
    CK_ATTRIBUTE t8[] = {{CKA_CLASS, &pub, 3}};
    assert_int_equal(parse(t8, 1, &v), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t9[] = {{CKA_DDSM_PATH, "m/44h/0h/0h/0/0", 15}, {CKA_SIGN, &yes, 1}};
    assert_int_equal(parse(t9, 2, &v), CKR_OK);
    CK_ATTRIBUTE t10[] = {{CKA_DDSM_PATH, "m/44h/0h/0h/0/1", 15}};
    assert_int_equal(parse(t10, 1, &v), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(parse(NULL, 2, &v), CKR_ARGUMENTS_BAD);
}

static void test_ec__listed_variants_per_key_type(void **state)
{
    uint32_t v[2];
    ddsm_path hardened = path("m/1'"), normal = path("m/1");
    assert_int_equal(ddsm_ec_found_variants("hmac", false, &normal, v), 1);
    assert_false(ddsm_ec_is_ec(v[0]));
    assert_int_equal(ddsm_ec_found_variants("secp256k1", false, &normal, v), 2);
    assert_int_equal(v[0], ddsm_ec_variant(DDSM_CURVE_SECP256K1, false));
    assert_int_equal(v[1], ddsm_ec_variant(DDSM_CURVE_SECP256K1, true));
    assert_int_equal(ddsm_ec_found_variants("ed25519", false, &normal, v), 0);
    assert_int_equal(ddsm_ec_found_variants("ed25519", false, &hardened, v), 2);
    assert_int_equal(ddsm_ec_found_variants("ed25519", false, NULL, v), 2);
    assert_int_equal(ddsm_ec_found_variants("p256", true, &normal, v), 2);
    assert_int_equal(v[0] & DDSM_VK_EXTRACTABLE, 0); /* the policy never reaches EC keys */
    assert_int_equal(ddsm_ec_found_variants("rsa", false, &normal, v), 0);
    assert_true(ddsm_ec_is_mech(CKM_EDDSA));
    assert_false(ddsm_ec_is_mech(CKM_ECDSA_SHA1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ec__variants_name_curve_and_class),
        cmocka_unit_test(test_ec__params_are_the_der_oids),
        cmocka_unit_test(test_ec__point_der_of_the_published_master_keys),
        cmocka_unit_test(test_ec__key_from_seed_follows_bip32_and_refuses_ed25519_normal),
        cmocka_unit_test(test_ec__attributes_follow_the_object_class),
        cmocka_unit_test(test_ec__derive_templates),
        cmocka_unit_test(test_ec__listed_variants_per_key_type),
    };
    return cmocka_run_group_tests_name("module_ec", tests, NULL, NULL);
}
