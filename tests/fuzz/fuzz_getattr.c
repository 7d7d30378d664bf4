/* SPDX-License-Identifier: Apache-2.0 */
/* Templates against a virtual object (module/src/vattr.c): ddsm_vattr_get, the attribute side of
 * C_GetAttributeValue (PKCS#11 2.40 section 5.7), and ddsm_vattr_match, the filter of
 * C_FindObjectsInit, over a template built from the input. Every buffer is its own allocation of
 * exactly ulValueLen bytes (or NULL), so ASan catches a write or read past what the caller gave.
 *
 * Input: byte 0 = the object's variant bits (vkey.h), byte 1 = bits 0-2 its canonical path (from
 * fuzz_paths[]), bits 3-4 its asset's state, bytes 2-9 = its counter, bytes 10-25 = its asset UUID,
 * then up to MAX_ATTRS records [type selector] [mode] [length] [bytes...]: the selector picks from
 * types[] (0xff: the next 4 bytes are a raw type); the mode (mod 4) gives pValue: 0 = NULL with
 * ulValueLen = length, 1 = a buffer of `length` bytes filled with 0xee, 2 = `length` bytes of the
 * input, 3 = the object's own value of that attribute (so that matches are reached).
 *
 * Checked for ddsm_vattr_get: every entry's outcome is the one section 5.7 gives for the value
 * ddsm_vkey_attr reports (length for NULL, CK_UNAVAILABLE_INFORMATION for a sensitive value, an
 * unknown type or too small a buffer, the exact bytes otherwise) and nothing past the returned
 * length is written; the CK_RV ranks the outcomes (sensitive > type invalid > too small > OK);
 * the key bytes are asked for (ddsm_vattr_needs_value) exactly when a readable CKA_VALUE is copied
 * out, and never appear in any buffer otherwise; without them a readable CKA_VALUE answers as
 * sensitive. For ddsm_vattr_match: the empty template matches; a template matches exactly when
 * each of its attributes does alone, in any order; skip_label equals dropping CKA_LABEL; every
 * value that C_GetAttributeValue reads back matches (CKA_VALUE never does) and the same value with
 * its first byte changed does not. */
#include <stdbool.h>
#include <string.h>

#include "ddsm/config.h"
#include "ddsm/derive.h"
#include "ddsm/pkcs11-compat.h"
#include "ddsm/pkcs11-ddsm.h"
#include "fuzz.h"
#include "fuzz_attr.h"
#include "vattr.h"
#include "vkey.h"

#define MAX_ATTRS 24
#define FILL 0xee

static const CK_ATTRIBUTE_TYPE types[] = {
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_DERIVE,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_LOCAL,
    CKA_TRUSTED,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SENSITIVE,
    CKA_ALWAYS_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_NEVER_EXTRACTABLE,
    CKA_VALUE_LEN,
    CKA_KEY_GEN_MECHANISM,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_LABEL,
    CKA_ID,
    CKA_UNIQUE_ID,
    CKA_ALLOWED_MECHANISMS,
    CKA_DDSM_ASSET_ID,
    CKA_DDSM_PATH,
    CKA_DDSM_COUNTER,
    CKA_DDSM_STATE,
    CKA_VALUE,
    CKA_VALUE,
    CKA_APPLICATION,
    CKA_EC_POINT,
    CKA_WRAP_WITH_TRUSTED,
    CKA_VENDOR_DEFINED,
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

/* The key bytes handed to ddsm_vattr_get when it asks: a pattern no attribute value contains. */
static const uint8_t fake_key[DDSM_KEY_LEN] = {
    0x4b, 0x45, 0x59, 0x21, 0x9c, 0x11, 0xf0, 0x3d, 0x77, 0x02, 0xe5, 0x6a, 0xb1, 0x58, 0xc4, 0x0f,
    0x93, 0x2e, 0x7d, 0x66, 0x1a, 0xd8, 0x35, 0xaa, 0x0c, 0xe9, 0x47, 0x81, 0x5f, 0xbe, 0x23, 0x90,
};

static void *dup_exact(const void *src, size_t n, int fill)
{
    void *p = malloc(n > 0 ? n : 1);
    FUZZ_CHECK(p != NULL, "out of memory");
    if (src != NULL)
        memcpy(p, src, n);
    else
        memset(p, fill, n);
    return p;
}

/* A deep copy: each value its own exact allocation. */
static void copy_template(const CK_ATTRIBUTE *src, size_t n, CK_ATTRIBUTE *dst)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i];
        if (src[i].pValue != NULL)
            dst[i].pValue = dup_exact(src[i].pValue, src[i].ulValueLen, 0);
    }
}

