/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_derive_param_parse (module/src/derive_param.c): the parameter of C_DeriveKey with
 * CKM_DDSM_DERIVE, straight from the application. The input is the parameter itself, copied into
 * an allocation of exactly its length (ASan catches any read past ulParameterLen); it is also
 * parsed with pParameter NULL and with the lengths just below and above.
 *
 * Checked: the CK_RV is CKR_OK or CKR_MECHANISM_PARAM_INVALID (the only ones derive_param.h
 * names); a refusal gives a reason and leaves every output untouched; the result is deterministic;
 * an acceptance means 17..DDSM_DERIVE_PARAM_MAX bytes, a non-nil asset equal to the first 16
 * bytes, a path of depth 1..16 written only with "m/0123456789'hH", and a canonical text that is
 * ddsm_path_format of the path and, as a parameter of its own, parses to the same asset and path
 * (canonicalisation is idempotent). NULL with any length is refused. */
#include <stdbool.h>
#include <string.h>

#include "ddsm/pkcs11-ddsm.h"
#include "derive_param.h"
#include "fuzz.h"

#define SENTINEL 0xa5

struct out {
    ddsm_uuid asset;
    ddsm_path path;
    char canon[DDSM_PATH_TEXT_MAX];
    const char *why;
};

static CK_RV parse(const uint8_t *data, size_t size, struct out *o)
{
    memset(o, SENTINEL, sizeof(*o));
    o->why = NULL;
    return ddsm_derive_param_parse(data, (CK_ULONG)size, &o->asset, &o->path, o->canon, &o->why);
}

static void check_untouched(const struct out *o)
{
    FUZZ_CHECK(fuzz_all_bytes(&o->asset, sizeof(o->asset), SENTINEL), "asset written on refusal");
    FUZZ_CHECK(fuzz_all_bytes(&o->path, sizeof(o->path), SENTINEL), "path written on refusal");
    FUZZ_CHECK(fuzz_all_bytes(o->canon, sizeof(o->canon), SENTINEL), "canon written on refusal");
    FUZZ_CHECK(o->why != NULL && o->why[0] != '\0', "a refusal without a reason");
}

static bool path_chars_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strchr("m/0123456789'hH", p[i]) == NULL || p[i] == '\0')
            return false;
    }
    return true;
}

/* Parse a copy of data[0..n) in an allocation of exactly n bytes. */
static CK_RV parse_exact(const uint8_t *data, size_t n, struct out *o)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    FUZZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, data, n);
    CK_RV rv = parse(copy, n, o);
    free(copy);
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct out a, b;
    uint8_t zero[16] = {0};

    CK_RV rv = parse_exact(data, size, &a);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_MECHANISM_PARAM_INVALID, "CK_RV 0x%lx", (unsigned long)rv);
    CK_RV rv2 = parse_exact(data, size, &b);
    FUZZ_CHECK(rv == rv2, "not deterministic: 0x%lx then 0x%lx", (unsigned long)rv,
               (unsigned long)rv2);

    /* NULL is refused whatever the length. */
    struct out n;
    FUZZ_CHECK(parse(NULL, size, &n) == CKR_MECHANISM_PARAM_INVALID, "NULL accepted");
    check_untouched(&n);

    if (rv != CKR_OK) {
        check_untouched(&a);
        return 0;
    }
    FUZZ_CHECK(memcmp(&a, &b, offsetof(struct out, why)) == 0, "not deterministic output");
    FUZZ_CHECK(size > 16 && size <= DDSM_DERIVE_PARAM_MAX, "accepted %zu bytes", size);
    FUZZ_CHECK(memcmp(a.asset.b, data, 16) == 0, "the asset is not the first 16 bytes");
    FUZZ_CHECK(memcmp(a.asset.b, zero, 16) != 0, "the nil UUID accepted");
    FUZZ_CHECK(a.path.depth >= 1 && a.path.depth <= DDSM_PATH_MAX_DEPTH, "depth %u",
               (unsigned)a.path.depth);
    FUZZ_CHECK(path_chars_ok(data + 16, size - 16), "a path with foreign bytes accepted");
    char canon[DDSM_PATH_TEXT_MAX];
    ddsm_path_format(&a.path, canon);
    FUZZ_CHECK(strcmp(canon, a.canon) == 0, "canon \"%s\" is not the format \"%s\"", a.canon,
               canon);

    /* The canonical form as a parameter of its own gives the same key identity. */
    uint8_t again[DDSM_DERIVE_PARAM_MAX];
    size_t len = ddsm_derive_param(again, sizeof(again), a.asset.b, a.canon);
    FUZZ_CHECK(len == 16 + strlen(a.canon), "canonical parameter does not fit");
    struct out c;
    FUZZ_CHECK(parse_exact(again, len, &c) == CKR_OK, "the canonical form \"%s\" is refused",
               a.canon);
    FUZZ_CHECK(memcmp(&c.asset, &a.asset, sizeof(a.asset)) == 0 && c.path.depth == a.path.depth &&
                   memcmp(c.path.index, a.path.index, a.path.depth * sizeof(uint32_t)) == 0 &&
                   strcmp(c.canon, a.canon) == 0,
               "canonicalisation is not idempotent for \"%s\"", a.canon);

    /* One byte fewer: the path loses its last byte (may still be valid), never over-read. */
    struct out d;
    CK_RV rvd = parse_exact(data, size - 1, &d);
    FUZZ_CHECK(rvd == CKR_OK || rvd == CKR_MECHANISM_PARAM_INVALID, "CK_RV 0x%lx",
               (unsigned long)rvd);
    return 0;
}
