/* SPDX-License-Identifier: Apache-2.0 */
/* Backends that behave legally but unusually, played by the fault-injecting wrapper
 * ($DDSM_FAULTP11, tests/faultp11/faultp11.c):
 *  - C_WaitForSlotEvent reports events of slots the module does not expose: the module keeps
 *    waiting (or polling) past them for an event of its own slot;
 *  - C_FindObjects returns object handles with the top bit set, which the module drops: a batch
 *    shortened that way does not end the backend's part of the search. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_support.h"
#include "p11_support.h"

static char good_conf[4096], ctl[4096], calls[4096];

static int setup(void **state)
{
    snprintf(good_conf, sizeof(good_conf), "%s", getenv("DDSM_CONF"));
    snprintf(ctl, sizeof(ctl), "%s/faults", getenv("DDSM_TEST_DIR"));
    snprintf(calls, sizeof(calls), "%s/calls", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_CTL", ctl, 1);
    setenv("DDSM_FAULT_LOG", calls, 1);
    fs_faults("");
    fs_write_conf("quirks", getenv("DDSM_FAULTP11"), NULL, NULL, NULL);
    return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    fs_faults("");
    setenv("DDSM_CONF", good_conf, 1);
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

/* The backend's slot id of the token the module fronts ("custody"), asked of the wrapper the
 * module loaded (the same library instance, already initialised by the module). */
static CK_SLOT_ID backend_slot(void)
{
    void *dl = dlopen(getenv("DDSM_FAULTP11"), RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)dlsym(dl, "C_GetFunctionList");
    assert_non_null(gfl);
    CK_FUNCTION_LIST_PTR be = NULL;
    assert_rv(CKR_OK, gfl(&be));
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    assert_rv(CKR_OK, be->C_GetSlotList(CK_TRUE, slots, &n));
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        assert_rv(CKR_OK, be->C_GetTokenInfo(slots[i], &ti));
        char label[33];
        memcpy(label, ti.label, 32);
        label[32] = '\0';
        if (strncmp(label, "custody ", 8) == 0) {
            dlclose(dl);
            return slots[i];
        }
    }
    fail_msg("no backend token labelled custody");
    return 0;
}

static void test_slot__wait_passes_over_events_of_slots_not_exposed(void **state)
{
    char rules[512];
    CK_SLOT_ID mine = backend_slot(), other = mine + 1, got = 77;
    /* Two events of another slot, then one of ours, then none. */
    snprintf(rules, sizeof(rules),
             "C_WaitForSlotEvent slot=%lu count=2\n"
             "C_WaitForSlotEvent slot=%lu count=1\n"
             "C_WaitForSlotEvent rv=0x8\n",
             (unsigned long)other, (unsigned long)mine);
    fs_faults(rules);
    fs_log_reset();
    assert_rv(CKR_OK, p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL));
    assert_int_equal(got, 0); /* the module's only slot */
    assert_int_equal(fs_log_count("C_WaitForSlotEvent"), 3);
    assert_rv(CKR_NO_EVENT, p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL));

    /* Only other slots' events pending: polling ends with CKR_NO_EVENT, having read them all. */
    snprintf(rules, sizeof(rules),
             "C_WaitForSlotEvent slot=%lu count=3\n"
             "C_WaitForSlotEvent rv=0x8\n",
             (unsigned long)other);
    fs_faults(rules);
    fs_log_reset();
    assert_rv(CKR_NO_EVENT, p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL));
    assert_int_equal(fs_log_count("C_WaitForSlotEvent"), 4);

    /* Blocking: the wait goes on past the other slot's event. */
    snprintf(rules, sizeof(rules),
             "C_WaitForSlotEvent slot=%lu count=1\n"
             "C_WaitForSlotEvent slot=%lu count=1\n",
             (unsigned long)other, (unsigned long)mine);
    fs_faults(rules);
    got = 77;
    assert_rv(CKR_OK, p11->C_WaitForSlotEvent(0, &got, NULL));
    assert_int_equal(got, 0);
}

/* Every backend object of a find (handles below 2^31), in batches of at most max. */
static size_t backend_objects_found(CK_SESSION_HANDLE s, CK_ULONG max)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG got = 0;
    size_t n = 0;
    assert_rv(CKR_OK, p11->C_FindObjectsInit(s, NULL, 0));
    for (int rounds = 0; rounds < 1000; rounds++) {
        assert_rv(CKR_OK, p11->C_FindObjects(s, h, max, &got));
        if (got == 0)
            break;
        for (CK_ULONG i = 0; i < got; i++)
            n += h[i] < 0x80000000UL;
    }
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(s));
    return n;
}

static void test_find__dropped_top_bit_handles_do_not_end_the_backend_search(void **state)
{
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE k = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &k)); /* root found first */
    size_t want = p11_backend_object_count(s);
    assert_true(want >= 1); /* the root at least */
    /* A whole batch of top-bit handles, then the real search. */
    fs_faults("C_FindObjects topbit=4 count=1\n");
    assert_int_equal(backend_objects_found(s, 4), want);
    /* A batch only partly made of them. */
    fs_faults("C_FindObjects topbit=2 count=1\n");
    assert_int_equal(backend_objects_found(s, 4), want);
    /* Several whole batches in a row. */
    fs_faults("C_FindObjects topbit=1 count=3\n");
    assert_int_equal(backend_objects_found(s, 1), want);
    fs_faults("");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_slot__wait_passes_over_events_of_slots_not_exposed),
        T(test_find__dropped_top_bit_handles_do_not_end_the_backend_search),
    };
    return cmocka_run_group_tests_name("backend_quirks", tests, NULL, NULL);
}
