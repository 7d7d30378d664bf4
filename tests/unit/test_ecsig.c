/* SPDX-License-Identifier: Apache-2.0 */
/* EC signing primitives: ECDSA on secp256k1 (libsecp256k1) and P-256 (OpenSSL), Ed25519.
 * Published vectors: RFC 8032 section 7.1 TEST 1 (Ed25519) and RFC 6979 appendix A.2.5 (P-256,
 * SHA-256, message "sample"), values copied from the RFCs. Signatures are also checked by
 * OpenSSL directly, independently of the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <string.h>

#include "ddsm/ecsig.h"
#include "ddsm/hd.h"
#include "hex_support.h"

/* RFC 8032, 7.1, -----TEST 1 (the empty message). */
#define RFC8032_T1_SECRET "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
#define RFC8032_T1_PUBLIC "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
#define RFC8032_T1_SIG_R "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
#define RFC8032_T1_SIG_S "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"

/* RFC 6979, A.2.5, ECDSA 256 bits (prime field): key pair, and "With SHA-256, message =
 * "sample"" (r, s). */
#define RFC6979_P256_X "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
#define RFC6979_P256_UX "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
#define RFC6979_P256_UY "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
#define RFC6979_P256_SAMPLE_R "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
#define RFC6979_P256_SAMPLE_S "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"

/* Group orders (SEC 2). */
#define SECP256K1_N "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
#define P256_N "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"

static const uint8_t key_a[32] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
                                  0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
                                  0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20};
static const uint8_t key_b[32] = {0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                  0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                  0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};

static void sha256(const void *data, size_t len, uint8_t out[32])
{
    assert_int_equal(EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL), 1);
}

static void public_of(ddsm_curve curve, const uint8_t priv[32], bool uncompressed, uint8_t *pub,
                      size_t *pub_len)
{
    assert_int_equal(ddsm_ec_public_from_secret(curve, priv, uncompressed, pub, pub_len), DDSM_OK);
}

static bool verify(ddsm_curve curve, const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
                   const uint8_t sig[64])
{
    bool valid = true;
    assert_int_equal(ddsm_ecdsa_verify(curve, pub, pub_len, digest, sig, &valid), DDSM_OK);
    return valid;
}

/* OpenSSL's own ECDSA verification of (r || s) over an input hash of any length: independent of
 * ecsig.c (and, for secp256k1, of libsecp256k1). Returns EVP_PKEY_verify's answer. */
static int openssl_verify(const char *group, const uint8_t *pub, size_t pub_len,
                          const uint8_t *hash, size_t hash_len, const uint8_t sig[64])
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    assert_non_null(bld);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, pub_len),
                     1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(kctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(kctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);

    ECDSA_SIG *es = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)),
                     1);
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    assert_true(der_len > 0);

    EVP_PKEY_CTX *vctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
    int rc = EVP_PKEY_verify(vctx, der, (size_t)der_len, hash, hash_len);

    EVP_PKEY_CTX_free(vctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(kctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

/* ---- ECDSA, both curves ---------------------------------------------------------------------- */

static void check_sign_verify_and_tamper(ddsm_curve curve)
{
    uint8_t pub[DDSM_HD_PUB_MAX], pub_b[DDSM_HD_PUB_MAX], digest[32], sig[64], bad[64];
    size_t pub_len = 0, pub_b_len = 0;

    public_of(curve, key_a, false, pub, &pub_len);
    public_of(curve, key_b, false, pub_b, &pub_b_len);
    sha256("a transaction", 13, digest);
    assert_int_equal(ddsm_ecdsa_sign_secret(curve, key_a, digest, sig), DDSM_OK);
    assert_true(verify(curve, pub, pub_len, digest, sig));

    /* Every single flipped bit of the signature breaks it. */
    for (size_t bit = 0; bit < 512; bit++) {
        memcpy(bad, sig, 64);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (verify(curve, pub, pub_len, digest, bad))
            fail_msg("%s: signature with bit %zu flipped verifies", ddsm_curve_name(curve), bit);
    }
    /* So does a flipped bit of the digest, and another key. */
    digest[31] ^= 0x01;
    assert_false(verify(curve, pub, pub_len, digest, sig));
    digest[31] ^= 0x01;
    assert_false(verify(curve, pub_b, pub_b_len, digest, sig));
}

static void test_ecdsa__secp256k1_signature_verifies_and_any_flipped_bit_fails(void **state)
{
    (void)state;
    check_sign_verify_and_tamper(DDSM_CURVE_SECP256K1);
}

static void test_ecdsa__p256_signature_verifies_and_any_flipped_bit_fails(void **state)
{
    (void)state;
    check_sign_verify_and_tamper(DDSM_CURVE_P256);
}

static void test_ecdsa__secp256k1_is_deterministic_rfc6979(void **state)
{
    (void)state;
    uint8_t d1[32], d2[32], s1[64], s2[64], s3[64];
    sha256("one", 3, d1);
    sha256("two", 3, d2);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, d1, s1), DDSM_OK);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, d1, s2), DDSM_OK);
    assert_memory_equal(s1, s2, 64);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, d2, s3), DDSM_OK);
    assert_memory_not_equal(s1, s3, 64);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_b, d1, s3), DDSM_OK);
    assert_memory_not_equal(s1, s3, 64);
}

