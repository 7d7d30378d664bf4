/* SPDX-License-Identifier: Apache-2.0 */
/* Path grammar and canonical form (docs/design.md "Derivation, version 1"): every acceptance and every
 * rejection rule, and the promise never to read past len. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddsm/path.h"

static ddsm_path parse_ok(const char *text)
{
    ddsm_path p;
    const char *why = NULL;
    ddsm_err e = ddsm_path_parse(text, strlen(text), &p, &why);
    if (e != DDSM_OK)
        fail_msg("\"%s\" rejected: %s", text, why != NULL ? why : "(no reason)");
    return p;
}

static void assert_canonical(const char *text, const char *canonical)
{
    char out[DDSM_PATH_TEXT_MAX];
    ddsm_path p = parse_ok(text);
    ddsm_path_format(&p, out);
    assert_string_equal(out, canonical);
}

/* Rejected with a reason containing `reason`, and the output left untouched. */
static void assert_rejected_len(const char *text, size_t len, const char *reason)
{
    ddsm_path p;
    memset(&p, 0x5a, sizeof(p));
    const char *why = NULL;
    ddsm_err e = ddsm_path_parse(text, len, &p, &why);
    if (e != DDSM_E_PATH)
        fail_msg("\"%.*s\" (len %zu): expected DDSM_E_PATH, got %d", (int)len, text, len, e);
    assert_non_null(why);
    if (strstr(why, reason) == NULL)
        fail_msg("\"%.*s\": reason \"%s\" does not say \"%s\"", (int)len, text, why, reason);
    for (size_t i = 0; i < sizeof(p); i++)
        assert_int_equal(((const uint8_t *)&p)[i], 0x5a);
}

static void assert_rejected(const char *text, const char *reason)
{
    assert_rejected_len(text, strlen(text), reason);
}

static void test_path__parses_bip44_path(void **state)
{
    (void)state;
    ddsm_path p = parse_ok("m/44'/0'/0'/0/5");
    assert_int_equal(p.depth, 5);
    assert_int_equal(p.index[0], 44u | DDSM_HARDENED);
    assert_int_equal(p.index[1], 0u | DDSM_HARDENED);
    assert_int_equal(p.index[2], 0u | DDSM_HARDENED);
    assert_int_equal(p.index[3], 0u);
    assert_int_equal(p.index[4], 5u);
}

static void test_path__accepts_all_three_hardening_marks(void **state)
{
    (void)state;
    ddsm_path a = parse_ok("m/44h/0H/0'/0/0");
    ddsm_path b = parse_ok("m/44'/0'/0'/0/0");
    assert_int_equal(a.depth, b.depth);
    assert_memory_equal(a.index, b.index, sizeof(a.index[0]) * a.depth);
}

static void test_path__formats_canonically_with_apostrophe(void **state)
{
    (void)state;
    assert_canonical("m/44h/0H/0'/0/0", "m/44'/0'/0'/0/0");
    assert_canonical("m/0", "m/0");
    assert_canonical("m/0h", "m/0'");
    assert_canonical("m/2147483647", "m/2147483647");
    assert_canonical("m/2147483647H", "m/2147483647'");
    assert_canonical("m/1/22/333/4444/55555/666666/7777777/88888888/999999999/1000000000",
                     "m/1/22/333/4444/55555/666666/7777777/88888888/999999999/1000000000");
}

static void test_path__canonical_form_round_trips(void **state)
{
    (void)state;
    const char *paths[] = {"m/0", "m/1'/2/3'", "m/44'/60'/0'/0/0", "m/2147483647'/2147483647"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char out[DDSM_PATH_TEXT_MAX];
        ddsm_path p = parse_ok(paths[i]);
        ddsm_path_format(&p, out);
        assert_string_equal(out, paths[i]);
        ddsm_path q = parse_ok(out);
        assert_int_equal(p.depth, q.depth);
        assert_memory_equal(p.index, q.index, sizeof(p.index[0]) * p.depth);
    }
}

