/* SPDX-License-Identifier: Apache-2.0 */
/* C_Sign / C_Verify with virtual EC keys (module/src/ec.h): CKM_ECDSA and CKM_ECDSA_SHA256 on
 * secp256k1 and P-256, CKM_EDDSA on Ed25519, every signature checked with OpenSSL's EVP against
 * the public key the module exposes (which test_module_ec.c checks against the HD derivation);
 * the output-size protocol and operation-state rules; wrong mechanisms, key types, lengths and
 * arguments; one audit row per materialised key, naming its type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "ec_support.h"
#include "p11_support.h"

static CK_SESSION_HANDLE s;
static CK_OBJECT_HANDLE k1_priv, k1_pub, ed_priv, ed_pub, p2_priv, p2_pub;
static uint8_t k1_point[67], ed_point[67], p2_point[67];
static size_t k1_len, ed_len, p2_len;

static const uint8_t msg[] = "pay 1.5 BTC to bc1q...";
#define MSG_LEN (sizeof(msg) - 1)

/* CK_EDDSA_PARAMS of PKCS#11 3.0 (not in the v2.40 header). */
typedef struct {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
} eddsa_params;

static int setup(void **state)
{
    if (p11_start_user_session(&s) != 0)
        return -1;
    ec_find_pair(s, EC_K1_ID "/" EC_K1_PATH, &k1_priv, &k1_pub);
    ec_find_pair(s, EC_ED_ID "/" EC_ED_PATH, &ed_priv, &ed_pub);
    ec_find_pair(s, EC_P2_ID "/" EC_P2_PATH, &p2_priv, &p2_pub);
    k1_len = ec_read_point(s, k1_pub, k1_point);
    ed_len = ec_read_point(s, ed_pub, ed_point);
    p2_len = ec_read_point(s, p2_pub, p2_point);
    return 0;
}

static int teardown(void **state)
{
    return p11_end_session(s);
}

static void sha(const EVP_MD *md, const uint8_t *data, size_t len, uint8_t *out, size_t *out_len)
{
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(data, len, out, &n, md, NULL), 1);
    *out_len = n;
}

static CK_RV verify(CK_OBJECT_HANDLE pub, CK_MECHANISM_TYPE m, const uint8_t *data, size_t len,
                    const uint8_t *sig, size_t sig_len)
{
    CK_MECHANISM mech = {m, NULL, 0};
    CK_RV rv = p11->C_VerifyInit(s, &mech, pub);
    if (rv != CKR_OK)
        return rv;
    return p11->C_Verify(s, (CK_BYTE_PTR)data, len, (CK_BYTE_PTR)sig, sig_len);
}

/* The fixture's two Weierstrass keys (secp256k1, P-256), with their public points. */
struct ecdsa_key {
    CK_OBJECT_HANDLE priv, pub;
    const uint8_t *point;
    size_t point_len;
    ddsm_curve curve;
};

static void ecdsa_keys(struct ecdsa_key keys[2])
{
    keys[0] = (struct ecdsa_key){k1_priv, k1_pub, k1_point, k1_len, DDSM_CURVE_SECP256K1};
    keys[1] = (struct ecdsa_key){p2_priv, p2_pub, p2_point, p2_len, DDSM_CURVE_P256};
}

static void test_ec_sign__ecdsa_of_a_hash_verifies_with_openssl_on_both_curves(void **state)
{
    struct ecdsa_key keys[2];
    ecdsa_keys(keys);
    const EVP_MD *mds[] = {EVP_sha256(), EVP_sha512(), EVP_sha1()};
    for (size_t k = 0; k < 2; k++) {
        for (size_t d = 0; d < 3; d++) {
            /* SHA-512 is longer than the order (its leftmost 256 bits count), SHA-1 shorter. */
            uint8_t hash[64], sig[64];
            size_t hl = 0;
            sha(mds[d], msg, MSG_LEN, hash, &hl);
            assert_rv(CKR_OK, ec_sign(s, keys[k].priv, CKM_ECDSA, hash, hl, sig));
            assert_true(ec_openssl_verify(keys[k].curve, keys[k].point, keys[k].point_len,
                                          CKM_ECDSA, hash, hl, sig));
            assert_rv(CKR_OK, verify(keys[k].pub, CKM_ECDSA, hash, hl, sig, 64));
            /* A flipped bit anywhere fails, in OpenSSL and in the module. */
            hash[0] ^= 1;
            assert_false(ec_openssl_verify(keys[k].curve, keys[k].point, keys[k].point_len,
                                           CKM_ECDSA, hash, hl, sig));
            assert_rv(CKR_SIGNATURE_INVALID, verify(keys[k].pub, CKM_ECDSA, hash, hl, sig, 64));
            hash[0] ^= 1;
            sig[40] ^= 0x80;
            assert_rv(CKR_SIGNATURE_INVALID, verify(keys[k].pub, CKM_ECDSA, hash, hl, sig, 64));
        }
    }
}

