/* SPDX-License-Identifier: Apache-2.0 */
/* Ordinary use of the backend's own objects through the module is unchanged by the guard and
 * the mechanism allowlist: generating, signing, verifying, encrypting, decrypting, wrapping,
 * unwrapping, deriving and digesting with RSA, EC, AES and generic secret keys of the backend, as
 * a general-purpose PKCS#11 conformance suite would, and the mechanism list offers what these
 * need. */
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
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static int setup(void **state)
{
    (void)state;
    return p11_start_user_session(&s);
}

static int teardown(void **state)
{
    (void)state;
    return p11_end_session(s);
}

static const uint8_t msg[] = "the quick brown fox jumps over the lazy dog";

/* Sign msg with m under priv, verify under pub, and see a tampered signature refused. */
static void sign_verify(CK_MECHANISM *m, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
    uint8_t sig[512];
    CK_ULONG sl = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, m, priv));
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &sl));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, m, pub));
    assert_rv(CKR_OK, p11->C_Verify(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, sl));
    sig[sl / 2] ^= 1;
    assert_rv(CKR_OK, p11->C_VerifyInit(s, m, pub));
    assert_rv(CKR_SIGNATURE_INVALID, p11->C_Verify(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, sl));
}

/* Encrypt msg with m under enc, decrypt under dec, and get msg back. */
static void encrypt_decrypt(CK_MECHANISM *m, CK_OBJECT_HANDLE enc, CK_OBJECT_HANDLE dec)
{
    uint8_t ct[512], pt[512];
    CK_ULONG cl = sizeof(ct), pl = sizeof(pt);
    assert_rv(CKR_OK, p11->C_EncryptInit(s, m, enc));
    assert_rv(CKR_OK, p11->C_Encrypt(s, (CK_BYTE_PTR)msg, sizeof(msg), ct, &cl));
    assert_rv(CKR_OK, p11->C_DecryptInit(s, m, dec));
    assert_rv(CKR_OK, p11->C_Decrypt(s, ct, cl, pt, &pl));
    assert_int_equal(pl, sizeof(msg));
    assert_memory_equal(pt, msg, sizeof(msg));
}

static void rsa_pair(CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &no, 1},         {CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, e, 3}, {CKA_VERIFY, &yes, 1},
                         {CKA_ENCRYPT, &yes, 1},      {CKA_WRAP, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &no, 1},    {CKA_PRIVATE, &yes, 1}, {CKA_SIGN, &yes, 1},
                         {CKA_DECRYPT, &yes, 1}, {CKA_UNWRAP, &yes, 1},  {CKA_LABEL, "rsa", 3}};
    CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    assert_rv(CKR_OK, p11->C_GenerateKeyPair(s, &gen, pt, 6, vt, 6, pub, priv));
}

static void ec_pair(CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ATTRIBUTE pt[] = {
        {CKA_TOKEN, &no, 1}, {CKA_EC_PARAMS, (void *)p256, sizeof(p256)}, {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE vt[] = {
        {CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_SIGN, &yes, 1}, {CKA_DERIVE, &yes, 1}};
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    assert_rv(CKR_OK, p11->C_GenerateKeyPair(s, &gen, pt, 3, vt, 4, pub, priv));
}

static CK_OBJECT_HANDLE aes_key(void)
{
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &no, 1},        {CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_ENCRYPT, &yes, 1},     {CKA_DECRYPT, &yes, 1},
                        {CKA_WRAP, &yes, 1},        {CKA_UNWRAP, &yes, 1},
                        {CKA_EXTRACTABLE, &yes, 1}, {CKA_SENSITIVE, &no, 1}};
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    assert_rv(CKR_OK, p11->C_GenerateKey(s, &gen, t, 8, &h));
    return h;
}

static void value_of(CK_OBJECT_HANDLE h, uint8_t *out, CK_ULONG *len)
{
    CK_ATTRIBUTE t = {CKA_VALUE, out, *len};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, &t, 1));
    *len = t.ulValueLen;
}

