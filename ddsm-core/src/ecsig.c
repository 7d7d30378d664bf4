/* SPDX-License-Identifier: Apache-2.0 */
/* EC signing primitives: ECDSA on secp256k1 with libsecp256k1, ECDSA on P-256 and Ed25519 with
 * OpenSSL 3 EVP. Signatures in the PKCS#11 raw form (r || s). Private keys are only ever read
 * here: libsecp256k1 takes them by pointer, OpenSSL copies them into its own key objects, which
 * clear them when freed. */
#include "ddsm/ecsig.h"
#include "ddsm/ossl.h"

#include <openssl/bn.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <secp256k1.h>
#include <stdatomic.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/secmem.h"

#define SCALAR_LEN 32
#define ECDSA_DER_MAX 80 /* SEQUENCE { INTEGER r, INTEGER s } of a 256-bit group: at most 72 */

/* ---- the process-wide libsecp256k1 context ------------------------------------------------ */

static pthread_mutex_t secp_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(secp256k1_context *) secp_ctx;

/* A new randomised context, or NULL. Its blinding state is a secret until destroyed. */
static secp256k1_context *secp_new(void)
{
    uint8_t seed[32];
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);

    if (ctx == NULL) {
        ddsm_log(DDSM_LOG_ERROR, "secp256k1: cannot create the context");
        goto out;
    }
    /* Randomisation blinds the signing and key-generation scalar multiplications. */
    if (RAND_priv_bytes_ex(ddsm_ossl_ctx(), seed, sizeof(seed), 0) != 1) {
        (void)ddsm_err_openssl("secp256k1 context randomisation");
        secp256k1_context_destroy(ctx);
        ctx = NULL;
        goto out;
    }
    if (!secp256k1_context_randomize(ctx, seed)) {
        ddsm_log(DDSM_LOG_ERROR, "secp256k1: cannot randomise the context");
        secp256k1_context_destroy(ctx);
        ctx = NULL;
    }
out:
    ddsm_wipe(seed, sizeof(seed));
    return ctx;
}

const struct secp256k1_context_struct *ddsm_secp256k1_context(void)
{
    secp256k1_context *ctx = atomic_load_explicit(&secp_ctx, memory_order_acquire);
    if (ctx != NULL)
        return ctx;
    pthread_mutex_lock(&secp_lock);
    ctx = atomic_load_explicit(&secp_ctx, memory_order_relaxed);
    if (ctx == NULL) {
        ctx = secp_new();
        atomic_store_explicit(&secp_ctx, ctx, memory_order_release);
    }
    pthread_mutex_unlock(&secp_lock);
    return ctx;
}

void ddsm_ec_shutdown(void)
{
    pthread_mutex_lock(&secp_lock);
    secp256k1_context *ctx = atomic_exchange(&secp_ctx, NULL);
    if (ctx != NULL)
        secp256k1_context_destroy(ctx); /* clears the blinding state */
    pthread_mutex_unlock(&secp_lock);
}

/* ---- helpers --------------------------------------------------------------------------------- */

/* Strict SEC1: 02/03 || X (33 bytes) or 04 || X || Y (65). The "hybrid" 06/07 form that both
 * libraries would otherwise accept is refused. */
static bool sec1_shape_ok(const uint8_t *pub, size_t len)
{
    if (pub == NULL)
        return false;
    if (len == DDSM_HD_PUB_COMPRESSED_LEN)
        return pub[0] == 0x02 || pub[0] == 0x03;
    if (len == DDSM_HD_PUB_UNCOMPRESSED_LEN)
        return pub[0] == 0x04;
    return false;
}

