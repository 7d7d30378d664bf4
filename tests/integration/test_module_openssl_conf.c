/* SPDX-License-Identifier: Apache-2.0 */
/* A C client whose OpenSSL configuration loads pkcs11-provider pointed at this same module, with
 * `pkcs11-module-load-behavior = early` (conf/openssl-pkcs11-provider.cnf plus that line): the
 * provider initialises the module from inside the client's first C_Initialize. The client then
 * uses the module directly (a P-256 ECDSA-SHA256 signature in parts, verified by the module) and
 * through OpenSSL (the same key loaded by PKCS#11 URI from the provider, a signature verified with
 * the public key the provider gives), in one process.
 *
 * Before: the client's C_Initialize never returned (the backend's first OpenSSL call loaded the
 * configuration, the provider called C_Initialize again on the same thread, which waited for the
 * lock its caller held). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"

#define P2_LABEL "p2"
#define P2_PATH "m/1'/0'"

static char g_uri[512];

/* The provider's configuration (OPENSSL_CONF), before the first OpenSSL call of this process. */
static void write_openssl_conf(void)
{
    const char *dir = getenv("DDSM_TEST_DIR"), *src = getenv("DDSM_SOURCE_DIR");
    assert_non_null(dir);
    assert_non_null(src);
    char conf[1024], pin[1024], cmd[4096];
    snprintf(conf, sizeof(conf), "%s/openssl-early.cnf", dir);
    snprintf(pin, sizeof(pin), "%s/pin", dir);
    FILE *f = fopen(pin, "w");
    assert_non_null(f);
    fputs(getenv("DDSM_TEST_PIN"), f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "sed 's/^activate = 1$/activate = 1\\npkcs11-module-load-behavior = early/' "
             "'%s/conf/openssl-pkcs11-provider.cnf' > '%s'",
             src, conf);
    assert_int_equal(system(cmd), 0);
    setenv("OPENSSL_CONF", conf, 1);
    setenv("DDSM_PIN_FILE", pin, 1);
}

static void test_openssl_conf__module_and_provider_share_the_process(void **state)
{
    /* The provider's nested C_Initialize ran first: this one finds the module initialised. */
    CK_RV rv = p11->C_Initialize(NULL);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
        fail_msg("C_Initialize: %s", ddsm_rv_name(rv));
    CK_SESSION_HANDLE s = p11_open_user();

    char label[128];
    snprintf(label, sizeof(label), P2_LABEL "/" P2_PATH);
    CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[] = {{CKA_LABEL, label, strlen(label)}, {CKA_CLASS, &priv_class, sizeof(priv_class)}};
    CK_OBJECT_HANDLE priv, pub;
    assert_int_equal(p11_find(s, t, 2, &priv, 1), 1);
    t[1].pValue = &pub_class;
    assert_int_equal(p11_find(s, t, 2, &pub, 1), 1);

    /* ECDSA-SHA256 in parts: the module's own SHA-256 (its private OpenSSL context). */
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    static const uint8_t part1[] = "signed by the module ", part2[] = "in a provider process";
    uint8_t sig[64];
    CK_ULONG sig_len = sizeof(sig);
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, priv));
    assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)part1, sizeof(part1) - 1));
    assert_rv(CKR_OK, p11->C_SignUpdate(s, (CK_BYTE_PTR)part2, sizeof(part2) - 1));
    assert_rv(CKR_OK, p11->C_SignFinal(s, sig, &sig_len));
    assert_int_equal(sig_len, 64);
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &m, pub));
    assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)part1, sizeof(part1) - 1));
    assert_rv(CKR_OK, p11->C_VerifyUpdate(s, (CK_BYTE_PTR)part2, sizeof(part2) - 1));
    assert_rv(CKR_OK, p11->C_VerifyFinal(s, sig, sig_len));

    /* The same key through OpenSSL and the provider, by URI. */
    EVP_PKEY *key = NULL;
    OSSL_STORE_CTX *st = OSSL_STORE_open(g_uri, NULL, NULL, NULL, NULL);
    assert_non_null(st);
    while (key == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (info != NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            key = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    assert_non_null(key);
    static const uint8_t msg[] = "signed through the provider";
    uint8_t der[80];
    size_t der_len = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL), 1);
    assert_int_equal(EVP_DigestSign(md, der, &der_len, msg, sizeof(msg) - 1), 1);
    /* Verified by OpenSSL's default provider, with the public key the provider gives. */
    unsigned char *spki = NULL;
    int spki_len = i2d_PUBKEY(key, &spki);
    assert_true(spki_len > 0);
    const unsigned char *q = spki;
    EVP_PKEY *pubkey = d2i_PUBKEY_ex(NULL, &q, spki_len, NULL, "provider=default");
    assert_non_null(pubkey);
    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, "provider=default", pubkey,
                                             NULL),
                     1);
    assert_int_equal(EVP_DigestVerify(md, der, der_len, msg, sizeof(msg) - 1), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pubkey);
    OPENSSL_free(spki);
    EVP_PKEY_free(key);

    assert_rv(CKR_OK, p11->C_CloseSession(s));
    /* The provider may hold sessions of its own: C_Finalize is the provider's to call too, at
     * exit. Whoever calls it first ends the module for both. */
}

int main(void)
{
    p11_load();
    p11_setup_store();
    assert_int_equal(p11_ctl("asset register --label %s --type p256 --default-path \"%s\" >/dev/null",
                             P2_LABEL, P2_PATH), 0);
    assert_int_equal(p11_ctl("asset activate %s >/dev/null", P2_LABEL), 0);
    FILE *p = popen("DDSM_PIN=\"$DDSM_TEST_PIN\" \"$DDSM_CTL\" asset uri " P2_LABEL " --type private", "r");
    assert_non_null(p);
    assert_non_null(fgets(g_uri, sizeof(g_uri), p));
    assert_int_equal(pclose(p), 0);
    g_uri[strcspn(g_uri, "\n")] = '\0';
    /* Last: ddsmctl above must not read it. Before this process's first OpenSSL call. */
    write_openssl_conf();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openssl_conf__module_and_provider_share_the_process),
    };
    return cmocka_run_group_tests_name("openssl_conf", tests, NULL, NULL);
}
