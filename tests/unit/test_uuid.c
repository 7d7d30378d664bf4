/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddsm/uuid.h"

static void assert_uuid_rejected_len(const char *text, size_t len)
{
    ddsm_uuid u;
    memset(&u, 0x5a, sizeof(u));
    if (ddsm_uuid_parse(text, len, &u) != DDSM_E_UUID)
        fail_msg("\"%.*s\" accepted", (int)len, text);
    for (size_t i = 0; i < sizeof(u.b); i++)
        assert_int_equal(u.b[i], 0x5a);
}

static void assert_uuid_rejected(const char *text)
{
    assert_uuid_rejected_len(text, strlen(text));
}

static void test_uuid__parses_and_formats_lower_case(void **state)
{
    (void)state;
    ddsm_uuid u;
    const char *text = "6F9619FF-8b86-D011-b42d-00C04FC964FF";
    assert_int_equal(ddsm_uuid_parse(text, strlen(text), &u), DDSM_OK);
    const uint8_t want[16] = {0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11,
                              0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff};
    assert_memory_equal(u.b, want, 16);
    char out[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&u, out);
    assert_string_equal(out, "6f9619ff-8b86-d011-b42d-00c04fc964ff");
}

static void test_uuid__reads_exactly_len_bytes(void **state)
{
    (void)state;
    ddsm_uuid u;
    const char *text = "00000000-0000-4000-8000-000000000001/m/0";
    assert_int_equal(ddsm_uuid_parse(text, DDSM_UUID_TEXT_LEN, &u), DDSM_OK);
    assert_int_equal(u.b[15], 1);
}

static void test_uuid__rejects_wrong_length(void **state)
{
    (void)state;
    assert_uuid_rejected("");
    assert_uuid_rejected("6f9619ff-8b86-d011-b42d-00c04fc964f");
    assert_uuid_rejected("6f9619ff-8b86-d011-b42d-00c04fc964fff");
    assert_uuid_rejected("6f9619ff8b86d011b42d00c04fc964ff");
}

static void test_uuid__rejects_braces_and_misplaced_dashes(void **state)
{
    (void)state;
    assert_uuid_rejected("{6f9619ff-8b86-d011-b42d-00c04fc964}");
    assert_uuid_rejected("6f9619f-f8b86-d011-b42d-00c04fc964ff");
    assert_uuid_rejected("6f9619ff-8b86-d011-b42d000c04fc964ff");
    assert_uuid_rejected("6f9619ff:8b86-d011-b42d-00c04fc964ff");
}

static void test_uuid__rejects_non_hex_nul_and_space(void **state)
{
    (void)state;
    assert_uuid_rejected("6f9619fg-8b86-d011-b42d-00c04fc964ff");
    assert_uuid_rejected(" f9619ff-8b86-d011-b42d-00c04fc964ff");
    assert_uuid_rejected("+f9619ff-8b86-d011-b42d-00c04fc964ff");
    assert_uuid_rejected_len("6f9619ff-8b86-d011-b42d-00c04fc964\0f", 36);
}

static void test_uuid__random_is_version_4_variant_1_and_distinct(void **state)
{
    (void)state;
    ddsm_uuid seen[64];
    for (size_t i = 0; i < 64; i++) {
        assert_int_equal(ddsm_uuid_random(&seen[i]), DDSM_OK);
        assert_int_equal(seen[i].b[6] >> 4, 4);
        assert_int_equal(seen[i].b[8] >> 6, 2);
        assert_false(ddsm_uuid_is_nil(&seen[i]));
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(seen[i].b, seen[j].b, 16);
        char text[DDSM_UUID_TEXT_LEN + 1];
        ddsm_uuid back;
        ddsm_uuid_format(&seen[i], text);
        assert_int_equal(ddsm_uuid_parse(text, strlen(text), &back), DDSM_OK);
        assert_memory_equal(back.b, seen[i].b, 16);
    }
}

static void test_uuid__nil_is_all_zero_bytes_only(void **state)
{
    (void)state;
    ddsm_uuid u;
    const char *nil = "00000000-0000-0000-0000-000000000000";
    assert_int_equal(ddsm_uuid_parse(nil, strlen(nil), &u), DDSM_OK);
    assert_true(ddsm_uuid_is_nil(&u));
    for (size_t i = 0; i < 16; i++) {
        ddsm_uuid v = u;
        v.b[i] = 0x01;
        assert_false(ddsm_uuid_is_nil(&v));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid__parses_and_formats_lower_case),
        cmocka_unit_test(test_uuid__reads_exactly_len_bytes),
        cmocka_unit_test(test_uuid__rejects_wrong_length),
        cmocka_unit_test(test_uuid__rejects_braces_and_misplaced_dashes),
        cmocka_unit_test(test_uuid__rejects_non_hex_nul_and_space),
        cmocka_unit_test(test_uuid__random_is_version_4_variant_1_and_distinct),
        cmocka_unit_test(test_uuid__nil_is_all_zero_bytes_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