/* P-256 public point of a private scalar (reads the private key). */
static ddsm_err p256_public_secret(const uint8_t priv_secret[SCALAR_LEN], bool uncompressed,
                                   uint8_t pub[DDSM_HD_PUB_MAX], size_t *pub_len)
{
    EC_GROUP *group = NULL;
    BN_CTX *bn = NULL;
    BIGNUM *k = NULL;
    EC_POINT *point = NULL;
    ddsm_err e = DDSM_OK;

    group = EC_GROUP_new_by_curve_name_ex(ddsm_ossl_ctx(), NULL, NID_X9_62_prime256v1);
    bn = BN_CTX_secure_new_ex(ddsm_ossl_ctx());
    k = BN_secure_new();
    point = (group != NULL) ? EC_POINT_new(group) : NULL;
    if (group == NULL || bn == NULL || k == NULL || point == NULL ||
        BN_bin2bn(priv_secret, SCALAR_LEN, k) == NULL) {
        e = ddsm_err_openssl("P-256 public key");
        goto out;
    }
    BN_set_flags(k, BN_FLG_CONSTTIME);
    if (BN_is_zero(k) || BN_cmp(k, EC_GROUP_get0_order(group)) >= 0) {
        e = DDSM_E_INPUT;
        goto out;
    }
    if (EC_POINT_mul(group, point, k, NULL, NULL, bn) != 1) {
        e = ddsm_err_openssl("P-256 public key");
        goto out;
    }
    size_t n = EC_POINT_point2oct(
        group, point, uncompressed ? POINT_CONVERSION_UNCOMPRESSED : POINT_CONVERSION_COMPRESSED,
        pub, DDSM_HD_PUB_MAX, bn);
    if (n == 0) {
        e = ddsm_err_openssl("P-256 public key");
        goto out;
    }
    *pub_len = n;
out:
    EC_POINT_clear_free(point);
    BN_clear_free(k);
    BN_CTX_free(bn);
    EC_GROUP_free(group);
    return e;
}

/* An OpenSSL P-256 key from its parts: the private scalar (a secret) when priv_secret is not
 * NULL, and the SEC1 public point (at most 65 bytes).
 *
 * The key is decoded from DER (SEC1 ECPrivateKey, or SubjectPublicKeyInfo) by OpenSSL's provider
 * decoders rather than built with EVP_PKEY_fromdata: fromdata starts from a key-type context, and
 * when the host application made an ENGINE the default for EC (`openssl pkeyutl -engine pkcs11`
 * does, and libddsm-pkcs11.so then runs inside that very process) that context is the engine's
 * legacy method, which cannot import keys ("operation not supported for this keytype"). A decoded
 * key is a provider key, whose operations never go through an engine. */
