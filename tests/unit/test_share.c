/* SPDX-License-Identifier: Apache-2.0 */
/* The share file format of the root seed ceremony (tools/ddsmctl/share.c): round trips, every
 * corruption and truncation named precisely, case and blank tolerance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

/* share.c belongs to ddsmctl, an executable: compile it into this test directly. */
#include "../../tools/ddsmctl/share.c"

/* Written from the format description with an independent implementation (Python: a CRC-8
 * checked against the CRC-8/SMBUS check value 0xf4 of "123456789", and hashlib), not by share.c:
 * it pins the documented format. */
static const char golden[] =
    "# ddsm root seed share 2 of 5: any 3 shares recover the seed. Keep it offline.\n"
    "DDSM-SHARE-V1\n"
    "ceremony 0001020304050607 threshold 3 shares 5 index 2  7c\n"
    "fingerprint 00112233445566778899aabbccddeeff  ba\n"
    "1: 2021 2223 2425 2627 2829 2a2b 2c2d 2e2f  42\n"
    "2: 3031 3233 3435 3637 3839 3a3b 3c3d 3e3f  82\n"
    "check 7b2992fd\n";

static void golden_share(struct share *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < SHARE_CEREMONY_LEN; i++)
        s->ceremony[i] = (uint8_t)i;
    s->threshold = 3;
    s->shares = 5;
    s->index = 2;
    strcpy(s->fingerprint, "00112233445566778899aabbccddeeff");
    for (int i = 0; i < SHARE_SECRET_LEN; i++)
        s->data[i] = (uint8_t)(0x20 + i);
}

static bool same_share(const struct share *a, const struct share *b)
{
    return memcmp(a->ceremony, b->ceremony, sizeof(a->ceremony)) == 0 &&
           a->threshold == b->threshold && a->shares == b->shares && a->index == b->index &&
           strcmp(a->fingerprint, b->fingerprint) == 0 &&
           memcmp(a->data, b->data, sizeof(a->data)) == 0;
}

/* Parse from a heap copy of exactly len bytes, so that a read past the end is caught by ASan and
 * valgrind. */
static ddsm_err parse_exact(const char *text, size_t len, struct share *out, char *why, size_t n)
{
    char *copy = malloc(len == 0 ? 1 : len);
    assert_non_null(copy);
    memcpy(copy, text, len);
    ddsm_err e = share_parse(len == 0 ? copy + 0 : copy, len, out, why, n);
    free(copy);
    return e;
}

static void expect_ok(const char *text, const struct share *want)
{
    struct share got;
    char why[256] = "";
    ddsm_err e = parse_exact(text, strlen(text), &got, why, sizeof(why));
    if (e != DDSM_OK)
        fail_msg("expected the share to parse, got: %s\n--- text ---\n%s", why, text);
    if (!same_share(&got, want))
        fail_msg("parsed share differs from the expected one\n--- text ---\n%s", text);
}

static void expect_fail(const char *text, size_t len, const char *needle)
{
    struct share got;
    char why[256] = "";
    ddsm_err e = parse_exact(text, len, &got, why, sizeof(why));
    if (e != DDSM_E_INPUT)
        fail_msg("expected DDSM_E_INPUT (%d), got %d; text:\n%.*s", DDSM_E_INPUT, e, (int)len,
                 text);
    if (strstr(why, needle) == NULL)
        fail_msg("expected the reason to contain \"%s\", got \"%s\"", needle, why);
}

/* The line check as documented: CRC-8, polynomial 0x07, initial value 0, no reflection. */
static unsigned doc_check(const char *canon)
{
    uint8_t crc = 0;
    for (const char *p = canon; *p != '\0'; p++) {
        crc ^= (uint8_t)*p;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x80) ? (uint8_t)((crc << 1) ^ 0x07) : (uint8_t)(crc << 1);
    }
    return crc;
}

static void test_share__line_check_is_crc8_smbus(void **state)
{
    (void)state;
    assert_int_equal(doc_check("123456789"), 0xf4); /* the catalogued check value */
    assert_int_equal(line_check("123456789", 9), 0xf4);
    assert_int_equal(line_check("", 0), 0);
}

