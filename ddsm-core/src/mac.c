/* In-process HMAC-SHA256 for derived keys (never the root seed, which stays in the HSM).
 *
 * One EVP_MAC_CTX per thread, in a holder found through a pthread key whose destructor frees it at
 * thread exit. The digest is set once when the context is made. A call re-keys it with
 * EVP_MAC_init(ctx, key, len, NULL) (two compression-function blocks and the parameter
 * machinery), except ddsm_hmac_sha256_keyed with the key id the context was last keyed with: that
 * one re-initialises it with a NULL key, which restarts from the kept inner and outer pads (about
 * 40% less time per sign of a short message).
 *
 * The context therefore holds the last key's pads (a secret) until the thread's next call with
 * another key, ddsm_mac_thread_cleanup or thread exit. Every holder is also in a registry, so
 * that ddsm_mac_forget_key / ddsm_mac_forget_all can free (and so cleanse: OpenSSL cleanses a
 * context it frees) the contexts of every thread holding a key that was wiped. Each holder has a
 * busy flag, a tiny spin lock taken by its own thread around every MAC and by those two: it is
 * never contended otherwise, costs one atomic exchange (a mutex costs two atomic operations on
 * the sign path), and its holder never blocks while holding it. Lock order: the registry, then a
 * holder. */
#include "ddsm/mac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/secmem.h"

static pthread_mutex_t mac_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool mac_ready;
static EVP_MAC *hmac_alg;   /* fetched once */
static pthread_key_t ctx_key; /* this thread's holder */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A non-NULL pointer for a zero-length key: EVP_MAC_init treats a NULL key as "keep the previous
 * key", which would silently reuse the last caller's key. */
static const uint8_t empty_key[1];

struct holder {
    atomic_bool busy;       /* the spin lock guarding ctx and keyed_id */
    atomic_bool forgetting; /* a forget waits for it: the owner lets it in first */
    EVP_MAC_CTX *ctx;  /* NULL until first use and after a forget; keyed: a secret */
    /* the key id ctx is keyed with (ddsm_hmac_sha256_keyed), 0: none known; written under the
     * lock, read without it by ddsm_mac_forget_key to skip other keys' holders */
    _Atomic uint64_t keyed_id;
    struct holder *prev, *next;
};

/* Every thread's holder (mac_lock guards it). */
static struct holder *reg_head;

struct ddsm_hmac_stream {
    EVP_MAC_CTX *ctx; /* keyed: a secret */
};

static void reg_unlink_locked(struct holder *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        reg_head = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
}

/* Waiting for the other side of a holder, which keeps it for one MAC at most: spin a little
 * first (a MAC takes well under a microsecond), then give the CPU away. */
static void holder_wait(unsigned *spins)
{
    if (++*spins < 512) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        return;
    }
    sched_yield();
}

/* The owner's side. A thread signing back to back would retake its lock before a waiting forget
 * ever saw it free: it steps aside while one is pending. */
static void holder_lock(struct holder *h)
{
    unsigned spins = 0;
    for (;;) {
        while (atomic_load_explicit(&h->forgetting, memory_order_acquire))
            holder_wait(&spins);
        if (!atomic_exchange_explicit(&h->busy, true, memory_order_acquire))
            return;
        holder_wait(&spins); /* a forget is cleansing it */
    }
}

static void holder_unlock(struct holder *h)
{
    atomic_store_explicit(&h->busy, false, memory_order_release);
}

/* The forget's side (one at a time: they hold the registry lock). */
static void holder_lock_forget(struct holder *h)
{
    unsigned spins = 0;
    atomic_store_explicit(&h->forgetting, true, memory_order_release);
    while (atomic_exchange_explicit(&h->busy, true, memory_order_acquire))
        holder_wait(&spins); /* the owner is inside one MAC */
}

static void holder_unlock_forget(struct holder *h)
{
    atomic_store_explicit(&h->busy, false, memory_order_release);
    atomic_store_explicit(&h->forgetting, false, memory_order_release);
}

