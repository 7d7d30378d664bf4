/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_path_parse / ddsm_path_format / ddsm_path_pattern_parse / ddsm_path_pattern_match over
 * arbitrary bytes (text, len), not NUL-terminated: libFuzzer's buffer is exactly len bytes, so
 * ASan catches any read past it.
 *
 * Checked for every input: the parser agrees with an independent reading of the grammar in
 * docs/design.md (split at '/', check each piece) on acceptance and on every index; a rejection is
 * DDSM_E_PATH with a reason and leaves the output untouched; an accepted path has depth 1..16,
 * formats to canonical text that re-parses to the identical path and formats to itself; a path
 * is also a pattern without wildcards that matches it; a pattern matches exactly the paths of its
 * depth and hardening whose non-'*' indices are equal. */
#include <stdbool.h>
#include <string.h>

#include "ddsm/path.h"
#include "fuzz.h"

struct ref {
    unsigned depth;
    uint32_t index[DDSM_PATH_MAX_DEPTH];
    uint16_t wildcard;
};

static bool ref_is_mark(char c)
{
    return c == '\'' || c == 'h' || c == 'H';
}

/* One component s[0..n): a decimal below 2^31 without leading zeros (or '*' when allowed),
 * optionally followed by one hardening mark. */
static bool ref_component(const char *s, size_t n, bool allow_star, uint32_t *index, bool *star)
{
    bool hardened = false;
    uint64_t v = 0;

    if (n > 0 && ref_is_mark(s[n - 1])) {
        hardened = true;
        n--;
    }
    if (n == 0)
        return false;
    *star = false;
    if (allow_star && n == 1 && s[0] == '*') {
        *star = true;
    } else {
        if (n > 10 || (n > 1 && s[0] == '0'))
            return false;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return false;
            v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (v >= DDSM_HARDENED)
            return false;
    }
    *index = (uint32_t)v | (hardened ? DDSM_HARDENED : 0);
    return true;
}

static bool ref_parse(const char *t, size_t len, bool allow_star, struct ref *out)
{
    struct ref r;
    size_t start = 2;

    memset(&r, 0, sizeof(r));
    if (len < 2 || t[0] != 'm' || t[1] != '/')
        return false;
    for (;;) {
        size_t end = start;
        bool star = false;
        while (end < len && t[end] != '/')
            end++;
        if (r.depth == DDSM_PATH_MAX_DEPTH)
            return false;
        if (!ref_component(t + start, end - start, allow_star, &r.index[r.depth], &star))
            return false;
        if (star)
            r.wildcard |= (uint16_t)(1u << r.depth);
        r.depth++;
        if (end == len)
            break;
        start = end + 1;
    }
    *out = r;
    return true;
}

static bool same_path(const ddsm_path *a, const ddsm_path *b)
{
    if (a->depth != b->depth)
        return false;
    for (unsigned i = 0; i < a->depth; i++) {
        if (a->index[i] != b->index[i])
            return false;
    }
    return true;
}

static void check_canonical(const ddsm_path *p)
{
    char canon[DDSM_PATH_TEXT_MAX];
    char again[DDSM_PATH_TEXT_MAX];
    ddsm_path q;
    const char *why = NULL;

    memset(canon, 0x7f, sizeof(canon));
    ddsm_path_format(p, canon);
    size_t n = strnlen(canon, sizeof(canon));
    FUZZ_CHECK(n < sizeof(canon), "canonical text is not NUL-terminated in its buffer");
    for (size_t i = 0; i < n; i++) {
        char c = canon[i];
        FUZZ_CHECK((c >= '0' && c <= '9') || c == '/' || c == '\'' || (i == 0 && c == 'm'),
                   "canonical text \"%s\" holds '%c'", canon, c);
    }
    ddsm_err e = ddsm_path_parse(canon, n, &q, &why);
    FUZZ_CHECK(e == DDSM_OK, "canonical \"%s\" does not re-parse: %s", canon, why ? why : "?");
    FUZZ_CHECK(same_path(p, &q), "canonical \"%s\" re-parses to another path", canon);
    ddsm_path_format(&q, again);
    FUZZ_CHECK(strcmp(canon, again) == 0, "format is not stable: \"%s\" then \"%s\"", canon, again);
}

/* A pattern matches exactly the paths of its depth and hardening whose fixed indices are its. */
static void check_match(const ddsm_path_pattern *pat, const uint8_t *data, size_t size)
{
    ddsm_path p;

    memset(&p, 0, sizeof(p));
    p.depth = pat->depth;
    for (unsigned i = 0; i < pat->depth; i++) {
        uint32_t h = pat->index[i] & DDSM_HARDENED;
        if (pat->wildcard & (1u << i)) {
            /* Any index: one taken from the input, so the fuzzer steers it. */
            uint32_t v = (uint32_t)(size * 2654435761u) ^ (i < size ? data[i] : 0u);
            p.index[i] = (v & ~DDSM_HARDENED) | h;
        } else {
            p.index[i] = pat->index[i];
        }
    }
    FUZZ_CHECK(ddsm_path_pattern_match(pat, &p), "a pattern does not match its own instance");
    for (unsigned i = 0; i < pat->depth; i++) {
        ddsm_path q = p;
        q.index[i] ^= DDSM_HARDENED;
        FUZZ_CHECK(!ddsm_path_pattern_match(pat, &q), "component %u matches either hardening", i);
        q = p;
        q.index[i] =
            (q.index[i] & DDSM_HARDENED) | (((q.index[i] & ~DDSM_HARDENED) + 1) & ~DDSM_HARDENED);
        bool wild = (pat->wildcard & (1u << i)) != 0;
        FUZZ_CHECK(ddsm_path_pattern_match(pat, &q) == wild,
                   "component %u (%s) with another index: match is %d", i, wild ? "'*'" : "fixed",
                   !wild);
    }
    if (p.depth < DDSM_PATH_MAX_DEPTH) {
        ddsm_path q = p;
        q.index[q.depth++] = 0;
        FUZZ_CHECK(!ddsm_path_pattern_match(pat, &q), "a deeper path matches");
    }
    ddsm_path q = p;
    q.depth--;
    FUZZ_CHECK(!ddsm_path_pattern_match(pat, &q), "a shallower path matches");
}

