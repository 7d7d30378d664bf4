/* HMAC with a per-thread context kept keyed (ddsm_hmac_sha256_keyed): the same MACs as OpenSSL's
 * one-shot HMAC whatever the order of keys, while other threads cleanse contexts under the
 * signers (ddsm_mac_forget_key / _all), after a shutdown, and in a fork child whose parent had
 * threads busy signing. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddsm/mac.h"

#define N_KEYS 4

static uint8_t keys[N_KEYS][32];

static void reference(int k, const uint8_t *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), keys[k], 32, data, len, out, &n));
    assert_int_equal(n, 32);
}

/* Key k's id: ids are process-unique per key bytes, and 0 means "none". */
static uint64_t id_of(int k)
{
    return 1000 + (uint64_t)k;
}

static int setup(void **state)
{
    (void)state;
    for (int k = 0; k < N_KEYS; k++)
        for (int i = 0; i < 32; i++)
            keys[k][i] = (uint8_t)(k * 37 + i);
    return 0;
}

static void test_mac_keyed__any_order_of_keys_gives_openssls_macs(void **state)
{
    (void)state;
    static const int order[] = {0, 0, 1, 0, 2, 2, 2, 3, 1, 1, 0, 3, 3, 2};
    uint8_t data[100], got[32], want[32];
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        int k = order[i];
        for (size_t j = 0; j < sizeof(data); j++)
            data[j] = (uint8_t)(i + j);
        size_t len = (i * 7) % sizeof(data);
        reference(k, data, len, want);
        assert_int_equal(ddsm_hmac_sha256_keyed(id_of(k), keys[k], 32, data, len, got), DDSM_OK);
        assert_memory_equal(got, want, 32);
        /* The unkeyed form in between must not leave its key for the next keyed call. */
        if (i % 3 == 0) {
            assert_int_equal(ddsm_hmac_sha256(keys[(k + 1) % N_KEYS], 32, data, len, got),
                             DDSM_OK);
            reference((k + 1) % N_KEYS, data, len, want);
            assert_memory_equal(got, want, 32);
        }
    }
    assert_int_equal(ddsm_hmac_sha256_keyed(id_of(0), NULL, 5, (const uint8_t *)"x", 1, got),
                     DDSM_E_ARG);
    ddsm_mac_thread_cleanup();
}

struct signer {
    int k;
    atomic_int *stop;
    long n;
    long wrong;
};

static void *signer_main(void *arg)
{
    struct signer *s = arg;
    uint8_t data[64], got[32], want[32];
    memset(data, s->k, sizeof(data));
    unsigned int n = 0;
    HMAC(EVP_sha256(), keys[s->k], 32, data, sizeof(data), want, &n);
    while (!atomic_load(s->stop)) {
        if (ddsm_hmac_sha256_keyed(id_of(s->k), keys[s->k], 32, data, sizeof(data), got) !=
                DDSM_OK ||
            memcmp(got, want, 32) != 0)
            s->wrong++;
        s->n++;
    }
    ddsm_mac_thread_cleanup();
    return NULL;
}

static void test_mac_keyed__forgetting_under_busy_signers_never_changes_a_mac(void **state)
{
    (void)state;
    atomic_int stop = 0;
    struct signer sg[N_KEYS];
    pthread_t th[N_KEYS];
    for (int k = 0; k < N_KEYS; k++) {
        sg[k] = (struct signer){k, &stop, 0, 0};
        assert_int_equal(pthread_create(&th[k], NULL, signer_main, &sg[k]), 0);
    }
    for (int i = 0; i < 100; i++) {
        if (i % 2 == 0)
            ddsm_mac_forget_key(id_of(i % N_KEYS));
        else
            ddsm_mac_forget_all();
        usleep(100);
    }
    atomic_store(&stop, 1);
    for (int k = 0; k < N_KEYS; k++) {
        pthread_join(th[k], NULL);
        assert_true(sg[k].n > 0);
        assert_int_equal(sg[k].wrong, 0);
    }
}

static void test_mac_keyed__works_again_after_shutdown(void **state)
{
    (void)state;
    uint8_t got[32], want[32];
    reference(1, (const uint8_t *)"abc", 3, want);
    assert_int_equal(ddsm_hmac_sha256_keyed(id_of(1), keys[1], 32, (const uint8_t *)"abc", 3, got),
                     DDSM_OK);
    ddsm_mac_shutdown();
    ddsm_mac_forget_all(); /* nothing set up: a no-op */
    memset(got, 0, sizeof(got));
    assert_int_equal(ddsm_hmac_sha256_keyed(id_of(1), keys[1], 32, (const uint8_t *)"abc", 3, got),
                     DDSM_OK);
    assert_memory_equal(got, want, 32);
    ddsm_mac_thread_cleanup();
}

static void test_mac_keyed__a_fork_child_of_busy_signers_can_forget_and_sign(void **state)
{
    (void)state;
    atomic_int stop = 0;
    struct signer sg[N_KEYS];
    pthread_t th[N_KEYS];
    for (int k = 0; k < N_KEYS; k++) {
        sg[k] = (struct signer){k, &stop, 0, 0};
        assert_int_equal(pthread_create(&th[k], NULL, signer_main, &sg[k]), 0);
    }
    for (int round = 0; round < 10; round++) {
        usleep(2000);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* A parent thread may have held its context's lock at the fork: the child must
             * neither wait for it nor use that context. */
            alarm(10);
            uint8_t got[32], want[32];
            unsigned int n = 0;
            ddsm_mac_forget_all();
            ddsm_mac_forget_key(id_of(2));
            HMAC(EVP_sha256(), keys[2], 32, (const uint8_t *)"child", 5, want, &n);
            if (ddsm_hmac_sha256_keyed(id_of(2), keys[2], 32, (const uint8_t *)"child", 5, got) !=
                    DDSM_OK ||
                memcmp(got, want, 32) != 0)
                _exit(3);
            ddsm_mac_forget_all();
            _exit(0);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    atomic_store(&stop, 1);
    for (int k = 0; k < N_KEYS; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(sg[k].wrong, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac_keyed__any_order_of_keys_gives_openssls_macs),
        cmocka_unit_test(test_mac_keyed__forgetting_under_busy_signers_never_changes_a_mac),
        cmocka_unit_test(test_mac_keyed__works_again_after_shutdown),
        cmocka_unit_test(test_mac_keyed__a_fork_child_of_busy_signers_can_forget_and_sign),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
