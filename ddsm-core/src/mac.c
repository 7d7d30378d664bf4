/* SPDX-License-Identifier: Apache-2.0 */
/* In-process HMAC-SHA256 for derived keys (never the root seed, which stays in the HSM).
 *
 * One EVP_MAC_CTX per thread, found through a pthread key whose destructor frees it at thread
 * exit, and kept on a list so that ddsm_mac_shutdown (before the code is unloaded) frees every
 * thread's context, not only the caller's. The digest is set once when the context is made;
 * each call re-keys it with EVP_MAC_init(ctx, key, len, NULL), which costs two
 * compression-function blocks instead of a context allocation and a digest fetch. The context
 * therefore holds the last key's inner and outer pads (a secret) until the thread's next call,
 * ddsm_mac_thread_cleanup or thread exit; OpenSSL cleanses them when the context is freed. */
#include "ddsm/mac.h"

/* The keyed state (ddsm_hmac_state) uses SHA-256's low-level interface, deprecated in OpenSSL 3
 * but still the same assembly the providers run: EVP cannot copy a digest state without
 * allocating a new one, nor keep it in memory of the caller's (secure memory), and EVP_MAC keeps a
 * copy of the raw key in ordinary heap memory for as long as a context stays keyed. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/ossl.h"
#include "ddsm/secmem.h"

static pthread_mutex_t mac_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool mac_ready;
static EVP_MAC *hmac_alg;   /* fetched once */
static pthread_key_t ctx_key; /* this thread's struct thread_ctx */

/* A thread's context (keyed: a secret), on the list of live ones under mac_lock. */
struct thread_ctx {
    EVP_MAC_CTX *ctx;
    struct thread_ctx *prev, *next;
};
static struct thread_ctx *live_ctxs;

/* A non-NULL pointer for a zero-length key: EVP_MAC_init treats a NULL key as "keep the previous
 * key", which would silently reuse the last caller's key. */
static const uint8_t empty_key[1];

struct ddsm_hmac_stream {
    EVP_MAC_CTX *ctx; /* keyed: a secret */
};

/* Unlink and free t if it is still live; mac_lock held. A thread exiting while
 * ddsm_mac_shutdown runs may hand its destructor a context the shutdown freed already, so t is
 * looked up before it is touched. */
static void thread_ctx_drop_locked(struct thread_ctx *t)
{
    struct thread_ctx *p = live_ctxs;
    while (p != NULL && p != t)
        p = p->next;
    if (p == NULL)
        return;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        live_ctxs = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    EVP_MAC_CTX_free(t->ctx);
    free(t);
}

static void ctx_destructor(void *p)
{
    pthread_mutex_lock(&mac_lock);
    thread_ctx_drop_locked(p);
    pthread_mutex_unlock(&mac_lock);
}

static ddsm_err mac_setup(void)
{
    ddsm_err e = DDSM_OK;

    if (atomic_load_explicit(&mac_ready, memory_order_acquire))
        return DDSM_OK;
    pthread_mutex_lock(&mac_lock);
    if (atomic_load_explicit(&mac_ready, memory_order_relaxed))
        goto out;
    hmac_alg = EVP_MAC_fetch(ddsm_ossl_ctx(), OSSL_MAC_NAME_HMAC, NULL);
    if (hmac_alg == NULL) {
        e = ddsm_err_openssl("EVP_MAC_fetch(HMAC)");
        goto out;
    }
    if (pthread_key_create(&ctx_key, ctx_destructor) != 0) {
        EVP_MAC_free(hmac_alg);
        hmac_alg = NULL;
        e = DDSM_E_NOMEM;
        goto out;
    }
    atomic_store_explicit(&mac_ready, true, memory_order_release);
out:
    pthread_mutex_unlock(&mac_lock);
    return e;
}

/* A fresh context with SHA-256 selected, not yet keyed. */
static ddsm_err ctx_new(EVP_MAC_CTX **out)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    ddsm_err e = mac_setup();
    if (e != DDSM_OK)
        return e;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_alg);
    if (ctx == NULL)
        return ddsm_err_openssl("EVP_MAC_CTX_new");
    if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return ddsm_err_openssl("EVP_MAC_CTX_set_params(digest=SHA256)");
    }
    *out = ctx;
    return DDSM_OK;
}

