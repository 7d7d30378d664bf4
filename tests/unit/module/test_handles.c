/* SPDX-License-Identifier: Apache-2.0 */
/* The virtual handle table: handles are never 0, have the top bit, are stable, and a stale or
 * forged handle is detected; a full table drops its least recently used token object (never a
 * session object), slot reuse bumps the generation and a slot whose generation would wrap is
 * retired. */
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

static ddsm_hentry session_entry(uint8_t asset_byte, uint64_t counter, CK_SESSION_HANDLE owner)
{
    ddsm_hentry e = entry(asset_byte, "m/0", counter, 6);
    e.owner = owner;
    return e;
}

/* The slot index of a handle of a table of cap slots. */
static uint32_t slot_of(CK_OBJECT_HANDLE h, uint32_t cap)
{
    unsigned bits = 0;
    while ((1UL << bits) < cap)
        bits++;
    return (uint32_t)(h & ((1UL << bits) - 1));
}

static void test_handles__a_full_table_drops_the_least_recently_used_token_object(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(4, &t), CKR_OK);
    ddsm_hentry e[6], out;
    CK_OBJECT_HANDLE h[6];
    for (int i = 0; i < 4; i++) {
        e[i] = entry(3, "m/0", (uint64_t)i, 6);
        assert_int_equal(ddsm_htab_intern(t, &e[i], NULL, NULL, &h[i]), CKR_OK);
    }
    /* Used since: entry 0 is no longer the least recently used one, entry 1 is. */
    assert_int_equal(ddsm_htab_get(t, h[0], &out), CKR_OK);
    e[4] = entry(3, "m/0", 4, 6);
    assert_int_equal(ddsm_htab_intern(t, &e[4], NULL, NULL, &h[4]), CKR_OK);
    assert_int_equal(ddsm_htab_live(t), 4);
    assert_int_equal(ddsm_htab_evictions(t), 1);
    /* Entry 1's old handle is invalid, not entry 4's, although entry 4 took its slot. */
    assert_int_equal(slot_of(h[4], 4), slot_of(h[1], 4));
    assert_int_not_equal(h[4], h[1]);
    assert_int_equal(ddsm_htab_get(t, h[1], &out), CKR_OBJECT_HANDLE_INVALID);
    for (int i = 0; i < 5; i++) {
        if (i == 1)
            continue;
        assert_int_equal(ddsm_htab_get(t, h[i], &out), CKR_OK);
        assert_int_equal(out.counter, (uint64_t)i);
    }
    /* Interning an entry again makes it the most recently used: entry 2 goes next, then 3. */
    CK_OBJECT_HANDLE again;
    assert_int_equal(ddsm_htab_intern(t, &e[0], NULL, NULL, &again), CKR_OK);
    assert_int_equal(again, h[0]);
    e[5] = entry(3, "m/0", 5, 6);
    assert_int_equal(ddsm_htab_intern(t, &e[5], NULL, NULL, &h[5]), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, h[2], &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, h[3], &out), CKR_OK);
    /* Entry 1 comes back with a new handle; its old value stays invalid. */
    CK_OBJECT_HANDLE h1b;
    assert_int_equal(ddsm_htab_intern(t, &e[1], NULL, NULL, &h1b), CKR_OK);
    assert_int_not_equal(h1b, h[1]);
    assert_int_equal(ddsm_htab_get(t, h[1], &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, h1b, &out), CKR_OK);
    assert_int_equal(out.counter, 1);
    ddsm_htab_free(t);
}

static void test_handles__a_dead_entry_goes_before_its_turn(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(2, &t), CKR_OK);
    ddsm_hentry a = entry(3, "m/0", 0, 6), b = entry(3, "m/0", 1, 6), c = entry(3, "m/0", 2, 6);
    ddsm_hentry out;
    CK_OBJECT_HANDLE ha, hb, hc;
    assert_int_equal(ddsm_htab_intern(t, &b, NULL, NULL, &hb), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, hb, &out), CKR_OK);
    /* b is the least recently interned but was used since; a is dead (counter 0) anyway. */
    assert_int_equal(ddsm_htab_intern(t, &c, reclaim_counter0, NULL, &hc), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, ha, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, hb, &out), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, hc, &out), CKR_OK);
    assert_int_equal(out.counter, 2);
    ddsm_htab_free(t);
}

