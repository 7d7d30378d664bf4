/* SPDX-License-Identifier: Apache-2.0 */
/* In-process HMAC-SHA256: RFC 4231 vectors through the one-shot and streaming APIs, re-keying of
 * the per-thread context, and concurrent use from several threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ddsm/mac.h"
#include "hex_support.h"

struct rfc4231 {
    uint8_t key[131];
    size_t key_len;
    uint8_t data[160];
    size_t data_len;
    const char *mac_hex; /* test case 5 is truncated to 128 bits */
};

static struct rfc4231 cases[7];

static void fill(uint8_t *p, uint8_t v, size_t n)
{
    memset(p, v, n);
}

static void text(struct rfc4231 *c, const char *s)
{
    c->data_len = strlen(s);
    memcpy(c->data, s, c->data_len);
}

static int setup_cases(void **state)
{
    (void)state;
    memset(cases, 0, sizeof(cases));
    fill(cases[0].key, 0x0b, cases[0].key_len = 20);
    text(&cases[0], "Hi There");
    cases[0].mac_hex = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";

    memcpy(cases[1].key, "Jefe", cases[1].key_len = 4);
    text(&cases[1], "what do ya want for nothing?");
    cases[1].mac_hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    fill(cases[2].key, 0xaa, cases[2].key_len = 20);
    fill(cases[2].data, 0xdd, cases[2].data_len = 50);
    cases[2].mac_hex = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";

    for (size_t i = 0; i < 25; i++)
        cases[3].key[i] = (uint8_t)(i + 1);
    cases[3].key_len = 25;
    fill(cases[3].data, 0xcd, cases[3].data_len = 50);
    cases[3].mac_hex = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";

    fill(cases[4].key, 0x0c, cases[4].key_len = 20);
    text(&cases[4], "Test With Truncation");
    cases[4].mac_hex = "a3b6167473100ee06e0c796c2955552b";

    fill(cases[5].key, 0xaa, cases[5].key_len = 131);
    text(&cases[5], "Test Using Larger Than Block-Size Key - Hash Key First");
    cases[5].mac_hex = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";

    fill(cases[6].key, 0xaa, cases[6].key_len = 131);
    text(&cases[6], "This is a test using a larger than block-size key and a larger than "
                    "block-size data. The key needs to be hashed before being used by the HMAC "
                    "algorithm.");
    cases[6].mac_hex = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";
    return 0;
}

static int teardown_cases(void **state)
{
    (void)state;
    ddsm_mac_shutdown();
    return 0;
}

static void assert_mac_is(const uint8_t mac[DDSM_MAC_LEN], const char *want_hex)
{
    char hex[2 * DDSM_MAC_LEN + 1];
    hexs_encode(mac, strlen(want_hex) / 2, hex);
    assert_string_equal(hex, want_hex);
}

static void test_mac__one_shot_matches_rfc4231(void **state)
{
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        uint8_t mac[DDSM_MAC_LEN];
        assert_int_equal(ddsm_hmac_sha256(cases[i].key, cases[i].key_len, cases[i].data,
                                          cases[i].data_len, mac),
                         DDSM_OK);
        assert_mac_is(mac, cases[i].mac_hex);
    }
}

static void test_mac__stream_matches_rfc4231_in_any_chunking(void **state)
{
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        for (size_t chunk = 1; chunk <= cases[i].data_len + 1; chunk += 7) {
            ddsm_hmac_stream *s = NULL;
            uint8_t mac[DDSM_MAC_LEN];
            assert_int_equal(ddsm_hmac_stream_new(cases[i].key, cases[i].key_len, &s), DDSM_OK);
            for (size_t off = 0; off < cases[i].data_len; off += chunk) {
                size_t n = cases[i].data_len - off < chunk ? cases[i].data_len - off : chunk;
                assert_int_equal(ddsm_hmac_stream_update(s, cases[i].data + off, n), DDSM_OK);
                assert_int_equal(ddsm_hmac_stream_update(s, NULL, 0), DDSM_OK);
            }
            assert_int_equal(ddsm_hmac_stream_final(s, mac), DDSM_OK);
            assert_mac_is(mac, cases[i].mac_hex);
        }
    }
}

