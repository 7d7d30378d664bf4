/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_textbuf: appends of every size land whole and in order, NUL-terminated, across every
 * growth of the buffer; a latched failure makes later appends do nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddsm/textbuf.h"

static void test_textbuf__printf_grows_from_empty_and_keeps_order(void **state)
{
    (void)state;
    ddsm_textbuf b = {NULL, 0, 0, false};
    static char want[256 * 1024];
    size_t wl = 0;
    /* Lengths from 1 to a few kilobytes: some fit in place, some need one growth, some several. */
    for (int i = 0; i < 120; i++) {
        int width = (i * 37) % 3000;
        ddsm_textbuf_printf(&b, "%d:%*s|", i, width, "x");
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "%d:%*s|", i, width, "x");
        assert_true(wl < sizeof(want));
        assert_false(b.oom);
        assert_int_equal(b.len, wl);
        assert_int_equal(strlen(b.p), wl);
        assert_true(b.len < b.cap);
    }
    assert_memory_equal(b.p, want, wl + 1);
    free(b.p);
}

static void test_textbuf__printf_at_the_exact_room_and_mixed_with_putn(void **state)
{
    (void)state;
    ddsm_textbuf b = {NULL, 0, 0, false};
    ddsm_textbuf_putn(&b, "a", 1); /* the first growth: 256 bytes */
    size_t room = b.cap - b.len;
    /* room - 1 characters and the NUL fit exactly; room characters do not. */
    ddsm_textbuf_printf(&b, "%*s", (int)(room - 1), "y");
    assert_int_equal(b.len, b.cap - 1);
    size_t cap = b.cap;
    ddsm_textbuf_printf(&b, "%s", "z");
    assert_true(b.cap > cap);
    ddsm_textbuf_puts(&b, "-end");
    assert_false(b.oom);
    assert_int_equal(b.len, 1 + (room - 1) + 1 + 4);
    assert_int_equal(b.p[0], 'a');
    assert_int_equal(b.p[room - 1], 'y');
    assert_string_equal(b.p + room, "z-end");
    free(b.p);
}

static void test_textbuf__a_latched_failure_stops_every_append(void **state)
{
    (void)state;
    ddsm_textbuf b = {NULL, 0, 0, false};
    ddsm_textbuf_printf(&b, "%s", "kept");
    b.oom = true;
    ddsm_textbuf_printf(&b, "%s", "dropped");
    ddsm_textbuf_puts(&b, "dropped");
    assert_int_equal(b.len, 4);
    assert_string_equal(b.p, "kept");
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_textbuf__printf_grows_from_empty_and_keeps_order),
        cmocka_unit_test(test_textbuf__printf_at_the_exact_room_and_mixed_with_putn),
        cmocka_unit_test(test_textbuf__a_latched_failure_stops_every_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
