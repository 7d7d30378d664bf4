/* SPDX-License-Identifier: Apache-2.0 */
/* Derivation, version 1 (docs/design.md): the SP 800-108r1 counter-mode KDF with HMAC-SHA256, one
 * iteration, L = 256. The message is built here and only here. */
#include "ddsm/derive.h"

#include <string.h>

#include <openssl/evp.h>

#include "ddsm/mac.h"
#include "ddsm/secmem.h"

#define LABEL_LEN (sizeof(DDSM_LABEL) - 1)
#define KDF_OUT_BITS 256u

static size_t put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

static size_t put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
    return 8;
}

/* Context = asset(16) || depth(1) || index[depth](4 each, BE) || counter(8, BE). Injective: the
 * depth fixes where the indices end, and every field has a fixed width. */
size_t ddsm_derive_context(const ddsm_uuid *asset, const ddsm_path *path, uint64_t counter,
                           uint8_t out[DDSM_MSG_MAX])
{
    size_t o = 0;

    if (asset == NULL || path == NULL || out == NULL || path->depth > DDSM_PATH_MAX_DEPTH)
        return 0;
    memcpy(out, asset->b, sizeof(asset->b));
    o += sizeof(asset->b);
    out[o++] = path->depth;
    for (unsigned i = 0; i < path->depth; i++)
        o += put_be32(out + o, path->index[i]);
    o += put_be64(out + o, counter);
    return o;
}

size_t ddsm_derive_message(const ddsm_uuid *asset, const ddsm_path *path, uint64_t counter,
                           uint8_t out[DDSM_MSG_MAX])
{
    uint8_t ctx[DDSM_MSG_MAX];
    size_t o = 0;

    size_t ctx_len = ddsm_derive_context(asset, path, counter, ctx);
    if (ctx_len == 0 || out == NULL)
        return 0;
    o += put_be32(out, 1); /* the SP 800-108 counter i: one iteration gives 256 bits */
    memcpy(out + o, DDSM_LABEL, LABEL_LEN);
    o += LABEL_LEN;
    out[o++] = 0x00;
    memcpy(out + o, ctx, ctx_len);
    o += ctx_len;
    o += put_be32(out + o, KDF_OUT_BITS);
    return o;
}

/* Writes the secret key of (asset, path, counter); wipes its copies, and key on failure. */
ddsm_err ddsm_derive_secret(const ddsm_prf *prf, const ddsm_uuid *asset, const ddsm_path *path,
                            uint64_t counter, uint8_t key[DDSM_KEY_LEN])
{
    uint8_t msg[DDSM_MSG_MAX];
    uint8_t secret[DDSM_KEY_LEN];
    ddsm_err e = DDSM_E_ARG;

    if (prf == NULL || prf->hmac_root == NULL || key == NULL)
        goto out;
    size_t len = ddsm_derive_message(asset, path, counter, msg);
    if (len == 0)
        goto out;
    e = prf->hmac_root(prf->ctx, msg, len, secret);
    if (e != DDSM_OK)
        goto out;
    memcpy(key, secret, DDSM_KEY_LEN);
out:
    ddsm_wipe(secret, sizeof(secret));
    ddsm_wipe(msg, sizeof(msg));
    if (e != DDSM_OK && key != NULL)
        ddsm_wipe(key, DDSM_KEY_LEN);
    return e;
}

/* The in-memory PRF: holds the root seed (a secret) in secure memory. */
struct prf_openssl {
    size_t len;
    uint8_t seed_secret[];
};

#define PRF_SEED_MAX 1024u

static ddsm_err prf_openssl_hmac_root(void *ctx, const uint8_t *msg, size_t len,
                                      uint8_t out[DDSM_KEY_LEN])
{
    const struct prf_openssl *p = ctx;
    if (p == NULL)
        return DDSM_E_ARG;
    return ddsm_hmac_sha256(p->seed_secret, p->len, msg, len, out);
}

ddsm_err ddsm_prf_openssl_new(const uint8_t *seed_secret, size_t len, ddsm_prf *out)
{
    if (seed_secret == NULL || len == 0 || len > PRF_SEED_MAX || out == NULL)
        return DDSM_E_ARG;
    struct prf_openssl *p = ddsm_secure_alloc(sizeof(*p) + len);
    if (p == NULL)
        return DDSM_E_NOMEM;
    p->len = len;
    memcpy(p->seed_secret, seed_secret, len);
    out->hmac_root = prf_openssl_hmac_root;
    out->ctx = p;
    return DDSM_OK;
}

void ddsm_prf_openssl_free(ddsm_prf *prf)
{
    if (prf == NULL || prf->ctx == NULL)
        return;
    struct prf_openssl *p = prf->ctx;
    ddsm_secure_free(p, sizeof(*p) + p->len);
    prf->ctx = NULL;
    prf->hmac_root = NULL;
}

ddsm_err ddsm_root_fingerprint(const ddsm_prf *prf, char out[DDSM_FINGERPRINT_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t mac[DDSM_KEY_LEN];
    ddsm_err e = DDSM_E_ARG;

    if (prf == NULL || prf->hmac_root == NULL || out == NULL)
        goto out;
    e = prf->hmac_root(prf->ctx, (const uint8_t *)DDSM_FINGERPRINT_MSG,
                       sizeof(DDSM_FINGERPRINT_MSG) - 1, mac);
    if (e != DDSM_OK)
        goto out;
    for (size_t i = 0; i < DDSM_FINGERPRINT_HEX / 2; i++) {
        out[2 * i] = digits[mac[i] >> 4];
        out[2 * i + 1] = digits[mac[i] & 0x0f];
    }
    out[DDSM_FINGERPRINT_HEX] = '\0';
out:
    ddsm_wipe(mac, sizeof(mac));
    return e;
}

ddsm_err ddsm_key_id(const ddsm_uuid *asset, const char *canon_path, uint8_t out[DDSM_KEY_ID_MAX],
                     size_t *len)
{
    if (asset == NULL || canon_path == NULL || out == NULL || len == NULL)
        return DDSM_E_ARG;
    size_t n = strlen(canon_path);
    if (n > DDSM_KEY_ID_MAX - sizeof(asset->b))
        return DDSM_E_ARG;
    memcpy(out, asset->b, sizeof(asset->b));
    memcpy(out + sizeof(asset->b), canon_path, n);
    *len = sizeof(asset->b) + n;
    return DDSM_OK;
}

ddsm_err ddsm_key_id_parse(const void *id, size_t len, ddsm_uuid *asset, ddsm_path *path)
{
    ddsm_uuid a;
    ddsm_path p;

    if (id == NULL || asset == NULL || path == NULL)
        return DDSM_E_ARG;
    if (len <= sizeof(a.b) || len > DDSM_KEY_ID_MAX)
        return DDSM_E_INPUT;
    memcpy(a.b, id, sizeof(a.b));
    if (ddsm_uuid_is_nil(&a))
        return DDSM_E_INPUT;
    if (ddsm_path_parse((const char *)id + sizeof(a.b), len - sizeof(a.b), &p, NULL) != DDSM_OK)
        return DDSM_E_INPUT;
    *asset = a;
    *path = p;
    return DDSM_OK;
}