static void test_path__accepts_depth_16_and_longest_text_fits(void **state)
{
    (void)state;
    char text[DDSM_PATH_TEXT_MAX + 8];
    size_t o = 0;
    text[o++] = 'm';
    for (int i = 0; i < DDSM_PATH_MAX_DEPTH; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "/2147483647'");
    assert_int_equal(o + 1, DDSM_PATH_TEXT_MAX); /* the maximal path fills the buffer exactly */
    ddsm_path p = parse_ok(text);
    assert_int_equal(p.depth, 16);
    char out[DDSM_PATH_TEXT_MAX];
    ddsm_path_format(&p, out);
    assert_string_equal(out, text);
}

static void test_path__formats_depth_zero_as_m(void **state)
{
    (void)state;
    ddsm_path p;
    memset(&p, 0, sizeof(p));
    char out[DDSM_PATH_TEXT_MAX];
    ddsm_path_format(&p, out);
    assert_string_equal(out, "m");
}

static void test_path__rejects_empty(void **state)
{
    (void)state;
    assert_rejected("", "empty");
    assert_rejected_len("m/0", 0, "empty");
}

static void test_path__rejects_missing_m(void **state)
{
    (void)state;
    assert_rejected("/44'/0", "must start with \"m\"");
    assert_rejected("44'/0", "must start with \"m\"");
    assert_rejected("n/0", "must start with \"m\"");
}

static void test_path__rejects_upper_case_m(void **state)
{
    (void)state;
    assert_rejected("M/44'/0", "lower-case \"m\"");
}

static void test_path__rejects_missing_slash_after_m(void **state)
{
    (void)state;
    assert_rejected("m0", "expected '/' after \"m\"");
    assert_rejected("mm/0", "expected '/' after \"m\"");
}

static void test_path__rejects_trailing_slash(void **state)
{
    (void)state;
    assert_rejected("m/", "ends with '/'");
    assert_rejected("m/44'/0/", "ends with '/'");
}

static void test_path__rejects_double_slash(void **state)
{
    (void)state;
    assert_rejected("m//0", "empty component");
    assert_rejected("m/44'//0", "empty component");
}

static void test_path__rejects_depth_zero(void **state)
{
    (void)state;
    assert_rejected("m", "no components");
}

static void test_path__rejects_depth_17(void **state)
{
    (void)state;
    assert_rejected("m/0/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", "too deep");
    assert_rejected("m/0'/1'/2'/3'/4'/5'/6'/7'/8'/9'/10'/11'/12'/13'/14'/15'/16'", "too deep");
}

static void test_path__rejects_leading_zero(void **state)
{
    (void)state;
    assert_rejected("m/01", "leading zero");
    assert_rejected("m/00", "leading zero");
    assert_rejected("m/44'/007'", "leading zero");
}

static void test_path__rejects_index_of_2_pow_31_and_above(void **state)
{
    (void)state;
    assert_rejected("m/2147483648", "below 2^31");
    assert_rejected("m/2147483648'", "below 2^31");
    assert_rejected("m/4294967295", "below 2^31");
    assert_rejected("m/4294967296", "below 2^31"); /* wraps to 0 in 32 bits */
    assert_rejected("m/99999999999999999999999999", "below 2^31");
}

static void test_path__rejects_non_digit(void **state)
{
    (void)state;
    assert_rejected("m/a", "decimal number");
    assert_rejected("m/0x10", "unexpected character");
    assert_rejected("m/1a", "unexpected character");
    assert_rejected("m/'", "decimal number");
    assert_rejected("m/h", "decimal number");
    assert_rejected("m/*", "decimal number");
    assert_rejected("m/1.5", "unexpected character");
    assert_rejected("m/\xef\xbc\x91", "decimal number"); /* full-width digit one */
}

static void test_path__rejects_sign_characters(void **state)
{
    (void)state;
    assert_rejected("m/+1", "sign");
    assert_rejected("m/-1", "sign");
    assert_rejected("m/1/-0", "sign");
    assert_rejected("m/1-", "sign");
}

