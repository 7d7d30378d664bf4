/* SPDX-License-Identifier: Apache-2.0 */
/* AES-256-GCM on virtual CKK_AES keys, checked against OpenSSL with the docs/design.md vector key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "p11_support.h"

static CK_SESSION_HANDLE s;
static CK_OBJECT_HANDLE key; /* aes-a (key type aes) at m/1, counter 0 */
static uint8_t iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static uint8_t aad[] = "header";
static CK_GCM_PARAMS gcm;
static CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof(gcm)};
static const uint8_t plain[] = "sixteen byte msg and some more";
#define PLAIN_LEN (sizeof(plain) - 1)

static int setup(void **state)
{
    if (p11_start_user_session(&s) != 0)
        return -1;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ATTRIBUTE t[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};
    if (p11_derive(s, AES_ID, "m/1", t, 1, &key) != CKR_OK)
        return -1;
    gcm.pIv = iv;
    gcm.ulIvLen = sizeof(iv);
    gcm.ulIvBits = 96;
    gcm.pAAD = aad;
    gcm.ulAADLen = sizeof(aad) - 1;
    gcm.ulTagBits = 128;
    return 0;
}

static int teardown(void **state)
{
    return p11_end_session(s);
}

/* ciphertext || tag computed here with OpenSSL. */
static void openssl_gcm(const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t k[32];
    int n = 0;
    p11_expected_key(AES_ID, "m/1", 0, k);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, k, iv), 1);
    assert_int_equal(EVP_EncryptUpdate(x, NULL, &n, aad, (int)(sizeof(aad) - 1)), 1);
    assert_int_equal(EVP_EncryptUpdate(x, out, &n, in, (int)len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(x, out + n, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, out + len), 1);
    EVP_CIPHER_CTX_free(x);
}

static void test_crypt__gcm_encrypt_matches_openssl(void **state)
{
    uint8_t ct[PLAIN_LEN + 16], want[PLAIN_LEN + 16];
    CK_ULONG len = 0;
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &mech, key));
    assert_rv(CKR_OK, p11->C_Encrypt(s, (CK_BYTE_PTR)plain, PLAIN_LEN, NULL, &len));
    assert_int_equal(len, PLAIN_LEN + 16);
    len = PLAIN_LEN;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_Encrypt(s, (CK_BYTE_PTR)plain, PLAIN_LEN, ct, &len));
    assert_int_equal(len, PLAIN_LEN + 16);
    assert_rv(CKR_OK, p11->C_Encrypt(s, (CK_BYTE_PTR)plain, PLAIN_LEN, ct, &len));
    openssl_gcm(plain, PLAIN_LEN, want);
    assert_memory_equal(ct, want, PLAIN_LEN + 16);
    assert_rv(CKR_OPERATION_NOT_INITIALIZED,
              p11->C_Encrypt(s, (CK_BYTE_PTR)plain, PLAIN_LEN, ct, &len));
}

static void test_crypt__gcm_decrypt_round_trips_and_checks_the_tag(void **state)
{
    uint8_t ct[PLAIN_LEN + 16], pt[PLAIN_LEN + 16];
    CK_ULONG len = 0;
    openssl_gcm(plain, PLAIN_LEN, ct);
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &mech, key));
    assert_rv(CKR_OK, p11->C_Decrypt(s, ct, sizeof(ct), NULL, &len));
    assert_int_equal(len, PLAIN_LEN);
    len = 3;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_Decrypt(s, ct, sizeof(ct), pt, &len));
    len = sizeof(pt);
    assert_rv(CKR_OK, p11->C_Decrypt(s, ct, sizeof(ct), pt, &len));
    assert_int_equal(len, PLAIN_LEN);
    assert_memory_equal(pt, plain, PLAIN_LEN);

    /* A flipped bit: no plaintext comes out. */
    ct[2] ^= 0x80;
    memset(pt, 0xEE, sizeof(pt));
    len = sizeof(pt);
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &mech, key));
    assert_rv(CKR_ENCRYPTED_DATA_INVALID, p11->C_Decrypt(s, ct, sizeof(ct), pt, &len));
    for (size_t i = 0; i < sizeof(pt); i++)
        assert_int_equal(pt[i], 0xEE);
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Decrypt(s, ct, sizeof(ct), pt, &len));
    /* Shorter than a tag. */
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &mech, key));
    assert_rv(CKR_ENCRYPTED_DATA_LEN_RANGE, p11->C_Decrypt(s, ct, 15, pt, &len));
}