/* ddsm_ec_shutdown (C_Finalize) destroys the shared context; the next call makes a new one, with
 * the same deterministic signatures. LeakSanitizer checks that the context is freed. */
static void test_ecdsa__secp256k1_works_again_after_shutdown(void **state)
{
    (void)state;
    uint8_t d[32], s1[64], s2[64];
    sha256("one", 3, d);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, d, s1), DDSM_OK);
    ddsm_ec_shutdown();
    ddsm_ec_shutdown();
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, d, s2), DDSM_OK);
    assert_memory_equal(s1, s2, 64);
    ddsm_ec_shutdown();
}

static void test_ecdsa__secp256k1_signatures_are_low_s(void **state)
{
    (void)state;
    uint8_t n[32], half[32];
    hexs_exact(SECP256K1_N, n, 32);
    /* n / 2, rounded down: a low-S signature has s <= n / 2. */
    unsigned carry = 0;
    for (size_t i = 0; i < 32; i++) {
        unsigned v = (carry << 8) | n[i];
        half[i] = (uint8_t)(v >> 1);
        carry = v & 1;
    }
    uint8_t pub[65];
    size_t pub_len = 0;
    public_of(DDSM_CURVE_SECP256K1, key_a, false, pub, &pub_len);
    for (unsigned i = 0; i < 64; i++) {
        uint8_t digest[32], sig[64];
        sha256(&i, sizeof(i), digest);
        assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, digest, sig), DDSM_OK);
        if (memcmp(sig + 32, half, 32) > 0)
            fail_msg("signature %u is high-S", i);
        /* OpenSSL, knowing nothing of low-S, accepts it too. */
        assert_int_equal(openssl_verify("secp256k1", pub, pub_len, digest, 32, sig), 1);
    }
}

/* Plain ECDSA accepts (r, n - s) as well; only our signing promises low-S. */
static void test_ecdsa__secp256k1_verify_accepts_the_high_s_twin(void **state)
{
    (void)state;
    uint8_t pub[65], digest[32], sig[64], twin[64], nb[32];
    size_t pub_len = 0;
    public_of(DDSM_CURVE_SECP256K1, key_a, false, pub, &pub_len);
    sha256("twin", 4, digest);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_a, digest, sig), DDSM_OK);

    hexs_exact(SECP256K1_N, nb, 32);
    BIGNUM *n = BN_bin2bn(nb, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL), *t = BN_new();
    assert_int_equal(BN_sub(t, n, s), 1);
    memcpy(twin, sig, 32);
    assert_int_equal(BN_bn2binpad(t, twin + 32, 32), 32);
    BN_free(n);
    BN_free(s);
    BN_free(t);

    assert_memory_not_equal(twin, sig, 64);
    assert_int_equal(openssl_verify("secp256k1", pub, pub_len, digest, 32, twin), 1);
    assert_true(verify(DDSM_CURVE_SECP256K1, pub, pub_len, digest, twin));
}