/* Ten thousand distinct keys through eight slots: no intern fails, and every handle ever issued is
 * either invalid or still names exactly the entry it was issued for. */
static void test_handles__more_distinct_keys_than_slots_never_run_out(void **state)
{
    enum { CAP = 8, N = 10000 };
    static CK_OBJECT_HANDLE issued[N];
    ddsm_htab *t = NULL;
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_new(CAP, &t), CKR_OK);
    for (uint64_t i = 0; i < N; i++) {
        ddsm_hentry e = entry(6, "m/1", i, 6);
        assert_int_equal(ddsm_htab_intern(t, &e, NULL, NULL, &issued[i]), CKR_OK);
        if (i % 3 == 0) /* some are used in between */
            assert_int_equal(ddsm_htab_get(t, issued[i], &out), CKR_OK);
    }
    assert_int_equal(ddsm_htab_live(t), CAP);
    assert_int_equal(ddsm_htab_evictions(t), N - CAP);
    unsigned valid = 0;
    for (uint64_t i = 0; i < N; i++) {
        CK_RV rv = ddsm_htab_get(t, issued[i], &out);
        if (rv == CKR_OK) {
            assert_int_equal(out.counter, i);
            valid++;
        } else {
            assert_int_equal(rv, CKR_OBJECT_HANDLE_INVALID);
        }
    }
    assert_int_equal(valid, CAP);
    ddsm_htab_free(t);
}

static void test_handles__session_objects_stay_until_their_session_closes(void **state)
{
    ddsm_htab *t = NULL;
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_new(4, &t), CKR_OK);
    ddsm_hentry s1 = session_entry(7, 0, 11), s2 = session_entry(7, 1, 11);
    ddsm_hentry s3 = session_entry(7, 2, 12), s4 = session_entry(7, 3, 12);
    ddsm_hentry same_key_as_token = entry(7, "m/0", 0, 6);
    CK_OBJECT_HANDLE h1, h2, h3, h4, ht, h;
    assert_int_equal(ddsm_htab_intern(t, &s1, NULL, NULL, &h1), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &s2, NULL, NULL, &h2), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &s3, NULL, NULL, &h3), CKR_OK);
    /* The same key as a token object is another object, with another handle. */
    assert_int_equal(ddsm_htab_intern(t, &same_key_as_token, NULL, NULL, &ht), CKR_OK);
    assert_int_not_equal(ht, h1);
    /* Token objects take turns in the one slot left; session objects are never dropped. */
    for (uint64_t i = 10; i < 20; i++) {
        ddsm_hentry e = entry(8, "m/0", i, 6);
        assert_int_equal(ddsm_htab_intern(t, &e, NULL, NULL, &h), CKR_OK);
    }
    assert_int_equal(ddsm_htab_get(t, h1, &out), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, h2, &out), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, h3, &out), CKR_OK);
    /* The last slot goes to a session object: now only session objects are left. */
    assert_int_equal(ddsm_htab_intern(t, &s4, NULL, NULL, &h4), CKR_OK);
    ddsm_hentry e = entry(8, "m/0", 99, 6);
    assert_int_equal(ddsm_htab_intern(t, &e, NULL, NULL, &h), CKR_HOST_MEMORY);
    /* Session 11 closes: its two objects go, session 12's stay. */
    ddsm_htab_release_owner(t, 11);
    assert_int_equal(ddsm_htab_get(t, h1, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, h2, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, h3, &out), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, h4, &out), CKR_OK);
    assert_int_equal(ddsm_htab_live(t), 2);
    assert_int_equal(ddsm_htab_intern(t, &e, NULL, NULL, &h), CKR_OK);
    ddsm_htab_free(t);
}