static ddsm_err p256_pkey(const uint8_t *priv_secret, const uint8_t *pub, size_t pub_len,
                          EVP_PKEY **out)
{
    static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const uint8_t oid_ec[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
    uint8_t der[160]; /* a secret while it holds the scalar; every length below is < 128 */
    size_t n = 0;
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx = NULL;
    ddsm_err e = DDSM_OK;

    if (pub_len == 0 || pub_len > DDSM_HD_PUB_MAX)
        return DDSM_E_INPUT;
    if (priv_secret != NULL) {
        /* ECPrivateKey ::= SEQUENCE { 1, OCTET STRING d, [0] curve OID, [1] BIT STRING Q } */
        size_t inner = 3 + 2 + SCALAR_LEN + 2 + sizeof(oid_p256) + 2 + 3 + pub_len;
        der[n++] = 0x30;
        der[n++] = (uint8_t)inner;
        memcpy(der + n, "\x02\x01\x01\x04\x20", 5);
        n += 5;
        memcpy(der + n, priv_secret, SCALAR_LEN);
        n += SCALAR_LEN;
        der[n++] = 0xa0;
        der[n++] = sizeof(oid_p256);
        memcpy(der + n, oid_p256, sizeof(oid_p256));
        n += sizeof(oid_p256);
        der[n++] = 0xa1;
        der[n++] = (uint8_t)(3 + pub_len);
    } else {
        /* SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { id-ecPublicKey, curve }, BIT STRING Q } */
        size_t alg = sizeof(oid_ec) + sizeof(oid_p256);
        der[n++] = 0x30;
        der[n++] = (uint8_t)(2 + alg + 3 + pub_len);
        der[n++] = 0x30;
        der[n++] = (uint8_t)alg;
        memcpy(der + n, oid_ec, sizeof(oid_ec));
        n += sizeof(oid_ec);
        memcpy(der + n, oid_p256, sizeof(oid_p256));
        n += sizeof(oid_p256);
    }
    der[n++] = 0x03; /* BIT STRING, no unused bits */
    der[n++] = (uint8_t)(1 + pub_len);
    der[n++] = 0x00;
    memcpy(der + n, pub, pub_len);
    n += pub_len;

    dctx = OSSL_DECODER_CTX_new_for_pkey(
        &pkey, "DER", priv_secret != NULL ? "type-specific" : "SubjectPublicKeyInfo", "EC",
        priv_secret != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, ddsm_ossl_ctx(), NULL);
    const unsigned char *p = der;
    size_t left = n;
    if (dctx == NULL || OSSL_DECODER_from_data(dctx, &p, &left) != 1 || pkey == NULL) {
        EVP_PKEY_free(pkey);
        e = ddsm_err_openssl("P-256 key import");
        goto out;
    }
    *out = pkey;
out:
    OSSL_DECODER_CTX_free(dctx);
    ddsm_wipe(der, sizeof(der));
    return e;
}

static ddsm_err p256_sign_secret(const uint8_t priv_secret[SCALAR_LEN],
                                 const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                                 uint8_t sig[DDSM_ECDSA_SIG_LEN])
{
    uint8_t pub[DDSM_HD_PUB_MAX];
    size_t pub_len = 0;
    uint8_t der[ECDSA_DER_MAX];
    size_t der_len = sizeof(der);
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *sctx = NULL;
    ECDSA_SIG *es = NULL;
    const BIGNUM *r = NULL, *s = NULL;
    ddsm_err e;

    e = p256_public_secret(priv_secret, false, pub, &pub_len);
    if (e != DDSM_OK)
        goto out;
    e = p256_pkey(priv_secret, pub, pub_len, &pkey);
    if (e != DDSM_OK)
        goto out;
    sctx = EVP_PKEY_CTX_new_from_pkey(ddsm_ossl_ctx(), pkey, NULL);
    /* No signature digest set: the input is taken as the hash, as CKM_ECDSA wants. */
    if (sctx == NULL || EVP_PKEY_sign_init(sctx) != 1 ||
        EVP_PKEY_sign(sctx, der, &der_len, digest, DDSM_ECDSA_DIGEST_LEN) != 1)
        goto fail;
    const unsigned char *p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (es == NULL)
        goto fail;
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, sig, SCALAR_LEN) != SCALAR_LEN ||
        BN_bn2binpad(s, sig + SCALAR_LEN, SCALAR_LEN) != SCALAR_LEN)
        goto fail;
    e = DDSM_OK;
    goto out;
fail:
    e = ddsm_err_openssl("P-256 ECDSA sign");
out:
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(sctx);
    EVP_PKEY_free(pkey);
    return e;
}

/* 1 <= x < n for a 32-byte big-endian x and P-256's order. */
static ddsm_err p256_scalar_in_range(const uint8_t x[SCALAR_LEN], bool *in_range)
{
    EC_GROUP *group = EC_GROUP_new_by_curve_name_ex(ddsm_ossl_ctx(), NULL, NID_X9_62_prime256v1);
    BIGNUM *v = BN_new();
    ddsm_err e = DDSM_OK;

    if (group == NULL || v == NULL || BN_bin2bn(x, SCALAR_LEN, v) == NULL) {
        e = ddsm_err_openssl("P-256 scalar");
        goto out;
    }
    *in_range = !BN_is_zero(v) && BN_cmp(v, EC_GROUP_get0_order(group)) < 0;
out:
    BN_free(v);
    EC_GROUP_free(group);
    return e;
}

