/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_utf8_seq: what RFC 3629 calls well-formed, and nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddsm/utf8.h"

static size_t seq(const char *s, size_t n)
{
    return ddsm_utf8_seq((const unsigned char *)s, n);
}

static void test_utf8__accepts_each_length_at_its_bounds(void **state)
{
    (void)state;
    assert_int_equal(seq("a", 1), 1);
    assert_int_equal(seq("\x7f", 1), 1);
    assert_int_equal(seq("\xc2\x80", 2), 2);         /* U+0080 */
    assert_int_equal(seq("\xdf\xbf", 2), 2);         /* U+07FF */
    assert_int_equal(seq("\xe0\xa0\x80", 3), 3);     /* U+0800 */
    assert_int_equal(seq("\xed\x9f\xbf", 3), 3);     /* U+D7FF */
    assert_int_equal(seq("\xee\x80\x80", 3), 3);     /* U+E000 */
    assert_int_equal(seq("\xef\xbf\xbf", 3), 3);     /* U+FFFF */
    assert_int_equal(seq("\xf0\x90\x80\x80", 4), 4); /* U+10000 */
    assert_int_equal(seq("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
    assert_int_equal(seq("\xc3\xa9xyz", 5), 2);      /* only the sequence at s counts */
}

static void test_utf8__refuses_what_is_not_well_formed(void **state)
{
    (void)state;
    assert_int_equal(seq("\x80", 1), 0);     /* stray continuation */
    assert_int_equal(seq("\xc0\xaf", 2), 0); /* overlong '/' (2 bytes) */
    assert_int_equal(seq("\xc1\xbf", 2), 0);
    assert_int_equal(seq("\xe0\x80\xaf", 3), 0); /* overlong (3 bytes) */
    assert_int_equal(seq("\xe0\x9f\xbf", 3), 0);
    assert_int_equal(seq("\xf0\x8f\xbf\xbf", 4), 0); /* overlong (4 bytes) */
    assert_int_equal(seq("\xed\xa0\x80", 3), 0);     /* surrogates */
    assert_int_equal(seq("\xed\xbf\xbf", 3), 0);
    assert_int_equal(seq("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    assert_int_equal(seq("\xf5\x80\x80\x80", 4), 0);
    assert_int_equal(seq("\xff", 1), 0);
    assert_int_equal(seq("\xc3", 1), 0); /* cut short by n */
    assert_int_equal(seq("\xe2\x82\xac", 2), 0);
    assert_int_equal(seq("\xe2\x28\xac", 3), 0); /* not a continuation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8__accepts_each_length_at_its_bounds),
        cmocka_unit_test(test_utf8__refuses_what_is_not_well_formed),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