static void test_crypt__gcm_parameters_are_checked(void **state)
{
    CK_GCM_PARAMS p = gcm;
    CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof(p)};
    p.ulIvLen = 16;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(s, &m, key));
    p = gcm;
    p.ulTagBits = 96;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(s, &m, key));
    p = gcm;
    p.pIv = NULL;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(s, &m, key));
    p = gcm;
    p.pAAD = NULL;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_DecryptInit(s, &m, key));
    m.ulParameterLen = 8;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(s, &m, key));
    m.pParameter = NULL;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(s, &m, key));
    CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, 16};
    assert_rv(CKR_MECHANISM_INVALID, p11->C_EncryptInit(s, &cbc, key));
    /* An HMAC key cannot encrypt. */
    CK_OBJECT_HANDLE hk = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_EncryptInit(s, &mech, hk));
    /* Nothing started. */
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &mech, key));
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_EncryptInit(s, &mech, key));
}

static void test_crypt__multi_part_on_a_virtual_key_ends_the_operation(void **state)
{
    uint8_t out[64];
    CK_ULONG len = sizeof(out);
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &mech, key));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED,
              p11->C_EncryptUpdate(s, (CK_BYTE_PTR)plain, PLAIN_LEN, out, &len));
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &mech, key));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_EncryptFinal(s, out, NULL));
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &mech, key));
}

static void test_crypt__found_aes_asset_encrypts_and_decrypts(void **state)
{
    CK_OBJECT_HANDLE k = p11_find_label(s, "aes-a/m/1");
    uint8_t ct[PLAIN_LEN + 16], pt[PLAIN_LEN];
    CK_ULONG len = sizeof(ct);
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &mech, k));
    assert_rv(CKR_OK, p11->C_Encrypt(s, (CK_BYTE_PTR)plain, PLAIN_LEN, ct, &len));
    len = sizeof(pt);
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &mech, k));
    assert_rv(CKR_OK, p11->C_Decrypt(s, ct, sizeof(ct), pt, &len));
    assert_memory_equal(pt, plain, PLAIN_LEN);
    /* The same object as the AES key C_DeriveKey gives for the asset, and OpenSSL agrees. */
    assert_int_equal(k, key);
    uint8_t same[PLAIN_LEN + 16];
    openssl_gcm(plain, PLAIN_LEN, same);
    assert_memory_equal(ct, same, sizeof(ct));
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &m, k));
}

static void test_crypt__backend_aes_keys_are_forwarded(void **state)
{
    CK_OBJECT_HANDLE k;
    CK_ULONG vlen = 32;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &vlen, sizeof(vlen)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_ENCRYPT, &yes, 1},
                        {CKA_DECRYPT, &yes, 1}};
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    assert_rv(CKR_OK, p11->C_GenerateKey(s, &gen, t, 4, &k));
    uint8_t ct[PLAIN_LEN + 16], pt[PLAIN_LEN + 16];
    CK_ULONG len = sizeof(ct);
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &mech, k));
    assert_rv(CKR_OK, p11->C_Encrypt(s, (CK_BYTE_PTR)plain, PLAIN_LEN, ct, &len));
    assert_int_equal(len, PLAIN_LEN + 16);
    len = sizeof(pt);
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &mech, k));
    assert_rv(CKR_OK, p11->C_Decrypt(s, ct, sizeof(ct), pt, &len));
    assert_int_equal(len, PLAIN_LEN);
    assert_memory_equal(pt, plain, PLAIN_LEN);
    assert_rv(CKR_OK, p11->C_DestroyObject(s, k));
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_crypt__gcm_encrypt_matches_openssl),
        T(test_crypt__gcm_decrypt_round_trips_and_checks_the_tag),
        T(test_crypt__gcm_parameters_are_checked),
        T(test_crypt__multi_part_on_a_virtual_key_ends_the_operation),
        T(test_crypt__found_aes_asset_encrypts_and_decrypts),
        T(test_crypt__backend_aes_keys_are_forwarded),
    };
    return cmocka_run_group_tests_name("crypt", tests, NULL, NULL);
}