static void test_ecdsa__p256_verifies_the_rfc6979_vector(void **state)
{
    (void)state;
    uint8_t x[32], pub[65], mine[DDSM_HD_PUB_MAX], digest[32], sig[64];
    size_t mine_len = 0;
    hexs_exact(RFC6979_P256_X, x, 32);
    pub[0] = 0x04;
    hexs_exact(RFC6979_P256_UX, pub + 1, 32);
    hexs_exact(RFC6979_P256_UY, pub + 33, 32);
    hexs_exact(RFC6979_P256_SAMPLE_R, sig, 32);
    hexs_exact(RFC6979_P256_SAMPLE_S, sig + 32, 32);
    sha256("sample", 6, digest);

    /* Our public key of the RFC's private key is the RFC's U. */
    public_of(DDSM_CURVE_P256, x, true, mine, &mine_len);
    assert_int_equal(mine_len, 65);
    assert_memory_equal(mine, pub, 65);

    assert_true(verify(DDSM_CURVE_P256, pub, 65, digest, sig));
    sig[5] ^= 0x10;
    assert_false(verify(DDSM_CURVE_P256, pub, 65, digest, sig));
    sig[5] ^= 0x10;

    /* And what we sign with that key verifies under the RFC's public key, through OpenSSL. */
    uint8_t ours[64];
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_P256, x, digest, ours), DDSM_OK);
    assert_int_equal(openssl_verify("prime256v1", pub, 65, digest, 32, ours), 1);
}

static void test_ecdsa__compressed_and_uncompressed_public_keys_both_verify(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_P256};
    for (size_t i = 0; i < 2; i++) {
        uint8_t c[DDSM_HD_PUB_MAX], u[DDSM_HD_PUB_MAX], digest[32], sig[64];
        size_t c_len = 0, u_len = 0;
        public_of(curves[i], key_b, false, c, &c_len);
        public_of(curves[i], key_b, true, u, &u_len);
        assert_int_equal(c_len, 33);
        assert_int_equal(u_len, 65);
        sha256("both", 4, digest);
        assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], key_b, digest, sig), DDSM_OK);
        assert_true(verify(curves[i], c, c_len, digest, sig));
        assert_true(verify(curves[i], u, u_len, digest, sig));
    }
}

static void test_ecdsa__secp256k1_signature_verified_by_openssl(void **state)
{
    (void)state;
    uint8_t pub[65], digest[32], sig[64];
    size_t pub_len = 0;
    public_of(DDSM_CURVE_SECP256K1, key_b, true, pub, &pub_len);
    sha256("independent", 11, digest);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_SECP256K1, key_b, digest, sig), DDSM_OK);
    assert_int_equal(openssl_verify("secp256k1", pub, pub_len, digest, 32, sig), 1);
    digest[0] ^= 0x80;
    assert_int_equal(openssl_verify("secp256k1", pub, pub_len, digest, 32, sig), 0);
}

static void test_ecdsa__malformed_public_keys_are_input_errors(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_P256};
    for (size_t i = 0; i < 2; i++) {
        uint8_t u[DDSM_HD_PUB_MAX], digest[32] = {1}, sig[64] = {1};
        size_t u_len = 0;
        bool valid = true;
        public_of(curves[i], key_a, true, u, &u_len);

        /* Wrong lengths. */
        assert_int_equal(ddsm_ecdsa_verify(curves[i], u, 64, digest, sig, &valid), DDSM_E_INPUT);
        assert_int_equal(ddsm_ecdsa_verify(curves[i], u, 32, digest, sig, &valid), DDSM_E_INPUT);
        /* The hybrid form (06/07) and other prefixes. */
        u[0] = 0x06 | (u[64] & 1);
        assert_int_equal(ddsm_ecdsa_verify(curves[i], u, 65, digest, sig, &valid), DDSM_E_INPUT);
        u[0] = 0x05;
        assert_int_equal(ddsm_ecdsa_verify(curves[i], u, 65, digest, sig, &valid), DDSM_E_INPUT);
        /* A point off the curve: Y changed. */
        u[0] = 0x04;
        u[64] ^= 0x01;
        assert_int_equal(ddsm_ecdsa_verify(curves[i], u, 65, digest, sig, &valid), DDSM_E_INPUT);
        assert_true(valid); /* untouched on error */
    }
    /* x = 7 is no X coordinate of secp256k1. */
    uint8_t c[33] = {0x02}, digest[32] = {1}, sig[64] = {1};
    bool valid = true;
    c[32] = 0x07;
    assert_int_equal(ddsm_ecdsa_verify(DDSM_CURVE_SECP256K1, c, 33, digest, sig, &valid),
                     DDSM_E_INPUT);
}

