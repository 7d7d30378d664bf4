/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Share files: one custodian's part of the root seed as text that can be printed on paper and
 * typed back in. `ddsmctl root create --shares N --threshold K` writes them, `root recover` reads
 * them. Example (share 2 of 5, any 3 recover the seed):
 *
 *     # ddsm root seed share 2 of 5: any 3 shares recover the seed. Keep it offline.
 *     DDSM-SHARE-V1
 *     ceremony 5f1c2e0a9b8c7d6e threshold 3 shares 5 index 2  a1
 *     fingerprint 0123456789abcdef0123456789abcdef  5c
 *     1: abcd ef01 2345 6789 abcd ef01 2345 6789  c3
 *     2: abcd ef01 2345 6789 abcd ef01 2345 6789  7a
 *     check 9f3a01bc
 *
 * - ceremony: 8 random bytes naming one ceremony; all of its shares carry the same id.
 * - threshold K, shares N (1 <= K <= N <= 255), index: this share's x coordinate (1..N).
 * - fingerprint: ddsm_root_fingerprint of the whole seed (docs/design.md); checked after combining and
 *   shown by `ddsmctl root info` so custodians can compare.
 * - data lines 1 and 2: the 32 share bytes (libgfshare's Shamir scheme over GF(256), one byte per
 *   seed byte), 16 per line, as 32 hex digits in any grouping.
 * - Every header and data line ends with a 2-digit line check: the CRC-8 (polynomial 0x07,
 *   initial value 0, no reflection, as in SMBus) of the canonical line, which is the line in
 *   lower case with single spaces and without its check; for data lines "<n>: <32 hex digits>"
 *   without grouping. Any one mistyped character changes one byte, a burst of at most 8 bits,
 *   which a CRC-8 always detects: the line is named with certainty.
 * - check: the first 4 bytes of SHA-256 over the canonical header, fingerprint and data lines,
 *   each followed by "\n". It catches what line checks can miss (several typos on one line,
 *   swapped data lines).
 * Parsing is case-insensitive; spaces and tabs may be repeated between fields; blank lines and
 * lines starting with '#' are ignored; CR before LF is accepted. Anything else is an error naming
 * the line: unknown, missing or extra fields, numbers out of range or with leading zeros, wrong
 * digit counts, non-ASCII or control bytes, text after the check line, a file over 4096 bytes.
 */
#include "share.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ddsm/secmem.h"

#define MAX_TOKENS 24
#define HALF (SHARE_SECRET_LEN / 2) /* bytes per data line */
#define CANON_MAX 128               /* longest canonical line, with room to spare */
#define WHOLE_MAX 512               /* all canonical lines of one share */

struct tok {
    const char *p;
    size_t n;
};

static void say(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || n == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Lower-case hex of n bytes (which may be secret: share data). */
static void hex_lower(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Exactly 2*out_len hex digits into out_len bytes (which may be secret: share data). */
static bool parse_hex(const char *p, size_t n, uint8_t *out, size_t out_len)
{
    if (n != 2 * out_len)
        return false;
    for (size_t i = 0; i < out_len; i++) {
        int hi = hexval(p[2 * i]);
        int lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* Case-insensitive equality of a token with a lower-case word. */
static bool tok_is(const struct tok *t, const char *word)
{
    size_t n = strlen(word);
    if (t->n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t->p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != word[i])
            return false;
    }
    return true;
}

/* A decimal 0..255 of 1 to 3 digits without leading zeros. */
static bool parse_u8_dec(const char *p, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 255)
        return false;
    *out = v;
    return true;
}

/* Split [p, p+n) at spaces and tabs. Returns the token count, or MAX_TOKENS + 1 when there are
 * more than MAX_TOKENS. */
static size_t tokenize(const char *p, size_t n, struct tok toks[MAX_TOKENS])
{
    size_t count = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && is_ws(p[i]))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && !is_ws(p[i]))
            i++;
        if (count == MAX_TOKENS)
            return MAX_TOKENS + 1;
        toks[count].p = p + start;
        toks[count].n = i - start;
        count++;
    }
    return count;
}

/* The line check: CRC-8/SMBus of canon (which may be secret: data lines). Not a MAC, a typo
 * detector; bitwise, so no table lookups indexed by secret bytes. */
static unsigned line_check(const char *canon, size_t len)
{
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned char)canon[i];
        for (int b = 0; b < 8; b++) {
            unsigned mask = 0u - ((crc >> 7) & 1u);
            crc = ((crc << 1) ^ (0x07u & mask)) & 0xffu;
        }
    }
    return crc;
}