/* Replace line number ln (1-based) of golden with repl (no newline); result in out. */
static void replace_line(unsigned ln, const char *repl, char *out, size_t cap)
{
    const char *p = golden;
    size_t o = 0;
    for (unsigned cur = 1; *p != '\0'; cur++) {
        const char *eol = strchr(p, '\n');
        size_t n = (size_t)(eol - p);
        if (cur == ln && repl == NULL) {
            p = eol + 1;
            continue;
        }
        const char *src = cur == ln ? repl : p;
        size_t sn = cur == ln ? strlen(repl) : n;
        assert_true(o + sn + 2 < cap);
        memcpy(out + o, src, sn);
        o += sn;
        out[o++] = '\n';
        p = eol + 1;
    }
    out[o] = '\0';
}

static void test_share__formats_the_documented_golden_text(void **state)
{
    (void)state;
    struct share s;
    char out[SHARE_TEXT_MAX];
    size_t len = 0;
    golden_share(&s);
    assert_int_equal(share_format_secret(&s, out, sizeof(out), &len), DDSM_OK);
    assert_int_equal(len, strlen(golden));
    assert_string_equal(out, golden);
}

static void test_share__parses_the_golden_text(void **state)
{
    (void)state;
    struct share want;
    golden_share(&want);
    expect_ok(golden, &want);
}

static void test_share__round_trips_edge_counts_and_random_data(void **state)
{
    (void)state;
    static const unsigned combos[][3] = {{1, 1, 1},     {2, 1, 2},      {5, 3, 5},
                                         {255, 1, 255}, {255, 255, 1},  {255, 255, 255},
                                         {17, 9, 10},   {100, 100, 100}};
    uint32_t x = 12345;
    for (size_t c = 0; c < sizeof(combos) / sizeof(combos[0]); c++) {
        struct share s;
        struct share got;
        char out[SHARE_TEXT_MAX];
        char why[256];
        size_t len = 0;
        memset(&s, 0, sizeof(s));
        s.shares = combos[c][0];
        s.threshold = combos[c][1];
        s.index = combos[c][2];
        for (size_t i = 0; i < sizeof(s.ceremony); i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            s.ceremony[i] = (uint8_t)x;
        }
        for (size_t i = 0; i < sizeof(s.data); i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            s.data[i] = (uint8_t)x;
        }
        for (size_t i = 0; i < DDSM_FINGERPRINT_HEX; i++)
            s.fingerprint[i] = "0123456789abcdef"[(x >> (i % 28)) & 15];
        assert_int_equal(share_format_secret(&s, out, sizeof(out), &len), DDSM_OK);
        assert_int_equal(parse_exact(out, len, &got, why, sizeof(why)), DDSM_OK);
        assert_true(same_share(&s, &got));
    }
}

static void test_share__accepts_upper_case_blanks_crlf_comments_and_regrouping(void **state)
{
    (void)state;
    struct share want;
    golden_share(&want);
    const char *variant = "\r\n"
                          "   # typed back in from paper\r\n"
                          "\tddsm-share-v1   \r\n"
                          "\r\n"
                          "CEREMONY   0001020304050607\tTHRESHOLD 3  Shares\t5 INDEX 2 7C\r\n"
                          "  Fingerprint 00112233445566778899AABBCCDDEEFF BA\r\n"
                          "# the data\n"
                          "1 :20212223 24252627 28292A2B 2C2D2E2F 42\n"
                          "2:30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f 82   \n"
                          "  CHECK   7B2992FD\n"
                          "\n"
                          "# end\n";
    expect_ok(variant, &want);
}

static void test_share__accepts_a_missing_final_newline(void **state)
{
    (void)state;
    struct share want;
    struct share got;
    char why[256];
    golden_share(&want);
    assert_int_equal(parse_exact(golden, strlen(golden) - 1, &got, why, sizeof(why)), DDSM_OK);
    assert_true(same_share(&got, &want));
}

static char next_hex(char c)
{
    int v = hexval(c);
    return "0123456789abcdef"[(v + 1) % 16];
}

