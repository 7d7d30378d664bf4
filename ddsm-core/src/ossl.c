/* SPDX-License-Identifier: Apache-2.0 */
#include "ddsm/ossl.h"

#include <pthread.h>

#include <openssl/provider.h>

#include "ddsm/log.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static OSSL_LIB_CTX *g_ctx;
static EVP_MD *g_sha256;
static EVP_CIPHER *g_aes_256_gcm;

static void create(void)
{
    /* OSSL_LIB_CTX_new reads no configuration: the host's OPENSSL_CONF never reaches it. */
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    if (ctx == NULL || OSSL_PROVIDER_load(ctx, "default") == NULL) {
        ddsm_log(DDSM_LOG_ERROR, "OpenSSL: cannot create the module's library context");
        OSSL_LIB_CTX_free(ctx);
        return;
    }
    g_sha256 = EVP_MD_fetch(ctx, "SHA256", NULL);
    g_aes_256_gcm = EVP_CIPHER_fetch(ctx, "AES-256-GCM", NULL);
    if (g_sha256 == NULL || g_aes_256_gcm == NULL) {
        ddsm_log(DDSM_LOG_ERROR, "OpenSSL: the default provider lacks SHA-256 or AES-256-GCM");
        EVP_MD_free(g_sha256);
        EVP_CIPHER_free(g_aes_256_gcm);
        g_sha256 = NULL;
        g_aes_256_gcm = NULL;
        OSSL_LIB_CTX_free(ctx);
        return;
    }
    g_ctx = ctx;
}

bool ddsm_ossl_ready(void)
{
    pthread_once(&g_once, create);
    return g_ctx != NULL;
}

OSSL_LIB_CTX *ddsm_ossl_ctx(void)
{
    pthread_once(&g_once, create);
    return g_ctx;
}

const EVP_MD *ddsm_ossl_sha256(void)
{
    pthread_once(&g_once, create);
    return g_sha256;
}

const EVP_CIPHER *ddsm_ossl_aes_256_gcm(void)
{
    pthread_once(&g_once, create);
    return g_aes_256_gcm;
}
