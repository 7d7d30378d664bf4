/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded HSM call pool (module/src/hsmcall.h) against a fake backend whose C_Sign can be
 * made slow or failing: answers in time pass through, a call past the bound is abandoned and its
 * session closed when it returns, a saturated pool fails at once, and a pool freed while a call
 * is stuck leaves itself to the stuck worker; a call started ahead runs while its caller is away
 * and is bounded from its start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "hsmcall.h"

static atomic_int g_delay_ms, g_signs;
static atomic_ulong g_rv;
static atomic_int g_closed_count;
static atomic_ulong g_closed_last;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static CK_RV fake_sign_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
    return m != NULL && m->mechanism == CKM_SHA256_HMAC && k == 77 ? CKR_OK : CKR_MECHANISM_INVALID;
}

/* While set, a call stays inside the backend until the test clears it: "stuck" is then a fact
 * of the test, not a race between a delay and a bound. */
static atomic_int g_hold;

/* Until the counter reaches want (no deadline: a hang runs into ctest's timeout). */
static void until_at_least(atomic_int *counter, int want)
{
    while (atomic_load(counter) < want)
        sleep_ms(1);
}

static CK_RV fake_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                       CK_ULONG_PTR sig_len)
{
    atomic_fetch_add(&g_signs, 1);
    while (atomic_load(&g_hold))
        sleep_ms(1);
    int d = atomic_load(&g_delay_ms);
    if (d > 0)
        sleep_ms(d);
    CK_RV rv = (CK_RV)atomic_load(&g_rv);
    if (rv != CKR_OK)
        return rv;
    /* A recognisable "MAC": the session handle and the first data byte. */
    memset(sig, (int)(s & 0xff), 32);
    sig[0] = len > 0 ? data[0] : 0;
    *sig_len = 32;
    return CKR_OK;
}

static CK_RV fake_close(CK_SESSION_HANDLE s)
{
    atomic_store(&g_closed_last, s);
    atomic_fetch_add(&g_closed_count, 1);
    return CKR_OK;
}

static CK_FUNCTION_LIST g_fl;

static int setup(void **state)
{
    memset(&g_fl, 0, sizeof(g_fl));
    g_fl.C_SignInit = fake_sign_init;
    g_fl.C_Sign = fake_sign;
    g_fl.C_CloseSession = fake_close;
    atomic_store(&g_delay_ms, 0);
    atomic_store(&g_hold, 0);
    atomic_store(&g_signs, 0);
    atomic_store(&g_rv, CKR_OK);
    atomic_store(&g_closed_count, 0);
    atomic_store(&g_closed_last, 0);
    return 0;
}

static CK_RV call(ddsm_hsmcall *p, CK_SESSION_HANDLE s, uint8_t out[32], ddsm_hsmcall_status *st)
{
    const uint8_t msg[] = {0x5a, 1, 2, 3};
    return ddsm_hsmcall_hmac_secret(p, NULL, s, 77, msg, sizeof(msg), out, st);
}