static void test_conformance__the_mechanism_list_offers_ordinary_mechanisms(void **state)
{
    (void)state;
    CK_MECHANISM_TYPE list[256];
    CK_ULONG n = 256;
    assert_rv(CKR_OK, p11->C_GetMechanismList(0, list, &n));
    const CK_MECHANISM_TYPE want[] = {
        CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP,
        CKM_EC_KEY_PAIR_GEN,       CKM_ECDSA,           CKM_ECDH1_DERIVE, CKM_AES_KEY_GEN,
        CKM_AES_CBC_PAD,           CKM_AES_GCM,         CKM_AES_KEY_WRAP, CKM_SHA256,
        CKM_SHA256_HMAC,           CKM_DDSM_DERIVE};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        bool found = false;
        for (CK_ULONG j = 0; j < n; j++)
            found = found || list[j] == want[i];
        if (!found)
            fail_msg("%s is missing from C_GetMechanismList", ddsm_mech_name(want[i]));
    }
    /* Every mechanism listed is described, and the only vendor mechanism is the module's. */
    for (CK_ULONG j = 0; j < n; j++) {
        CK_MECHANISM_INFO info;
        assert_rv(CKR_OK, p11->C_GetMechanismInfo(0, list[j], &info));
        if ((list[j] & CKM_VENDOR_DEFINED) != 0 && list[j] != CKM_DDSM_DERIVE)
            fail_msg("vendor mechanism %s is listed", ddsm_mech_name(list[j]));
    }
}

static void test_conformance__rsa_keys_sign_verify_encrypt_and_wrap(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE pub, priv;
    rsa_pair(&pub, &priv);
    CK_MECHANISM pkcs = {CKM_SHA256_RSA_PKCS, NULL, 0};
    sign_verify(&pkcs, priv, pub);
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM pssm = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
    sign_verify(&pssm, priv, pub);
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM oaepm = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
    encrypt_decrypt(&oaepm, pub, priv);

    /* Wrap an AES key under the RSA public key, unwrap it with the private one. */
    CK_OBJECT_HANDLE aes = aes_key(), back;
    uint8_t blob[512], v1[32], v2[32];
    CK_ULONG bl = sizeof(blob), l1 = sizeof(v1), l2 = sizeof(v2);
    assert_rv(CKR_OK, p11->C_WrapKey(s, &oaepm, pub, aes, blob, &bl));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE ut[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_TOKEN, &no, 1},
                         {CKA_EXTRACTABLE, &yes, 1},
                         {CKA_SENSITIVE, &no, 1},
                         {CKA_LABEL, "unwrapped", 9}};
    assert_rv(CKR_OK, p11->C_UnwrapKey(s, &oaepm, priv, blob, bl, ut, 6, &back));
    value_of(aes, v1, &l1);
    value_of(back, v2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(v1, v2, l1);
}

static void test_conformance__ec_keys_sign_verify_and_agree(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE pub, priv, pub2, priv2;
    ec_pair(&pub, &priv);
    ec_pair(&pub2, &priv2);
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    uint8_t digest[32];
    CK_ULONG dl = sizeof(digest);
    CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0};
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha256));
    assert_rv(CKR_OK, p11->C_Digest(s, (CK_BYTE_PTR)msg, sizeof(msg), digest, &dl));
    uint8_t sig[128];
    CK_ULONG sl = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, &ecdsa, priv));
    assert_rv(CKR_OK, p11->C_Sign(s, digest, dl, sig, &sl));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &ecdsa, pub));
    assert_rv(CKR_OK, p11->C_Verify(s, digest, dl, sig, sl));

    /* ECDH: both sides derive the same secret. */
    uint8_t pt1[128], pt2[128];
    CK_ATTRIBUTE q1 = {CKA_EC_POINT, pt1, sizeof(pt1)}, q2 = {CKA_EC_POINT, pt2, sizeof(pt2)};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, pub, &q1, 1));
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, pub2, &q2, 1));
    /* SoftHSM takes the raw point or its DER OCTET STRING; strip the 2-byte DER header. */
    CK_ECDH1_DERIVE_PARAMS p1 = {CKD_NULL, 0, NULL, q2.ulValueLen - 2, pt2 + 2};
    CK_ECDH1_DERIVE_PARAMS p2 = {CKD_NULL, 0, NULL, q1.ulValueLen - 2, pt1 + 2};
    CK_MECHANISM m1 = {CKM_ECDH1_DERIVE, &p1, sizeof(p1)}, m2 = {CKM_ECDH1_DERIVE, &p2, sizeof(p2)};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG len = 32;
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_TOKEN, &no, 1},
                         {CKA_VALUE_LEN, &len, sizeof(len)},
                         {CKA_EXTRACTABLE, &yes, 1},
                         {CKA_SENSITIVE, &no, 1}};
    CK_OBJECT_HANDLE k1, k2;
    assert_rv(CKR_OK, p11->C_DeriveKey(s, &m1, priv, dt, 6, &k1));
    assert_rv(CKR_OK, p11->C_DeriveKey(s, &m2, priv2, dt, 6, &k2));
    uint8_t v1[64], v2[64];
    CK_ULONG l1 = sizeof(v1), l2 = sizeof(v2);
    value_of(k1, v1, &l1);
    value_of(k2, v2, &l2);
    assert_int_equal(l1, 32);
    assert_int_equal(l2, 32);
    assert_memory_equal(v1, v2, 32);
}