/* First 4 bytes of SHA-256 over the canonical lines (secret input). */
static uint32_t whole_check(const char *whole, size_t len)
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)whole, len, md);
    uint32_t v = (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
    ddsm_wipe(md, sizeof(md));
    return v;
}

static size_t canon_header(const struct share *s, char out[CANON_MAX])
{
    char cer[2 * SHARE_CEREMONY_LEN + 1];
    hex_lower(s->ceremony, SHARE_CEREMONY_LEN, cer);
    int n = snprintf(out, CANON_MAX, "ceremony %s threshold %u shares %u index %u", cer,
                     s->threshold, s->shares, s->index);
    return (size_t)n;
}

static size_t canon_fingerprint(const struct share *s, char out[CANON_MAX])
{
    return (size_t)snprintf(out, CANON_MAX, "fingerprint %s", s->fingerprint);
}

/* "<line>: <32 hex>" of data line 1 or 2: a secret. */
static size_t canon_data_secret(const struct share *s, unsigned line, char out[CANON_MAX])
{
    out[0] = (char)('0' + line);
    out[1] = ':';
    out[2] = ' ';
    hex_lower(s->data + (line - 1) * HALF, HALF, out + 3);
    return 3 + 2 * HALF;
}

/* Append n bytes to a NUL-terminated buffer; used for canonical lines, which are secret. */
static bool append(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > cap)
        return false;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
    return true;
}

/* Append a canonical line (secret) and its "\n" to whole (cap bytes, *len used). */
static bool append_line(char *whole, size_t cap, size_t *len, const char *line, size_t n)
{
    return append(whole, cap, len, line, n) && append(whole, cap, len, "\n", 1);
}

/* Append printf output (share text: a secret) to out (cap bytes, *len used); false when it does
 * not fit. */
__attribute__((format(printf, 4, 5))) static bool out_printf(char *out, size_t cap, size_t *len,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *len)
        return false;
    *len += (size_t)k;
    return true;
}

static bool range_ok(const struct share *s)
{
    return s->shares >= 1 && s->shares <= 255 && s->threshold >= 1 && s->threshold <= s->shares &&
           s->index >= 1 && s->index <= s->shares;
}

enum stage { ST_MAGIC, ST_HEADER, ST_FPR, ST_DATA1, ST_DATA2, ST_CHECK, ST_END };

static const char *stage_name(enum stage st)
{
    switch (st) {
    case ST_MAGIC:
        return "the " SHARE_MAGIC " line";
    case ST_HEADER:
        return "the ceremony line";
    case ST_FPR:
        return "the fingerprint line";
    case ST_DATA1:
        return "data line 1";
    case ST_DATA2:
        return "data line 2";
    case ST_CHECK:
        return "the check line";
    case ST_END:
        break;
    }
    return "nothing";
}

static bool parse_check2(const struct tok *t, unsigned *out)
{
    uint8_t b;
    if (!parse_hex(t->p, t->n, &b, 1))
        return false;
    *out = b;
    return true;
}

static ddsm_err parse_header(unsigned ln, const struct tok *t, size_t nt, struct share *s,
                             char *why, size_t n)
{
    char canon[CANON_MAX];
    unsigned check;
    if (nt == 8 && tok_is(&t[0], "ceremony")) {
        say(why, n, "line %u: the ceremony line lacks its 2-digit line check", ln);
        return DDSM_E_INPUT;
    }
    if (nt != 9 || !tok_is(&t[0], "ceremony") || !tok_is(&t[2], "threshold") ||
        !tok_is(&t[4], "shares") || !tok_is(&t[6], "index")) {
        say(why, n,
            "line %u: expected \"ceremony <16 hex> threshold <K> shares <N> index <I> <check>\"",
            ln);
        return DDSM_E_INPUT;
    }
    if (!parse_hex(t[1].p, t[1].n, s->ceremony, SHARE_CEREMONY_LEN)) {
        say(why, n, "line %u: the ceremony id must be 16 hex digits", ln);
        return DDSM_E_INPUT;
    }
    if (!parse_u8_dec(t[3].p, t[3].n, &s->threshold)) {
        say(why, n, "line %u: threshold must be a number 1..255 without leading zeros", ln);
        return DDSM_E_INPUT;
    }
    if (!parse_u8_dec(t[5].p, t[5].n, &s->shares)) {
        say(why, n, "line %u: shares must be a number 1..255 without leading zeros", ln);
        return DDSM_E_INPUT;
    }
    if (!parse_u8_dec(t[7].p, t[7].n, &s->index)) {
        say(why, n, "line %u: index must be a number 1..255 without leading zeros", ln);
        return DDSM_E_INPUT;
    }
    if (!parse_check2(&t[8], &check)) {
        say(why, n, "line %u: the line check must be 2 hex digits", ln);
        return DDSM_E_INPUT;
    }
    size_t len = canon_header(s, canon);
    if (line_check(canon, len) != check) {
        say(why, n, "line %u: line check does not match (a mistyped character on this line?)", ln);
        return DDSM_E_INPUT;
    }
    if (s->shares < 1 || s->threshold < 1 || s->threshold > s->shares) {
        say(why, n, "line %u: threshold %u and shares %u: need 1 <= threshold <= shares", ln,
            s->threshold, s->shares);
        return DDSM_E_INPUT;
    }
    if (s->index < 1 || s->index > s->shares) {
        say(why, n, "line %u: index %u is outside 1..%u", ln, s->index, s->shares);
        return DDSM_E_INPUT;
    }
    return DDSM_OK;
}