static void holder_free(struct holder *h)
{
    EVP_MAC_CTX_free(h->ctx); /* cleanses the keyed state */
    free(h);
}

static void holder_destructor(void *p)
{
    struct holder *h = p;
    pthread_mutex_lock(&mac_lock);
    reg_unlink_locked(h);
    pthread_mutex_unlock(&mac_lock);
    holder_free(h);
}

/* In a fork child only the forking thread exists: the other threads' holders (whose locks they
 * may have held) are dropped from the registry, never touched again. */
static void atfork_child(void)
{
    pthread_mutex_init(&mac_lock, NULL);
    if (!atomic_load_explicit(&mac_ready, memory_order_relaxed)) {
        reg_head = NULL;
        return;
    }
    struct holder *mine = pthread_getspecific(ctx_key);
    reg_head = NULL;
    if (mine != NULL) {
        atomic_store(&mine->busy, false);
        atomic_store(&mine->forgetting, false);
        mine->prev = mine->next = NULL;
        reg_head = mine;
    }
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

static ddsm_err mac_setup(void)
{
    ddsm_err e = DDSM_OK;

    if (atomic_load_explicit(&mac_ready, memory_order_acquire))
        return DDSM_OK;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&mac_lock);
    if (atomic_load_explicit(&mac_ready, memory_order_relaxed))
        goto out;
    hmac_alg = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (hmac_alg == NULL) {
        e = ddsm_err_openssl("EVP_MAC_fetch(HMAC)");
        goto out;
    }
    if (pthread_key_create(&ctx_key, holder_destructor) != 0) {
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

/* This thread's holder, made and registered at the first call. */
static ddsm_err thread_holder(struct holder **out)
{
    ddsm_err e = mac_setup();
    if (e != DDSM_OK)
        return e;
    struct holder *h = pthread_getspecific(ctx_key);
    if (h == NULL) {
        h = calloc(1, sizeof(*h));
        if (h == NULL)
            return DDSM_E_NOMEM;
        atomic_init(&h->busy, false);
        atomic_init(&h->forgetting, false);
        if (pthread_setspecific(ctx_key, h) != 0) {
            holder_free(h);
            return DDSM_E_NOMEM;
        }
        pthread_mutex_lock(&mac_lock);
        h->next = reg_head;
        if (reg_head != NULL)
            reg_head->prev = h;
        reg_head = h;
        pthread_mutex_unlock(&mac_lock);
    }
    *out = h;
    return DDSM_OK;
}

/* Key a context with key_secret (a secret). */
static ddsm_err ctx_key_secret(EVP_MAC_CTX *ctx, const uint8_t *key_secret, size_t key_len)
{
    if (EVP_MAC_init(ctx, key_len > 0 ? key_secret : empty_key, key_len, NULL) != 1)
        return ddsm_err_openssl("EVP_MAC_init");
    return DDSM_OK;
}

/* The MAC on this thread's context, keyed with key_secret unless it already is with key_id
 * (0: unknown, always re-key). The caller holds the holder's lock. */
static ddsm_err mac_locked(struct holder *h, uint64_t key_id, const uint8_t *key_secret,
                           size_t key_len, const uint8_t *data, size_t data_len,
                           uint8_t mac[DDSM_MAC_LEN])
{
    size_t mac_len = 0;
    ddsm_err e;
    if (h->ctx == NULL && (e = ctx_new(&h->ctx)) != DDSM_OK)
        return e;
    if (key_id != 0 && atomic_load_explicit(&h->keyed_id, memory_order_relaxed) == key_id &&
        EVP_MAC_init(h->ctx, NULL, 0, NULL) == 1) {
        /* restarted from the kept pads */
    } else {
        atomic_store_explicit(&h->keyed_id, 0, memory_order_relaxed);
        if ((e = ctx_key_secret(h->ctx, key_secret, key_len)) != DDSM_OK)
            return e;
        atomic_store_explicit(&h->keyed_id, key_id, memory_order_relaxed);
    }
    if (data_len > 0 && EVP_MAC_update(h->ctx, data, data_len) != 1) {
        atomic_store_explicit(&h->keyed_id, 0, memory_order_relaxed);
        return ddsm_err_openssl("EVP_MAC_update");
    }
    if (EVP_MAC_final(h->ctx, mac, &mac_len, DDSM_MAC_LEN) != 1 || mac_len != DDSM_MAC_LEN) {
        atomic_store_explicit(&h->keyed_id, 0, memory_order_relaxed);
        return ddsm_err_openssl("EVP_MAC_final");
    }
    return DDSM_OK;
}

ddsm_err ddsm_hmac_sha256_keyed(uint64_t key_id, const uint8_t *key_secret, size_t key_len,
                                const uint8_t *data, size_t data_len, uint8_t out[DDSM_MAC_LEN])
{
    struct holder *h = NULL;
    uint8_t mac[DDSM_MAC_LEN];
    ddsm_err e = DDSM_E_ARG;

    if ((key_secret == NULL && key_len > 0) || (data == NULL && data_len > 0) || out == NULL)
        goto out;
    e = thread_holder(&h);
    if (e != DDSM_OK)
        goto out;
    holder_lock(h);
    e = mac_locked(h, key_id, key_secret, key_len, data, data_len, mac);
    holder_unlock(h);
    if (e == DDSM_OK)
        memcpy(out, mac, DDSM_MAC_LEN);
out:
    ddsm_wipe(mac, sizeof(mac));
    return e;
}

ddsm_err ddsm_hmac_sha256(const uint8_t *key_secret, size_t key_len, const uint8_t *data,
                          size_t data_len, uint8_t out[DDSM_MAC_LEN])
{
    return ddsm_hmac_sha256_keyed(0, key_secret, key_len, data, data_len, out);
}

/* Free (and so cleanse) the context of every holder keyed with key_id, or of all of them. */
static void forget_where(bool all, uint64_t key_id)
{
    if (!atomic_load_explicit(&mac_ready, memory_order_acquire))
        return;
    pthread_mutex_lock(&mac_lock);
    for (struct holder *h = reg_head; h != NULL; h = h->next) {
        /* A key being forgotten has no reference left, so nobody keys a context with it any
         * more: a holder that is not keyed with it now never will be. */
        if (!all && atomic_load_explicit(&h->keyed_id, memory_order_relaxed) != key_id)
            continue;
        holder_lock_forget(h);
        if (h->ctx != NULL &&
            (all || atomic_load_explicit(&h->keyed_id, memory_order_relaxed) == key_id)) {
            EVP_MAC_CTX_free(h->ctx);
            h->ctx = NULL;
            atomic_store_explicit(&h->keyed_id, 0, memory_order_relaxed);
        }
        holder_unlock_forget(h);
    }
    pthread_mutex_unlock(&mac_lock);
}

void ddsm_mac_forget_key(uint64_t key_id)
{
    if (key_id != 0)
        forget_where(false, key_id);
}

void ddsm_mac_forget_all(void)
{
    forget_where(true, 0);
}

void ddsm_mac_thread_cleanup(void)
{
    if (!atomic_load_explicit(&mac_ready, memory_order_acquire))
        return;
    struct holder *h = pthread_getspecific(ctx_key);
    if (h != NULL) {
        (void)pthread_setspecific(ctx_key, NULL);
        holder_destructor(h);
    }
}

void ddsm_mac_shutdown(void)
{
    pthread_mutex_lock(&mac_lock);
    if (atomic_load_explicit(&mac_ready, memory_order_relaxed)) {
        /* No ddsm_hmac_* call runs now (the contract): every thread's context can go, cleansed,
         * and no destructor of ours may run after the code is unloaded. */
        (void)pthread_setspecific(ctx_key, NULL);
        while (reg_head != NULL) {
            struct holder *h = reg_head;
            reg_unlink_locked(h);
            holder_free(h);
        }
        (void)pthread_key_delete(ctx_key);
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