static void test_conformance__aes_keys_encrypt_wrap_and_digest(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE k = aes_key(), other = aes_key();
    uint8_t iv[16] = {1, 2, 3};
    CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
    encrypt_decrypt(&cbc, k, k);
    uint8_t giv[12] = {9};
    CK_GCM_PARAMS gcm = {giv, sizeof(giv), 96, (CK_BYTE_PTR) "aad", 3, 128};
    CK_MECHANISM gcmm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    encrypt_decrypt(&gcmm, k, k);

    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP, NULL, 0};
    uint8_t blob[64], v1[32], v2[32];
    CK_ULONG bl = sizeof(blob), l1 = sizeof(v1), l2 = sizeof(v2);
    assert_rv(CKR_OK, p11->C_WrapKey(s, &wrap, k, other, blob, &bl));
    assert_int_equal(bl, 40);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE ut[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_TOKEN, &no, 1},
                         {CKA_EXTRACTABLE, &yes, 1},
                         {CKA_SENSITIVE, &no, 1}};
    CK_OBJECT_HANDLE back;
    assert_rv(CKR_OK, p11->C_UnwrapKey(s, &wrap, k, blob, bl, ut, 5, &back));
    value_of(other, v1, &l1);
    value_of(back, v2, &l2);
    assert_memory_equal(v1, v2, 32);

    /* C_DigestKey of a backend key equals the digest of its value. */
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    uint8_t d1[32], d2[32];
    CK_ULONG dl1 = sizeof(d1), dl2 = sizeof(d2);
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
    assert_rv(CKR_OK, p11->C_DigestKey(s, other));
    assert_rv(CKR_OK, p11->C_DigestFinal(s, d1, &dl1));
    assert_rv(CKR_OK, p11->C_DigestInit(s, &sha));
    assert_rv(CKR_OK, p11->C_Digest(s, v1, 32, d2, &dl2));
    assert_memory_equal(d1, d2, 32);
}

static void test_conformance__generic_secret_keys_mac_and_derive(void **state)
{
    (void)state;
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &no, 1},   {CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_SIGN, &yes, 1},   {CKA_VERIFY, &yes, 1},
                        {CKA_DERIVE, &no, 1},  {CKA_LABEL, "mac", 3}};
    CK_MECHANISM gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE k, d;
    assert_rv(CKR_OK, p11->C_GenerateKey(s, &gen, t, 6, &k));
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    sign_verify(&hmac, k, k);
    /* Deriving from a backend key (SoftHSM 2.6 derives with the *_ENCRYPT_DATA mechanisms). */
    CK_ULONG alen = 32;
    CK_ATTRIBUTE at[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &alen, sizeof(alen)},
                         {CKA_DERIVE, &yes, 1}};
    CK_MECHANISM agen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE a;
    assert_rv(CKR_OK, p11->C_GenerateKey(s, &agen, at, 3, &a));
    uint8_t data[16] = {7};
    CK_KEY_DERIVATION_STRING_DATA sd = {data, sizeof(data)};
    CK_MECHANISM ecb = {CKM_AES_ECB_ENCRYPT_DATA, &sd, sizeof(sd)};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG dlen = 16;
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_TOKEN, &no, 1},            {CKA_VALUE_LEN, &dlen, sizeof(dlen)},
                         {CKA_LABEL, "derived", 7}};
    assert_rv(CKR_OK, p11->C_DeriveKey(s, &ecb, a, dt, 5, &d));
    assert_int_equal(p11_attr_ulong(s, d, CKA_VALUE_LEN), 16);
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_conformance__the_mechanism_list_offers_ordinary_mechanisms),
        T(test_conformance__rsa_keys_sign_verify_encrypt_and_wrap),
        T(test_conformance__ec_keys_sign_verify_and_agree),
        T(test_conformance__aes_keys_encrypt_wrap_and_digest),
        T(test_conformance__generic_secret_keys_mac_and_derive),
    };
    return cmocka_run_group_tests_name("conformance", tests, NULL, NULL);
}
