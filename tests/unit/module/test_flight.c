/* SPDX-License-Identifier: Apache-2.0 */
/* Single flight (module/src/flight.h) and the rotation fence's bookkeeping (module/src/fence.h):
 * followers share the leader's outcome and hold their own reference to its result; different
 * keys never share; a flight ends when it lands; a fence covers exactly the requests made before
 * it began, several at once, and a failed or absent fence says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fence.h"
#include "flight.h"

/* Until n callers follow flights of f: they are inside ddsm_flight_join, waiting or about to. */
static void await_followers(ddsm_flights *f, unsigned long n)
{
    for (;;) {
        unsigned long led, followed;
        ddsm_flights_stats(f, &led, &followed);
        if (followed >= n)
            return;
        sched_yield();
    }
}

/* A reference-counted result. */
typedef struct obj {
    atomic_int refs;
} obj;

static void obj_ref(void *o)
{
    atomic_fetch_add(&((obj *)o)->refs, 1);
}

static void obj_unref(void *o)
{
    atomic_fetch_sub(&((obj *)o)->refs, 1);
}

typedef struct follower {
    ddsm_flights *f;
    const char *key;
    pthread_t th;
    bool led;
    CK_RV rv;
    CK_ULONG detail;
    void *result;
} follower;

static void *follow_main(void *arg)
{
    follower *w = arg;
    ddsm_flight *lead = NULL;
    w->led = ddsm_flight_join(w->f, w->key, strlen(w->key), &lead, &w->rv, &w->detail, &w->result);
    if (w->led)
        ddsm_flight_land(w->f, lead, CKR_FUNCTION_FAILED, 0, NULL); /* not expected */
    return NULL;
}

/* n followers joining the flight of key on threads of their own. */
static void start_followers(follower *w, int n, ddsm_flights *f, const char *key)
{
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].f = f;
        w[i].key = key;
        assert_int_equal(pthread_create(&w[i].th, NULL, follow_main, &w[i]), 0);
    }
}

static void
test_flight__followers_share_the_leaders_result_with_references_of_their_own(void **state)
{
    ddsm_flights *f = NULL;
    assert_int_equal(ddsm_flights_new(obj_ref, obj_unref, &f), CKR_OK);
    ddsm_flight *lead = NULL;
    CK_RV rv;
    CK_ULONG detail;
    void *res;
    assert_true(ddsm_flight_join(f, "k1", 2, &lead, &rv, &detail, &res));
    assert_non_null(lead);
    follower w[6];
    start_followers(w, 6, f, "k1");
    await_followers(f, 6);
    obj o = {1};  /* the leader's own reference */
    ddsm_flight_land(f, lead, CKR_OK, 0, &o);
    for (int i = 0; i < 6; i++) {
        pthread_join(w[i].th, NULL);
        assert_false(w[i].led);
        assert_int_equal(w[i].rv, CKR_OK);
        assert_ptr_equal(w[i].result, &o);
    }
    /* Six followers' references plus the leader's; the flight dropped its own. */
    assert_int_equal(atomic_load(&o.refs), 7);
    unsigned long led, followed;
    ddsm_flights_stats(f, &led, &followed);
    assert_int_equal(led, 1);
    assert_int_equal(followed, 6);
    /* Landed: the next caller leads a new flight. */
    assert_true(ddsm_flight_join(f, "k1", 2, &lead, &rv, &detail, &res));
    ddsm_flight_land(f, lead, CKR_OK, 0, &o);
    assert_int_equal(atomic_load(&o.refs), 7);
    ddsm_flights_free(f);
}

static void test_flight__a_failure_reaches_every_follower_with_its_detail(void **state)
{
    ddsm_flights *f = NULL;
    assert_int_equal(ddsm_flights_new(obj_ref, obj_unref, &f), CKR_OK);
    ddsm_flight *lead = NULL;
    CK_RV rv;
    CK_ULONG detail;
    void *res;
    assert_true(ddsm_flight_join(f, "k2", 2, &lead, &rv, &detail, &res));
    follower w[3];
    start_followers(w, 3, f, "k2");
    await_followers(f, 3);
    ddsm_flight_land(f, lead, CKR_DEVICE_ERROR, 0x44530001UL, NULL);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].th, NULL);
        assert_false(w[i].led);
        assert_int_equal(w[i].rv, CKR_DEVICE_ERROR);
        assert_int_equal(w[i].detail, 0x44530001UL);
        assert_null(w[i].result);
    }
    ddsm_flights_free(f);
}

