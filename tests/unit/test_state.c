/* SPDX-License-Identifier: Apache-2.0 */
/* The lifecycle table, one test per (state, event) pair: 4 states x 5 events. The expected table
 * is written out here independently of the implementation's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddsm/state.h"

static void expect_next(ddsm_state s, ddsm_event e, ddsm_state want)
{
    ddsm_state next = DDSM_STATE__COUNT;
    ddsm_err err = ddsm_state_next(s, e, &next);
    if (err != DDSM_OK)
        fail_msg("%s -%s-> refused, expected %s", ddsm_state_name(s), ddsm_event_name(e),
                 ddsm_state_name(want));
    assert_int_equal(next, want);
}

static void expect_refused(ddsm_state s, ddsm_event e)
{
    ddsm_state next = (ddsm_state)77;
    ddsm_err err = ddsm_state_next(s, e, &next);
    if (err != DDSM_E_STATE)
        fail_msg("%s -%s-> gave %d, expected DDSM_E_STATE", ddsm_state_name(s),
                 ddsm_event_name(e), err);
    assert_int_equal(next, 77); /* untouched */
}

#define ALLOWED(s, e, to)                                                                          \
    static void test_state__##s##_##e##_goes_to_##to(void **state)                                 \
    {                                                                                              \
        (void)state;                                                                               \
        expect_next(DDSM_STATE_##s, DDSM_EV_##e, DDSM_STATE_##to);                                 \
    }
#define REFUSED(s, e)                                                                              \
    static void test_state__##s##_##e##_is_refused(void **state)                                   \
    {                                                                                              \
        (void)state;                                                                               \
        expect_refused(DDSM_STATE_##s, DDSM_EV_##e);                                               \
    }

ALLOWED(INITIALIZED, ACTIVATE, ACTIVE)
REFUSED(INITIALIZED, ROTATE)
REFUSED(INITIALIZED, ROTATE_GRACE)
REFUSED(INITIALIZED, GRACE_END)
REFUSED(INITIALIZED, RETIRE)

REFUSED(ACTIVE, ACTIVATE)
ALLOWED(ACTIVE, ROTATE, ACTIVE)
ALLOWED(ACTIVE, ROTATE_GRACE, ROTATING)
REFUSED(ACTIVE, GRACE_END)
ALLOWED(ACTIVE, RETIRE, RETIRED)

REFUSED(ROTATING, ACTIVATE)
REFUSED(ROTATING, ROTATE)
REFUSED(ROTATING, ROTATE_GRACE)
ALLOWED(ROTATING, GRACE_END, ACTIVE)
ALLOWED(ROTATING, RETIRE, RETIRED)

REFUSED(RETIRED, ACTIVATE)
REFUSED(RETIRED, ROTATE)
REFUSED(RETIRED, ROTATE_GRACE)
REFUSED(RETIRED, GRACE_END)
REFUSED(RETIRED, RETIRE)

static void test_state__refuses_out_of_range_state_and_event(void **state)
{
    (void)state;
    expect_refused(DDSM_STATE__COUNT, DDSM_EV_ACTIVATE);
    expect_refused((ddsm_state)-1, DDSM_EV_ACTIVATE);
    expect_refused(DDSM_STATE_ACTIVE, DDSM_EV__COUNT);
    expect_refused(DDSM_STATE_ACTIVE, (ddsm_event)-1);
}

static void test_state__null_next_is_misuse(void **state)
{
    (void)state;
    assert_int_equal(ddsm_state_next(DDSM_STATE_INITIALIZED, DDSM_EV_ACTIVATE, NULL), DDSM_E_ARG);
}

static void test_state__only_active_and_rotating_are_derivable(void **state)
{
    (void)state;
    assert_false(ddsm_state_derivable(DDSM_STATE_INITIALIZED));
    assert_true(ddsm_state_derivable(DDSM_STATE_ACTIVE));
    assert_true(ddsm_state_derivable(DDSM_STATE_ROTATING));
    assert_false(ddsm_state_derivable(DDSM_STATE_RETIRED));
    assert_false(ddsm_state_derivable(DDSM_STATE__COUNT));
}

static void test_state__names_round_trip_through_parse(void **state)
{
    (void)state;
    const char *want[] = {"INITIALIZED", "ACTIVE", "ROTATING", "RETIRED"};
    for (int s = 0; s < DDSM_STATE__COUNT; s++) {
        assert_string_equal(ddsm_state_name((ddsm_state)s), want[s]);
        ddsm_state back = DDSM_STATE__COUNT;
        assert_int_equal(ddsm_state_parse(want[s], &back), DDSM_OK);
        assert_int_equal(back, s);
    }
    ddsm_state back = DDSM_STATE__COUNT;
    assert_int_equal(ddsm_state_parse("rotating", &back), DDSM_OK);
    assert_int_equal(back, DDSM_STATE_ROTATING);
    assert_string_equal(ddsm_state_name(DDSM_STATE__COUNT), "?");
}

static void test_state__parse_rejects_unknown_names(void **state)
{
    (void)state;
    ddsm_state s = DDSM_STATE_ACTIVE;
    assert_int_equal(ddsm_state_parse("", &s), DDSM_E_INPUT);
    assert_int_equal(ddsm_state_parse("ACTIVE ", &s), DDSM_E_INPUT);
    assert_int_equal(ddsm_state_parse("DELETED", &s), DDSM_E_INPUT);
    assert_int_equal(ddsm_state_parse("?", &s), DDSM_E_INPUT);
    assert_int_equal(s, DDSM_STATE_ACTIVE);
    assert_int_equal(ddsm_state_parse(NULL, &s), DDSM_E_ARG);
}

static void test_state__event_names(void **state)
{
    (void)state;
    assert_string_equal(ddsm_event_name(DDSM_EV_ACTIVATE), "ACTIVATE");
    assert_string_equal(ddsm_event_name(DDSM_EV_ROTATE), "ROTATE");
    assert_string_equal(ddsm_event_name(DDSM_EV_ROTATE_GRACE), "ROTATE_GRACE");
    assert_string_equal(ddsm_event_name(DDSM_EV_GRACE_END), "GRACE_END");
    assert_string_equal(ddsm_event_name(DDSM_EV_RETIRE), "RETIRE");
    assert_string_equal(ddsm_event_name(DDSM_EV__COUNT), "?");
}

#define T(name) cmocka_unit_test(test_state__##name)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(INITIALIZED_ACTIVATE_goes_to_ACTIVE),
        T(INITIALIZED_ROTATE_is_refused),
        T(INITIALIZED_ROTATE_GRACE_is_refused),
        T(INITIALIZED_GRACE_END_is_refused),
        T(INITIALIZED_RETIRE_is_refused),
        T(ACTIVE_ACTIVATE_is_refused),
        T(ACTIVE_ROTATE_goes_to_ACTIVE),
        T(ACTIVE_ROTATE_GRACE_goes_to_ROTATING),
        T(ACTIVE_GRACE_END_is_refused),
        T(ACTIVE_RETIRE_goes_to_RETIRED),
        T(ROTATING_ACTIVATE_is_refused),
        T(ROTATING_ROTATE_is_refused),
        T(ROTATING_ROTATE_GRACE_is_refused),
        T(ROTATING_GRACE_END_goes_to_ACTIVE),
        T(ROTATING_RETIRE_goes_to_RETIRED),
        T(RETIRED_ACTIVATE_is_refused),
        T(RETIRED_ROTATE_is_refused),
        T(RETIRED_ROTATE_GRACE_is_refused),
        T(RETIRED_GRACE_END_is_refused),
        T(RETIRED_RETIRE_is_refused),
        T(refuses_out_of_range_state_and_event),
        T(null_next_is_misuse),
        T(only_active_and_rotating_are_derivable),
        T(names_round_trip_through_parse),
        T(parse_rejects_unknown_names),
        T(event_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
