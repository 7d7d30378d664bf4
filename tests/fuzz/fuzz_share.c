/* SPDX-License-Identifier: Apache-2.0 */
/* share_parse, the share-file parser of the root seed ceremony (tools/ddsmctl/share.c), over
 * arbitrary bytes (text, len), not NUL-terminated; and share_format_secret on shares built from
 * the input.
 *
 * Checked: a rejection is DDSM_E_INPUT with a NUL-terminated one-line reason that fits the
 * buffer, and leaves the output untouched; the result does not depend on whether a reason is
 * asked for, nor on case, repeated blanks or CR before LF (the documented tolerances); an
 * accepted share has 1 <= threshold <= shares <= 255, 1 <= index <= shares and a
 * lower-case 32-digit fingerprint, and formats to text that parses back to the identical share.
 * Independently of parsing, the first 61 input bytes read as a share (fields reduced into range)
 * format and parse back to themselves, and formatting into a buffer too small fails cleanly. */
#include <stdbool.h>
#include <string.h>

#include "ddsm/secmem.h"
#include "fuzz.h"
#include "share.h"

static bool same_share(const struct share *a, const struct share *b)
{
    return memcmp(a->ceremony, b->ceremony, sizeof(a->ceremony)) == 0 &&
           a->threshold == b->threshold && a->shares == b->shares && a->index == b->index &&
           strcmp(a->fingerprint, b->fingerprint) == 0 &&
           memcmp(a->data, b->data, sizeof(a->data)) == 0;
}

static void check_valid(const struct share *s)
{
    FUZZ_CHECK(s->shares >= 1 && s->shares <= 255, "shares %u", s->shares);
    FUZZ_CHECK(s->threshold >= 1 && s->threshold <= s->shares, "threshold %u of %u", s->threshold,
               s->shares);
    FUZZ_CHECK(s->index >= 1 && s->index <= s->shares, "index %u of %u", s->index, s->shares);
    FUZZ_CHECK(strlen(s->fingerprint) == DDSM_FINGERPRINT_HEX, "fingerprint length %zu",
               strlen(s->fingerprint));
    for (size_t i = 0; i < DDSM_FINGERPRINT_HEX; i++) {
        char c = s->fingerprint[i];
        FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'),
                   "fingerprint is not lower-case hex");
    }
}

/* s formats to text that parses back to s; a buffer too small for it is refused. */
static void check_round_trip(const struct share *s, size_t small_cap)
{
    static char text[SHARE_TEXT_MAX + 1];
    struct share back;
    char why[256];
    size_t len = 0;

    ddsm_err e = share_format_secret(s, text, sizeof(text), &len);
    FUZZ_CHECK(e == DDSM_OK, "a valid share does not format (%d)", e);
    FUZZ_CHECK(len == strlen(text) && len <= SHARE_TEXT_MAX, "formatted length %zu", len);
    e = share_parse(text, len, &back, why, sizeof(why));
    FUZZ_CHECK(e == DDSM_OK, "formatted share does not parse: %s\n%s", why, text);
    FUZZ_CHECK(same_share(s, &back), "formatted share parses to another share\n%s", text);
    share_wipe(&back);

    /* Any capacity up to the text's own length (no room for the NUL) is too small. */
    size_t cap = small_cap % (len + 1);
    size_t len2 = 12345;
    e = share_format_secret(s, text, cap, &len2);
    FUZZ_CHECK(e == DDSM_E_ARG, "formatting into %zu bytes (needs %zu) gave %d", cap, len + 1, e);
    FUZZ_CHECK(len2 == 12345, "a failed format set the length");
    memset(text, 0, sizeof(text));
}

/* The documented tolerances cannot change the outcome: case ("parsing is case-insensitive"),
 * repeated blanks between fields, CR before LF. Each variant of text must be accepted exactly when
 * text is, as the same share. */
enum tolerance { V_UPPER, V_LOWER, V_DOUBLE_BLANKS, V_CRLF };