static ddsm_err parse_fpr(unsigned ln, const struct tok *t, size_t nt, struct share *s, char *why,
                          size_t n)
{
    uint8_t fp[DDSM_FINGERPRINT_HEX / 2];
    char canon[CANON_MAX];
    unsigned check;
    if (nt == 2 && tok_is(&t[0], "fingerprint")) {
        say(why, n, "line %u: the fingerprint line lacks its 2-digit line check", ln);
        return DDSM_E_INPUT;
    }
    if (nt != 3 || !tok_is(&t[0], "fingerprint")) {
        say(why, n, "line %u: expected \"fingerprint <32 hex> <check>\"", ln);
        return DDSM_E_INPUT;
    }
    if (!parse_hex(t[1].p, t[1].n, fp, sizeof(fp))) {
        say(why, n, "line %u: the fingerprint must be %d hex digits", ln, DDSM_FINGERPRINT_HEX);
        return DDSM_E_INPUT;
    }
    hex_lower(fp, sizeof(fp), s->fingerprint);
    if (!parse_check2(&t[2], &check)) {
        say(why, n, "line %u: the line check must be 2 hex digits", ln);
        return DDSM_E_INPUT;
    }
    size_t len = canon_fingerprint(s, canon);
    if (line_check(canon, len) != check) {
        say(why, n, "line %u: line check does not match (a mistyped character on this line?)", ln);
        return DDSM_E_INPUT;
    }
    return DDSM_OK;
}

/* A data line "<k>: <hex digits in groups> <check>" starting at p (no leading blanks). Fills
 * s->data for line k (a secret). */
static ddsm_err parse_data_secret(unsigned ln, unsigned want, const char *p, size_t len,
                                  struct share *s, char *why, size_t n)
{
    struct tok t[MAX_TOKENS];
    char hex[2 * HALF];
    char canon[CANON_MAX];
    size_t nhex = 0;
    unsigned check;
    ddsm_err err = DDSM_E_INPUT;
    size_t i = 0;

    while (i < len && p[i] >= '0' && p[i] <= '9')
        i++;
    unsigned label = 0;
    if (i == 0 || i > 1 || !parse_u8_dec(p, i, &label)) {
        say(why, n, "line %u: expected data line %u (\"%u: <32 hex digits> <check>\")", ln, want,
            want);
        goto out;
    }
    while (i < len && is_ws(p[i]))
        i++;
    if (i == len || p[i] != ':') {
        say(why, n, "line %u: expected ':' after the data line number", ln);
        goto out;
    }
    if (label != want) {
        say(why, n, "line %u: expected data line %u, found data line %u", ln, want, label);
        goto out;
    }
    i++;
    size_t nt = tokenize(p + i, len - i, t);
    if (nt > MAX_TOKENS) {
        say(why, n, "line %u: too many fields", ln);
        goto out;
    }
    if (nt < 2) {
        say(why, n, "line %u: data line %u needs 32 hex digits and a 2-digit line check", ln, want);
        goto out;
    }
    for (size_t k = 0; k + 1 < nt; k++) {
        for (size_t j = 0; j < t[k].n; j++) {
            if (hexval(t[k].p[j]) < 0) {
                say(why, n, "line %u: data line %u holds a character that is not a hex digit", ln,
                    want);
                goto out;
            }
            if (nhex == sizeof(hex)) {
                say(why, n, "line %u: data line %u has more than 32 hex digits", ln, want);
                goto out;
            }
            hex[nhex++] = t[k].p[j];
        }
    }
    if (!parse_check2(&t[nt - 1], &check)) {
        say(why, n, "line %u: the line check of data line %u must be 2 hex digits (missing?)", ln,
            want);
        goto out;
    }
    if (nhex != sizeof(hex)) {
        say(why, n, "line %u: data line %u has %zu hex digits, expected 32", ln, want, nhex);
        goto out;
    }
    if (!parse_hex(hex, nhex, s->data + (want - 1) * HALF, HALF))
        goto out; /* unreachable: every digit was checked above */
    size_t clen = canon_data_secret(s, want, canon);
    if (line_check(canon, clen) != check) {
        say(why, n, "line %u: line check of data line %u does not match (a mistyped digit?)", ln,
            want);
        goto out;
    }
    err = DDSM_OK;
out:
    ddsm_wipe(hex, sizeof(hex));
    ddsm_wipe(canon, sizeof(canon));
    ddsm_wipe(t, sizeof(t));
    return err;
}