static ddsm_err p256_verify(const uint8_t *pub, size_t pub_len,
                            const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                            const uint8_t sig[DDSM_ECDSA_SIG_LEN], bool *valid)
{
    EC_GROUP *group = NULL;
    EC_POINT *point = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *vctx = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *der = NULL;
    bool r_ok = false, s_ok = false;
    ddsm_err e = DDSM_OK;

    /* The public key first: a point that is not on the curve is the caller's input error. */
    group = EC_GROUP_new_by_curve_name_ex(ddsm_ossl_ctx(), NULL, NID_X9_62_prime256v1);
    point = (group != NULL) ? EC_POINT_new(group) : NULL;
    if (point == NULL) {
        e = ddsm_err_openssl("P-256 verify");
        goto out;
    }
    if (EC_POINT_oct2point(group, point, pub, pub_len, NULL) != 1) {
        ERR_clear_error();
        e = DDSM_E_INPUT;
        goto out;
    }
    e = p256_scalar_in_range(sig, &r_ok);
    if (e == DDSM_OK)
        e = p256_scalar_in_range(sig + SCALAR_LEN, &s_ok);
    if (e != DDSM_OK)
        goto out;
    if (!r_ok || !s_ok) {
        *valid = false;
        goto out;
    }
    e = p256_pkey(NULL, pub, pub_len, &pkey);
    if (e != DDSM_OK)
        goto out;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, SCALAR_LEN, NULL);
    s = BN_bin2bn(sig + SCALAR_LEN, SCALAR_LEN, NULL);
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto fail;
    r = s = NULL; /* owned by es now */
    int der_len = i2d_ECDSA_SIG(es, &der);
    vctx = EVP_PKEY_CTX_new_from_pkey(ddsm_ossl_ctx(), pkey, NULL);
    if (der_len <= 0 || vctx == NULL || EVP_PKEY_verify_init(vctx) != 1)
        goto fail;
    int rc = EVP_PKEY_verify(vctx, der, (size_t)der_len, digest, DDSM_ECDSA_DIGEST_LEN);
    if (rc < 0)
        goto fail;
    if (rc == 0)
        ERR_clear_error(); /* a wrong signature is an answer, not an error */
    *valid = (rc == 1);
    goto out;
fail:
    e = ddsm_err_openssl("P-256 verify");
out:
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(vctx);
    EVP_PKEY_free(pkey);
    EC_POINT_free(point);
    EC_GROUP_free(group);
    return e;
}

static ddsm_err secp_sign_secret(const uint8_t priv_secret[SCALAR_LEN],
                                 const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                                 uint8_t sig[DDSM_ECDSA_SIG_LEN])
{
    const secp256k1_context *ctx = ddsm_secp256k1_context();
    secp256k1_ecdsa_signature s;

    if (ctx == NULL)
        return DDSM_E_CRYPTO;
    if (!secp256k1_ec_seckey_verify(ctx, priv_secret))
        return DDSM_E_INPUT;
    /* NULL nonce function: RFC 6979. The result is always low-S. */
    if (!secp256k1_ecdsa_sign(ctx, &s, digest, priv_secret, NULL, NULL))
        return DDSM_E_CRYPTO;
    if (!secp256k1_ecdsa_signature_serialize_compact(ctx, sig, &s))
        return DDSM_E_CRYPTO;
    return DDSM_OK;
}

static ddsm_err secp_verify(const uint8_t *pub, size_t pub_len,
                            const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                            const uint8_t sig[DDSM_ECDSA_SIG_LEN], bool *valid)
{
    const secp256k1_context *ctx = ddsm_secp256k1_context();
    secp256k1_pubkey pk;
    secp256k1_ecdsa_signature s;

    if (ctx == NULL)
        return DDSM_E_CRYPTO;
    if (!secp256k1_ec_pubkey_parse(ctx, &pk, pub, pub_len))
        return DDSM_E_INPUT;
    /* r or s >= n: not a signature at all. */
    if (!secp256k1_ecdsa_signature_parse_compact(ctx, &s, sig)) {
        *valid = false;
        return DDSM_OK;
    }
    /* libsecp256k1 verifies low-S only (Bitcoin's malleability rule); plain ECDSA accepts both
     * s and n - s, so normalise first. */
    (void)secp256k1_ecdsa_signature_normalize(ctx, &s, &s);
    *valid = secp256k1_ecdsa_verify(ctx, &s, digest, &pk) == 1;
    return DDSM_OK;
}