static size_t build(struct fuzz_input *in, const ddsm_hentry *e, CK_ATTRIBUTE out[MAX_ATTRS])
{
    size_t n = 0;
    uint8_t hdr[3];
    CK_ATTRIBUTE_TYPE t;
    while (n < MAX_ATTRS && fuzz_take_attr_header(in, types, N_TYPES, hdr, &t)) {
        CK_ATTRIBUTE *a = &out[n++];
        a->type = t;
        a->ulValueLen = hdr[2];
        a->pValue = NULL;
        switch (hdr[1] % 4) {
        case 0:
            break;
        case 1:
            a->pValue = dup_exact(NULL, hdr[2], FILL);
            break;
        case 2: {
            size_t m;
            const uint8_t *v = fuzz_take_up_to(in, hdr[2], &m);
            a->pValue = dup_exact(v, m, 0);
            a->ulValueLen = m;
            break;
        }
        default: {
            uint8_t buf[DDSM_VKEY_ATTR_MAX];
            CK_ULONG len = 0;
            if (ddsm_vkey_attr(e, t, buf, &len) == CKR_OK) {
                a->pValue = dup_exact(buf, len, 0);
                a->ulValueLen = len;
            }
            break;
        }
        }
    }
    return n;
}

static int rank(CK_RV rv)
{
    return rv == CKR_ATTRIBUTE_SENSITIVE      ? 3
           : rv == CKR_ATTRIBUTE_TYPE_INVALID ? 2
           : rv == CKR_BUFFER_TOO_SMALL       ? 1
                                              : 0;
}

static bool contains(const void *hay, size_t n, const void *needle, size_t m)
{
    if (hay == NULL || n < m)
        return false;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp((const uint8_t *)hay + i, needle, m) == 0)
            return true;
    return false;
}

/* Section 5.7 for one entry, from the value ddsm_vkey_attr reports; returns its outcome. */
static CK_RV check_entry(const ddsm_hentry *e, const CK_ATTRIBUTE *before,
                         const CK_ATTRIBUTE *after, bool key_given)
{
    uint8_t want[DDSM_VKEY_ATTR_MAX];
    CK_ULONG len = 0;
    CK_RV r = ddsm_vkey_attr(e, before->type, want, &len);
    FUZZ_CHECK(after->type == before->type && after->pValue == before->pValue,
               "type or pointer changed");
    if (r == CKR_KEY_NEEDED) {
        len = DDSM_KEY_LEN;
        memcpy(want, fake_key, len);
        if (before->pValue != NULL && before->ulValueLen >= len && !key_given)
            r = CKR_ATTRIBUTE_SENSITIVE; /* fail closed without the bytes */
        else
            r = CKR_OK;
    }
    if (r != CKR_OK) {
        FUZZ_CHECK(r == CKR_ATTRIBUTE_SENSITIVE || r == CKR_ATTRIBUTE_TYPE_INVALID,
                   "ddsm_vkey_attr gave 0x%lx", (unsigned long)r);
        FUZZ_CHECK(after->ulValueLen == CK_UNAVAILABLE_INFORMATION, "refused entry has length %lu",
                   (unsigned long)after->ulValueLen);
        return r;
    }
    if (before->pValue == NULL) {
        FUZZ_CHECK(after->ulValueLen == len, "length query gave %lu, not %lu",
                   (unsigned long)after->ulValueLen, (unsigned long)len);
        return CKR_OK;
    }
    if (before->ulValueLen < len) {
        FUZZ_CHECK(after->ulValueLen == CK_UNAVAILABLE_INFORMATION, "short buffer: length %lu",
                   (unsigned long)after->ulValueLen);
        return CKR_BUFFER_TOO_SMALL;
    }
    FUZZ_CHECK(after->ulValueLen == len, "read %lu bytes, not %lu",
               (unsigned long)after->ulValueLen, (unsigned long)len);
    FUZZ_CHECK(len == 0 || memcmp(after->pValue, want, len) == 0, "wrong value of 0x%lx",
               (unsigned long)before->type);
    return CKR_OK;
}