ddsm_err share_parse(const char *text, size_t len, struct share *out, char *why, size_t n)
{
    struct share s;
    struct tok t[MAX_TOKENS];
    char canon[CANON_MAX];
    char whole[WHOLE_MAX];
    size_t whole_len = 0;
    enum stage st = ST_MAGIC;
    unsigned ln = 0;
    size_t pos = 0;
    ddsm_err err = DDSM_E_INPUT;

    memset(&s, 0, sizeof(s));
    whole[0] = '\0';
    if (text == NULL || out == NULL) {
        say(why, n, "no share text");
        return DDSM_E_ARG;
    }
    if (len > SHARE_TEXT_MAX) {
        say(why, n, "share file too large (%zu bytes, at most %d)", len, SHARE_TEXT_MAX);
        return DDSM_E_INPUT;
    }
    while (pos < len) {
        size_t eol = pos;
        while (eol < len && text[eol] != '\n')
            eol++;
        const char *line = text + pos;
        size_t ll = eol - pos;
        pos = eol < len ? eol + 1 : len;
        ln++;
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        for (size_t i = 0; i < ll; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c >= 0x7f) {
                say(why, n, "line %u: unexpected byte 0x%02x (only printable ASCII)", ln, c);
                goto out;
            }
        }
        size_t i = 0;
        while (i < ll && is_ws(line[i]))
            i++;
        if (i == ll || line[i] == '#')
            continue;
        if (st == ST_DATA1 || st == ST_DATA2) {
            unsigned want = st == ST_DATA1 ? 1 : 2;
            err = parse_data_secret(ln, want, line + i, ll - i, &s, why, n);
            if (err != DDSM_OK)
                goto out;
            err = DDSM_E_INPUT;
            size_t clen = canon_data_secret(&s, want, canon);
            if (!append_line(whole, sizeof(whole), &whole_len, canon, clen))
                goto out; /* cannot happen: the lengths are fixed */
            st = st == ST_DATA1 ? ST_DATA2 : ST_CHECK;
            continue;
        }
        size_t nt = tokenize(line + i, ll - i, t);
        if (nt > MAX_TOKENS) {
            say(why, n, "line %u: too many fields", ln);
            goto out;
        }
        switch (st) {
        case ST_MAGIC:
            if (nt == 1 && tok_is(&t[0], "ddsm-share-v1")) {
                st = ST_HEADER;
                break;
            }
            if (nt == 1 && t[0].n > 11 && t[0].n < 32) {
                struct tok pre = {t[0].p, 11};
                if (tok_is(&pre, "ddsm-share-")) {
                    say(why, n, "line %u: unsupported share format %.*s (expected %s)", ln,
                        (int)t[0].n, t[0].p, SHARE_MAGIC);
                    goto out;
                }
            }
            say(why, n, "line %u: not a DDSM share (expected the line %s)", ln, SHARE_MAGIC);
            goto out;
        case ST_HEADER: {
            if (parse_header(ln, t, nt, &s, why, n) != DDSM_OK)
                goto out;
            size_t clen = canon_header(&s, canon);
            if (!append_line(whole, sizeof(whole), &whole_len, canon, clen))
                goto out;
            st = ST_FPR;
            break;
        }
        case ST_FPR: {
            if (parse_fpr(ln, t, nt, &s, why, n) != DDSM_OK)
                goto out;
            size_t clen = canon_fingerprint(&s, canon);
            if (!append_line(whole, sizeof(whole), &whole_len, canon, clen))
                goto out;
            st = ST_DATA1;
            break;
        }
        case ST_CHECK: {
            uint8_t b[4];
            if (nt != 2 || !tok_is(&t[0], "check") || !parse_hex(t[1].p, t[1].n, b, 4)) {
                say(why, n, "line %u: expected \"check <8 hex digits>\"", ln);
                goto out;
            }
            uint32_t want =
                (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
            if (whole_check(whole, whole_len) != want) {
                say(why, n,
                    "line %u: the share's check does not match its content (lines swapped or a "
                    "mistyped character?)",
                    ln);
                goto out;
            }
            st = ST_END;
            break;
        }
        case ST_END:
            say(why, n, "line %u: unexpected text after the check line", ln);
            goto out;
        case ST_DATA1:
        case ST_DATA2:
            goto out; /* handled above */
        }
    }
    if (st != ST_END) {
        if (ln == 0 || st == ST_MAGIC)
            say(why, n, "empty: no %s line", SHARE_MAGIC);
        else
            say(why, n, "truncated after line %u: %s is missing", ln, stage_name(st));
        goto out;
    }
    *out = s;
    err = DDSM_OK;
out:
    share_wipe(&s);
    ddsm_wipe(t, sizeof(t));
    ddsm_wipe(canon, sizeof(canon));
    ddsm_wipe(whole, sizeof(whole));
    return err;
}

