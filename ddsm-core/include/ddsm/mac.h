/* SPDX-License-Identifier: Apache-2.0 */
/* In-process HMAC-SHA256 with OpenSSL 3 EVP_MAC, for derived keys (never the root). */
#ifndef DDSM_MAC_H
#define DDSM_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"

#define DDSM_MAC_LEN 32

/* One-shot HMAC-SHA256 with a secret key. Uses a per-thread EVP_MAC_CTX re-initialised each call
 * (creating a context per call is ~4x slower). */
DDSM_WUR ddsm_err ddsm_hmac_sha256(const uint8_t *key_secret, size_t key_len, const uint8_t *data,
                                   size_t data_len, uint8_t out[DDSM_MAC_LEN]);

/* Streaming HMAC for multi-part C_SignUpdate: opaque, holds keyed state (a secret). */
typedef struct ddsm_hmac_stream ddsm_hmac_stream;
DDSM_WUR ddsm_err ddsm_hmac_stream_new(const uint8_t *key_secret, size_t key_len,
                                       ddsm_hmac_stream **out);
DDSM_WUR ddsm_err ddsm_hmac_stream_update(ddsm_hmac_stream *s, const uint8_t *data, size_t len);
/* Writes 32 bytes and frees the stream (on failure too: the operation ends either way). */
DDSM_WUR ddsm_err ddsm_hmac_stream_final(ddsm_hmac_stream *s, uint8_t out[DDSM_MAC_LEN]);
void ddsm_hmac_stream_free(ddsm_hmac_stream *s); /* NULL accepted */

/* Keyed state: the SHA-256 states after the key's inner and outer pads (HMAC's first block on each
 * side), computed once per key and kept with it (in secure memory, as the key: it is as good as
 * the key for computing MACs, and is wiped with it). A MAC from it restarts from those states:
 * no re-keying, no allocation, no lock, no per-thread context, so any number of threads may use
 * one state at once (it is read only). */
#define DDSM_HMAC_STATE_LEN 256
typedef struct ddsm_hmac_state {
    _Alignas(8) unsigned char opaque[DDSM_HMAC_STATE_LEN];
} ddsm_hmac_state;
/* Compute the state of key_secret (a secret) into st (a secret: keep it in secure memory). */
DDSM_WUR ddsm_err ddsm_hmac_state_init_secret(ddsm_hmac_state *st, const uint8_t *key_secret,
                                              size_t key_len);
/* HMAC-SHA256 of data under the state's key. */
DDSM_WUR ddsm_err ddsm_hmac_state_mac(const ddsm_hmac_state *st, const uint8_t *data,
                                      size_t data_len, uint8_t out[DDSM_MAC_LEN]);

/* Release this thread's cached context (called at thread exit automatically, and at C_Finalize). */
void ddsm_mac_thread_cleanup(void);

/* Before the code is unloaded (C_Finalize of a module that may be dlclose'd): free every thread's
 * context (OpenSSL cleanses the keyed pads), delete the thread key so no destructor of ours runs
 * after an unload, and drop the fetched algorithm. Must not run concurrently with other
 * ddsm_hmac_* calls (threads may exit meanwhile); a later call sets everything up again. */
void ddsm_mac_shutdown(void);

#endif
