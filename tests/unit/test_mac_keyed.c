/* SPDX-License-Identifier: Apache-2.0 */
/* HMAC-SHA256 from a keyed state (ddsm_hmac_state, the sign path's): the same MACs as OpenSSL's
 * one-shot HMAC for keys shorter than, as long as, and longer than a block (hashed first, RFC
 * 2104) and for any message length, the state unchanged by use (many threads share one), and
 * bad arguments refused. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ddsm/mac.h"
#include "ddsm/secmem.h"

static void reference(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                      uint8_t out[32])
{
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n));
    assert_int_equal(n, 32);
}

static void test_mac_keyed__state_macs_are_openssls_for_every_key_and_message_length(void **state)
{
    (void)state;
    static const size_t key_lens[] = {0, 1, 20, 32, 63, 64, 65, 131};
    uint8_t key[131], data[300], got[32], want[32];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i ^ 0x5a);
    ddsm_hmac_state *st = ddsm_secure_alloc(sizeof(*st));
    assert_non_null(st);
    for (size_t k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++) {
        assert_int_equal(ddsm_hmac_state_init_secret(st, key, key_lens[k]), DDSM_OK);
        for (size_t len = 0; len <= sizeof(data); len += 23) {
            reference(key, key_lens[k], data, len, want);
            assert_int_equal(ddsm_hmac_state_mac(st, data, len, got), DDSM_OK);
            assert_memory_equal(got, want, 32);
            /* Again: a MAC restarts from the state and never changes it. */
            assert_int_equal(ddsm_hmac_state_mac(st, data, len, got), DDSM_OK);
            assert_memory_equal(got, want, 32);
        }
    }
    /* RFC 4231 test case 2: key "Jefe". */
    assert_int_equal(ddsm_hmac_state_init_secret(st, (const uint8_t *)"Jefe", 4), DDSM_OK);
    const char *msg = "what do ya want for nothing?";
    assert_int_equal(ddsm_hmac_state_mac(st, (const uint8_t *)msg, strlen(msg), got), DDSM_OK);
    static const uint8_t tc2[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                    0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                    0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                    0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    assert_memory_equal(got, tc2, 32);
    ddsm_secure_free(st, sizeof(*st));
}

static void test_mac_keyed__bad_arguments_are_refused(void **state)
{
    (void)state;
    ddsm_hmac_state st;
    uint8_t out[32];
    assert_int_equal(ddsm_hmac_state_init_secret(NULL, (const uint8_t *)"k", 1), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_state_init_secret(&st, NULL, 5), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_state_init_secret(&st, (const uint8_t *)"k", 1), DDSM_OK);
    assert_int_equal(ddsm_hmac_state_mac(NULL, (const uint8_t *)"x", 1, out), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_state_mac(&st, NULL, 1, out), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_state_mac(&st, (const uint8_t *)"x", 1, NULL), DDSM_E_ARG);
    assert_int_equal(ddsm_hmac_state_mac(&st, NULL, 0, out), DDSM_OK);
    ddsm_wipe(&st, sizeof(st));
}

struct user {
    const ddsm_hmac_state *st;
    const uint8_t *key;
    int index;
    long wrong;
};

static void *user_main(void *arg)
{
    struct user *u = arg;
    uint8_t data[64], got[32], want[32];
    unsigned int n = 0;
    for (int i = 0; i < 20000; i++) {
        memset(data, (u->index * 31 + i) & 0xff, sizeof(data));
        size_t len = (size_t)(i % 65);
        HMAC(EVP_sha256(), u->key, 32, data, len, want, &n);
        if (ddsm_hmac_state_mac(u->st, data, len, got) != DDSM_OK || memcmp(got, want, 32) != 0)
            u->wrong++;
    }
    return NULL;
}

static void test_mac_keyed__one_state_serves_many_threads_at_once(void **state)
{
    (void)state;
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0xc0 + i);
    ddsm_hmac_state *st = ddsm_secure_alloc(sizeof(*st));
    assert_non_null(st);
    assert_int_equal(ddsm_hmac_state_init_secret(st, key, sizeof(key)), DDSM_OK);
    struct user u[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        u[i] = (struct user){st, key, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, user_main, &u[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(u[i].wrong, 0);
    }
    ddsm_secure_free(st, sizeof(*st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac_keyed__state_macs_are_openssls_for_every_key_and_message_length),
        cmocka_unit_test(test_mac_keyed__bad_arguments_are_refused),
        cmocka_unit_test(test_mac_keyed__one_state_serves_many_threads_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