static void test_handles__release_drops_the_handle_and_only_it(void **state)
{
    ddsm_htab *t = NULL;
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_new(4, &t), CKR_OK);
    ddsm_hentry a = entry(9, "m/0", 0, 6), b = entry(9, "m/1", 0, 6), s = session_entry(9, 0, 5);
    CK_OBJECT_HANDLE ha, hb, hs, ha2;
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &b, NULL, NULL, &hb), CKR_OK);
    assert_int_equal(ddsm_htab_intern(t, &s, NULL, NULL, &hs), CKR_OK);
    assert_int_equal(ddsm_htab_release(t, ha), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, ha, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_release(t, ha), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, hb, &out), CKR_OK);
    assert_int_equal(ddsm_htab_release(t, hs), CKR_OK);
    assert_int_equal(ddsm_htab_get(t, hs, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_release(t, 0x7FFFFFFFUL), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_release(t, 0xFFFFFFFFUL), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_live(t), 1);
    /* The same key later gets a new handle, never the released value. */
    assert_int_equal(ddsm_htab_intern(t, &a, NULL, NULL, &ha2), CKR_OK);
    assert_int_not_equal(ha2, ha);
    assert_int_equal(ddsm_htab_get(t, ha, &out), CKR_OBJECT_HANDLE_INVALID);
    ddsm_htab_free(t);
}

static void test_handles__a_slot_is_retired_before_its_generation_wraps(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new_gen(1, DDSM_HANDLE_GEN_BITS, &t), CKR_OK);
    CK_OBJECT_HANDLE first = 0, h = 0, prev = 0;
    unsigned reuses = 0;
    /* Keep replacing the only slot: each reuse gets the next generation, never an old one. */
    for (uint64_t i = 0;; i++) {
        ddsm_hentry e = entry(4, "m/0", i, 6);
        CK_RV rv = ddsm_htab_intern(t, &e, NULL, NULL, &h);
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
    assert_int_equal(prev & ~DDSM_HANDLE_TOP, DDSM_HANDLE_GEN_MAX - 1);
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_get(t, first, &out), CKR_OBJECT_HANDLE_INVALID);
    ddsm_htab_free(t);
}

/* A small table spends its spare handle bits on generations: a slot outlives the 2^11 reuses of
 * the largest table's layout. */
static void test_handles__a_small_table_has_more_generations(void **state)
{
    ddsm_htab *t = NULL;
    assert_int_equal(ddsm_htab_new(1, &t), CKR_OK);
    CK_OBJECT_HANDLE h, first = 0;
    for (uint64_t i = 0; i < 4 * DDSM_HANDLE_GEN_MAX; i++) {
        ddsm_hentry e = entry(4, "m/0", i, 6);
        assert_int_equal(ddsm_htab_intern(t, &e, NULL, NULL, &h), CKR_OK);
        if (i == 0)
            first = h;
    }
    ddsm_hentry out;
    assert_int_equal(ddsm_htab_get(t, first, &out), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_htab_get(t, h, &out), CKR_OK);
    assert_int_equal(ddsm_htab_new_gen(1, 32, &t), CKR_ARGUMENTS_BAD);
    assert_int_equal(ddsm_htab_new_gen(DDSM_HANDLE_CAP_MAX, DDSM_HANDLE_GEN_BITS + 1, &t),
                     CKR_ARGUMENTS_BAD);
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
    assert_int_equal(ddsm_htab_intern(t, &b, NULL, NULL, &hb), CKR_OK);
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
        cmocka_unit_test(test_handles__a_full_table_drops_the_least_recently_used_token_object),
        cmocka_unit_test(test_handles__a_dead_entry_goes_before_its_turn),
        cmocka_unit_test(test_handles__more_distinct_keys_than_slots_never_run_out),
        cmocka_unit_test(test_handles__session_objects_stay_until_their_session_closes),
        cmocka_unit_test(test_handles__release_drops_the_handle_and_only_it),
        cmocka_unit_test(test_handles__a_slot_is_retired_before_its_generation_wraps),
        cmocka_unit_test(test_handles__a_small_table_has_more_generations),
        cmocka_unit_test(test_handles__lookup_and_slot_reuse_in_other_threads_do_not_race),
        cmocka_unit_test(test_handles__rejects_bad_capacities),
    };
    return cmocka_run_group_tests_name("handles", tests, NULL, NULL);
}