static void test_share__names_the_line_of_every_mistyped_hex_digit(void **state)
{
    (void)state;
    char text[sizeof(golden)];
    unsigned line = 1;
    unsigned changed = 0;
    for (size_t i = 0; i < strlen(golden); i++) {
        if (golden[i] == '\n') {
            line++;
            continue;
        }
        if (line == 1 || hexval(golden[i]) < 0)
            continue; /* the comment line does not matter */
        memcpy(text, golden, sizeof(golden));
        text[i] = next_hex(golden[i]);
        struct share got;
        char why[256] = "";
        if (parse_exact(text, strlen(text), &got, why, sizeof(why)) != DDSM_E_INPUT)
            fail_msg("changing byte %zu (line %u) from '%c' to '%c' was not detected", i, line,
                     golden[i], text[i]);
        char own[16];
        snprintf(own, sizeof(own), "line %u:", line);
        if (strstr(why, own) == NULL)
            fail_msg("the change on line %u was not named by its line: %s", line, why);
        changed++;
    }
    assert_true(changed > 140);
}

/* The guarantee behind naming the line: a CRC-8 catches every change of one byte, whatever the
 * line's content (random data lines, every position, every other printable byte). */
static void test_share__line_check_catches_every_single_character_change(void **state)
{
    (void)state;
    char line[3 + 32 + 1] = "1: ";
    uint32_t x = 0xdecafbad;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < 32; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            line[3 + i] = "0123456789abcdef"[x & 15];
        }
        unsigned want = line_check(line, 35);
        for (int pos = 0; pos < 35; pos++) {
            char keep = line[pos];
            for (int c = 0x20; c < 0x7f; c++) {
                if (c == keep)
                    continue;
                line[pos] = (char)c;
                if (line_check(line, 35) == want)
                    fail_msg("changing byte %d to '%c' kept the line check", pos, c);
            }
            line[pos] = keep;
        }
    }
}

static void test_share__rejects_every_truncation(void **state)
{
    (void)state;
    size_t len = strlen(golden);
    for (size_t cut = 0; cut + 1 < len; cut++) {
        struct share got;
        char why[256] = "";
        if (parse_exact(golden, cut, &got, why, sizeof(why)) != DDSM_E_INPUT)
            fail_msg("a share cut after %zu of %zu bytes was accepted", cut, len);
        assert_true(why[0] != '\0');
    }
    size_t after_comment = (size_t)(strchr(golden, '\n') - golden) + 1;
    size_t after_magic = (size_t)(strstr(golden, "ceremony") - golden);
    expect_fail(golden, 0, "empty");
    expect_fail(golden, after_comment, "empty"); /* only the comment line */
    expect_fail(golden, after_magic, "truncated after line 2: the ceremony line is missing");
}