static void test_mac__streams_are_independent_of_each_other(void **state)
{
    (void)state;
    ddsm_hmac_stream *a = NULL, *b = NULL;
    uint8_t mac[DDSM_MAC_LEN];
    assert_int_equal(ddsm_hmac_stream_new(cases[0].key, cases[0].key_len, &a), DDSM_OK);
    assert_int_equal(ddsm_hmac_stream_new(cases[1].key, cases[1].key_len, &b), DDSM_OK);
    assert_int_equal(ddsm_hmac_stream_update(a, cases[0].data, 3), DDSM_OK);
    assert_int_equal(ddsm_hmac_stream_update(b, cases[1].data, 10), DDSM_OK);
    /* one-shot calls in between use the thread's context, not the streams' */
    assert_int_equal(ddsm_hmac_sha256(cases[2].key, cases[2].key_len, cases[2].data,
                                      cases[2].data_len, mac), DDSM_OK);
    assert_mac_is(mac, cases[2].mac_hex);
    assert_int_equal(ddsm_hmac_stream_update(a, cases[0].data + 3, cases[0].data_len - 3),
                     DDSM_OK);
    assert_int_equal(ddsm_hmac_stream_update(b, cases[1].data + 10, cases[1].data_len - 10),
                     DDSM_OK);
    assert_int_equal(ddsm_hmac_stream_final(b, mac), DDSM_OK);
    assert_mac_is(mac, cases[1].mac_hex);
    assert_int_equal(ddsm_hmac_stream_final(a, mac), DDSM_OK);
    assert_mac_is(mac, cases[0].mac_hex);
}

static void test_mac__stream_free_without_final_releases_it(void **state)
{
    (void)state;
    ddsm_hmac_stream *s = NULL;
    assert_int_equal(ddsm_hmac_stream_new(cases[0].key, cases[0].key_len, &s), DDSM_OK);
    assert_int_equal(ddsm_hmac_stream_update(s, cases[0].data, 2), DDSM_OK);
    ddsm_hmac_stream_free(s); /* valgrind's leak check sees whether it really did */
    ddsm_hmac_stream_free(NULL);
}

/* EVP_MAC_init with a NULL key keeps the previous key: an empty key must not inherit the last
 * caller's key through the shared per-thread context. */
static void test_mac__empty_key_does_not_reuse_previous_key(void **state)
{
    (void)state;
    uint8_t mac[DDSM_MAC_LEN], want[DDSM_MAC_LEN];
    unsigned want_len = 0;
    assert_int_equal(ddsm_hmac_sha256(cases[0].key, cases[0].key_len, (const uint8_t *)"x", 1,
                                      mac), DDSM_OK);
    assert_int_equal(ddsm_hmac_sha256(NULL, 0, (const uint8_t *)"x", 1, mac), DDSM_OK);
    assert_non_null(HMAC(EVP_sha256(), "", 0, (const uint8_t *)"x", 1, want, &want_len));
    assert_memory_equal(mac, want, DDSM_MAC_LEN);
    uint8_t empty_data_mac[DDSM_MAC_LEN];
    assert_int_equal(ddsm_hmac_sha256(cases[1].key, cases[1].key_len, NULL, 0, empty_data_mac),
                     DDSM_OK);
    assert_non_null(HMAC(EVP_sha256(), cases[1].key, (int)cases[1].key_len, NULL, 0, want,
                         &want_len));
    assert_memory_equal(empty_data_mac, want, DDSM_MAC_LEN);
}

static void test_mac__rejects_missing_buffers(void **state)
{
    (void)state;
    uint8_t mac[DDSM_MAC_LEN];
    ddsm_hmac_stream *s = NULL;
    assert_int_equal(ddsm_hmac_sha256(NULL, 4, (const uint8_t *)"x", 1, mac), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_sha256(cases[0].key, 20, NULL, 1, mac), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_sha256(cases[0].key, 20, (const uint8_t *)"x", 1, NULL),
                     DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_stream_new(NULL, 4, &s), DDSM_E_ARG);
    assert_null(s);
    assert_int_equal(ddsm_hmac_stream_new(cases[0].key, 20, NULL), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_stream_update(NULL, (const uint8_t *)"x", 1), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_stream_final(NULL, mac), DDSM_E_ARG);
}

static void test_mac__works_again_after_thread_cleanup_and_shutdown(void **state)
{
    (void)state;
    uint8_t mac[DDSM_MAC_LEN];
    ddsm_mac_thread_cleanup();
    ddsm_mac_thread_cleanup();
    assert_int_equal(ddsm_hmac_sha256(cases[1].key, cases[1].key_len, cases[1].data,
                                      cases[1].data_len, mac), DDSM_OK);
    assert_mac_is(mac, cases[1].mac_hex);
    ddsm_mac_shutdown();
    ddsm_mac_shutdown();
    assert_int_equal(ddsm_hmac_sha256(cases[3].key, cases[3].key_len, cases[3].data,
                                      cases[3].data_len, mac), DDSM_OK);
    assert_mac_is(mac, cases[3].mac_hex);
}