static void fuzz_as_path(const char *text, size_t size)
{
    ddsm_path p;
    ddsm_path p2;
    struct ref ref;
    const char *why = NULL;

    memset(&p, 0xa5, sizeof(p));
    bool ref_ok = ref_parse(text, size, false, &ref);
    ddsm_err e = ddsm_path_parse(text, size, &p, &why);
    ddsm_err e2 = ddsm_path_parse(text, size, &p2, NULL);
    FUZZ_CHECK(e == e2, "result depends on whether a reason is asked for (%d vs %d)", e, e2);
    if (e != DDSM_OK) {
        FUZZ_CHECK(e == DDSM_E_PATH, "rejected with error %d, not DDSM_E_PATH", e);
        FUZZ_CHECK(why != NULL && why[0] != '\0', "rejected without a reason");
        FUZZ_CHECK(!ref_ok, "a valid path (depth %u) was rejected: %s", ref.depth, why);
        FUZZ_CHECK(fuzz_all_bytes(&p, sizeof(p), 0xa5), "a rejection wrote the output");
        return;
    }
    FUZZ_CHECK(ref_ok, "an invalid path was accepted (depth %u)", p.depth);
    FUZZ_CHECK(p.depth >= 1 && p.depth <= DDSM_PATH_MAX_DEPTH, "depth %u", p.depth);
    FUZZ_CHECK(p.depth == ref.depth, "depth %u, expected %u", p.depth, ref.depth);
    for (unsigned i = 0; i < p.depth; i++)
        FUZZ_CHECK(p.index[i] == ref.index[i], "index %u is %08x, expected %08x", i, p.index[i],
                   ref.index[i]);
    FUZZ_CHECK(same_path(&p, &p2), "two parses of the same text differ");
    check_canonical(&p);

    /* Every path is a pattern without wildcards, and that pattern matches it. */
    ddsm_path_pattern pat;
    e = ddsm_path_pattern_parse(text, size, &pat, &why);
    FUZZ_CHECK(e == DDSM_OK, "a path is not a valid pattern: %s", why ? why : "?");
    FUZZ_CHECK(pat.depth == p.depth && pat.wildcard == 0, "the path's pattern differs");
    for (unsigned i = 0; i < p.depth; i++)
        FUZZ_CHECK(pat.index[i] == p.index[i], "the path's pattern differs at %u", i);
    FUZZ_CHECK(ddsm_path_pattern_match(&pat, &p), "a path does not match its own pattern");
}

static void fuzz_as_pattern(const char *text, size_t size, const uint8_t *data)
{
    ddsm_path_pattern pat;
    struct ref ref;
    const char *why = NULL;

    memset(&pat, 0xa5, sizeof(pat));
    bool ref_ok = ref_parse(text, size, true, &ref);
    ddsm_err e = ddsm_path_pattern_parse(text, size, &pat, &why);
    if (e != DDSM_OK) {
        FUZZ_CHECK(e == DDSM_E_PATH, "pattern rejected with error %d, not DDSM_E_PATH", e);
        FUZZ_CHECK(why != NULL && why[0] != '\0', "pattern rejected without a reason");
        FUZZ_CHECK(!ref_ok, "a valid pattern was rejected: %s", why);
        FUZZ_CHECK(fuzz_all_bytes(&pat, sizeof(pat), 0xa5), "a rejection wrote the output");
        return;
    }
    FUZZ_CHECK(ref_ok, "an invalid pattern was accepted (depth %u)", pat.depth);
    FUZZ_CHECK(pat.depth >= 1 && pat.depth <= DDSM_PATH_MAX_DEPTH, "depth %u", pat.depth);
    FUZZ_CHECK(pat.depth == ref.depth && pat.wildcard == ref.wildcard,
               "depth %u wildcards %04x, expected %u %04x", pat.depth, pat.wildcard, ref.depth,
               ref.wildcard);
    for (unsigned i = 0; i < pat.depth; i++)
        FUZZ_CHECK(pat.index[i] == ref.index[i], "index %u is %08x, expected %08x", i, pat.index[i],
                   ref.index[i]);
    FUZZ_CHECK((pat.wildcard >> pat.depth) == 0, "wildcard bits beyond the depth");
    check_match(&pat, data, size);

    /* A pattern with a '*' is never a path; one without is the same path. */
    ddsm_path p;
    e = ddsm_path_parse(text, size, &p, &why);
    FUZZ_CHECK((e == DDSM_OK) == (pat.wildcard == 0), "path and pattern parses disagree");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    fuzz_as_path(text, size);
    fuzz_as_pattern(text, size, data);
    return 0;
}
