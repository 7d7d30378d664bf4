/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm-core's OpenSSL work runs in its private library context (ddsm/ossl.h), not in the
 * process's default one. The test first leaves the default context with OpenSSL's null provider
 * only (as a host's OPENSSL_CONF may load providers of its own and no default provider): nothing
 * can be fetched there any more, and yet HMAC-SHA256, SLIP-10 P-256 and Ed25519 derivation, P-256
 * ECDSA and Ed25519 signatures, all through ddsm-core, still work. Each of them failed while
 * ddsm-core used the default context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/provider.h>
#include <string.h>

#include "ddsm/ecsig.h"
#include "ddsm/hd.h"
#include "ddsm/mac.h"
#include "ddsm/ossl.h"
#include "ddsm/path.h"

static const uint8_t seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static OSSL_PROVIDER *g_null;

static int default_context_without_default_provider(void **state)
{
    (void)state;
    /* Loading any provider explicitly keeps OpenSSL from loading the default one implicitly. */
    g_null = OSSL_PROVIDER_load(NULL, "null");
    if (g_null == NULL)
        return -1;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (md != NULL) { /* the premise: the default context can do nothing */
        EVP_MD_free(md);
        return -1;
    }
    return 0;
}

static int unload_null_provider(void **state)
{
    (void)state;
    return OSSL_PROVIDER_unload(g_null) == 1 ? 0 : -1;
}

static void test_ossl__private_context_has_the_default_provider(void **state)
{
    OSSL_LIB_CTX *ctx = ddsm_ossl_ctx();
    assert_non_null(ctx);
    assert_ptr_not_equal(ctx, OSSL_LIB_CTX_get0_global_default());
    assert_true(OSSL_PROVIDER_available(ctx, "default"));
    assert_false(OSSL_PROVIDER_available(ctx, "null"));
    assert_non_null(ddsm_ossl_sha256());
    assert_string_equal(OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(ddsm_ossl_sha256())),
                        "default");
    assert_non_null(ddsm_ossl_aes_256_gcm());
}

static void test_ossl__hmac_works_without_the_default_context(void **state)
{
    uint8_t out[DDSM_MAC_LEN], long_key[100];
    memset(long_key, 0xaa, sizeof(long_key));
    assert_int_equal(ddsm_hmac_sha256(seed, sizeof(seed), (const uint8_t *)"x", 1, out), DDSM_OK);
    /* A key longer than a block is hashed first (SHA-256). */
    assert_int_equal(ddsm_hmac_sha256(long_key, sizeof(long_key), (const uint8_t *)"x", 1, out),
                     DDSM_OK);
}

static void derive_and_sign(ddsm_curve curve)
{
    ddsm_path path;
    const char *why = NULL;
    ddsm_hd_node node;
    uint8_t pub[DDSM_HD_PUB_MAX], digest[DDSM_ECDSA_DIGEST_LEN], sig[DDSM_ECDSA_SIG_LEN];
    size_t pub_len = 0;
    bool valid = false;
    memset(digest, 0x5a, sizeof(digest));
    assert_int_equal(ddsm_path_parse("m/1'/2'", 7, &path, &why), DDSM_OK);
    assert_int_equal(ddsm_hd_derive_path_secret(curve, seed, sizeof(seed), &path, &node, &why),
                     DDSM_OK);
    assert_int_equal(ddsm_ec_public_from_secret(curve, node.secret_key, true, pub, &pub_len), DDSM_OK);
    if (curve == DDSM_CURVE_ED25519) {
        assert_int_equal(ddsm_ed25519_sign_secret(node.secret_key, digest, sizeof(digest), sig), DDSM_OK);
        assert_int_equal(ddsm_ed25519_verify(pub, digest, sizeof(digest), sig, &valid), DDSM_OK);
    } else {
        assert_int_equal(ddsm_ecdsa_sign_secret(curve, node.secret_key, digest, sig), DDSM_OK);
        assert_int_equal(ddsm_ecdsa_verify(curve, pub, pub_len, digest, sig, &valid), DDSM_OK);
    }
    assert_true(valid);
    ddsm_hd_node_wipe(&node);
}

static void test_ossl__p256_works_without_the_default_context(void **state)
{
    derive_and_sign(DDSM_CURVE_P256);
}

static void test_ossl__ed25519_works_without_the_default_context(void **state)
{
    derive_and_sign(DDSM_CURVE_ED25519);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ossl__private_context_has_the_default_provider),
        cmocka_unit_test(test_ossl__hmac_works_without_the_default_context),
        cmocka_unit_test(test_ossl__p256_works_without_the_default_context),
        cmocka_unit_test(test_ossl__ed25519_works_without_the_default_context),
    };
    return cmocka_run_group_tests_name("ossl", tests, default_context_without_default_provider,
                                       unload_null_provider);
}