/* ---- public functions ------------------------------------------------------------------------ */

ddsm_err ddsm_ecdsa_sign_secret(ddsm_curve curve, const uint8_t priv_secret[DDSM_EC_PRIV_LEN],
                                const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                                uint8_t sig[DDSM_ECDSA_SIG_LEN])
{
    uint8_t out[DDSM_ECDSA_SIG_LEN];
    ddsm_err e;

    if (priv_secret == NULL || digest == NULL || sig == NULL)
        return DDSM_E_ARG;
    if (curve == DDSM_CURVE_SECP256K1)
        e = secp_sign_secret(priv_secret, digest, out);
    else if (curve == DDSM_CURVE_P256)
        e = p256_sign_secret(priv_secret, digest, out);
    else
        return DDSM_E_ARG;
    if (e == DDSM_OK)
        memcpy(sig, out, sizeof(out));
    return e;
}

ddsm_err ddsm_ecdsa_verify(ddsm_curve curve, const uint8_t *pub, size_t pub_len,
                           const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                           const uint8_t sig[DDSM_ECDSA_SIG_LEN], bool *valid)
{
    bool ok = false;
    ddsm_err e;

    if (pub == NULL || digest == NULL || sig == NULL || valid == NULL)
        return DDSM_E_ARG;
    if (curve != DDSM_CURVE_SECP256K1 && curve != DDSM_CURVE_P256)
        return DDSM_E_ARG;
    if (!sec1_shape_ok(pub, pub_len))
        return DDSM_E_INPUT;
    if (curve == DDSM_CURVE_SECP256K1)
        e = secp_verify(pub, pub_len, digest, sig, &ok);
    else
        e = p256_verify(pub, pub_len, digest, sig, &ok);
    if (e == DDSM_OK)
        *valid = ok;
    return e;
}

ddsm_err ddsm_ecdsa_digest_from_hash(const uint8_t *hash, size_t len,
                                     uint8_t digest[DDSM_ECDSA_DIGEST_LEN])
{
    if (hash == NULL || digest == NULL)
        return DDSM_E_ARG;
    if (len == 0 || len > 64)
        return DDSM_E_INPUT;
    if (len >= DDSM_ECDSA_DIGEST_LEN) {
        memcpy(digest, hash, DDSM_ECDSA_DIGEST_LEN);
    } else {
        memset(digest, 0, DDSM_ECDSA_DIGEST_LEN - len);
        memcpy(digest + DDSM_ECDSA_DIGEST_LEN - len, hash, len);
    }
    return DDSM_OK;
}

ddsm_err ddsm_ec_public_from_secret(ddsm_curve curve, const uint8_t priv_secret[DDSM_EC_PRIV_LEN],
                                    bool uncompressed, uint8_t pub[DDSM_HD_PUB_MAX],
                                    size_t *pub_len)
{
    uint8_t out[DDSM_HD_PUB_MAX];
    size_t out_len = 0;
    ddsm_err e = DDSM_OK;

    if (priv_secret == NULL || pub == NULL || pub_len == NULL)
        return DDSM_E_ARG;
    switch (curve) {
    case DDSM_CURVE_SECP256K1: {
        const secp256k1_context *ctx = ddsm_secp256k1_context();
        secp256k1_pubkey pk;
        out_len = uncompressed ? DDSM_HD_PUB_UNCOMPRESSED_LEN : DDSM_HD_PUB_COMPRESSED_LEN;
        if (ctx == NULL)
            e = DDSM_E_CRYPTO;
        else if (!secp256k1_ec_seckey_verify(ctx, priv_secret))
            e = DDSM_E_INPUT;
        else if (!secp256k1_ec_pubkey_create(ctx, &pk, priv_secret) ||
                 !secp256k1_ec_pubkey_serialize(ctx, out, &out_len, &pk,
                                                uncompressed ? SECP256K1_EC_UNCOMPRESSED
                                                             : SECP256K1_EC_COMPRESSED))
            e = DDSM_E_CRYPTO;
        break;
    }
    case DDSM_CURVE_P256:
        e = p256_public_secret(priv_secret, uncompressed, out, &out_len);
        break;
    case DDSM_CURVE_ED25519: {
        EVP_PKEY *pkey =
            EVP_PKEY_new_raw_private_key_ex(ddsm_ossl_ctx(), "ED25519", NULL, priv_secret, DDSM_EC_PRIV_LEN);
        out_len = DDSM_HD_ED25519_PUB_LEN;
        if (pkey == NULL || EVP_PKEY_get_raw_public_key(pkey, out, &out_len) != 1 ||
            out_len != DDSM_HD_ED25519_PUB_LEN)
            e = ddsm_err_openssl("Ed25519 public key");
        EVP_PKEY_free(pkey);
        break;
    }
    default:
        return DDSM_E_ARG;
    }
    if (e == DDSM_OK) {
        memcpy(pub, out, out_len);
        *pub_len = out_len;
    }
    return e;
}