static void test_ecdsa__r_or_s_out_of_range_is_an_invalid_signature(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_P256};
    static const char *const orders[] = {SECP256K1_N, P256_N};
    for (size_t i = 0; i < 2; i++) {
        uint8_t pub[DDSM_HD_PUB_MAX], digest[32], sig[64], bad[64];
        size_t pub_len = 0;
        public_of(curves[i], key_a, false, pub, &pub_len);
        sha256("range", 5, digest);
        assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], key_a, digest, sig), DDSM_OK);

        memcpy(bad, sig, 64);
        memset(bad, 0, 32); /* r = 0 */
        assert_false(verify(curves[i], pub, pub_len, digest, bad));
        memcpy(bad, sig, 64);
        memset(bad + 32, 0, 32); /* s = 0 */
        assert_false(verify(curves[i], pub, pub_len, digest, bad));
        memcpy(bad, sig, 64);
        hexs_exact(orders[i], bad, 32); /* r = n */
        assert_false(verify(curves[i], pub, pub_len, digest, bad));
        memcpy(bad, sig, 64);
        memset(bad + 32, 0xff, 32); /* s > n */
        assert_false(verify(curves[i], pub, pub_len, digest, bad));
    }
}

static void test_ecdsa__private_key_outside_1_to_n_minus_1_is_refused(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_P256};
    static const char *const orders[] = {SECP256K1_N, P256_N};
    for (size_t i = 0; i < 2; i++) {
        uint8_t k[32] = {0}, digest[32] = {7}, sig[64], before[64];
        uint8_t pub[DDSM_HD_PUB_MAX];
        size_t pub_len = 0;
        memset(sig, 0x33, sizeof(sig));
        memcpy(before, sig, sizeof(sig));
        assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], k, digest, sig), DDSM_E_INPUT);
        hexs_exact(orders[i], k, 32);
        assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], k, digest, sig), DDSM_E_INPUT);
        assert_int_equal(ddsm_ec_public_from_secret(curves[i], k, false, pub, &pub_len),
                         DDSM_E_INPUT);
        assert_memory_equal(sig, before, sizeof(sig)); /* untouched on error */
        /* n - 1 is the largest valid key. */
        k[31] -= 1;
        assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], k, digest, sig), DDSM_OK);
        public_of(curves[i], k, false, pub, &pub_len);
        assert_true(verify(curves[i], pub, pub_len, digest, sig));
    }
}

static void test_ecdsa__ed25519_is_not_an_ecdsa_curve(void **state)
{
    (void)state;
    uint8_t digest[32] = {0}, sig[64], pub[32] = {0};
    bool valid = false;
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_ED25519, key_a, digest, sig), DDSM_E_ARG);
    assert_int_equal(ddsm_ecdsa_verify(DDSM_CURVE_ED25519, pub, 32, digest, sig, &valid),
                     DDSM_E_ARG);
    assert_int_equal(ddsm_ecdsa_sign_secret(DDSM_CURVE_P256, NULL, digest, sig), DDSM_E_ARG);
}

/* CKM_ECDSA hands us the caller's hash as is: shorter hashes are left-padded, longer ones keep
 * their leftmost 256 bits, exactly as OpenSSL's ECDSA treats the same input. */