static void test_ec_sign__ecdsa_sha256_single_and_multi_part(void **state)
{
    struct ecdsa_key keys[2];
    ecdsa_keys(keys);
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    for (size_t k = 0; k < 2; k++) {
        uint8_t sig[64], sig2[64];
        CK_ULONG len = sizeof(sig2);
        assert_rv(CKR_OK, ec_sign(s, keys[k].priv, CKM_ECDSA_SHA256, msg, MSG_LEN, sig));
        assert_true(ec_openssl_verify(keys[k].curve, keys[k].point, keys[k].point_len,
                                      CKM_ECDSA_SHA256, msg, MSG_LEN, sig));
        /* Three parts, one of them empty. */
        assert_rv(CKR_OK, p11->C_SignInit(s, &m, keys[k].priv));
        assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg, 5));
        assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg + 5, 0));
        assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)msg + 5, MSG_LEN - 5));
        assert_rv(CKR_OK, p11->C_SignFinal(s, sig2, &len));
        assert_int_equal(len, 64);
        assert_true(ec_openssl_verify(keys[k].curve, keys[k].point, keys[k].point_len,
                                      CKM_ECDSA_SHA256, msg, MSG_LEN, sig2));
        /* Multi-part verification of either. */
        assert_rv(CKR_OK, p11->C_VerifyInit(s, &m, keys[k].pub));
        assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 7));
        assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg + 7, MSG_LEN - 7));
        assert_rv(CKR_OK, p11->C_VerifyFinal(s, sig, 64));
        assert_rv(CKR_OK, verify(keys[k].pub, CKM_ECDSA_SHA256, msg, MSG_LEN, sig2, 64));
        assert_rv(CKR_SIGNATURE_INVALID,
                  verify(keys[k].pub, CKM_ECDSA_SHA256, msg, MSG_LEN - 1, sig2, 64));
        /* No update at all: the signature of the empty message. */
        assert_rv(CKR_OK, p11->C_SignInit(s, &m, keys[k].priv));
        len = sizeof(sig2);
        assert_rv(CKR_OK, p11->C_SignFinal(s, sig2, &len));
        assert_true(ec_openssl_verify(keys[k].curve, keys[k].point, keys[k].point_len,
                                      CKM_ECDSA_SHA256, msg, 0, sig2));
    }
}

static void test_ec_sign__secp256k1_is_deterministic_and_low_s(void **state)
{
    /* secp256k1's order n; low-S means s <= n / 2. */
    static const uint8_t half_n[32] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d,
                                       0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};
    for (int i = 0; i < 16; i++) {
        uint8_t hash[32], a[64], b[64];
        memset(hash, i, sizeof(hash));
        assert_rv(CKR_OK, ec_sign(s, k1_priv, CKM_ECDSA, hash, 32, a));
        assert_rv(CKR_OK, ec_sign(s, k1_priv, CKM_ECDSA, hash, 32, b));
        assert_memory_equal(a, b, 64); /* RFC 6979 */
        assert_true(memcmp(a + 32, half_n, 32) <= 0);
    }
}

static void test_ec_sign__eddsa_is_pure_ed25519_verified_by_openssl(void **state)
{
    uint8_t sig[64];
    CK_ULONG len = sizeof(sig);
    assert_rv(CKR_OK, ec_sign(s, ed_priv, CKM_EDDSA, msg, MSG_LEN, sig));
    assert_true(
        ec_openssl_verify(DDSM_CURVE_ED25519, ed_point, ed_len, CKM_EDDSA, msg, MSG_LEN, sig));
    assert_rv(CKR_OK, verify(ed_pub, CKM_EDDSA, msg, MSG_LEN, sig, 64));
    assert_rv(CKR_SIGNATURE_INVALID, verify(ed_pub, CKM_EDDSA, msg, MSG_LEN - 1, sig, 64));
    /* The empty message, with explicit CK_EDDSA_PARAMS asking for pure Ed25519. */
    eddsa_params pure = {CK_FALSE, 0, NULL};
    CK_MECHANISM m = {CKM_EDDSA, &pure, sizeof(pure)};
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, ed_priv));
    assert_rv(CKR_OK, p11->C_Sign(s, NULL, 0, sig, &len));
    assert_true(ec_openssl_verify(DDSM_CURVE_ED25519, ed_point, ed_len, CKM_EDDSA, NULL, 0, sig));
    /* Ed25519 is deterministic. */
    uint8_t again[64];
    assert_rv(CKR_OK, ec_sign(s, ed_priv, CKM_EDDSA, NULL, 0, again));
    assert_memory_equal(sig, again, 64);
    /* Ed25519ph and Ed25519ctx are not offered. */
    eddsa_params ph = {CK_TRUE, 0, NULL};
    uint8_t ctx[3] = {1, 2, 3};
    eddsa_params with_ctx = {CK_FALSE, sizeof(ctx), ctx};
    m.pParameter = &ph;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &m, ed_priv));
    m.pParameter = &with_ctx;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &m, ed_priv));
    m.pParameter = &pure;
    m.ulParameterLen = sizeof(pure) - 1;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &m, ed_priv));
    /* Nothing was left running by the refusals. */
    assert_rv(CKR_OK, ec_sign(s, ed_priv, CKM_EDDSA, msg, MSG_LEN, sig));
}

