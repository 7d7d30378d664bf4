/* SPDX-License-Identifier: Apache-2.0 */
/* The virtual handle table: handles are never 0, have the top bit, are stable, and a stale or
 * forged handle is detected; slot reuse bumps the generation and a slot whose generation would
 * wrap is retired. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "handles.h"

static ddsm_hentry entry(uint8_t asset_byte, const char *path, uint64_t counter, uint32_t variant)
{
    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    e.asset.b[0] = asset_byte;
    snprintf(e.path, sizeof(e.path), "%s", path);
    e.counter = counter;
    e.variant = variant;
    return e;
}

static bool reclaim_all(const ddsm_hentry *e, void *arg)
{
    return true;
}

static bool reclaim_counter0(const ddsm_hentry *e, void *arg)
{
    return e->counter == 0;
}

static void test_handles__are_nonzero_with_the_top_bit_and_stable(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(16, &t), CKR_OK);
    ddsm_hentry a = entry(1, "m/0", 0, 6), b = entry(1, "m/0", 1, 6), c = entry(1, "m/0", 0, 7);
    CK_OBJECT_HANDLE ha, ha2, hb, hc;
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &b, NULL, NULL, &hb), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &c, NULL, NULL, &hc), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha2), CKR_OK);
    assert_int_equal(ha, ha2);
    assert_true(ha != 0 && hb != 0 && hc != 0);
    assert_true(ddsm_handle_is_virtual(ha) && ddsm_handle_is_virtual(hb));
    assert_false(ddsm_handle_is_backend(ha));
    assert_int_not_equal(ha, hb);
    assert_int_not_equal(ha, hc);
    assert_true(ha <= 0xFFFFFFFFUL);
    assert_int_equal(ddsm_htab_live(t), 3);

    ddsm_hentry out;
    assert_int_equal(ddsm_htab_get(t, hb, &out), CKR_OK);
    assert_int_equal(out.counter, 1);
    assert_string_equal(out.path, "m/0");
    ddsm_htab_free(t);
}

static void test_handles__forged_handles_are_invalid(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(8, &t), CKR_OK);
    ddsm_hentry a = entry(2, "m/1", 0, 6), out;
    CK_OBJECT_HANDLE h;
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &h), CKR_OK);
    CK_OBJECT_HANDLE forged[] = {
        0,
        1,
        0x7FFFFFFFUL,
        h ^ (1UL << DDSM_HANDLE_IDX_BITS), /* other generation */
        h + 1,                             /* unused slot */
        DDSM_HANDLE_TOP | 9,               /* beyond the capacity */
        h | (1UL << 40),                   /* more than 32 bits */
        0xFFFFFFFFUL,                      /* the reserved generation */
    };
    for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++)
        assert_int_equal(ddsm_htab_get(t, forged[i], &out), CKR_OBJECT_HANDLE_INVALID);
    assert_false(ddsm_handle_is_virtual(h | (1UL << 40)));
    assert_false(ddsm_handle_is_virtual(0x7FFFFFFFUL));
    assert_true(ddsm_handle_is_backend(0x7FFFFFFFUL));
    ddsm_htab_free(t);
}

static void test_handles__full_table_reclaims_only_what_the_owner_allows(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(2, &t), CKR_OK);
    ddsm_hentry a = entry(3, "m/0", 0, 6), b = entry(3, "m/0", 1, 6), c = entry(3, "m/0", 2, 6);
    CK_OBJECT_HANDLE ha, hb, hc;
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &b, NULL, NULL, &hb), CKR_OK);
    /* Full, nothing reclaimable. */
    assert_int_equal(ddsm_htab_intern(t, &c, NULL, NULL, &hc), CKR_HOST_MEMORY);
    assert_int_equal(ddsm_htab_intern(t, &c, reclaim_counter0, NULL, &hc), CKR_OK);
    /* a's slot was reused with a new generation: a's old handle is dead, b's lives. */
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_get(t, ha, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, hb, &out), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, hc, &out), CKR_OK);
    assert_int_equal(out.counter, 2);
    assert_int_equal(hc & (DDSM_HANDLE_CAP_MAX - 1), ha & (DDSM_HANDLE_CAP_MAX - 1));
    assert_int_not_equal(hc, ha);
    assert_int_equal(ddsm_htab_live(t), 2);
    ddsm_htab_free(t);
}