static ddsm_err thread_ctx(EVP_MAC_CTX **out)
{
    ddsm_err e = mac_setup();
    if (e != DDSM_OK)
        return e;
    struct thread_ctx *t = pthread_getspecific(ctx_key);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL)
            return DDSM_E_NOMEM;
        e = ctx_new(&t->ctx);
        if (e != DDSM_OK) {
            free(t);
            return e;
        }
        if (pthread_setspecific(ctx_key, t) != 0) {
            EVP_MAC_CTX_free(t->ctx);
            free(t);
            return DDSM_E_NOMEM;
        }
        pthread_mutex_lock(&mac_lock);
        t->next = live_ctxs;
        if (live_ctxs != NULL)
            live_ctxs->prev = t;
        live_ctxs = t;
        pthread_mutex_unlock(&mac_lock);
    }
    *out = t->ctx;
    return DDSM_OK;
}

/* Key a context with key_secret (a secret). */
static ddsm_err ctx_key_secret(EVP_MAC_CTX *ctx, const uint8_t *key_secret, size_t key_len)
{
    if (EVP_MAC_init(ctx, key_len > 0 ? key_secret : empty_key, key_len, NULL) != 1)
        return ddsm_err_openssl("EVP_MAC_init");
    return DDSM_OK;
}

ddsm_err ddsm_hmac_sha256(const uint8_t *key_secret, size_t key_len, const uint8_t *data,
                          size_t data_len, uint8_t out[DDSM_MAC_LEN])
{
    EVP_MAC_CTX *ctx = NULL;
    uint8_t mac[DDSM_MAC_LEN];
    size_t mac_len = 0;
    ddsm_err e = DDSM_E_ARG;

    if ((key_secret == NULL && key_len > 0) || (data == NULL && data_len > 0) || out == NULL)
        goto out;
    e = thread_ctx(&ctx);
    if (e != DDSM_OK)
        goto out;
    e = ctx_key_secret(ctx, key_secret, key_len);
    if (e != DDSM_OK)
        goto out;
    if (data_len > 0 && EVP_MAC_update(ctx, data, data_len) != 1) {
        e = ddsm_err_openssl("EVP_MAC_update");
        goto out;
    }
    if (EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) != 1 || mac_len != DDSM_MAC_LEN) {
        e = ddsm_err_openssl("EVP_MAC_final");
        goto out;
    }
    memcpy(out, mac, DDSM_MAC_LEN);
out:
    ddsm_wipe(mac, sizeof(mac));
    return e;
}

void ddsm_mac_thread_cleanup(void)
{
    if (!atomic_load_explicit(&mac_ready, memory_order_acquire))
        return;
    struct thread_ctx *t = pthread_getspecific(ctx_key);
    if (t != NULL) {
        (void)pthread_setspecific(ctx_key, NULL);
        ctx_destructor(t);
    }
}

void ddsm_mac_shutdown(void)
{
    pthread_mutex_lock(&mac_lock);
    if (atomic_load_explicit(&mac_ready, memory_order_relaxed)) {
        (void)pthread_setspecific(ctx_key, NULL);
        (void)pthread_key_delete(ctx_key);
        while (live_ctxs != NULL)
            thread_ctx_drop_locked(live_ctxs);
        EVP_MAC_free(hmac_alg);
        hmac_alg = NULL;
        atomic_store_explicit(&mac_ready, false, memory_order_release);
    }
    pthread_mutex_unlock(&mac_lock);
}

/* Streaming: a context of its own, keyed with key_secret (a secret) until final or free. */
ddsm_err ddsm_hmac_stream_new(const uint8_t *key_secret, size_t key_len, ddsm_hmac_stream **out)
{
    ddsm_hmac_stream *s = NULL;
    ddsm_err e = DDSM_E_ARG;

    if ((key_secret == NULL && key_len > 0) || out == NULL)
        goto out;
    e = DDSM_E_NOMEM;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto out;
    e = ctx_new(&s->ctx);
    if (e != DDSM_OK)
        goto out;
    e = ctx_key_secret(s->ctx, key_secret, key_len);
    if (e != DDSM_OK)
        goto out;
    *out = s;
    s = NULL;
out:
    ddsm_hmac_stream_free(s);
    return e;
}

ddsm_err ddsm_hmac_stream_update(ddsm_hmac_stream *s, const uint8_t *data, size_t len)
{
    if (s == NULL || s->ctx == NULL || (data == NULL && len > 0))
        return DDSM_E_ARG;
    if (len > 0 && EVP_MAC_update(s->ctx, data, len) != 1)
        return ddsm_err_openssl("EVP_MAC_update");
    return DDSM_OK;
}