static void test_flight__different_keys_never_share(void **state)
{
    ddsm_flights *f = NULL;
    assert_int_equal(ddsm_flights_new(obj_ref, obj_unref, &f), CKR_OK);
    ddsm_flight *a = NULL, *b = NULL;
    CK_RV rv;
    CK_ULONG detail;
    void *res;
    /* Keys that differ in one byte, and a key that is a prefix of another. */
    assert_true(ddsm_flight_join(f, "abc", 3, &a, &rv, &detail, &res));
    assert_true(ddsm_flight_join(f, "abd", 3, &b, &rv, &detail, &res));
    assert_ptr_not_equal(a, b);
    ddsm_flight *c = NULL;
    assert_true(ddsm_flight_join(f, "ab", 2, &c, &rv, &detail, &res));
    ddsm_flight_land(f, a, CKR_FUNCTION_FAILED, 0, NULL);
    ddsm_flight_land(f, b, CKR_FUNCTION_FAILED, 0, NULL);
    ddsm_flight_land(f, c, CKR_FUNCTION_FAILED, 0, NULL);
    unsigned long led, followed;
    ddsm_flights_stats(f, &led, &followed);
    assert_int_equal(led, 3);
    assert_int_equal(followed, 0);
    ddsm_flights_free(f);
}

/* ---- the fence ---------------------------------------------------------------------------- */

typedef struct waiter {
    ddsm_fence *f;
    unsigned timeout_ms;
    pthread_t th;
    atomic_bool finished;
    bool ok;
} waiter;

static void *wait_main(void *arg)
{
    waiter *w = arg;
    w->ok = ddsm_fence_wait(w->f, w->timeout_ms);
    atomic_store(&w->finished, true);
    return NULL;
}

static void start_waiter(waiter *w, ddsm_fence *f, unsigned timeout_ms)
{
    memset(w, 0, sizeof(*w));
    w->f = f;
    w->timeout_ms = timeout_ms;
    atomic_init(&w->finished, false);
    assert_int_equal(pthread_create(&w->th, NULL, wait_main, w), 0);
}

/* The LISTEN thread's side: whether a fence is wanted now. */
static bool wanted(ddsm_fence *f)
{
    struct pollfd p = {.fd = ddsm_fence_wakefd(f), .events = POLLIN, .revents = 0};
    return poll(&p, 1, 0) == 1;
}

/* Until n more requests have been made (each adds one to the wake-up descriptor's counter, which
 * this consumes as ddsm_fence_begin would). */
static void await_requests(ddsm_fence *f, uint64_t n)
{
    uint64_t seen = 0;
    while (seen < n) {
        struct pollfd p = {.fd = ddsm_fence_wakefd(f), .events = POLLIN, .revents = 0};
        uint64_t v;
        if (poll(&p, 1, -1) == 1 && read(p.fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            seen += v;
    }
}

static void test_fence__covers_the_requests_made_before_it_began_and_only_those(void **state)
{
    ddsm_fence *f = NULL;
    assert_int_equal(ddsm_fence_new(&f), CKR_OK);
    assert_false(wanted(f));
    waiter a, b, c;
    /* Bounds far beyond any run: a wait that ends must end because a fence covered it. */
    start_waiter(&a, f, 600000);
    start_waiter(&b, f, 600000);
    await_requests(f, 2); /* both requests are in */
    uint64_t t1 = ddsm_fence_begin(f);
    assert_int_equal(t1, 2);
    start_waiter(&c, f, 600000); /* after the fence began: not covered by it */
    await_requests(f, 1);
    ddsm_fence_end(f, t1, true);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    assert_true(a.ok);
    assert_true(b.ok);
    assert_false(atomic_load(&c.finished));
    uint64_t t2 = ddsm_fence_begin(f);
    assert_int_equal(t2, 3);
    ddsm_fence_end(f, t2, true);
    pthread_join(c.th, NULL);
    assert_true(c.ok);
    /* Nothing pending now. */
    assert_int_equal(ddsm_fence_begin(f), 0);
    ddsm_fence_free(f);
}

static void test_fence__a_failed_or_missing_fence_is_reported(void **state)
{
    ddsm_fence *f = NULL;
    assert_int_equal(ddsm_fence_new(&f), CKR_OK);
    waiter a;
    start_waiter(&a, f, 600000);
    await_requests(f, 1);
    ddsm_fence_end(f, ddsm_fence_begin(f), false);
    pthread_join(a.th, NULL);
    assert_false(a.ok);
    /* Nobody runs fences: the wait gives up at its bound. */
    start_waiter(&a, f, 80);
    pthread_join(a.th, NULL);
    assert_false(a.ok);
    ddsm_fence_end(f, ddsm_fence_begin(f), false); /* clear it */
    ddsm_fence_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_flight__followers_share_the_leaders_result_with_references_of_their_own),
        cmocka_unit_test(test_flight__a_failure_reaches_every_follower_with_its_detail),
        cmocka_unit_test(test_flight__different_keys_never_share),
        cmocka_unit_test(test_fence__covers_the_requests_made_before_it_began_and_only_those),
        cmocka_unit_test(test_fence__a_failed_or_missing_fence_is_reported),
    };
    return cmocka_run_group_tests_name("flight_fence", tests, NULL, NULL);
}