static void test_handles__a_slot_is_retired_before_its_generation_wraps(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(1, &t), CKR_OK);
    CK_OBJECT_HANDLE first = 0, h = 0, prev = 0;
    unsigned reuses = 0;
    /* Keep replacing the only slot: each reuse gets the next generation, never an old one. */
    for (uint64_t i = 0;; i++) {
        ddsm_hentry e = entry(4, "m/0", i, 6);
        CK_RV rv = ddsm_htab_intern(t, &e, reclaim_all, NULL, &h);
        if (rv != CKR_OK) {
            assert_int_equal(rv, CKR_HOST_MEMORY);
            break;
        }
        if (i == 0)
            first = h;
        else
            assert_true(h > prev);
        prev = h;
        reuses++;
        assert_true(reuses <= DDSM_HANDLE_GEN_MAX);
    }
    /* Generations 0 .. GEN_MAX-1 were used once each; the maximum is never issued. */
    assert_int_equal(reuses, DDSM_HANDLE_GEN_MAX);
    assert_int_equal(prev >> DDSM_HANDLE_IDX_BITS & DDSM_HANDLE_GEN_MAX, DDSM_HANDLE_GEN_MAX - 1);
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_get(t, first, &out), CKR_OBJECT_HANDLE_INVALID);
    ddsm_htab_free(t);
}

struct lookup {
    ddsm_htab *t;
    CK_OBJECT_HANDLE h;
    CK_RV rv;
    ddsm_hentry out;
    atomic_int done;
};

static void *lookup_main(void *arg)
{
    struct lookup *l = arg;
    l->rv = ddsm_htab_get(l->t, l->h, &l->out);
    /* Relaxed on purpose: it orders nothing, so no happens-before edge leads from this lookup to
     * the reuse below, as between a signing thread and an unrelated intern in the module. */
    atomic_store_explicit(&l->done, 1, memory_order_relaxed);
    return NULL;
}

/* A lock-free lookup in one thread, then the reuse of the same slot in another with no
 * synchronisation between them. Every field the lookup reads must therefore be atomic: a plain
 * read here is a data race, which ThreadSanitizer reports whatever the interleaving (the tsan pass
 * of scripts/test). In every build the lookup sees the old entry and the reuse invalidates it. */
static void test_handles__lookup_and_slot_reuse_in_other_threads_do_not_race(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(1, &t), CKR_OK);
    ddsm_hentry a = entry(5, "m/0", 0, 6), b = entry(5, "m/0", 1, 6), out;
    CK_OBJECT_HANDLE ha, hb;
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha), CKR_OK);
    struct lookup l = {.t = t, .h = ha};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lookup_main, &l), 0);
    while (atomic_load_explicit(&l.done, memory_order_relaxed) == 0)
        sched_yield();
    assert_int_equal(ddsm_htab_intern(t, &b, reclaim_all, NULL, &hb), CKR_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(l.rv, CKR_OK);
    assert_int_equal(l.out.counter, 0);
    assert_int_equal(ddsm_htab_get(t, ha, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, hb, &out), CKR_OK);
    assert_int_equal(out.counter, 1);
    ddsm_htab_free(t);
}

static void test_handles__rejects_bad_capacities(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(0, &t), CKR_ARGUMENTS_BAD);
    assert_int_equal(ddsm_htab_new(DDSM_HANDLE_CAP_MAX + 1, &t), CKR_ARGUMENTS_BAD);
    assert_null(t);
    assert_int_equal(ddsm_htab_new(DDSM_HANDLE_CAP_MAX, &t), CKR_OK);
    ddsm_htab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handles__are_nonzero_with_the_top_bit_and_stable),
        cmocka_unit_test(test_handles__forged_handles_are_invalid),
        cmocka_unit_test(test_handles__full_table_reclaims_only_what_the_owner_allows),
        cmocka_unit_test(test_handles__a_slot_is_retired_before_its_generation_wraps),
        cmocka_unit_test(test_handles__lookup_and_slot_reuse_in_other_threads_do_not_race),
        cmocka_unit_test(test_handles__rejects_bad_capacities),
    };
    return cmocka_run_group_tests_name("handles", tests, NULL, NULL);
}