static void check_get(const ddsm_hentry *e, const CK_ATTRIBUTE *t, size_t n)
{
    CK_ATTRIBUTE got[MAX_ATTRS], orig[MAX_ATTRS];
    bool sensitive = (e->variant & DDSM_VK_SENSITIVE) || !(e->variant & DDSM_VK_EXTRACTABLE);

    for (int with_key = 0; with_key < 2; with_key++) {
        copy_template(t, n, got);
        copy_template(t, n, orig);
        bool needs = ddsm_vattr_needs_value(e, got, (CK_ULONG)n);
        bool give_key = with_key && needs;
        CK_RV rv = ddsm_vattr_get(e, got, (CK_ULONG)n, give_key ? fake_key : NULL);
        CK_RV worst = CKR_OK;
        bool copied_value = false;
        for (size_t i = 0; i < n; i++) {
            /* check_entry compares pointers: compare against the copy's own pointer. */
            CK_ATTRIBUTE b = orig[i];
            b.pValue = got[i].pValue;
            CK_RV r = check_entry(e, &b, &got[i], give_key);
            if (rank(r) > rank(worst))
                worst = r;
            if (t[i].type == CKA_VALUE && r == CKR_OK && t[i].pValue != NULL)
                copied_value = true;
            /* Nothing beyond what was returned (or anything, when refused) is written. */
            if (got[i].pValue != NULL) {
                size_t used =
                    got[i].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : got[i].ulValueLen;
                FUZZ_CHECK(used <= orig[i].ulValueLen, "length grew");
                FUZZ_CHECK(memcmp((uint8_t *)got[i].pValue + used, (uint8_t *)orig[i].pValue + used,
                                  orig[i].ulValueLen - used) == 0,
                           "bytes past the value of 0x%lx written", (unsigned long)t[i].type);
            }
            /* Every other attribute was compared with its value above (the input may put the
             * pattern in the UUID or a path itself); CKA_VALUE must not carry the key bytes
             * unless the key is readable and they were given. */
            if (t[i].type == CKA_VALUE && (sensitive || !give_key))
                FUZZ_CHECK(!contains(got[i].pValue, orig[i].ulValueLen, fake_key, 8) ||
                               contains(orig[i].pValue, orig[i].ulValueLen, fake_key, 8),
                           "key bytes of a %s key copied out",
                           sensitive ? "sensitive" : "not given");
        }
        FUZZ_CHECK(rv == worst, "CK_RV 0x%lx, the entries say 0x%lx", (unsigned long)rv,
                   (unsigned long)worst);
        if (with_key)
            FUZZ_CHECK(needs == copied_value, "needs_value %d but value copied %d", needs,
                       copied_value);
        fuzz_free_values(got, n);
        fuzz_free_values(orig, n);
    }
}