static void check_tolerance(const char *text, size_t size, enum tolerance v,
                            const struct share *want)
{
    static char buf[2 * SHARE_TEXT_MAX + 2];
    size_t n = 0;
    struct share got;

    if (v == V_CRLF && memchr(text, '\r', size) != NULL)
        return; /* a second CR before LF is a control byte */
    for (size_t i = 0; i < size && n + 2 <= sizeof(buf); i++) {
        char c = text[i];
        if (v == V_UPPER && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (v == V_LOWER && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (v == V_DOUBLE_BLANKS && (c == ' ' || c == '\t'))
            buf[n++] = c;
        else if (v == V_CRLF && c == '\n')
            buf[n++] = '\r';
        buf[n++] = c;
    }
    if ((size > SHARE_TEXT_MAX) != (n > SHARE_TEXT_MAX))
        return; /* the variant crossed the size limit */
    ddsm_err e = share_parse(buf, n, &got, NULL, 0);
    FUZZ_CHECK((e == DDSM_OK) == (want != NULL), "variant %d is %s", (int)v,
               e == DDSM_OK ? "accepted, the text is not" : "rejected, the text is not");
    if (e == DDSM_OK) {
        FUZZ_CHECK(same_share(&got, want), "variant %d parses to another share", (int)v);
        share_wipe(&got);
    }
    ddsm_wipe(buf, n);
}

static void fuzz_parse(const char *text, size_t size)
{
    struct share s;
    struct share s2;
    char why[160];

    memset(&s, 0xa5, sizeof(s));
    memset(why, 0x7f, sizeof(why));
    ddsm_err e = share_parse(text, size, &s, why, sizeof(why));
    ddsm_err e2 = share_parse(text, size, &s2, NULL, 0);
    FUZZ_CHECK(e == e2, "result depends on whether a reason is asked for (%d vs %d)", e, e2);
    if (e != DDSM_OK) {
        FUZZ_CHECK(e == DDSM_E_INPUT, "rejected with error %d, not DDSM_E_INPUT", e);
        FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL, "the reason is not NUL-terminated");
        FUZZ_CHECK(why[0] != '\0', "rejected without a reason");
        FUZZ_CHECK(strchr(why, '\n') == NULL, "the reason \"%s\" is not one line", why);
        FUZZ_CHECK(fuzz_all_bytes(&s, sizeof(s), 0xa5), "a rejection wrote the output");
        for (int v = V_UPPER; v <= V_CRLF; v++)
            check_tolerance(text, size, (enum tolerance)v, NULL);
        return;
    }
    FUZZ_CHECK(same_share(&s, &s2), "two parses of the same text differ");
    check_valid(&s);
    check_round_trip(&s, size);
    for (int v = V_UPPER; v <= V_CRLF; v++)
        check_tolerance(text, size, (enum tolerance)v, &s);
    share_wipe(&s);
    share_wipe(&s2);
}

/* A share from raw bytes: ceremony (8), shares, threshold, index (1 each), fingerprint (16),
 * data (32). */
#define RAW_LEN (SHARE_CEREMONY_LEN + 3 + DDSM_FINGERPRINT_HEX / 2 + SHARE_SECRET_LEN)

static void fuzz_format(const uint8_t *d, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    struct share s;

    memset(&s, 0, sizeof(s));
    memcpy(s.ceremony, d, SHARE_CEREMONY_LEN);
    d += SHARE_CEREMONY_LEN;
    s.shares = 1u + d[0] % 255u;
    s.threshold = 1u + d[1] % s.shares;
    s.index = 1u + d[2] % s.shares;
    d += 3;
    for (size_t i = 0; i < DDSM_FINGERPRINT_HEX / 2; i++) {
        s.fingerprint[2 * i] = hex[d[i] >> 4];
        s.fingerprint[2 * i + 1] = hex[d[i] & 15];
    }
    s.fingerprint[DDSM_FINGERPRINT_HEX] = '\0';
    d += DDSM_FINGERPRINT_HEX / 2;
    memcpy(s.data, d, SHARE_SECRET_LEN);
    check_round_trip(&s, size);

    /* Out of range: refused, not formatted. */
    struct share bad = s;
    char text[SHARE_TEXT_MAX];
    size_t len = 0;
    bad.index = s.shares + 1u;
    FUZZ_CHECK(share_format_secret(&bad, text, sizeof(text), &len) == DDSM_E_ARG,
               "index above shares is formatted");
    bad = s;
    bad.fingerprint[size % DDSM_FINGERPRINT_HEX] = 'A';
    FUZZ_CHECK(share_format_secret(&bad, text, sizeof(text), &len) == DDSM_E_ARG,
               "an upper-case fingerprint is formatted");
    share_wipe(&bad);
    share_wipe(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse((const char *)data, size);
    if (size >= RAW_LEN)
        fuzz_format(data, size);
    return 0;
}
