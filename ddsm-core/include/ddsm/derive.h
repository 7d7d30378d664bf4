/* SPDX-License-Identifier: Apache-2.0 */
/* Derivation, version 1: the SP 800-108 counter-mode KDF message and the key it yields. */
#ifndef DDSM_DERIVE_H
#define DDSM_DERIVE_H

#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/path.h"
#include "ddsm/uuid.h"

#define DDSM_KEY_LEN 32
/* [i]4 || "DDSM-v1"7 || 0x00 || uuid16 || depth1 || 4*16 || counter8 || [L]4 */
#define DDSM_MSG_MAX (4 + 7 + 1 + 16 + 1 + 4 * DDSM_PATH_MAX_DEPTH + 8 + 4)
#define DDSM_LABEL "DDSM-v1"

/* Build the whole PRF input for (asset, path, counter). path->depth may be 0 (the reserved asset
 * seed); the caller enforces that user paths have depth >= 1. Returns the message length. */
size_t ddsm_derive_message(const ddsm_uuid *asset, const ddsm_path *path, uint64_t counter,
                           uint8_t out[DDSM_MSG_MAX]);

/* Only the SP 800-108 Context part (asset..counter), for tools that drive a standard KBKDF. */
size_t ddsm_derive_context(const ddsm_uuid *asset, const ddsm_path *path, uint64_t counter,
                           uint8_t out[DDSM_MSG_MAX]);

/* The PRF keyed with the root seed: HMAC-SHA256(root_seed, msg). The root seed is never visible
 * here: the real implementation asks the HSM (C_Sign CKM_SHA256_HMAC); tests and the ceremony may
 * use ddsm_prf_openssl. Writes 32 bytes of key material into out (a secret). */
typedef struct ddsm_prf {
    ddsm_err (*hmac_root)(void *ctx, const uint8_t *msg, size_t len, uint8_t out[DDSM_KEY_LEN]);
    void *ctx;
} ddsm_prf;

/* Derive the secret key of (asset, path, counter) into key (wiped on failure). */
DDSM_WUR ddsm_err ddsm_derive_secret(const ddsm_prf *prf, const ddsm_uuid *asset,
                                     const ddsm_path *path, uint64_t counter,
                                     uint8_t key[DDSM_KEY_LEN]);

/* An in-memory root seed PRF (HMAC-SHA256 with OpenSSL) for tests and the seed ceremony.
 * Holds a copy of the seed in secure memory; free with ddsm_prf_openssl_free (wipes). */
DDSM_WUR ddsm_err ddsm_prf_openssl_new(const uint8_t *seed_secret, size_t len, ddsm_prf *out);
void ddsm_prf_openssl_free(ddsm_prf *prf);

/* Root fingerprint: HMAC-SHA256(root, "DDSM-v1 root fingerprint"), first 16 bytes, as 32 hex
 * chars. The fixed string starts with 'D' (not 0x00) so it never equals a derivation message. */
#define DDSM_FINGERPRINT_MSG "DDSM-v1 root fingerprint"
#define DDSM_FINGERPRINT_HEX 32
DDSM_WUR ddsm_err ddsm_root_fingerprint(const ddsm_prf *prf, char out[DDSM_FINGERPRINT_HEX + 1]);

/* The public id of an asset key, CKA_ID: the 16 asset UUID bytes followed by the canonical path
 * in UTF-8 (no terminator), the same bytes as the CKM_DDSM_DERIVE parameter, so that an id names
 * its key reversibly and a find by id alone reaches any path. Not secret; independent of the
 * counter, so tools that pair objects by id keep working across rotations. */
#define DDSM_KEY_ID_MAX (16 + DDSM_PATH_TEXT_MAX - 1)
/* Writes the id of (asset, canonical path) into out and its length into *len. DDSM_E_ARG for a
 * NULL argument or a path longer than a canonical path can be. */
DDSM_WUR ddsm_err ddsm_key_id(const ddsm_uuid *asset, const char *canon_path,
                              uint8_t out[DDSM_KEY_ID_MAX], size_t *len);
/* Read an id back: the asset and the path (any hardening spelling, so the caller formats the
 * canonical one). DDSM_E_INPUT when the bytes name no asset key: fewer than 17 bytes, the nil
 * UUID (the module's own keys), a path that is not well formed (which covers any byte outside
 * the path grammar's ASCII, so malformed UTF-8 too). The outputs are written only on success. */
DDSM_WUR ddsm_err ddsm_key_id_parse(const void *id, size_t len, ddsm_uuid *asset, ddsm_path *path);

#endif