static void test_ec_sign__output_size_protocol_and_termination(void **state)
{
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    uint8_t hash[32] = {7}, sig[64];
    CK_ULONG len = 0;
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, p2_priv));
    assert_rv(CKR_OK, p11->C_Sign(s, hash, 32, NULL, &len));
    assert_int_equal(len, 64);
    len = 63;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_Sign(s, hash, 32, sig, &len));
    assert_int_equal(len, 64);
    assert_rv(CKR_OK, p11->C_Sign(s, hash, 32, sig, &len));
    assert_int_equal(len, 64);
    assert_true(ec_openssl_verify(DDSM_CURVE_P256, p2_point, p2_len, CKM_ECDSA, hash, 32, sig));
    /* Success ended the operation. */
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, hash, 32, sig, &len));
    /* A second init while one runs. */
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, p2_priv));
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_SignInit(s, &m, k1_priv));
    /* NULL arguments end it. */
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Sign(s, hash, 32, sig, NULL));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, hash, 32, sig, &len));
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, p2_priv));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Sign(s, NULL, 32, sig, &len));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, hash, 32, sig, &len));
}

static void test_ec_sign__bad_lengths_are_refused(void **state)
{
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0}, eddsa = {CKM_EDDSA, NULL, 0};
    uint8_t big[65] = {1}, sig[64];
    CK_ULONG len = sizeof(sig);
    /* CKM_ECDSA takes a hash of 1 to 64 bytes; the error ends the operation. */
    assert_rv(CKR_OK, p11->C_SignInit(s, &ecdsa, k1_priv));
    assert_rv(CKR_DATA_LEN_RANGE, p11->C_Sign(s, big, 0, sig, &len));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, big, 32, sig, &len));
    assert_rv(CKR_OK, p11->C_SignInit(s, &ecdsa, k1_priv));
    assert_rv(CKR_DATA_LEN_RANGE, p11->C_Sign(s, big, 65, sig, &len));
    assert_rv(CKR_OK, ec_sign(s, k1_priv, CKM_ECDSA, big, 64, sig));
    /* Signatures of the wrong length. */
    assert_rv(CKR_SIGNATURE_LEN_RANGE, verify(k1_pub, CKM_ECDSA, big, 64, sig, 63));
    assert_rv(CKR_SIGNATURE_LEN_RANGE, verify(k1_pub, CKM_ECDSA, big, 64, big, 65));
    assert_rv(CKR_OK, ec_sign(s, ed_priv, CKM_EDDSA, msg, MSG_LEN, sig));
    assert_rv(CKR_SIGNATURE_LEN_RANGE, verify(ed_pub, CKM_EDDSA, msg, MSG_LEN, sig, 0));
    assert_rv(CKR_OK, verify(ed_pub, CKM_EDDSA, msg, MSG_LEN, sig, 64));
    /* Single-part mechanisms have no *Update / *Final: refused, and the operation ends. */
    assert_rv(CKR_OK, p11->C_SignInit(s, &ecdsa, k1_priv));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED, p11->C_SignUpdate(s, big, 32));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_SignFinal(s, sig, &len));
    assert_rv(CKR_OK, p11->C_SignInit(s, &eddsa, ed_priv));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED, p11->C_SignFinal(s, sig, &len));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &eddsa, ed_pub));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 4));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_VerifyFinal(s, sig, 64));
}