static void test_hsmcall__answers_in_time_pass_the_backend_result_through(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 500, &p), CKR_OK);
    uint8_t out[32];
    ddsm_hsmcall_status st;
    assert_int_equal(call(p, 9, out, &st), CKR_OK);
    assert_int_equal(st, DDSM_HSMCALL_ANSWERED);
    assert_int_equal(out[0], 0x5a);
    assert_int_equal(out[31], 9);
    /* A backend error is the backend's answer, not a timeout. */
    atomic_store(&g_rv, CKR_DEVICE_ERROR);
    memset(out, 0xee, sizeof(out));
    assert_int_equal(call(p, 9, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_ANSWERED);
    assert_int_equal(out[0], 0xee); /* untouched */
    assert_int_equal(atomic_load(&g_closed_count), 0);
    ddsm_hsmcall_stats stats;
    ddsm_hsmcall_stats_get(p, &stats);
    assert_int_equal(stats.calls, 2);
    assert_int_equal(stats.timeouts, 0);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

static void
test_hsmcall__a_call_past_the_bound_is_abandoned_and_its_session_closed_later(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 50, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    uint8_t out[32];
    memset(out, 0xee, sizeof(out));
    ddsm_hsmcall_status st;
    int64_t t0 = now_ms();
    assert_int_equal(call(p, 41, out, &st), CKR_DEVICE_ERROR);
    int64_t took = now_ms() - t0;
    assert_int_equal(st, DDSM_HSMCALL_QUARANTINED);
    assert_true(took >= 45); /* it waited for its bound (how much longer is the machine's) */
    assert_int_equal(out[0], 0xee); /* the late key never reaches the caller */
    ddsm_hsmcall_stats stats;
    ddsm_hsmcall_stats_get(p, &stats);
    assert_int_equal(stats.stuck, 1);
    assert_int_equal(stats.timeouts, 1);
    assert_int_equal(atomic_load(&g_closed_count), 0); /* not while the call is inside */
    atomic_store(&g_hold, 0);
    until_at_least(&g_closed_count, 1);
    assert_int_equal(atomic_load(&g_closed_count), 1);
    assert_int_equal(atomic_load(&g_closed_last), 41);
    do {
        sleep_ms(1);
        ddsm_hsmcall_stats_get(p, &stats);
    } while (stats.stuck != 0);
    /* The pool works again. */
    atomic_store(&g_delay_ms, 0);
    assert_int_equal(call(p, 42, out, &st), CKR_OK);
    assert_int_equal(st, DDSM_HSMCALL_ANSWERED);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

static void test_hsmcall__when_every_worker_is_stuck_calls_fail_at_once(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 40, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    uint8_t out[32];
    ddsm_hsmcall_status st;
    assert_false(ddsm_hsmcall_saturated(p));
    assert_int_equal(call(p, 1, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_QUARANTINED);
    assert_int_equal(call(p, 2, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_QUARANTINED);
    assert_true(ddsm_hsmcall_saturated(p));
    int signs = atomic_load(&g_signs);
    /* At once: shown by the backend call that did not happen (below), not by a clock. */
    assert_int_equal(call(p, 3, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_TIMEOUT); /* session 3 was never used: the caller keeps it */
    assert_int_equal(atomic_load(&g_signs), signs);
    ddsm_hsmcall_stats stats;
    ddsm_hsmcall_stats_get(p, &stats);
    assert_int_equal(stats.fast_fail, 1);
    assert_int_equal(stats.workers, 2); /* bounded: no third thread */
    atomic_store(&g_hold, 0);
    until_at_least(&g_closed_count, 2);
    while (ddsm_hsmcall_saturated(p))
        sleep_ms(1);
    assert_int_equal(call(p, 4, out, &st), CKR_OK);
    assert_int_equal(atomic_load(&g_closed_count), 2);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

typedef struct bg_call {
    ddsm_hsmcall *p;
    CK_SESSION_HANDLE s;
    CK_RV rv;
    ddsm_hsmcall_status st;
} bg_call;

static void *bg_main(void *arg)
{
    bg_call *b = arg;
    uint8_t out[32];
    b->rv = call(b->p, b->s, out, &b->st);
    return NULL;
}

static void test_hsmcall__a_call_still_queued_at_its_deadline_keeps_its_session(void **state)
{
    /* One worker, busy with a slow call from another thread: our call waits in the queue past
     * its bound and comes back unused (TIMEOUT, not QUARANTINED), and never runs. */
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 1, 100, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    bg_call b = {.p = p, .s = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_main, &b), 0);
    until_at_least(&g_signs, 1); /* the other call is inside the backend, on the one worker */
    uint8_t out[32];
    ddsm_hsmcall_status st;
    assert_int_equal(call(p, 2, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_TIMEOUT);
    pthread_join(t, NULL);
    assert_int_equal(b.rv, CKR_DEVICE_ERROR);
    assert_int_equal(b.st, DDSM_HSMCALL_QUARANTINED);
    atomic_store(&g_hold, 0);
    until_at_least(&g_closed_count, 1);
    assert_int_equal(atomic_load(&g_signs), 1); /* ours never reached the backend */
    assert_int_equal(atomic_load(&g_closed_count), 1);
    assert_int_equal(atomic_load(&g_closed_last), 1);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

static void test_hsmcall__freeing_with_a_stuck_call_leaves_the_pool_to_it(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 30, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    uint8_t out[32];
    ddsm_hsmcall_status st;
    assert_int_equal(call(p, 5, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_QUARANTINED);
    /* Too short a grace: the worker is held inside the backend. */
    assert_false(ddsm_hsmcall_free(p, 50));
    /* It closes its session and frees the pool on its way out (ASan/valgrind would see a use
     * after free or a leak). */
    atomic_store(&g_hold, 0);
    until_at_least(&g_closed_count, 1);
    assert_int_equal(atomic_load(&g_closed_count), 1);
    assert_int_equal(atomic_load(&g_closed_last), 5);
}

static void test_hsmcall__free_waits_for_a_stuck_call_within_the_grace(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 30, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    uint8_t out[32];
    ddsm_hsmcall_status st;
    assert_int_equal(call(p, 6, out, &st), CKR_DEVICE_ERROR);
    /* The stuck call returns now; a grace far longer than that takes lets free wait for it. */
    atomic_store(&g_hold, 0);
    assert_true(ddsm_hsmcall_free(p, 60000));
    assert_int_equal(atomic_load(&g_closed_count), 1);
}

static void test_hsmcall__a_started_call_runs_while_its_caller_is_away(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 60000, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    const uint8_t msg[] = {0x3c, 9};
    ddsm_hsmcall_job *j = ddsm_hsmcall_start(p, 12, 77, msg, sizeof(msg));
    assert_non_null(j);
    /* Inside the backend before anyone waits for it. */
    until_at_least(&g_signs, 1);
    atomic_store(&g_hold, 0);
    uint8_t out[32];
    ddsm_hsmcall_status st;
    int64_t took = -1;
    assert_int_equal(ddsm_hsmcall_collect(p, j, out, &st, &took), CKR_OK);
    assert_int_equal(st, DDSM_HSMCALL_ANSWERED);
    assert_int_equal(out[0], 0x3c);
    assert_int_equal(out[31], 12);
    assert_true(took >= 0);
    ddsm_hsmcall_stats stats;
    ddsm_hsmcall_stats_get(p, &stats);
    assert_int_equal(stats.calls, 1);
    assert_int_equal(stats.started, 1);
    assert_int_equal(stats.discarded, 0);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

static void test_hsmcall__a_discarded_call_hands_out_nothing(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 60000, &p), CKR_OK);
    const uint8_t msg[] = {0x3c, 9};
    ddsm_hsmcall_job *j = ddsm_hsmcall_start(p, 12, 77, msg, sizeof(msg));
    assert_non_null(j);
    ddsm_hsmcall_status st;
    assert_int_equal(ddsm_hsmcall_collect(p, j, NULL, &st, NULL), CKR_OK);
    assert_int_equal(st, DDSM_HSMCALL_ANSWERED);
    assert_int_equal(atomic_load(&g_signs), 1);
    ddsm_hsmcall_stats stats;
    ddsm_hsmcall_stats_get(p, &stats);
    assert_int_equal(stats.discarded, 1);
    assert_int_equal(atomic_load(&g_closed_count), 0); /* the session stays the caller's */
    assert_true(ddsm_hsmcall_free(p, 1000));
}

static void test_hsmcall__a_started_call_is_bounded_from_its_start(void **state)
{
    /* Held in the backend: collecting it waits only for what is left of its bound, then
     * quarantines its session as a direct call would. */
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 2, 50, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    const uint8_t msg[] = {1};
    ddsm_hsmcall_job *j = ddsm_hsmcall_start(p, 33, 77, msg, sizeof(msg));
    assert_non_null(j);
    until_at_least(&g_signs, 1);
    uint8_t out[32];
    memset(out, 0xee, sizeof(out));
    ddsm_hsmcall_status st;
    assert_int_equal(ddsm_hsmcall_collect(p, j, out, &st, NULL), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_QUARANTINED);
    assert_int_equal(out[0], 0xee);
    atomic_store(&g_hold, 0);
    until_at_least(&g_closed_count, 1);
    assert_int_equal(atomic_load(&g_closed_last), 33);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

static void test_hsmcall__nothing_starts_when_every_worker_is_stuck(void **state)
{
    ddsm_hsmcall *p = NULL;
    assert_int_equal(ddsm_hsmcall_new(&g_fl, 1, 40, &p), CKR_OK);
    atomic_store(&g_hold, 1);
    uint8_t out[32];
    ddsm_hsmcall_status st;
    assert_int_equal(call(p, 1, out, &st), CKR_DEVICE_ERROR);
    assert_int_equal(st, DDSM_HSMCALL_QUARANTINED);
    const uint8_t msg[] = {1};
    assert_null(ddsm_hsmcall_start(p, 2, 77, msg, sizeof(msg)));
    assert_null(ddsm_hsmcall_start(NULL, 2, 77, msg, sizeof(msg)));
    atomic_store(&g_hold, 0);
    until_at_least(&g_closed_count, 1);
    while (ddsm_hsmcall_saturated(p))
        sleep_ms(1);
    assert_true(ddsm_hsmcall_free(p, 1000));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, setup)
    const struct CMUnitTest tests[] = {
        T(test_hsmcall__answers_in_time_pass_the_backend_result_through),
        T(test_hsmcall__a_call_past_the_bound_is_abandoned_and_its_session_closed_later),
        T(test_hsmcall__when_every_worker_is_stuck_calls_fail_at_once),
        T(test_hsmcall__a_call_still_queued_at_its_deadline_keeps_its_session),
        T(test_hsmcall__freeing_with_a_stuck_call_leaves_the_pool_to_it),
        T(test_hsmcall__free_waits_for_a_stuck_call_within_the_grace),
        T(test_hsmcall__a_started_call_runs_while_its_caller_is_away),
        T(test_hsmcall__a_discarded_call_hands_out_nothing),
        T(test_hsmcall__a_started_call_is_bounded_from_its_start),
        T(test_hsmcall__nothing_starts_when_every_worker_is_stuck),
    };
    return cmocka_run_group_tests_name("hsmcall", tests, NULL, NULL);
}