/* Consumes the stream whatever the outcome: the caller's operation ends here either way. */
ddsm_err ddsm_hmac_stream_final(ddsm_hmac_stream *s, uint8_t out[DDSM_MAC_LEN])
{
    uint8_t mac[DDSM_MAC_LEN];
    size_t mac_len = 0;
    ddsm_err e = DDSM_E_ARG;

    if (s == NULL || s->ctx == NULL || out == NULL)
        goto out;
    if (EVP_MAC_final(s->ctx, mac, &mac_len, sizeof(mac)) != 1 || mac_len != DDSM_MAC_LEN) {
        e = ddsm_err_openssl("EVP_MAC_final");
        goto out;
    }
    memcpy(out, mac, DDSM_MAC_LEN);
    e = DDSM_OK;
out:
    ddsm_wipe(mac, sizeof(mac));
    ddsm_hmac_stream_free(s);
    return e;
}

void ddsm_hmac_stream_free(ddsm_hmac_stream *s)
{
    if (s == NULL)
        return;
    EVP_MAC_CTX_free(s->ctx); /* cleanses the keyed state */
    free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Keyed state                                                                                  */

#define HMAC_BLOCK 64

struct hmac_state {
    SHA256_CTX inner; /* after (key ^ ipad): secret */
    SHA256_CTX outer; /* after (key ^ opad): secret */
};
_Static_assert(sizeof(struct hmac_state) <= DDSM_HMAC_STATE_LEN, "DDSM_HMAC_STATE_LEN too small");
_Static_assert(_Alignof(struct hmac_state) <= 8, "ddsm_hmac_state is 8-byte aligned");

ddsm_err ddsm_hmac_state_init_secret(ddsm_hmac_state *st, const uint8_t *key_secret,
                                     size_t key_len)
{
    uint8_t k[SHA256_DIGEST_LENGTH], pad[HMAC_BLOCK];
    ddsm_err e = DDSM_E_ARG;
    if (st == NULL || (key_secret == NULL && key_len > 0))
        return e;
    struct hmac_state *s = (struct hmac_state *)st->opaque;
    const uint8_t *key = key_secret;
    if (key_len > HMAC_BLOCK) {
        /* RFC 2104: a key longer than a block is hashed first. */
        if (EVP_Digest(key_secret, key_len, k, NULL, ddsm_ossl_sha256(), NULL) != 1) {
            e = ddsm_err_openssl("SHA256");
            goto out;
        }
        key = k;
        key_len = sizeof(k);
    }
    memset(pad, 0x36, sizeof(pad));
    for (size_t i = 0; i < key_len; i++)
        pad[i] ^= key[i];
    if (SHA256_Init(&s->inner) != 1 || SHA256_Update(&s->inner, pad, sizeof(pad)) != 1) {
        e = ddsm_err_openssl("SHA256_Update");
        goto out;
    }
    memset(pad, 0x5c, sizeof(pad));
    for (size_t i = 0; i < key_len; i++)
        pad[i] ^= key[i];
    if (SHA256_Init(&s->outer) != 1 || SHA256_Update(&s->outer, pad, sizeof(pad)) != 1) {
        e = ddsm_err_openssl("SHA256_Update");
        goto out;
    }
    e = DDSM_OK;
out:
    ddsm_wipe(pad, sizeof(pad));
    ddsm_wipe(k, sizeof(k));
    if (e != DDSM_OK)
        ddsm_wipe(st, sizeof(*st));
    return e;
}

ddsm_err ddsm_hmac_state_mac(const ddsm_hmac_state *st, const uint8_t *data, size_t data_len,
                             uint8_t out[DDSM_MAC_LEN])
{
    SHA256_CTX w; /* a copy of the keyed state: secret, wiped */
    uint8_t ih[SHA256_DIGEST_LENGTH], mac[DDSM_MAC_LEN];
    ddsm_err e = DDSM_E_ARG;
    if (st == NULL || (data == NULL && data_len > 0) || out == NULL)
        return e;
    const struct hmac_state *s = (const struct hmac_state *)st->opaque;
    w = s->inner;
    if ((data_len > 0 && SHA256_Update(&w, data, data_len) != 1) || SHA256_Final(ih, &w) != 1) {
        e = ddsm_err_openssl("SHA256 (inner)");
        goto out;
    }
    w = s->outer;
    if (SHA256_Update(&w, ih, sizeof(ih)) != 1 || SHA256_Final(mac, &w) != 1) {
        e = ddsm_err_openssl("SHA256 (outer)");
        goto out;
    }
    memcpy(out, mac, DDSM_MAC_LEN);
    e = DDSM_OK;
out:
    ddsm_wipe(&w, sizeof(w));
    ddsm_wipe(ih, sizeof(ih));
    ddsm_wipe(mac, sizeof(mac));
    return e;
}
