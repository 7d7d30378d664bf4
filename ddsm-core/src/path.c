/* SPDX-License-Identifier: Apache-2.0 */
/* BIP-32 style paths: the one parser of user-supplied path text (and of policy patterns, which
 * are the same grammar with '*'). It reads text[0..len) only: callers pass PKCS#11 byte strings
 * that are not NUL-terminated. */
#include "ddsm/path.h"

#include <stdbool.h>
#include <string.h>

static const char R_EMPTY[] = "path is empty";
static const char R_NO_M[] = "path must start with \"m\"";
static const char R_UPPER_M[] = "path must start with lower-case \"m\", not \"M\"";
static const char R_DEPTH0[] = "path has no components (\"m\" alone): depth must be 1 to 16";
static const char R_AFTER_M[] = "expected '/' after \"m\"";
static const char R_TRAILING[] = "path ends with '/': a component is missing";
static const char R_DOUBLE_SLASH[] = "empty component (\"//\")";
static const char R_TOO_DEEP[] = "path is too deep: at most 16 components";
static const char R_LEADING_ZERO[] = "component has a leading zero";
static const char R_RANGE[] = "component index must be below 2^31 (2147483648); "
                              "use a hardening mark for the upper half";
static const char R_SIGN[] = "sign characters ('+', '-') are not allowed in a path";
static const char R_SPACE[] = "whitespace is not allowed in a path";
static const char R_NUL[] = "path contains a NUL byte";
static const char R_NOT_NUMBER[] = "component must be a decimal number";
static const char R_NOT_NUMBER_OR_STAR[] = "component must be a decimal number or '*'";
static const char R_DOUBLE_MARK[] = "component has more than one hardening mark";
static const char R_AFTER_MARK[] = "unexpected character after the hardening mark";
static const char R_AFTER_STAR[] = "'*' must be the whole number of its component";
static const char R_BAD_CHAR[] = "unexpected character in component (expected a digit, a "
                                 "hardening mark ', h or H, or '/')";

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_mark(char c)
{
    return c == '\'' || c == 'h' || c == 'H';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The reason for an unexpected character c: the specific classes first, else fallback. */
static const char *classify(char c, const char *fallback)
{
    if (c == '\0')
        return R_NUL;
    if (is_space(c))
        return R_SPACE;
    if (c == '+' || c == '-')
        return R_SIGN;
    return fallback;
}

static ddsm_err fail(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return DDSM_E_PATH;
}

/* The grammar, once: "m" ("/" (number | "*"?) mark?){1,16}. Fills pat only on success. */
static ddsm_err parse_shape(const char *t, size_t len, bool allow_star, ddsm_path_pattern *pat,
                            const char **why)
{
    ddsm_path_pattern r;
    size_t pos;

    memset(&r, 0, sizeof(r));
    if (t == NULL && len > 0)
        return DDSM_E_ARG;
    if (len == 0)
        return fail(why, R_EMPTY);
    if (t[0] != 'm')
        return fail(why, t[0] == 'M' ? R_UPPER_M : classify(t[0], R_NO_M));
    if (len == 1)
        return fail(why, R_DEPTH0);
    if (t[1] != '/')
        return fail(why, classify(t[1], R_AFTER_M));

    pos = 1;
    while (pos < len) { /* here t[pos] == '/' */
        pos++;
        if (pos == len)
            return fail(why, R_TRAILING);
        if (t[pos] == '/')
            return fail(why, R_DOUBLE_SLASH);
        if (r.depth == DDSM_PATH_MAX_DEPTH)
            return fail(why, R_TOO_DEEP);

        uint64_t value = 0;
        bool star = false;
        if (allow_star && t[pos] == '*') {
            star = true;
            pos++;
            if (pos < len && is_digit(t[pos]))
                return fail(why, R_AFTER_STAR);
        } else if (is_digit(t[pos])) {
            if (t[pos] == '0' && pos + 1 < len && is_digit(t[pos + 1]))
                return fail(why, R_LEADING_ZERO);
            while (pos < len && is_digit(t[pos])) {
                value = value * 10u + (uint64_t)(t[pos] - '0'); /* < 2^35: no overflow */
                if (value >= DDSM_HARDENED)
                    return fail(why, R_RANGE);
                pos++;
            }
        } else {
            return fail(why, classify(t[pos], allow_star ? R_NOT_NUMBER_OR_STAR : R_NOT_NUMBER));
        }

        bool hardened = false;
        if (pos < len && is_mark(t[pos])) {
            hardened = true;
            pos++;
            if (pos < len && is_mark(t[pos]))
                return fail(why, R_DOUBLE_MARK);
        }
        if (pos < len && t[pos] != '/') {
            if (allow_star && t[pos] == '*')
                return fail(why, R_AFTER_STAR);
            return fail(why, classify(t[pos], hardened ? R_AFTER_MARK : R_BAD_CHAR));
        }
        if (star)
            r.wildcard |= (uint16_t)(1u << r.depth);
        r.index[r.depth++] = (uint32_t)value | (hardened ? DDSM_HARDENED : 0u);
    }
    *pat = r;
    return DDSM_OK;
}

ddsm_err ddsm_path_parse(const char *text, size_t len, ddsm_path *out, const char **why)
{
    ddsm_path_pattern pat;

    if (out == NULL)
        return DDSM_E_ARG;
    ddsm_err e = parse_shape(text, len, false, &pat, why);
    if (e != DDSM_OK)
        return e;
    ddsm_path p;
    memset(&p, 0, sizeof(p));
    p.depth = pat.depth;
    memcpy(p.index, pat.index, sizeof(p.index));
    *out = p;
    return DDSM_OK;
}

ddsm_err ddsm_path_pattern_parse(const char *text, size_t len, ddsm_path_pattern *out,
                                 const char **why)
{
    if (out == NULL)
        return DDSM_E_ARG;
    return parse_shape(text, len, true, out, why);
}

bool ddsm_path_pattern_match(const ddsm_path_pattern *pat, const ddsm_path *p)
{
    if (pat == NULL || p == NULL || pat->depth != p->depth)
        return false;
    for (unsigned i = 0; i < p->depth && i < DDSM_PATH_MAX_DEPTH; i++) {
        if ((pat->index[i] & DDSM_HARDENED) != (p->index[i] & DDSM_HARDENED))
            return false;
        if (!(pat->wildcard & (1u << i)) && pat->index[i] != p->index[i])
            return false;
    }
    return true;
}

void ddsm_path_format(const ddsm_path *p, char out[DDSM_PATH_TEXT_MAX])
{
    size_t o = 0;
    unsigned depth = p->depth <= DDSM_PATH_MAX_DEPTH ? p->depth : DDSM_PATH_MAX_DEPTH;

    out[o++] = 'm';
    for (unsigned i = 0; i < depth; i++) {
        char digits[10];
        size_t n = 0;
        uint32_t v = p->index[i] & ~DDSM_HARDENED;
        do {
            digits[n++] = (char)('0' + v % 10u);
            v /= 10u;
        } while (v != 0);
        out[o++] = '/';
        while (n > 0)
            out[o++] = digits[--n];
        if (p->index[i] & DDSM_HARDENED)
            out[o++] = '\'';
    }
    out[o] = '\0';
}