static void test_ecdsa__digest_from_hash_matches_ecdsa_truncation(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_P256};
    static const char *const groups[] = {"secp256k1", "prime256v1"};
    uint8_t h20[20], h48[48], h64[64], d[32];

    assert_int_equal(EVP_Digest("abc", 3, h20, NULL, EVP_sha1(), NULL), 1);
    assert_int_equal(EVP_Digest("abc", 3, h48, NULL, EVP_sha384(), NULL), 1);
    assert_int_equal(EVP_Digest("abc", 3, h64, NULL, EVP_sha512(), NULL), 1);

    assert_int_equal(ddsm_ecdsa_digest_from_hash(h20, 20, d), DDSM_OK);
    static const uint8_t zero12[12] = {0};
    assert_memory_equal(d, zero12, 12);
    assert_memory_equal(d + 12, h20, 20);
    assert_int_equal(ddsm_ecdsa_digest_from_hash(h64, 64, d), DDSM_OK);
    assert_memory_equal(d, h64, 32);
    assert_int_equal(ddsm_ecdsa_digest_from_hash(h64, 0, d), DDSM_E_INPUT);
    assert_int_equal(ddsm_ecdsa_digest_from_hash(h64, 65, d), DDSM_E_INPUT);

    for (size_t i = 0; i < 2; i++) {
        const struct {
            const uint8_t *h;
            size_t len;
        } hashes[] = {{h20, 20}, {h48, 48}, {h64, 64}};
        uint8_t pub[65], sig[64];
        size_t pub_len = 0;
        public_of(curves[i], key_a, true, pub, &pub_len);
        for (size_t j = 0; j < 3; j++) {
            assert_int_equal(ddsm_ecdsa_digest_from_hash(hashes[j].h, hashes[j].len, d), DDSM_OK);
            assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], key_a, d, sig), DDSM_OK);
            if (openssl_verify(groups[i], pub, pub_len, hashes[j].h, hashes[j].len, sig) != 1)
                fail_msg("%s: %zu-byte hash not verified by OpenSSL", groups[i], hashes[j].len);
        }
    }
}

/* ---- Ed25519 --------------------------------------------------------------------------------- */

static void test_ed25519__rfc8032_test1(void **state)
{
    (void)state;
    uint8_t secret[32], expected_pub[32], expected_sig[64], pub[DDSM_HD_PUB_MAX], sig[64];
    size_t pub_len = 0;
    bool valid = false;
    hexs_exact(RFC8032_T1_SECRET, secret, 32);
    hexs_exact(RFC8032_T1_PUBLIC, expected_pub, 32);
    hexs_exact(RFC8032_T1_SIG_R RFC8032_T1_SIG_S, expected_sig, 64);

    public_of(DDSM_CURVE_ED25519, secret, false, pub, &pub_len);
    assert_int_equal(pub_len, 32);
    assert_memory_equal(pub, expected_pub, 32);

    assert_int_equal(ddsm_ed25519_sign_secret(secret, NULL, 0, sig), DDSM_OK);
    assert_memory_equal(sig, expected_sig, 64);

    assert_int_equal(ddsm_ed25519_verify(expected_pub, NULL, 0, expected_sig, &valid), DDSM_OK);
    assert_true(valid);
    /* A flipped bit of the signature, or any message at all, fails. */
    expected_sig[63] ^= 0x01;
    assert_int_equal(ddsm_ed25519_verify(expected_pub, NULL, 0, expected_sig, &valid), DDSM_OK);
    assert_false(valid);
    expected_sig[63] ^= 0x01;
    const uint8_t one = 0x72;
    assert_int_equal(ddsm_ed25519_verify(expected_pub, &one, 1, expected_sig, &valid), DDSM_OK);
    assert_false(valid);
}

static void test_ed25519__signature_verifies_with_its_key_only(void **state)
{
    (void)state;
    const uint8_t msg[] = "pure EdDSA signs the message itself, not a hash";
    uint8_t pa[DDSM_HD_PUB_MAX], pb[DDSM_HD_PUB_MAX], sig[64], again[64], bad[64];
    size_t la = 0, lb = 0;
    bool valid = false;
    public_of(DDSM_CURVE_ED25519, key_a, false, pa, &la);
    public_of(DDSM_CURVE_ED25519, key_b, false, pb, &lb);
    assert_int_equal(ddsm_ed25519_sign_secret(key_a, msg, sizeof(msg), sig), DDSM_OK);
    assert_int_equal(ddsm_ed25519_sign_secret(key_a, msg, sizeof(msg), again), DDSM_OK);
    assert_memory_equal(sig, again, 64); /* Ed25519 is deterministic */
    assert_int_equal(ddsm_ed25519_verify(pa, msg, sizeof(msg), sig, &valid), DDSM_OK);
    assert_true(valid);
    assert_int_equal(ddsm_ed25519_verify(pb, msg, sizeof(msg), sig, &valid), DDSM_OK);
    assert_false(valid);
    for (size_t bit = 0; bit < 512; bit += 7) {
        memcpy(bad, sig, 64);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        valid = true;
        assert_int_equal(ddsm_ed25519_verify(pa, msg, sizeof(msg), bad, &valid), DDSM_OK);
        if (valid)
            fail_msg("Ed25519 signature with bit %zu flipped verifies", bit);
    }
    assert_int_equal(ddsm_ed25519_sign_secret(key_a, NULL, 3, sig), DDSM_E_ARG);
}