/* A thread that keyed its context and is still alive when ddsm_mac_shutdown runs (a host thread
 * when the module is finalized and unloaded): shutdown frees its context (LeakSanitizer and
 * valgrind check), and the thread's exit afterwards runs no destructor of ours (ASan checks: a
 * second free would be reported). */
struct parked {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int keyed; /* threads that have their context */
    bool go;   /* shutdown done: the threads may exit */
    int failures;
};

static void *parked_main(void *arg)
{
    struct parked *p = arg;
    uint8_t mac[DDSM_MAC_LEN];
    if (ddsm_hmac_sha256(cases[2].key, cases[2].key_len, cases[2].data, cases[2].data_len,
                         mac) != DDSM_OK)
        p->failures++;
    pthread_mutex_lock(&p->lock);
    p->keyed++;
    pthread_cond_broadcast(&p->cond);
    while (!p->go)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void test_mac__shutdown_frees_contexts_of_live_threads(void **state)
{
    (void)state;
    struct parked p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, 0};
    pthread_t t[3];
    uint8_t mac[DDSM_MAC_LEN];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, parked_main, &p), 0);
    pthread_mutex_lock(&p.lock);
    while (p.keyed != 3)
        pthread_cond_wait(&p.cond, &p.lock);
    pthread_mutex_unlock(&p.lock);
    assert_int_equal(ddsm_hmac_sha256(cases[0].key, cases[0].key_len, cases[0].data,
                                      cases[0].data_len, mac), DDSM_OK);
    ddsm_mac_shutdown();
    pthread_mutex_lock(&p.lock);
    p.go = true;
    pthread_cond_broadcast(&p.cond);
    pthread_mutex_unlock(&p.lock);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(p.failures, 0);
    assert_int_equal(ddsm_hmac_sha256(cases[1].key, cases[1].key_len, cases[1].data,
                                      cases[1].data_len, mac), DDSM_OK);
    assert_mac_is(mac, cases[1].mac_hex);
}

#define N_THREADS 8
#define N_ROUNDS 3000

struct worker {
    unsigned seed;
    int failures;
};

/* Each thread interleaves RFC vectors with random keys and data, checked against OpenSSL's
 * one-shot HMAC, so a context shared or mis-keyed across threads shows up as a mismatch. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t x = w->seed;
    for (int r = 0; r < N_ROUNDS; r++) {
        uint8_t key[64], data[200], mac[DDSM_MAC_LEN], want[DDSM_MAC_LEN];
        unsigned want_len = 0;
        x = x * UINT64_C(6364136223846793005) + 1442695040888963407u;
        size_t key_len = 1 + (x >> 58);
        size_t data_len = (x >> 40) % sizeof(data);
        for (size_t i = 0; i < key_len; i++)
            key[i] = (uint8_t)(x >> (i % 56));
        for (size_t i = 0; i < data_len; i++)
            data[i] = (uint8_t)(i * 31u + (unsigned)r);
        if (ddsm_hmac_sha256(key, key_len, data, data_len, mac) != DDSM_OK)
            w->failures++;
        HMAC(EVP_sha256(), key, (int)key_len, data, data_len, want, &want_len);
        if (memcmp(mac, want, sizeof(mac)) != 0)
            w->failures++;
        const struct rfc4231 *c = &cases[r % 7];
        if (c->key_len > 0 && r % 7 != 4) {
            char hex[65];
            if (ddsm_hmac_sha256(c->key, c->key_len, c->data, c->data_len, mac) != DDSM_OK)
                w->failures++;
            hexs_encode(mac, DDSM_MAC_LEN, hex);
            if (strcmp(hex, c->mac_hex) != 0)
                w->failures++;
        }
    }
    return NULL; /* the thread's context is freed by the key destructor */
}

static void test_mac__threads_each_get_correct_results(void **state)
{
    (void)state;
    pthread_t t[N_THREADS];
    struct worker w[N_THREADS];
    for (unsigned i = 0; i < N_THREADS; i++) {
        w[i].seed = 1000 + i;
        w[i].failures = 0;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac__one_shot_matches_rfc4231),
        cmocka_unit_test(test_mac__stream_matches_rfc4231_in_any_chunking),
        cmocka_unit_test(test_mac__streams_are_independent_of_each_other),
        cmocka_unit_test(test_mac__stream_free_without_final_releases_it),
        cmocka_unit_test(test_mac__empty_key_does_not_reuse_previous_key),
        cmocka_unit_test(test_mac__rejects_missing_buffers),
        cmocka_unit_test(test_mac__works_again_after_thread_cleanup_and_shutdown),
        cmocka_unit_test(test_mac__shutdown_frees_contexts_of_live_threads),
        cmocka_unit_test(test_mac__threads_each_get_correct_results),
    };
    return cmocka_run_group_tests(tests, setup_cases, teardown_cases);
}