static void test_path__rejects_whitespace(void **state)
{
    (void)state;
    assert_rejected(" m/0", "whitespace");
    assert_rejected("m/0 ", "whitespace");
    assert_rejected("m/ 0", "whitespace");
    assert_rejected("m /0", "whitespace");
    assert_rejected("m/0\t", "whitespace");
    assert_rejected("m/0\n", "whitespace");
    assert_rejected("m/0' ", "whitespace");
}

static void test_path__rejects_embedded_nul_within_len(void **state)
{
    (void)state;
    assert_rejected_len("m/0\0/1", 6, "NUL");
    assert_rejected_len("m/0'\0", 5, "NUL");
    assert_rejected_len("\0m/0", 4, "NUL");
    assert_rejected_len("m\0/0", 4, "NUL");
}

static void test_path__rejects_double_hardening_mark(void **state)
{
    (void)state;
    assert_rejected("m/0''", "more than one hardening mark");
    assert_rejected("m/0h'", "more than one hardening mark");
    assert_rejected("m/44'/0hH", "more than one hardening mark");
}

static void test_path__rejects_text_after_hardening_mark(void **state)
{
    (void)state;
    assert_rejected("m/0'5", "after the hardening mark");
    assert_rejected("m/0hx", "after the hardening mark");
}

static void test_path__honours_len_not_nul(void **state)
{
    (void)state;
    ddsm_path p;
    const char *why = NULL;
    assert_int_equal(ddsm_path_parse("m/12/3", 3, &p, &why), DDSM_OK); /* "m/1" */
    assert_int_equal(p.depth, 1);
    assert_int_equal(p.index[0], 1u);
    assert_int_equal(ddsm_path_parse("m/0'junk", 4, &p, &why), DDSM_OK); /* "m/0'" */
    assert_int_equal(p.index[0], DDSM_HARDENED);
}

/* The text sits at the very end of a readable page, the next page is PROT_NONE: any read past
 * len faults. */
static void test_path__never_reads_past_len(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, page, PROT_NONE), 0);
    const char *cases[] = {"m/44'/0'/0'/0/5", "m/44h", "m/0", "m/01", "m/2147483648", "m/0'",
                           "m/0''", "m", "m/", "m/9", "m/1/", "M"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i]);
        char *text = (char *)map + page - len;
        memcpy(text, cases[i], len);
        /* Same verdict and reason as for a copy with a NUL after it. */
        ddsm_path p, q;
        const char *why = NULL, *why_ref = NULL;
        ddsm_err e = ddsm_path_parse(text, len, &p, &why);
        assert_int_equal(e, ddsm_path_parse(cases[i], len, &q, &why_ref));
        if (e != DDSM_OK)
            assert_ptr_equal(why, why_ref);
        ddsm_path_pattern pat, pat_ref;
        e = ddsm_path_pattern_parse(text, len, &pat, &why);
        assert_int_equal(e, ddsm_path_pattern_parse(cases[i], len, &pat_ref, &why_ref));
    }
    munmap(map, 2 * page);
}

static void test_path__accepts_null_why(void **state)
{
    (void)state;
    ddsm_path p;
    assert_int_equal(ddsm_path_parse("m/01", 4, &p, NULL), DDSM_E_PATH);
    assert_int_equal(ddsm_path_parse("m/1", 3, &p, NULL), DDSM_OK);
}

static void test_path__rejects_null_arguments_as_misuse(void **state)
{
    (void)state;
    ddsm_path p;
    assert_int_equal(ddsm_path_parse(NULL, 3, &p, NULL), DDSM_E_ARG);
    assert_int_equal(ddsm_path_parse("m/1", 3, NULL, NULL), DDSM_E_ARG);
}

static ddsm_path_pattern pattern_ok(const char *text)
{
    ddsm_path_pattern pat;
    const char *why = NULL;
    if (ddsm_path_pattern_parse(text, strlen(text), &pat, &why) != DDSM_OK)
        fail_msg("pattern \"%s\" rejected: %s", text, why);
    return pat;
}