ddsm_err ddsm_ed25519_sign_secret(const uint8_t priv_secret[DDSM_EC_PRIV_LEN], const uint8_t *msg,
                                  size_t len, uint8_t sig[DDSM_ED25519_SIG_LEN])
{
    static const uint8_t empty[1] = {0};
    uint8_t out[DDSM_ED25519_SIG_LEN];
    size_t out_len = sizeof(out);
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    ddsm_err e = DDSM_OK;

    if (priv_secret == NULL || (msg == NULL && len > 0) || sig == NULL)
        return DDSM_E_ARG;
    pkey = EVP_PKEY_new_raw_private_key_ex(ddsm_ossl_ctx(), "ED25519", NULL, priv_secret, DDSM_EC_PRIV_LEN);
    md = EVP_MD_CTX_new();
    /* Pure EdDSA: no digest in the init, the whole message in one EVP_DigestSign. */
    if (pkey == NULL || md == NULL || EVP_DigestSignInit_ex(md, NULL, NULL, ddsm_ossl_ctx(), NULL, pkey, NULL) != 1 ||
        EVP_DigestSign(md, out, &out_len, msg != NULL ? msg : empty, len) != 1 ||
        out_len != DDSM_ED25519_SIG_LEN) {
        e = ddsm_err_openssl("Ed25519 sign");
        goto out;
    }
    memcpy(sig, out, sizeof(out));
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return e;
}

ddsm_err ddsm_ed25519_verify(const uint8_t pub[DDSM_HD_ED25519_PUB_LEN], const uint8_t *msg,
                             size_t len, const uint8_t sig[DDSM_ED25519_SIG_LEN], bool *valid)
{
    static const uint8_t empty[1] = {0};
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    ddsm_err e = DDSM_OK;

    if (pub == NULL || (msg == NULL && len > 0) || sig == NULL || valid == NULL)
        return DDSM_E_ARG;
    pkey = EVP_PKEY_new_raw_public_key_ex(ddsm_ossl_ctx(), "ED25519", NULL, pub, DDSM_HD_ED25519_PUB_LEN);
    md = EVP_MD_CTX_new();
    if (pkey == NULL || md == NULL || EVP_DigestVerifyInit_ex(md, NULL, NULL, ddsm_ossl_ctx(), NULL, pkey, NULL) != 1) {
        e = ddsm_err_openssl("Ed25519 verify");
        goto out;
    }
    int rc = EVP_DigestVerify(md, sig, DDSM_ED25519_SIG_LEN, msg != NULL ? msg : empty, len);
    if (rc < 0) {
        e = ddsm_err_openssl("Ed25519 verify");
        goto out;
    }
    if (rc == 0)
        ERR_clear_error(); /* a wrong signature (or a key that is no point) is an answer */
    *valid = (rc == 1);
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return e;
}