static void check_match(const ddsm_hentry *e, const CK_ATTRIBUTE *t, size_t n)
{
    CK_ATTRIBUTE rev[MAX_ATTRS], nolabel[MAX_ATTRS];
    size_t m = 0;
    bool all = true;

    FUZZ_CHECK(ddsm_vattr_match(e, NULL, 0, false), "the empty template does not match");
    for (size_t i = 0; i < n; i++) {
        all = all && ddsm_vattr_match(e, &t[i], 1, false);
        rev[i] = t[n - 1 - i];
        if (t[i].type != CKA_LABEL)
            nolabel[m++] = t[i];
    }
    bool whole = ddsm_vattr_match(e, t, (CK_ULONG)n, false);
    FUZZ_CHECK(whole == all, "the template is not the conjunction of its attributes");
    FUZZ_CHECK(ddsm_vattr_match(e, rev, (CK_ULONG)n, false) == whole, "order matters");
    FUZZ_CHECK(ddsm_vattr_match(e, t, (CK_ULONG)n, true) ==
                   ddsm_vattr_match(e, nolabel, (CK_ULONG)m, false),
               "skip_label is not dropping CKA_LABEL");

    /* Every value read back matches; changed, it does not; CKA_VALUE never matches. */
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[DDSM_VKEY_ATTR_MAX];
        CK_ATTRIBUTE a = {t[i].type, buf, sizeof(buf)};
        CK_RV rv = ddsm_vattr_get(e, &a, 1, fake_key);
        if (t[i].type == CKA_VALUE) {
            CK_ATTRIBUTE v = {CKA_VALUE, (void *)fake_key, sizeof(fake_key)};
            FUZZ_CHECK(!ddsm_vattr_match(e, &v, 1, false), "CKA_VALUE matched");
            continue;
        }
        if (rv != CKR_OK)
            continue;
        FUZZ_CHECK(ddsm_vattr_match(e, &a, 1, false), "the value read of 0x%lx does not match",
                   (unsigned long)a.type);
        if (a.ulValueLen > 0) {
            buf[0] ^= 0x80;
            FUZZ_CHECK(!ddsm_vattr_match(e, &a, 1, false), "a changed value of 0x%lx matches",
                       (unsigned long)a.type);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    uint8_t hdr[2];
    uint64_t counter = 0;
    ddsm_hentry e;
    CK_ATTRIBUTE t[MAX_ATTRS];
    ddsm_config cfg;
    ddsm_vkeys *v = NULL;

    memset(&e, 0, sizeof(e));
    if (!fuzz_take(&in, hdr, sizeof(hdr)) || !fuzz_take(&in, &counter, sizeof(counter)) ||
        !fuzz_take(&in, e.asset.b, sizeof(e.asset.b)))
        return 0;
    if (ddsm_uuid_is_nil(&e.asset))
        return 0; /* the nil UUID is never an asset (reserved derivations): no object has it */
    counter &= (UINT64_C(1) << 48) - 1;
    e.variant = hdr[0] & VK_ALL;
    snprintf(e.path, sizeof(e.path), "%s", fuzz_paths[hdr[1] & 7]);
    e.counter = counter;

    /* The asset record CKA_DDSM_STATE reads, in the state the input asks for. */
    memset(&cfg, 0, sizeof(cfg));
    FUZZ_CHECK(ddsm_vkeys_new(&cfg, NULL, &v) == CKR_OK, "ddsm_vkeys_new failed");
    e.aux = ddsm_vkeys_asset(v, &e.asset);
    FUZZ_CHECK(e.aux != NULL, "out of memory");
    ddsm_asset a;
    memset(&a, 0, sizeof(a));
    a.id = e.asset;
    a.counter = counter;
    a.state = (ddsm_state)((hdr[1] >> 3) & 3);
    a.grace_until_us = -1;
    ddsm_asset_rec_update(v, e.aux, &a);

    memset(t, 0, sizeof(t));
    size_t n = build(&in, &e, t);
    check_get(&e, t, n);
    check_match(&e, t, n);
    fuzz_free_values(t, n);
    ddsm_vkeys_free(v);
    return 0;
}