static void test_share__rejects_each_missing_line(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    replace_line(2, NULL, text, sizeof(text));
    expect_fail(text, strlen(text), "line 2: not a DDSM share");
    replace_line(3, NULL, text, sizeof(text));
    expect_fail(text, strlen(text), "line 3: expected \"ceremony");
    replace_line(4, NULL, text, sizeof(text));
    expect_fail(text, strlen(text), "line 4: expected \"fingerprint");
    replace_line(5, NULL, text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: expected data line 1, found data line 2");
    replace_line(6, NULL, text, sizeof(text));
    expect_fail(text, strlen(text), "line 6: expected data line 2 (");
    replace_line(7, NULL, text, sizeof(text));
    expect_fail(text, strlen(text), "the check line is missing");
}

static void test_share__rejects_swapped_data_lines(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    replace_line(5, "2: 3031 3233 3435 3637 3839 3a3b 3c3d 3e3f  ca", text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: expected data line 1, found data line 2");
}

static void test_share__whole_check_catches_swapped_contents_with_valid_line_checks(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    char tmp[sizeof(golden) + 64];
    char line[128];
    /* Contents of data lines exchanged, each with a correct line check for its new place. */
    snprintf(line, sizeof(line), "1: 303132333435363738393a3b3c3d3e3f %02x",
             doc_check("1: 303132333435363738393a3b3c3d3e3f"));
    replace_line(5, line, tmp, sizeof(tmp));
    memcpy(text, tmp, sizeof(tmp));
    snprintf(line, sizeof(line), "2: 202122232425262728292a2b2c2d2e2f %02x",
             doc_check("2: 202122232425262728292a2b2c2d2e2f"));
    char *l6 = strstr(text, "2: 3031");
    assert_non_null(l6);
    char *eol = strchr(l6, '\n');
    char rest[64];
    strcpy(rest, eol);
    strcpy(l6, line);
    strcat(l6, rest);
    expect_fail(text, strlen(text), "line 7: the share's check does not match");
}

static void test_share__rejects_text_after_the_check_line(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    snprintf(text, sizeof(text), "%s# fine\n\nextra\n", golden);
    expect_fail(text, strlen(text), "line 10: unexpected text after the check line");
}

static void test_share__rejects_missing_and_extra_fields(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    replace_line(3, "ceremony 0001020304050607 threshold 3 shares 5 index 2", text, sizeof(text));
    expect_fail(text, strlen(text), "line 3: the ceremony line lacks its 2-digit line check");
    replace_line(3, "ceremony 0001020304050607 threshold 3 shares 5 index 2 8e 00", text,
                 sizeof(text));
    expect_fail(text, strlen(text), "line 3: expected \"ceremony");
    replace_line(3, "ceremony 0001020304050607 limit 3 shares 5 index 2 8e", text, sizeof(text));
    expect_fail(text, strlen(text), "line 3: expected \"ceremony");
    replace_line(4, "fingerprint 00112233445566778899aabbccddeeff", text, sizeof(text));
    expect_fail(text, strlen(text), "line 4: the fingerprint line lacks its 2-digit line check");
    replace_line(4, "fingerprint 00112233445566778899aabbccddeeff 3e 3e", text, sizeof(text));
    expect_fail(text, strlen(text), "line 4: expected \"fingerprint");
    replace_line(5, "1: 2021 2223 2425 2627 2829 2a2b 2c2d 2e2f", text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: the line check of data line 1 must be 2 hex digits");
    replace_line(5, "1:", text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: data line 1 needs 32 hex digits");
    replace_line(5, "1 2021 2223 2425 2627 2829 2a2b 2c2d 2e2f cb", text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: expected ':' after the data line number");
    replace_line(7, "check", text, sizeof(text));
    expect_fail(text, strlen(text), "line 7: expected \"check <8 hex digits>\"");
    replace_line(7, "check 7b2992fd 00", text, sizeof(text));
    expect_fail(text, strlen(text), "line 7: expected \"check <8 hex digits>\"");
}

static void test_share__rejects_wrong_digit_counts(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    replace_line(3, "ceremony 000102030405060 threshold 3 shares 5 index 2 8e", text, sizeof(text));
    expect_fail(text, strlen(text), "line 3: the ceremony id must be 16 hex digits");
    replace_line(4, "fingerprint 00112233445566778899aabbccddeef 3e", text, sizeof(text));
    expect_fail(text, strlen(text), "line 4: the fingerprint must be 32 hex digits");
    replace_line(5, "1: 2021 2223 2425 2627 2829 2a2b 2c2d 2e2 cb", text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: data line 1 has 31 hex digits, expected 32");
    replace_line(5, "1: 2021 2223 2425 2627 2829 2a2b 2c2d 2e2f0 cb", text, sizeof(text));
    expect_fail(text, strlen(text), "line 5: data line 1 has more than 32 hex digits");
    replace_line(6, "2: 3031 3233 3435 3637 3839 3a3b 3c3d 3e3g  ca", text, sizeof(text));
    expect_fail(text, strlen(text), "line 6: data line 2 holds a character that is not a hex");
    replace_line(6, "2: 3031 3233 3435 3637 3839 3a3b 3c3d 3e3f  c", text, sizeof(text));
    expect_fail(text, strlen(text), "line 6: the line check of data line 2 must be 2 hex digits");
    replace_line(3, "ceremony 0001020304050607 threshold 3 shares 5 index 2 8e0", text,
                 sizeof(text));
    expect_fail(text, strlen(text), "line 3: the line check must be 2 hex digits");
}

/* A header line with a correct line check, so only the range rules can refuse it. */
static void header_line(const char *fields, char *out, size_t cap)
{
    snprintf(out, cap, "%s %02x", fields, doc_check(fields));
}

static void test_share__rejects_out_of_range_numbers_even_with_valid_checks(void **state)
{
    (void)state;
    static const struct {
        const char *fields;
        const char *needle;
    } cases[] = {
        {"ceremony 0001020304050607 threshold 0 shares 5 index 2", "need 1 <= threshold"},
        {"ceremony 0001020304050607 threshold 6 shares 5 index 2", "need 1 <= threshold"},
        {"ceremony 0001020304050607 threshold 1 shares 0 index 2", "need 1 <= threshold"},
        {"ceremony 0001020304050607 threshold 3 shares 5 index 0", "index 0 is outside 1..5"},
        {"ceremony 0001020304050607 threshold 3 shares 5 index 6", "index 6 is outside 1..5"},
        {"ceremony 0001020304050607 threshold 3 shares 256 index 2", "shares must be a number"},
        {"ceremony 0001020304050607 threshold 03 shares 5 index 2", "threshold must be a number"},
        {"ceremony 0001020304050607 threshold 3 shares 5 index 02", "index must be a number"},
        {"ceremony 0001020304050607 threshold 3 shares -5 index 2", "shares must be a number"},
        {"ceremony 0001020304050607 threshold 3 shares 1000 index 2", "shares must be a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char line[128];
        char text[sizeof(golden) + 64];
        header_line(cases[i].fields, line, sizeof(line));
        replace_line(3, line, text, sizeof(text));
        expect_fail(text, strlen(text), cases[i].needle);
    }
}

static void test_share__rejects_other_formats_and_versions(void **state)
{
    (void)state;
    char text[sizeof(golden) + 64];
    replace_line(2, "DDSM-SHARE-V2", text, sizeof(text));
    expect_fail(text, strlen(text), "line 2: unsupported share format DDSM-SHARE-V2");
    replace_line(2, "hello", text, sizeof(text));
    expect_fail(text, strlen(text), "line 2: not a DDSM share");
    replace_line(2, "DDSM-SHARE-V1 extra", text, sizeof(text));
    expect_fail(text, strlen(text), "line 2: not a DDSM share");
}

static void test_share__rejects_nul_control_and_non_ascii_bytes(void **state)
{
    (void)state;
    char text[sizeof(golden) + 8];
    size_t len = strlen(golden);
    size_t in3 = (size_t)(strstr(golden, "ceremony") - golden) + 5; /* inside line 3 */
    memcpy(text, golden, len);
    text[in3] = '\0';
    expect_fail(text, len, "line 3: unexpected byte 0x00");
    memcpy(text, golden, len);
    text[3] = (char)0xc3; /* in the comment line: comments are ASCII too */
    expect_fail(text, len, "line 1: unexpected byte 0xc3");
    memcpy(text, golden, len);
    text[in3] = '\r';
    expect_fail(text, len, "line 3: unexpected byte 0x0d");
    memcpy(text, golden, len);
    text[in3] = 0x7f;
    expect_fail(text, len, "line 3: unexpected byte 0x7f");
}

static void test_share__rejects_oversized_text(void **state)
{
    (void)state;
    size_t len = SHARE_TEXT_MAX + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '#', len);
    memcpy(text + len - strlen(golden), golden, strlen(golden));
    text[len - strlen(golden) - 1] = '\n';
    expect_fail(text, len, "too large");
    free(text);
}

static void test_share__leaves_output_untouched_on_failure(void **state)
{
    (void)state;
    struct share out;
    struct share before;
    char why[256];
    char text[sizeof(golden)];
    memset(&out, 0xaa, sizeof(out));
    memcpy(&before, &out, sizeof(out));
    memcpy(text, golden, sizeof(golden));
    text[strlen(golden) - 2] = next_hex(text[strlen(golden) - 2]); /* last check digit */
    assert_int_equal(parse_exact(text, strlen(text), &out, why, sizeof(why)), DDSM_E_INPUT);
    assert_memory_equal(&out, &before, sizeof(out));
    assert_int_equal(share_parse(NULL, 0, &out, why, sizeof(why)), DDSM_E_ARG);
    assert_memory_equal(&out, &before, sizeof(out));
    /* A NULL or empty why buffer is allowed. */
    assert_int_equal(share_parse(text, strlen(text), &out, NULL, 0), DDSM_E_INPUT);
}

static void test_share__survives_random_mutations(void **state)
{
    (void)state;
    struct share want;
    golden_share(&want);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t glen = strlen(golden);
    char buf[sizeof(golden) + 16];
    unsigned accepted = 0;
    for (unsigned iter = 0; iter < 50000; iter++) {
        memcpy(buf, golden, glen);
        size_t len = glen;
        unsigned edits = 1 + iter % 3;
        for (unsigned e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x >> 8) % len;
            unsigned char b = (unsigned char)(x >> 40);
            switch (x % 3) {
            case 0: /* overwrite */
                buf[at] = (char)b;
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            default: /* insert */
                if (len < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = (char)b;
                    len++;
                }
                break;
            }
        }
        struct share got;
        char why[256];
        if (parse_exact(buf, len, &got, why, sizeof(why)) == DDSM_OK) {
            /* Only harmless edits (comment, blanks, case) may pass, and then mean the same. */
            if (!same_share(&got, &want))
                fail_msg("a mutated share parsed to different content: %.*s", (int)len, buf);
            accepted++;
        }
    }
    assert_true(accepted < 50000 / 2);
}

static void test_share__format_refuses_a_small_buffer_or_a_bad_share(void **state)
{
    (void)state;
    struct share s;
    char out[SHARE_TEXT_MAX];
    size_t len = 0;
    golden_share(&s);
    memset(out, 'x', sizeof(out));
    assert_int_equal(share_format_secret(&s, out, 200, &len), DDSM_E_ARG);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(out[i], 0); /* nothing of the share is left behind */
    s.index = 6;
    assert_int_equal(share_format_secret(&s, out, sizeof(out), &len), DDSM_E_ARG);
    golden_share(&s);
    s.threshold = 0;
    assert_int_equal(share_format_secret(&s, out, sizeof(out), &len), DDSM_E_ARG);
    golden_share(&s);
    s.fingerprint[3] = 'A';
    assert_int_equal(share_format_secret(&s, out, sizeof(out), &len), DDSM_E_ARG);
    golden_share(&s);
    s.fingerprint[31] = '\0';
    assert_int_equal(share_format_secret(&s, out, sizeof(out), &len), DDSM_E_ARG);
}

static void test_share__wipe_clears_the_share(void **state)
{
    (void)state;
    struct share s;
    struct share zero;
    golden_share(&s);
    memset(&zero, 0, sizeof(zero));
    share_wipe(&s);
    assert_memory_equal(&s, &zero, sizeof(s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_share__formats_the_documented_golden_text),
        cmocka_unit_test(test_share__parses_the_golden_text),
        cmocka_unit_test(test_share__round_trips_edge_counts_and_random_data),
        cmocka_unit_test(test_share__accepts_upper_case_blanks_crlf_comments_and_regrouping),
        cmocka_unit_test(test_share__accepts_a_missing_final_newline),
        cmocka_unit_test(test_share__line_check_is_crc8_smbus),
        cmocka_unit_test(test_share__names_the_line_of_every_mistyped_hex_digit),
        cmocka_unit_test(test_share__line_check_catches_every_single_character_change),
        cmocka_unit_test(test_share__rejects_every_truncation),
        cmocka_unit_test(test_share__rejects_each_missing_line),
        cmocka_unit_test(test_share__rejects_swapped_data_lines),
        cmocka_unit_test(test_share__whole_check_catches_swapped_contents_with_valid_line_checks),
        cmocka_unit_test(test_share__rejects_text_after_the_check_line),
        cmocka_unit_test(test_share__rejects_missing_and_extra_fields),
        cmocka_unit_test(test_share__rejects_wrong_digit_counts),
        cmocka_unit_test(test_share__rejects_out_of_range_numbers_even_with_valid_checks),
        cmocka_unit_test(test_share__rejects_other_formats_and_versions),
        cmocka_unit_test(test_share__rejects_nul_control_and_non_ascii_bytes),
        cmocka_unit_test(test_share__rejects_oversized_text),
        cmocka_unit_test(test_share__leaves_output_untouched_on_failure),
        cmocka_unit_test(test_share__survives_random_mutations),
        cmocka_unit_test(test_share__format_refuses_a_small_buffer_or_a_bad_share),
        cmocka_unit_test(test_share__wipe_clears_the_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
