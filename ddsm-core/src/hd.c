/* SPDX-License-Identifier: Apache-2.0 */
/* HD derivation of signing keys: BIP-32 (secp256k1, with libsecp256k1) and SLIP-10 (Ed25519 and
 * NIST P-256, with OpenSSL), the BIP-32 extended-key serialisation and its parser.
 *
 * Everything named *_secret, every I = HMAC-SHA512(...) and every node handled here is key
 * material: local copies are wiped before each return, on every path. */
#include "ddsm/hd.h"
#include "ddsm/ossl.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <secp256k1.h>
#include <string.h>

#include "ddsm/ecsig.h"
#include "ddsm/secmem.h"

#define I_LEN 64 /* HMAC-SHA512 output: I_L || I_R */
#define HALF 32  /* I_L, I_R, scalars, chain codes */
#define HASH160_LEN 20
/* SLIP-10 P-256: I_L >= n happens with probability ~2^-32 per try, so a thousand consecutive
 * invalid keys only ever mean a broken HMAC: stop rather than spin. */
#define SLIP10_MAX_TRIES 1000

static const char *const curve_names[] = {
    [DDSM_CURVE_SECP256K1] = "secp256k1",
    [DDSM_CURVE_ED25519] = "ed25519",
    [DDSM_CURVE_P256] = "p256",
};

/* The HMAC key of the master key generation, per curve (BIP-32, SLIP-10). */
static const char *const master_keys[] = {
    [DDSM_CURVE_SECP256K1] = "Bitcoin seed",
    [DDSM_CURVE_ED25519] = "ed25519 seed",
    [DDSM_CURVE_P256] = "Nist256p1 seed",
};

static bool curve_ok(ddsm_curve c)
{
    return c == DDSM_CURVE_SECP256K1 || c == DDSM_CURVE_ED25519 || c == DDSM_CURVE_P256;
}

