/* In-process HMAC-SHA256 with OpenSSL 3 EVP_MAC, for derived keys (never the root). */
#ifndef DDSM_MAC_H
#define DDSM_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"

#define DDSM_MAC_LEN 32

/* One-shot HMAC-SHA256 with a secret key. Uses a per-thread EVP_MAC_CTX re-keyed each call
 * (creating a context per call is ~4x slower). */
DDSM_WUR ddsm_err ddsm_hmac_sha256(const uint8_t *key_secret, size_t key_len, const uint8_t *data,
                                   size_t data_len, uint8_t out[DDSM_MAC_LEN]);
/* The same, for a key that has a process-unique id (key_id != 0, never given to other key bytes):
 * when this thread's context was last keyed with key_id, it restarts from the kept inner and outer
 * pads instead of re-keying. key_id 0 always re-keys. */
DDSM_WUR ddsm_err ddsm_hmac_sha256_keyed(uint64_t key_id, const uint8_t *key_secret,
                                         size_t key_len, const uint8_t *data, size_t data_len,
                                         uint8_t out[DDSM_MAC_LEN]);
/* Cleanse (free) every thread's context keyed with key_id (the key was wiped), or every thread's
 * context (logout). Takes each thread's context lock in turn; never call with one held. */
void ddsm_mac_forget_key(uint64_t key_id);
void ddsm_mac_forget_all(void);

/* Streaming HMAC for multi-part C_SignUpdate: opaque, holds keyed state (a secret). */
typedef struct ddsm_hmac_stream ddsm_hmac_stream;
DDSM_WUR ddsm_err ddsm_hmac_stream_new(const uint8_t *key_secret, size_t key_len,
                                       ddsm_hmac_stream **out);
DDSM_WUR ddsm_err ddsm_hmac_stream_update(ddsm_hmac_stream *s, const uint8_t *data, size_t len);
/* Writes 32 bytes and frees the stream (on failure too: the operation ends either way). */
DDSM_WUR ddsm_err ddsm_hmac_stream_final(ddsm_hmac_stream *s, uint8_t out[DDSM_MAC_LEN]);
void ddsm_hmac_stream_free(ddsm_hmac_stream *s); /* NULL accepted */

/* Release this thread's cached context (called at thread exit automatically, and at C_Finalize). */
void ddsm_mac_thread_cleanup(void);

/* Before the code is unloaded (C_Finalize of a module that may be dlclose'd): free every thread's
 * context (cleansed), delete the thread key so no destructor of ours runs after an unload, and
 * drop the fetched algorithm. Must not run concurrently with other ddsm_hmac_* calls; a later call
 * sets everything up again. */
void ddsm_mac_shutdown(void);

#endif