ddsm_err share_format_secret(const struct share *s, char *out, size_t cap, size_t *out_len)
{
    char canon[CANON_MAX];
    char whole[WHOLE_MAX];
    char grouped[2 * HALF + HALF / 2 + 1];
    size_t whole_len = 0;
    size_t len = 0;
    ddsm_err err = DDSM_E_ARG;

    whole[0] = '\0';
    if (s == NULL || out == NULL || out_len == NULL || !range_ok(s) ||
        strlen(s->fingerprint) != DDSM_FINGERPRINT_HEX)
        return DDSM_E_ARG;
    for (size_t i = 0; i < DDSM_FINGERPRINT_HEX; i++)
        if (hexval(s->fingerprint[i]) < 0 || (s->fingerprint[i] >= 'A' && s->fingerprint[i] <= 'F'))
            return DDSM_E_ARG;

    if (!out_printf(out, cap, &len,
                    "# ddsm root seed share %u of %u: any %u shares recover the seed. Keep it "
                    "offline.\n%s\n",
                    s->index, s->shares, s->threshold, SHARE_MAGIC))
        goto out;

    size_t clen = canon_header(s, canon);
    if (!append_line(whole, sizeof(whole), &whole_len, canon, clen))
        goto out;
    if (!out_printf(out, cap, &len, "%s  %02x\n", canon, line_check(canon, clen)))
        goto out;

    clen = canon_fingerprint(s, canon);
    if (!append_line(whole, sizeof(whole), &whole_len, canon, clen))
        goto out;
    if (!out_printf(out, cap, &len, "%s  %02x\n", canon, line_check(canon, clen)))
        goto out;

    for (unsigned line = 1; line <= 2; line++) {
        clen = canon_data_secret(s, line, canon);
        if (!append_line(whole, sizeof(whole), &whole_len, canon, clen))
            goto out;
        /* Groups of 4 hex digits, as on paper. */
        size_t g = 0;
        for (size_t i = 0; i < 2 * HALF; i++) {
            if (i > 0 && i % 4 == 0)
                grouped[g++] = ' ';
            grouped[g++] = canon[3 + i];
        }
        grouped[g] = '\0';
        if (!out_printf(out, cap, &len, "%u: %s  %02x\n", line, grouped, line_check(canon, clen)))
            goto out;
    }
    if (!out_printf(out, cap, &len, "check %08x\n", (unsigned)whole_check(whole, whole_len)))
        goto out;
    *out_len = len;
    err = DDSM_OK;
out:
    if (err != DDSM_OK && cap > 0)
        ddsm_wipe(out, cap);
    ddsm_wipe(canon, sizeof(canon));
    ddsm_wipe(whole, sizeof(whole));
    ddsm_wipe(grouped, sizeof(grouped));
    return err;
}

void share_wipe(struct share *s)
{
    if (s != NULL)
        ddsm_wipe(s, sizeof(*s));
}