static bool weierstrass(ddsm_curve c)
{
    return c == DDSM_CURVE_SECP256K1 || c == DDSM_CURVE_P256;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* On an error e, point *why (may be NULL) at reason, or at the error's name when there is none. */
static void set_why(const char **why, ddsm_err e, const char *reason)
{
    if (e != DDSM_OK && why != NULL)
        *why = reason != NULL ? reason : ddsm_err_str(e);
}

const char *ddsm_curve_name(ddsm_curve curve)
{
    return curve_ok(curve) ? curve_names[curve] : "unknown";
}

ddsm_err ddsm_curve_parse(const char *name, ddsm_curve *out)
{
    if (name == NULL || out == NULL)
        return DDSM_E_ARG;
    for (size_t i = 0; i < sizeof(curve_names) / sizeof(curve_names[0]); i++) {
        if (strcmp(name, curve_names[i]) == 0) {
            *out = (ddsm_curve)i;
            return DDSM_OK;
        }
    }
    return DDSM_E_INPUT;
}

/* ---- primitives ------------------------------------------------------------------------------ */

/* I = HMAC-SHA512(key, data); I is a secret. */
static ddsm_err hmac_sha512_secret(const void *key, size_t key_len, const uint8_t *data,
                                   size_t data_len, uint8_t out[I_LEN])
{
    size_t out_len = 0;

    if (EVP_Q_mac(ddsm_ossl_ctx(), "HMAC", NULL, "SHA512", NULL, key, key_len, data, data_len, out, I_LEN,
                  &out_len) == NULL ||
        out_len != I_LEN)
        return ddsm_err_openssl("HMAC-SHA512");
    return DDSM_OK;
}

/* I = HMAC-SHA512(c_par, head || ser32(i)), the I of a child key, where head is 0x00 || k_par
 * (hardened), serP(K_par) (normal), or 0x01 || I_R (a SLIP-10 retry). head and I are secrets. */
static ddsm_err child_hmac_secret(const uint8_t c_par[HALF], const uint8_t head[1 + HALF],
                                  uint32_t index, uint8_t out[I_LEN])
{
    uint8_t data[1 + HALF + 4];
    memcpy(data, head, 1 + HALF);
    put_be32(data + 1 + HALF, index);
    ddsm_err e = hmac_sha512_secret(c_par, HALF, data, sizeof(data), out);
    ddsm_wipe(data, sizeof(data));
    return e;
}

/* SLIP-10's answer to an invalid child: I = HMAC-SHA512(c_par, 0x01 || I_R || ser32(i)), in place,
 * counted in *tries; DDSM_E_CRYPTO (reason set) once that makes SLIP10_MAX_TRIES. I is a secret. */
static ddsm_err slip10_retry_secret(const uint8_t c_par[HALF], uint32_t index, int *tries,
                                    uint8_t I[I_LEN], const char **reason)
{
    uint8_t head[1 + HALF];
    head[0] = 0x01;
    memcpy(head + 1, I + HALF, HALF);
    ddsm_err e = child_hmac_secret(c_par, head, index, I);
    ddsm_wipe(head, sizeof(head));
    if (e == DDSM_OK && ++*tries == SLIP10_MAX_TRIES) {
        *reason = "no valid child key after 1000 SLIP-10 retries";
        e = DDSM_E_CRYPTO;
    }
    return e;
}

/* RIPEMD-160(SHA-256(data)), the BIP-32 key identifier. */
static ddsm_err hash160(const uint8_t *data, size_t len, uint8_t out[HASH160_LEN])
{
    uint8_t h[32];
    EVP_MD *ripemd = EVP_MD_fetch(ddsm_ossl_ctx(), "RIPEMD160", NULL);
    ddsm_err e = DDSM_OK;

    if (ripemd == NULL || EVP_Digest(data, len, h, NULL, ddsm_ossl_sha256(), NULL) != 1 ||
        EVP_Digest(h, sizeof(h), out, NULL, ripemd, NULL) != 1)
        e = ddsm_err_openssl("HASH160");
    EVP_MD_free(ripemd);
    return e;
}

/* The first 4 bytes of HASH160 of a serialised public key (33 bytes; Ed25519: 0x00 || key). */
static ddsm_err fingerprint_of_pub(ddsm_curve curve, const uint8_t *pub, size_t pub_len,
                                   uint8_t fp[DDSM_HD_FINGERPRINT_LEN])
{
    uint8_t ser[DDSM_HD_PUB_COMPRESSED_LEN];
    uint8_t id[HASH160_LEN];

    if (curve == DDSM_CURVE_ED25519) {
        if (pub_len != DDSM_HD_ED25519_PUB_LEN)
            return DDSM_E_ARG;
        ser[0] = 0x00;
        memcpy(ser + 1, pub, DDSM_HD_ED25519_PUB_LEN);
    } else {
        if (pub_len != DDSM_HD_PUB_COMPRESSED_LEN)
            return DDSM_E_ARG;
        memcpy(ser, pub, DDSM_HD_PUB_COMPRESSED_LEN);
    }
    ddsm_err e = hash160(ser, sizeof(ser), id);
    if (e == DDSM_OK)
        memcpy(fp, id, DDSM_HD_FINGERPRINT_LEN);
    return e;
}

/* P-256's group and order, and a BN_CTX in secure memory, for one operation. */
struct p256 {
    EC_GROUP *group;
    BN_CTX *bn;
    const BIGNUM *order;
};

static ddsm_err p256_open(struct p256 *p)
{
    p->group = EC_GROUP_new_by_curve_name_ex(ddsm_ossl_ctx(), NULL, NID_X9_62_prime256v1);
    p->bn = BN_CTX_secure_new_ex(ddsm_ossl_ctx());
    p->order = (p->group != NULL) ? EC_GROUP_get0_order(p->group) : NULL;
    if (p->group == NULL || p->bn == NULL || p->order == NULL)
        return ddsm_err_openssl("P-256 group");
    return DDSM_OK;
}

static void p256_close(struct p256 *p)
{
    BN_CTX_free(p->bn);
    EC_GROUP_free(p->group);
}

/* *valid = 1 <= x < n (x a secret scalar candidate). */
static ddsm_err scalar_valid_secret(ddsm_curve curve, const uint8_t x[HALF], bool *valid)
{
    if (curve == DDSM_CURVE_SECP256K1) {
        const secp256k1_context *ctx = ddsm_secp256k1_context();
        if (ctx == NULL)
            return DDSM_E_CRYPTO;
        *valid = secp256k1_ec_seckey_verify(ctx, x) == 1;
        return DDSM_OK;
    }
    struct p256 p;
    BIGNUM *v = BN_secure_new();
    ddsm_err e = p256_open(&p);
    if (e == DDSM_OK && (v == NULL || BN_bin2bn(x, HALF, v) == NULL))
        e = ddsm_err_openssl("P-256 scalar");
    if (e == DDSM_OK)
        *valid = !BN_is_zero(v) && BN_cmp(v, p.order) < 0;
    BN_clear_free(v);
    p256_close(&p);
    return e;
}

/* k = parse256(I_L) + k_par (mod n). *valid is false when I_L >= n or k = 0, the "invalid key"
 * of BIP-32 and SLIP-10; k is written only when valid. Reads and writes secrets. */
static ddsm_err scalar_add_secret(ddsm_curve curve, const uint8_t il[HALF],
                                  const uint8_t kpar[HALF], uint8_t k[HALF], bool *valid)
{
    uint8_t tmp[HALF];
    ddsm_err e = DDSM_OK;

    if (curve == DDSM_CURVE_SECP256K1) {
        const secp256k1_context *ctx = ddsm_secp256k1_context();
        if (ctx == NULL)
            return DDSM_E_CRYPTO;
        memcpy(tmp, kpar, HALF);
        /* Fails exactly when the tweak overflows n or the sum is 0 (k_par is valid). */
        *valid = secp256k1_ec_seckey_tweak_add(ctx, tmp, il) == 1;
        if (*valid)
            memcpy(k, tmp, HALF);
        ddsm_wipe(tmp, sizeof(tmp));
        return DDSM_OK;
    }

    struct p256 p;
    BIGNUM *a = BN_secure_new(), *b = BN_secure_new(), *r = BN_secure_new();
    e = p256_open(&p);
    if (e != DDSM_OK)
        goto out;
    if (a == NULL || b == NULL || r == NULL || BN_bin2bn(il, HALF, a) == NULL ||
        BN_bin2bn(kpar, HALF, b) == NULL) {
        e = ddsm_err_openssl("P-256 child key");
        goto out;
    }
    if (BN_cmp(a, p.order) >= 0) {
        *valid = false;
        goto out;
    }
    if (BN_mod_add(r, a, b, p.order, p.bn) != 1 || BN_bn2binpad(r, tmp, HALF) != HALF) {
        e = ddsm_err_openssl("P-256 child key");
        goto out;
    }
    *valid = !BN_is_zero(r);
    if (*valid)
        memcpy(k, tmp, HALF);
out:
    ddsm_wipe(tmp, sizeof(tmp));
    BN_clear_free(a);
    BN_clear_free(b);
    BN_clear_free(r);
    p256_close(&p);
    return e;
}

/* K_i = point(parse256(I_L)) + K_par for P-256. *valid false when I_L >= n or K_i is the point
 * at infinity (SLIP-10's invalid public child). DDSM_E_INPUT if K_par is not a point. */
static ddsm_err p256_pub_add(const uint8_t kpar[DDSM_HD_PUB_COMPRESSED_LEN], const uint8_t il[HALF],
                             uint8_t out[DDSM_HD_PUB_COMPRESSED_LEN], bool *valid)
{
    struct p256 p;
    EC_POINT *par = NULL, *child = NULL;
    BIGNUM *t = BN_new();
    ddsm_err e = p256_open(&p);

    if (e != DDSM_OK)
        goto out;
    par = EC_POINT_new(p.group);
    child = EC_POINT_new(p.group);
    if (par == NULL || child == NULL || t == NULL || BN_bin2bn(il, HALF, t) == NULL) {
        e = ddsm_err_openssl("P-256 public child");
        goto out;
    }
    if (EC_POINT_oct2point(p.group, par, kpar, DDSM_HD_PUB_COMPRESSED_LEN, p.bn) != 1) {
        ERR_clear_error();
        e = DDSM_E_INPUT;
        goto out;
    }
    if (BN_cmp(t, p.order) >= 0) {
        *valid = false;
        goto out;
    }
    /* child = t * G + 1 * par */
    if (EC_POINT_mul(p.group, child, t, par, BN_value_one(), p.bn) != 1) {
        e = ddsm_err_openssl("P-256 public child");
        goto out;
    }
    if (EC_POINT_is_at_infinity(p.group, child)) {
        *valid = false;
        goto out;
    }
    if (EC_POINT_point2oct(p.group, child, POINT_CONVERSION_COMPRESSED, out,
                           DDSM_HD_PUB_COMPRESSED_LEN, p.bn) != DDSM_HD_PUB_COMPRESSED_LEN) {
        e = ddsm_err_openssl("P-256 public child");
        goto out;
    }
    *valid = true;
out:
    BN_free(t);
    EC_POINT_free(child);
    EC_POINT_free(par);
    p256_close(&p);
    return e;
}

/* ---- private derivation ---------------------------------------------------------------------- */

ddsm_err ddsm_hd_master_secret(ddsm_curve curve, const uint8_t *seed_secret, size_t seed_len,
                               ddsm_hd_node *out, const char **why)
{
    uint8_t data[I_LEN]; /* S, then I on a SLIP-10 retry */
    uint8_t I[I_LEN];
    size_t data_len = seed_len;
    ddsm_hd_node node;
    const char *reason = NULL;
    ddsm_err e = DDSM_E_ARG;

    memset(&node, 0, sizeof(node));
    if (!curve_ok(curve) || seed_secret == NULL || out == NULL)
        goto out;
    if (seed_len < DDSM_HD_SEED_MIN || seed_len > DDSM_HD_SEED_MAX) {
        e = DDSM_E_INPUT;
        reason = "an HD seed is 16 to 64 bytes (128 to 512 bits)";
        goto out;
    }
    memcpy(data, seed_secret, seed_len);
    for (int tries = 0;; tries++) {
        bool valid = true;
        if (tries == SLIP10_MAX_TRIES) {
            e = DDSM_E_CRYPTO;
            reason = "no valid master key after 1000 SLIP-10 retries";
            goto out;
        }
        e = hmac_sha512_secret(master_keys[curve], strlen(master_keys[curve]), data, data_len, I);
        if (e != DDSM_OK)
            goto out;
        if (curve == DDSM_CURVE_ED25519) /* every 256-bit string is an Ed25519 secret */
            break;
        e = scalar_valid_secret(curve, I, &valid);
        if (e != DDSM_OK)
            goto out;
        if (valid)
            break;
        if (curve == DDSM_CURVE_SECP256K1) {
            e = DDSM_E_INPUT;
            reason = "BIP-32: this seed gives an invalid master key (I_L is 0 or >= n)";
            goto out;
        }
        /* SLIP-10: S := I, and again. */
        memcpy(data, I, I_LEN);
        data_len = I_LEN;
    }
    memcpy(node.secret_key, I, HALF);
    memcpy(node.chain_code, I + HALF, HALF);
    *out = node;
    e = DDSM_OK;
out:
    ddsm_wipe(data, sizeof(data));
    ddsm_wipe(I, sizeof(I));
    ddsm_wipe(&node, sizeof(node));
    set_why(why, e, reason);
    return e;
}

ddsm_err ddsm_hd_child_secret(ddsm_curve curve, const ddsm_hd_node *parent, uint32_t index,
                              ddsm_hd_node *out, const char **why)
{
    uint8_t head[1 + HALF]; /* 0x00 || k_par or serP(K_par) */
    uint8_t I[I_LEN];
    uint8_t pub[DDSM_HD_PUB_MAX];
    size_t pub_len = 0;
    ddsm_hd_node child;
    const bool hardened = (index & DDSM_HARDENED) != 0;
    const char *reason = NULL;
    ddsm_err e = DDSM_E_ARG;

    memset(&child, 0, sizeof(child));
    if (!curve_ok(curve) || parent == NULL || out == NULL)
        goto out;
    if (curve == DDSM_CURVE_ED25519 && !hardened) {
        e = DDSM_E_PATH;
        reason = "Ed25519 keys (SLIP-10) have hardened indices only: mark every index with '";
        goto out;
    }
    if (parent->depth == DDSM_HD_MAX_DEPTH) {
        e = DDSM_E_PATH;
        reason = "an HD tree is at most 255 levels deep";
        goto out;
    }
    /* The parent's public key: the data of a normal child, and the child's parent fingerprint. */
    e = ddsm_ec_public_from_secret(curve, parent->secret_key, false, pub, &pub_len);
    if (e == DDSM_OK)
        e = fingerprint_of_pub(curve, pub, pub_len, child.parent_fingerprint);
    if (e != DDSM_OK)
        goto out;

    if (hardened) {
        head[0] = 0x00;
        memcpy(head + 1, parent->secret_key, HALF);
    } else {
        memcpy(head, pub, DDSM_HD_PUB_COMPRESSED_LEN);
    }
    e = child_hmac_secret(parent->chain_code, head, index, I);
    if (e != DDSM_OK)
        goto out;

    for (int tries = 0;;) {
        bool valid = true;
        if (curve == DDSM_CURVE_ED25519) { /* SLIP-10: k_i = I_L */
            memcpy(child.secret_key, I, HALF);
            break;
        }
        e = scalar_add_secret(curve, I, parent->secret_key, child.secret_key, &valid);
        if (e != DDSM_OK)
            goto out;
        if (valid)
            break;
        if (curve == DDSM_CURVE_SECP256K1) {
            e = DDSM_E_PATH;
            reason =
                "BIP-32: this index gives no valid key (I_L >= n or k = 0); use the next index";
            goto out;
        }
        e = slip10_retry_secret(parent->chain_code, index, &tries, I, &reason);
        if (e != DDSM_OK)
            goto out;
    }
    memcpy(child.chain_code, I + HALF, HALF);
    child.depth = (uint8_t)(parent->depth + 1);
    child.child_number = index;
    *out = child;
    e = DDSM_OK;
out:
    ddsm_wipe(head, sizeof(head));
    ddsm_wipe(I, sizeof(I));
    ddsm_wipe(&child, sizeof(child));
    set_why(why, e, reason);
    return e;
}

ddsm_err ddsm_hd_derive_path_secret(ddsm_curve curve, const uint8_t *seed_secret, size_t seed_len,
                                    const ddsm_path *path, ddsm_hd_node *out, const char **why)
{
    ddsm_hd_node cur, next;
    const char *reason = NULL;
    ddsm_err e = DDSM_E_ARG;

    memset(&cur, 0, sizeof(cur));
    memset(&next, 0, sizeof(next));
    if (!curve_ok(curve) || seed_secret == NULL || path == NULL || out == NULL ||
        path->depth > DDSM_PATH_MAX_DEPTH)
        goto out;
    if (curve == DDSM_CURVE_ED25519) {
        for (unsigned i = 0; i < path->depth; i++) {
            if ((path->index[i] & DDSM_HARDENED) == 0) {
                e = DDSM_E_PATH;
                reason = "Ed25519 keys (SLIP-10) have hardened indices only: mark every index "
                         "with '";
                goto out;
            }
        }
    }
    e = ddsm_hd_master_secret(curve, seed_secret, seed_len, &cur, &reason);
    if (e != DDSM_OK)
        goto out;
    for (unsigned i = 0; i < path->depth; i++) {
        e = ddsm_hd_child_secret(curve, &cur, path->index[i], &next, &reason);
        if (e != DDSM_OK)
            goto out;
        cur = next;
    }
    *out = cur;
out:
    ddsm_wipe(&cur, sizeof(cur));
    ddsm_wipe(&next, sizeof(next));
    set_why(why, e, reason);
    return e;
}

/* ---- public keys ----------------------------------------------------------------------------- */

ddsm_err ddsm_hd_public(ddsm_curve curve, const ddsm_hd_node *node, uint8_t pub[DDSM_HD_PUB_MAX],
                        size_t *pub_len)
{
    if (!curve_ok(curve) || node == NULL)
        return DDSM_E_ARG;
    return ddsm_ec_public_from_secret(curve, node->secret_key, false, pub, pub_len);
}

ddsm_err ddsm_hd_ec_point(ddsm_curve curve, const ddsm_hd_node *node,
                          uint8_t point[DDSM_HD_PUB_MAX], size_t *point_len)
{
    if (!curve_ok(curve) || node == NULL)
        return DDSM_E_ARG;
    return ddsm_ec_public_from_secret(curve, node->secret_key, true, point, point_len);
}

ddsm_err ddsm_hd_point_uncompress(ddsm_curve curve, const uint8_t pub[DDSM_HD_PUB_COMPRESSED_LEN],
                                  uint8_t point[DDSM_HD_PUB_UNCOMPRESSED_LEN])
{
    uint8_t tmp[DDSM_HD_PUB_UNCOMPRESSED_LEN];
    ddsm_err e = DDSM_OK;

    if (!weierstrass(curve) || pub == NULL || point == NULL)
        return DDSM_E_ARG;
    if (pub[0] != 0x02 && pub[0] != 0x03)
        return DDSM_E_INPUT;
    if (curve == DDSM_CURVE_SECP256K1) {
        const secp256k1_context *ctx = ddsm_secp256k1_context();
        secp256k1_pubkey pk;
        size_t len = sizeof(tmp);
        if (ctx == NULL)
            return DDSM_E_CRYPTO;
        if (!secp256k1_ec_pubkey_parse(ctx, &pk, pub, DDSM_HD_PUB_COMPRESSED_LEN))
            return DDSM_E_INPUT;
        if (!secp256k1_ec_pubkey_serialize(ctx, tmp, &len, &pk, SECP256K1_EC_UNCOMPRESSED) ||
            len != sizeof(tmp))
            return DDSM_E_CRYPTO;
    } else {
        struct p256 p;
        EC_POINT *pt = NULL;
        e = p256_open(&p);
        if (e == DDSM_OK) {
            pt = EC_POINT_new(p.group);
            if (pt == NULL)
                e = ddsm_err_openssl("P-256 point");
        }
        if (e == DDSM_OK &&
            EC_POINT_oct2point(p.group, pt, pub, DDSM_HD_PUB_COMPRESSED_LEN, p.bn) != 1) {
            ERR_clear_error();
            e = DDSM_E_INPUT;
        }
        if (e == DDSM_OK && EC_POINT_point2oct(p.group, pt, POINT_CONVERSION_UNCOMPRESSED, tmp,
                                               sizeof(tmp), p.bn) != sizeof(tmp))
            e = ddsm_err_openssl("P-256 point");
        EC_POINT_free(pt);
        p256_close(&p);
        if (e != DDSM_OK)
            return e;
    }
    memcpy(point, tmp, sizeof(tmp));
    return DDSM_OK;
}

ddsm_err ddsm_hd_fingerprint(ddsm_curve curve, const ddsm_hd_node *node,
                             uint8_t fp[DDSM_HD_FINGERPRINT_LEN])
{
    uint8_t pub[DDSM_HD_PUB_MAX];
    uint8_t tmp[DDSM_HD_FINGERPRINT_LEN];
    size_t pub_len = 0;

    if (!curve_ok(curve) || node == NULL || fp == NULL)
        return DDSM_E_ARG;
    ddsm_err e = ddsm_ec_public_from_secret(curve, node->secret_key, false, pub, &pub_len);
    if (e == DDSM_OK)
        e = fingerprint_of_pub(curve, pub, pub_len, tmp);
    if (e == DDSM_OK)
        memcpy(fp, tmp, sizeof(tmp));
    return e;
}

ddsm_err ddsm_hd_neuter(ddsm_curve curve, const ddsm_hd_node *node, ddsm_hd_pub_node *out)
{
    ddsm_hd_pub_node pubnode;
    size_t pub_len = 0;
    uint8_t pub[DDSM_HD_PUB_MAX];

    if (!curve_ok(curve) || node == NULL || out == NULL)
        return DDSM_E_ARG;
    if (!weierstrass(curve))
        return DDSM_E_INPUT; /* SLIP-10 defines no public derivation, so no xpub, for Ed25519 */
    ddsm_err e = ddsm_ec_public_from_secret(curve, node->secret_key, false, pub, &pub_len);
    if (e != DDSM_OK)
        return e;
    memset(&pubnode, 0, sizeof(pubnode));
    memcpy(pubnode.public_key, pub, DDSM_HD_PUB_COMPRESSED_LEN);
    memcpy(pubnode.chain_code, node->chain_code, HALF);
    pubnode.depth = node->depth;
    memcpy(pubnode.parent_fingerprint, node->parent_fingerprint, DDSM_HD_FINGERPRINT_LEN);
    pubnode.child_number = node->child_number;
    *out = pubnode;
    return DDSM_OK;
}

ddsm_err ddsm_hd_child_public(ddsm_curve curve, const ddsm_hd_pub_node *parent, uint32_t index,
                              ddsm_hd_pub_node *out, const char **why)
{
    uint8_t I[I_LEN];
    ddsm_hd_pub_node child;
    const char *reason = NULL;
    ddsm_err e = DDSM_E_ARG;

    memset(&child, 0, sizeof(child));
    if (!curve_ok(curve) || parent == NULL || out == NULL)
        goto out;
    e = DDSM_E_INPUT;
    if (!weierstrass(curve)) {
        reason = "Ed25519 keys (SLIP-10) have no public derivation";
        goto out;
    }
    if ((index & DDSM_HARDENED) != 0) {
        e = DDSM_E_PATH;
        reason = "a hardened child cannot be derived from a public key";
        goto out;
    }
    if (parent->depth == DDSM_HD_MAX_DEPTH) {
        e = DDSM_E_PATH;
        reason = "an HD tree is at most 255 levels deep";
        goto out;
    }
    e = fingerprint_of_pub(curve, parent->public_key, DDSM_HD_PUB_COMPRESSED_LEN,
                           child.parent_fingerprint);
    if (e != DDSM_OK)
        goto out;
    e = child_hmac_secret(parent->chain_code, parent->public_key, index, I);
    if (e != DDSM_OK)
        goto out;

    for (int tries = 0;;) {
        bool valid = false;
        if (curve == DDSM_CURVE_SECP256K1) {
            const secp256k1_context *ctx = ddsm_secp256k1_context();
            secp256k1_pubkey pk;
            size_t len = DDSM_HD_PUB_COMPRESSED_LEN;
            if (ctx == NULL) {
                e = DDSM_E_CRYPTO;
                goto out;
            }
            if (!secp256k1_ec_pubkey_parse(ctx, &pk, parent->public_key,
                                           DDSM_HD_PUB_COMPRESSED_LEN)) {
                e = DDSM_E_INPUT;
                reason = "the parent public key is not a point of secp256k1";
                goto out;
            }
            /* Fails exactly when I_L >= n or the sum is the point at infinity. */
            if (!secp256k1_ec_pubkey_tweak_add(ctx, &pk, I)) {
                e = DDSM_E_PATH;
                reason = "BIP-32: this index gives no valid key (I_L >= n or K is infinity); use "
                         "the next index";
                goto out;
            }
            if (!secp256k1_ec_pubkey_serialize(ctx, child.public_key, &len, &pk,
                                               SECP256K1_EC_COMPRESSED)) {
                e = DDSM_E_CRYPTO;
                goto out;
            }
            break;
        }
        e = p256_pub_add(parent->public_key, I, child.public_key, &valid);
        if (e == DDSM_E_INPUT)
            reason = "the parent public key is not a point of P-256";
        if (e != DDSM_OK)
            goto out;
        if (valid)
            break;
        e = slip10_retry_secret(parent->chain_code, index, &tries, I, &reason);
        if (e != DDSM_OK)
            goto out;
    }
    memcpy(child.chain_code, I + HALF, HALF);
    child.depth = (uint8_t)(parent->depth + 1);
    child.child_number = index;
    *out = child;
    e = DDSM_OK;
out:
    /* No private key here, but I_R is the child chain code: wipe like the private path does. */
    ddsm_wipe(I, sizeof(I));
    ddsm_wipe(&child, sizeof(child));
    set_why(why, e, reason);
    return e;
}

/* ---- serialisation --------------------------------------------------------------------------- */

static void ext_layout(uint32_t version, uint8_t depth, const uint8_t fp[DDSM_HD_FINGERPRINT_LEN],
                       uint32_t child_number, const uint8_t chain[HALF],
                       const uint8_t key[DDSM_HD_PUB_COMPRESSED_LEN], uint8_t out[DDSM_HD_EXT_LEN])
{
    put_be32(out, version);
    out[4] = depth;
    memcpy(out + 5, fp, DDSM_HD_FINGERPRINT_LEN);
    put_be32(out + 9, child_number);
    memcpy(out + 13, chain, HALF);
    memcpy(out + 45, key, DDSM_HD_PUB_COMPRESSED_LEN);
}

ddsm_err ddsm_hd_serialize_xprv_secret(ddsm_curve curve, const ddsm_hd_node *node,
                                       char out[DDSM_HD_XKEY_TEXT_MAX])
{
    uint8_t key[DDSM_HD_PUB_COMPRESSED_LEN];
    uint8_t raw[DDSM_HD_EXT_LEN];
    char text[DDSM_HD_XKEY_TEXT_MAX];
    ddsm_err e = DDSM_E_ARG;

    if (!curve_ok(curve) || node == NULL || out == NULL)
        goto out;
    e = DDSM_E_INPUT;
    if (curve != DDSM_CURVE_SECP256K1)
        goto out;
    key[0] = 0x00;
    memcpy(key + 1, node->secret_key, HALF);
    ext_layout(DDSM_HD_VERSION_XPRV, node->depth, node->parent_fingerprint, node->child_number,
               node->chain_code, key, raw);
    e = ddsm_base58check_encode(raw, sizeof(raw), text, sizeof(text));
    if (e == DDSM_OK)
        memcpy(out, text, sizeof(text));
out:
    ddsm_wipe(key, sizeof(key));
    ddsm_wipe(raw, sizeof(raw));
    ddsm_wipe(text, sizeof(text));
    return e;
}

ddsm_err ddsm_hd_serialize_xpub(ddsm_curve curve, const ddsm_hd_pub_node *node,
                                char out[DDSM_HD_XKEY_TEXT_MAX])
{
    uint8_t raw[DDSM_HD_EXT_LEN];
    char text[DDSM_HD_XKEY_TEXT_MAX];

    if (!curve_ok(curve) || node == NULL || out == NULL)
        return DDSM_E_ARG;
    if (curve != DDSM_CURVE_SECP256K1)
        return DDSM_E_INPUT;
    ext_layout(DDSM_HD_VERSION_XPUB, node->depth, node->parent_fingerprint, node->child_number,
               node->chain_code, node->public_key, raw);
    ddsm_err e = ddsm_base58check_encode(raw, sizeof(raw), text, sizeof(text));
    if (e == DDSM_OK)
        memcpy(out, text, sizeof(text));
    return e;
}

ddsm_err ddsm_hd_parse_ext(const char *text, size_t len, ddsm_hd_ext *out, const char **why)
{
    uint8_t raw[DDSM_BASE58_MAX_PAYLOAD];
    size_t raw_len = 0;
    ddsm_hd_ext ext;
    const char *reason = NULL;
    ddsm_err e = DDSM_E_ARG;

    memset(&ext, 0, sizeof(ext));
    if (text == NULL || out == NULL)
        goto out;
    e = ddsm_base58check_decode(text, len, raw, sizeof(raw), &raw_len, &reason);
    if (e != DDSM_OK)
        goto out;

    e = DDSM_E_INPUT;
    if (raw_len != DDSM_HD_EXT_LEN) {
        reason = "not an extended key (the payload is not 78 bytes)";
        goto out;
    }
    const uint32_t version = get_be32(raw);
    const uint8_t depth = raw[4];
    const uint8_t *fp = raw + 5;
    const uint32_t child_number = get_be32(raw + 9);
    const uint8_t *chain = raw + 13;
    const uint8_t *key = raw + 45;
    static const uint8_t zero_fp[DDSM_HD_FINGERPRINT_LEN] = {0};

    if (version != DDSM_HD_VERSION_XPRV && version != DDSM_HD_VERSION_XPUB) {
        reason = "unknown extended key version";
        goto out;
    }
    if (depth == 0 && memcmp(fp, zero_fp, sizeof(zero_fp)) != 0) {
        reason = "zero depth with non-zero parent fingerprint";
        goto out;
    }
    if (depth == 0 && child_number != 0) {
        reason = "zero depth with non-zero index";
        goto out;
    }
    const secp256k1_context *ctx = ddsm_secp256k1_context();
    if (ctx == NULL) {
        e = DDSM_E_CRYPTO;
        goto out;
    }
    if (version == DDSM_HD_VERSION_XPUB) {
        secp256k1_pubkey pk;
        if (key[0] == 0x00) {
            reason = "pubkey version / prvkey mismatch";
            goto out;
        }
        if (key[0] != 0x02 && key[0] != 0x03) {
            reason = "invalid pubkey prefix (must be 02 or 03)";
            goto out;
        }
        if (!secp256k1_ec_pubkey_parse(ctx, &pk, key, DDSM_HD_PUB_COMPRESSED_LEN)) {
            reason = "invalid pubkey (not a point of secp256k1)";
            goto out;
        }
        memcpy(ext.pub.public_key, key, DDSM_HD_PUB_COMPRESSED_LEN);
        memcpy(ext.pub.chain_code, chain, HALF);
        ext.pub.depth = depth;
        memcpy(ext.pub.parent_fingerprint, fp, DDSM_HD_FINGERPRINT_LEN);
        ext.pub.child_number = child_number;
    } else {
        if (key[0] == 0x02 || key[0] == 0x03) {
            reason = "prvkey version / pubkey mismatch";
            goto out;
        }
        if (key[0] != 0x00) {
            reason = "invalid prvkey prefix (must be 00)";
            goto out;
        }
        if (!secp256k1_ec_seckey_verify(ctx, key + 1)) {
            reason = "private key not in 1..n-1";
            goto out;
        }
        ext.is_private = true;
        memcpy(ext.node.secret_key, key + 1, HALF);
        memcpy(ext.node.chain_code, chain, HALF);
        ext.node.depth = depth;
        memcpy(ext.node.parent_fingerprint, fp, DDSM_HD_FINGERPRINT_LEN);
        ext.node.child_number = child_number;
        e = ddsm_hd_neuter(DDSM_CURVE_SECP256K1, &ext.node, &ext.pub);
        if (e != DDSM_OK)
            goto out;
    }
    *out = ext;
    e = DDSM_OK;
out:
    ddsm_wipe(raw, sizeof(raw));
    ddsm_wipe(&ext, sizeof(ext));
    set_why(why, e, reason);
    return e;
}

void ddsm_hd_node_wipe(ddsm_hd_node *node)
{
    if (node != NULL)
        ddsm_wipe(node, sizeof(*node));
}

void ddsm_hd_ext_wipe(ddsm_hd_ext *ext)
{
    if (ext != NULL)
        ddsm_wipe(ext, sizeof(*ext));
}