/* ---- with HD keys ---------------------------------------------------------------------------- */

static void test_ecsig__hd_derived_keys_sign_and_verify_on_every_curve(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_ED25519, DDSM_CURVE_P256};
    uint8_t seed[32];
    sha256("asset seed", 10, seed);
    ddsm_path path = {.depth = 3,
                      .index = {44 | DDSM_HARDENED, 0 | DDSM_HARDENED, 7 | DDSM_HARDENED}};
    for (size_t i = 0; i < 3; i++) {
        ddsm_hd_node node;
        uint8_t point[DDSM_HD_PUB_MAX], digest[32], sig[64];
        size_t point_len = 0;
        bool valid = false;
        assert_int_equal(ddsm_hd_derive_path_secret(curves[i], seed, 32, &path, &node, NULL),
                         DDSM_OK);
        /* The CKA_EC_POINT form is what a PKCS#11 client verifies with. */
        assert_int_equal(ddsm_hd_ec_point(curves[i], &node, point, &point_len), DDSM_OK);
        sha256("payload", 7, digest);
        if (curves[i] == DDSM_CURVE_ED25519) {
            assert_int_equal(ddsm_ed25519_sign_secret(node.secret_key, digest, 32, sig), DDSM_OK);
            assert_int_equal(ddsm_ed25519_verify(point, digest, 32, sig, &valid), DDSM_OK);
        } else {
            assert_int_equal(ddsm_ecdsa_sign_secret(curves[i], node.secret_key, digest, sig),
                             DDSM_OK);
            assert_int_equal(ddsm_ecdsa_verify(curves[i], point, point_len, digest, sig, &valid),
                             DDSM_OK);
        }
        assert_true(valid);
        ddsm_hd_node_wipe(&node);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ecdsa__secp256k1_signature_verifies_and_any_flipped_bit_fails),
        cmocka_unit_test(test_ecdsa__p256_signature_verifies_and_any_flipped_bit_fails),
        cmocka_unit_test(test_ecdsa__secp256k1_is_deterministic_rfc6979),
        cmocka_unit_test(test_ecdsa__secp256k1_works_again_after_shutdown),
        cmocka_unit_test(test_ecdsa__secp256k1_signatures_are_low_s),
        cmocka_unit_test(test_ecdsa__secp256k1_verify_accepts_the_high_s_twin),
        cmocka_unit_test(test_ecdsa__p256_verifies_the_rfc6979_vector),
        cmocka_unit_test(test_ecdsa__compressed_and_uncompressed_public_keys_both_verify),
        cmocka_unit_test(test_ecdsa__secp256k1_signature_verified_by_openssl),
        cmocka_unit_test(test_ecdsa__malformed_public_keys_are_input_errors),
        cmocka_unit_test(test_ecdsa__r_or_s_out_of_range_is_an_invalid_signature),
        cmocka_unit_test(test_ecdsa__private_key_outside_1_to_n_minus_1_is_refused),
        cmocka_unit_test(test_ecdsa__ed25519_is_not_an_ecdsa_curve),
        cmocka_unit_test(test_ecdsa__digest_from_hash_matches_ecdsa_truncation),
        cmocka_unit_test(test_ed25519__rfc8032_test1),
        cmocka_unit_test(test_ed25519__signature_verifies_with_its_key_only),
        cmocka_unit_test(test_ecsig__hd_derived_keys_sign_and_verify_on_every_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