static void test_ec_sign__wrong_mechanisms_and_keys_are_refused(void **state)
{
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0}, ecdsa = {CKM_ECDSA, NULL, 0},
                 eddsa = {CKM_EDDSA, NULL, 0}, rsa = {CKM_RSA_PKCS, NULL, 0},
                 sha1 = {CKM_ECDSA_SHA1, NULL, 0};
    uint8_t junk[4] = {0};
    CK_MECHANISM with_param = {CKM_ECDSA, junk, sizeof(junk)};
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &hmac, k1_priv));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &eddsa, k1_priv));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &eddsa, p2_priv));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &ecdsa, ed_priv));
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_VerifyInit(s, &ecdsa, ed_pub));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_SignInit(s, &rsa, k1_priv));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_SignInit(s, &sha1, p2_priv));
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(s, &with_param, k1_priv));
    /* A private key verifies nothing and a public key signs nothing. */
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &ecdsa, k1_pub));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_VerifyInit(s, &ecdsa, k1_priv));
    /* EC keys neither encrypt nor derive. */
    CK_MECHANISM gcm = {CKM_AES_GCM, NULL, 0};
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &gcm, p2_priv));
    /* An EC mechanism on a secret key. */
    CK_OBJECT_HANDLE hk = p11_find_label(s, VEC_A_ID "/" VEC_A_PATH);
    assert_rv(CKR_KEY_TYPE_INCONSISTENT, p11->C_SignInit(s, &ecdsa, hk));
    /* Nothing was started. */
    uint8_t sig[64];
    assert_rv(CKR_OK, ec_sign(s, k1_priv, CKM_ECDSA, junk, sizeof(junk), sig));
}

static void test_ec_sign__each_key_is_derived_and_audited_once_with_its_type(void **state)
{
    /* setup read the three points (that materialised the keys); signing derives nothing more. */
    long k1 = ec_derive_rows(EC_K1_ID), ed = ec_derive_rows(EC_ED_ID),
         p2 = ec_derive_rows(EC_P2_ID);
    uint8_t sig[64], hash[32] = {5};
    for (int i = 0; i < 5; i++) {
        assert_rv(CKR_OK, ec_sign(s, k1_priv, CKM_ECDSA, hash, 32, sig));
        assert_rv(CKR_OK, ec_sign(s, ed_priv, CKM_EDDSA, msg, MSG_LEN, sig));
        assert_rv(CKR_OK, ec_sign(s, p2_priv, CKM_ECDSA_SHA256, msg, MSG_LEN, sig));
    }
    assert_int_equal(ec_derive_rows(EC_K1_ID), k1);
    assert_int_equal(ec_derive_rows(EC_ED_ID), ed);
    assert_int_equal(ec_derive_rows(EC_P2_ID), p2);
    assert_int_equal(ec_derive_rows_typed(EC_K1_ID, "secp256k1"), k1);
    assert_int_equal(ec_derive_rows_typed(EC_ED_ID, "ed25519"), ed);
    assert_int_equal(ec_derive_rows_typed(EC_P2_ID, "p256"), p2);
    assert_true(k1 >= 1 && ed >= 1 && p2 >= 1);
    /* A key first used by C_SignInit (a fresh path) is derived there, once. */
    CK_OBJECT_HANDLE priv, pub;
    ec_find_pair(s, EC_K1_LABEL "/m/44'/0'/0'/0/99", &priv, &pub);
    assert_int_equal(ec_derive_rows(EC_K1_ID), k1);
    assert_rv(CKR_OK, ec_sign(s, priv, CKM_ECDSA, hash, 32, sig));
    assert_rv(CKR_OK, ec_sign(s, priv, CKM_ECDSA, hash, 32, sig));
    assert_int_equal(ec_derive_rows_typed(EC_K1_ID, "secp256k1"), k1 + 1);
    uint8_t point[67];
    size_t n = ec_expected_point(DDSM_CURVE_SECP256K1, EC_K1_ID, "m/44'/0'/0'/0/99", 0, point);
    assert_true(ec_openssl_verify(DDSM_CURVE_SECP256K1, point, n, CKM_ECDSA, hash, 32, sig));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    ec_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ec_sign__ecdsa_of_a_hash_verifies_with_openssl_on_both_curves),
        T(test_ec_sign__ecdsa_sha256_single_and_multi_part),
        T(test_ec_sign__secp256k1_is_deterministic_and_low_s),
        T(test_ec_sign__eddsa_is_pure_ed25519_verified_by_openssl),
        T(test_ec_sign__output_size_protocol_and_termination),
        T(test_ec_sign__bad_lengths_are_refused),
        T(test_ec_sign__wrong_mechanisms_and_keys_are_refused),
        T(test_ec_sign__each_key_is_derived_and_audited_once_with_its_type),
    };
    return cmocka_run_group_tests_name("module_ec_sign", tests, NULL, NULL);
}