static void test_path__pattern_star_matches_any_index_with_same_hardening(void **state)
{
    (void)state;
    ddsm_path_pattern pat = pattern_ok("m/44'/*'/*'/*/*");
    assert_int_equal(pat.depth, 5);
    assert_true(ddsm_path_pattern_match(&pat, &(ddsm_path){0}) == false);
    ddsm_path p = parse_ok("m/44'/0'/7'/1/2147483647");
    assert_true(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/44h/60H/0'/0/0");
    assert_true(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/44'/0/7'/1/5"); /* component 2 not hardened */
    assert_false(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/44'/0'/7'/1'/5"); /* component 4 hardened */
    assert_false(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/45'/0'/7'/1/5"); /* fixed index differs */
    assert_false(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/44/0'/7'/1/5"); /* fixed index's hardening differs */
    assert_false(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/44'/0'/7'/1"); /* too shallow */
    assert_false(ddsm_path_pattern_match(&pat, &p));
    p = parse_ok("m/44'/0'/7'/1/5/6"); /* too deep */
    assert_false(ddsm_path_pattern_match(&pat, &p));
}

static void test_path__pattern_rejects_bad_shapes(void **state)
{
    (void)state;
    ddsm_path_pattern pat;
    const char *why = NULL;
    const char *bad[] = {"", "m", "m/", "m/**", "m/*5", "m/5*", "m/*''", "m/01", "M/*", "m//*",
                         "m/* ", "m/-*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (ddsm_path_pattern_parse(bad[i], strlen(bad[i]), &pat, &why) != DDSM_E_PATH)
            fail_msg("pattern \"%s\" accepted", bad[i]);
        assert_non_null(why);
    }
    assert_int_equal(ddsm_path_pattern_parse("m/*5", 4, &pat, &why), DDSM_E_PATH);
    assert_non_null(strstr(why, "'*'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path__parses_bip44_path),
        cmocka_unit_test(test_path__accepts_all_three_hardening_marks),
        cmocka_unit_test(test_path__formats_canonically_with_apostrophe),
        cmocka_unit_test(test_path__canonical_form_round_trips),
        cmocka_unit_test(test_path__accepts_depth_16_and_longest_text_fits),
        cmocka_unit_test(test_path__formats_depth_zero_as_m),
        cmocka_unit_test(test_path__rejects_empty),
        cmocka_unit_test(test_path__rejects_missing_m),
        cmocka_unit_test(test_path__rejects_upper_case_m),
        cmocka_unit_test(test_path__rejects_missing_slash_after_m),
        cmocka_unit_test(test_path__rejects_trailing_slash),
        cmocka_unit_test(test_path__rejects_double_slash),
        cmocka_unit_test(test_path__rejects_depth_zero),
        cmocka_unit_test(test_path__rejects_depth_17),
        cmocka_unit_test(test_path__rejects_leading_zero),
        cmocka_unit_test(test_path__rejects_index_of_2_pow_31_and_above),
        cmocka_unit_test(test_path__rejects_non_digit),
        cmocka_unit_test(test_path__rejects_sign_characters),
        cmocka_unit_test(test_path__rejects_whitespace),
        cmocka_unit_test(test_path__rejects_embedded_nul_within_len),
        cmocka_unit_test(test_path__rejects_double_hardening_mark),
        cmocka_unit_test(test_path__rejects_text_after_hardening_mark),
        cmocka_unit_test(test_path__honours_len_not_nul),
        cmocka_unit_test(test_path__never_reads_past_len),
        cmocka_unit_test(test_path__accepts_null_why),
        cmocka_unit_test(test_path__rejects_null_arguments_as_misuse),
        cmocka_unit_test(test_path__pattern_star_matches_any_index_with_same_hardening),
        cmocka_unit_test(test_path__pattern_rejects_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
