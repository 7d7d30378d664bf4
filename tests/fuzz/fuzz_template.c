/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_vkey_template_parse (module/src/vkey_attr.c): C_DeriveKey's template for CKM_DDSM_DERIVE,
 * built from the input. Every attribute value is its own allocation of exactly ulValueLen bytes (or
 * NULL), so ASan catches a read past what the caller gave.
 *
 * Input: byte 0 = flags (bit 0: the policy allows extractable keys; bits 1-3: which canonical path
 * the key has, from fuzz_paths[]), bytes 1-16 = the asset UUID, then up to MAX_ATTRS records
 *     [type selector] [value mode] [length] [value bytes...]
 * The selector picks from types[] (0xff: the next 4 bytes are a raw attribute type); the mode
 * (mod 4) gives the value: 0 = `length` raw bytes, 1 = the key's own value for that attribute (its
 * label, id, asset, path, class, ... so the fuzzer reaches acceptance), 2 = a CK_ULONG from the
 * next 8 bytes, 3 = pValue NULL with ulValueLen = length.
 *
 * Checked: the CK_RV is one that vkey.h names; the result is deterministic and does not depend on
 * the order of the template; *variant is untouched on failure; an accepted variant is coherent
 * (AES keys neither sign nor verify, HMAC keys neither encrypt nor decrypt, extractable only when
 * the policy allows, never readable-but-unextractable, no unknown bits); and the template that
 * spells the accepted variant out in full is accepted as the same variant, alone and appended to
 * the input's template. */
#include <stdbool.h>
#include <string.h>

#include "ddsm/pkcs11-compat.h"
#include "ddsm/pkcs11-ddsm.h"
#include "fuzz.h"
#include "fuzz_attr.h"
#include "vkey.h"

#define MAX_ATTRS 32
#define SENTINEL 0xdeadbeefu

static const CK_ATTRIBUTE_TYPE types[] = {
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_VALUE_LEN,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_EXTRACTABLE,
    CKA_SENSITIVE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_DERIVE,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_TRUSTED,
    CKA_WRAP_WITH_TRUSTED,
    CKA_LABEL,
    CKA_ID,
    CKA_DDSM_ASSET_ID,
    CKA_DDSM_PATH,
    CKA_VALUE,
    CKA_UNIQUE_ID,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_DDSM_COUNTER,
    CKA_DDSM_STATE,
    CKA_APPLICATION,
    CKA_START_DATE,
    CKA_SIGN_RECOVER,
    CKA_EC_PARAMS,
    CKA_VENDOR_DEFINED,
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

static bool is_bool_type(CK_ATTRIBUTE_TYPE t)
{
    switch (t) {
    case CKA_SIGN:
    case CKA_VERIFY:
    case CKA_ENCRYPT:
    case CKA_DECRYPT:
    case CKA_EXTRACTABLE:
    case CKA_SENSITIVE:
    case CKA_TOKEN:
    case CKA_PRIVATE:
    case CKA_MODIFIABLE:
    case CKA_COPYABLE:
    case CKA_DESTROYABLE:
    case CKA_DERIVE:
    case CKA_WRAP:
    case CKA_UNWRAP:
    case CKA_TRUSTED:
    case CKA_WRAP_WITH_TRUSTED:
        return true;
    default:
        return false;
    }
}

/* An attribute whose value is a copy of n bytes at v (NULL when v is NULL). */
static bool set_attr(CK_ATTRIBUTE *a, CK_ATTRIBUTE_TYPE t, const void *v, size_t n)
{
    a->type = t;
    a->ulValueLen = n;
    a->pValue = NULL;
    if (v == NULL)
        return true;
    a->pValue = malloc(n > 0 ? n : 1);
    if (a->pValue == NULL)
        return false;
    memcpy(a->pValue, v, n);
    return true;
}

/* The key's own value of attribute t (mode 1); pick chooses among the legal ones. */
static bool own_value(CK_ATTRIBUTE *a, CK_ATTRIBUTE_TYPE t, uint8_t pick, const ddsm_uuid *asset,
                      const char *canon)
{
    CK_ULONG ul = 0;
    CK_BBOOL b = (pick & 1) ? CK_TRUE : CK_FALSE;

    if (is_bool_type(t))
        return set_attr(a, t, &b, sizeof(b));
    switch (t) {
    case CKA_LABEL: {
        char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
        ddsm_vkey_label(asset, canon, label);
        return set_attr(a, t, label, strlen(label));
    }
    case CKA_ID: {
        uint8_t id[DDSM_KEY_ID_MAX];
        size_t n = ddsm_vkey_id(asset, canon, id);
        return set_attr(a, t, id, n);
    }
    case CKA_DDSM_ASSET_ID:
        return set_attr(a, t, asset->b, sizeof(asset->b));
    case CKA_DDSM_PATH:
        return set_attr(a, t, canon, strlen(canon));
    case CKA_CLASS:
        ul = CKO_SECRET_KEY;
        break;
    case CKA_KEY_TYPE:
        ul = (pick & 1) ? CKK_AES : CKK_GENERIC_SECRET;
        break;
    case CKA_VALUE_LEN:
        ul = DDSM_KEY_LEN;
        break;
    default:
        ul = pick;
        break;
    }
    return set_attr(a, t, &ul, sizeof(ul));
}

/* The template of the fuzz input; returns the count, or -1 when out of memory. */
static int build(struct fuzz_input *in, const ddsm_uuid *asset, const char *canon,
                 CK_ATTRIBUTE out[MAX_ATTRS])
{
    int n = 0;
    uint8_t hdr[3];
    CK_ATTRIBUTE_TYPE t;

    while (n < MAX_ATTRS && fuzz_take_attr_header(in, types, N_TYPES, hdr, &t)) {
        uint8_t len = hdr[2];
        bool ok = true;
        switch (hdr[1] % 4) {
        case 0: {
            size_t m;
            const uint8_t *v = fuzz_take_up_to(in, len, &m);
            ok = set_attr(&out[n], t, v, m);
            break;
        }
        case 1:
            ok = own_value(&out[n], t, len, asset, canon);
            break;
        case 2: {
            uint64_t v = 0;
            (void)fuzz_take(in, &v, sizeof(v));
            CK_ULONG ul = (CK_ULONG)v;
            ok = set_attr(&out[n], t, &ul, sizeof(ul));
            break;
        }
        default:
            ok = set_attr(&out[n], t, NULL, len);
            break;
        }
        if (!ok)
            return -1;
        n++;
    }
    return n;
}

static bool allowed_rv(CK_RV rv)
{
    return rv == CKR_OK || rv == CKR_ARGUMENTS_BAD || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
           rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
           rv == CKR_TEMPLATE_INCONSISTENT;
}

static void check_variant(uint32_t v, bool policy_extractable)
{
    bool aes = v & DDSM_VK_AES;
    FUZZ_CHECK((v & ~(uint32_t)VK_ALL) == 0, "unknown variant bits %08x", v);
    FUZZ_CHECK(!aes || !(v & (DDSM_VK_SIGN | DDSM_VK_VERIFY)), "an AES key signs: %02x", v);
    FUZZ_CHECK(aes || !(v & (DDSM_VK_ENCRYPT | DDSM_VK_DECRYPT)), "an HMAC key encrypts: %02x", v);
    FUZZ_CHECK(policy_extractable || !(v & DDSM_VK_EXTRACTABLE),
               "extractable against the policy: %02x", v);
    FUZZ_CHECK((v & DDSM_VK_SENSITIVE) || (v & DDSM_VK_EXTRACTABLE),
               "readable but not extractable: %02x", v);
}

/* The template spelling variant v out in full, appended at out[0..]; returns the count. */
static int spell(uint32_t v, const ddsm_uuid *asset, const char *canon, CK_ATTRIBUTE *out)
{
    static const struct {
        CK_ATTRIBUTE_TYPE t;
        uint32_t bit;
    } flags[] = {{CKA_SIGN, DDSM_VK_SIGN},
                 {CKA_VERIFY, DDSM_VK_VERIFY},
                 {CKA_ENCRYPT, DDSM_VK_ENCRYPT},
                 {CKA_DECRYPT, DDSM_VK_DECRYPT},
                 {CKA_EXTRACTABLE, DDSM_VK_EXTRACTABLE},
                 {CKA_SENSITIVE, DDSM_VK_SENSITIVE}};
    CK_ULONG cls = CKO_SECRET_KEY;
    CK_ULONG kt = (v & DDSM_VK_AES) ? CKK_AES : CKK_GENERIC_SECRET;
    CK_ULONG len = DDSM_KEY_LEN;
    CK_BBOOL token = (v & DDSM_VK_SESSION) ? CK_FALSE : CK_TRUE; /* a session object */
    int n = 0;
    bool ok = set_attr(&out[n++], CKA_CLASS, &cls, sizeof(cls)) &&
              set_attr(&out[n++], CKA_KEY_TYPE, &kt, sizeof(kt)) &&
              set_attr(&out[n++], CKA_VALUE_LEN, &len, sizeof(len)) &&
              set_attr(&out[n++], CKA_TOKEN, &token, sizeof(token)) &&
              own_value(&out[n++], CKA_LABEL, 0, asset, canon) &&
              own_value(&out[n++], CKA_ID, 0, asset, canon) &&
              own_value(&out[n++], CKA_DDSM_ASSET_ID, 0, asset, canon) &&
              own_value(&out[n++], CKA_DDSM_PATH, 0, asset, canon);
    for (size_t i = 0; ok && i < sizeof(flags) / sizeof(flags[0]); i++) {
        CK_BBOOL b = (v & flags[i].bit) ? CK_TRUE : CK_FALSE;
        ok = set_attr(&out[n++], flags[i].t, &b, sizeof(b));
    }
    FUZZ_CHECK(ok, "out of memory");
    return n;
}
#define SPELL_MAX 14

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CK_ATTRIBUTE tmpl[MAX_ATTRS + SPELL_MAX];
    CK_ATTRIBUTE rev[MAX_ATTRS];
    ddsm_uuid asset;
    struct fuzz_input in = {data, size};
    uint8_t flags = 0;

    if (!fuzz_take(&in, &flags, 1) || !fuzz_take(&in, asset.b, sizeof(asset.b)))
        return 0;
    if (ddsm_uuid_is_nil(&asset))
        return 0; /* the nil UUID is never an asset (reserved derivations): no object has it */
    bool policy_extractable = flags & 1;
    const char *canon = fuzz_paths[(flags >> 1) & 7];

    memset(tmpl, 0, sizeof(tmpl));
    int n = build(&in, &asset, canon, tmpl);
    FUZZ_CHECK(n >= 0, "out of memory");

    uint32_t v1 = SENTINEL;
    uint32_t v2 = SENTINEL;
    uint32_t vr = SENTINEL;
    CK_RV rv = ddsm_vkey_template_parse(tmpl, (CK_ULONG)n, &asset, canon, policy_extractable, &v1);
    FUZZ_CHECK(allowed_rv(rv), "CK_RV 0x%lx is not one vkey.h names", (unsigned long)rv);
    CK_RV rv2 = ddsm_vkey_template_parse(tmpl, (CK_ULONG)n, &asset, canon, policy_extractable, &v2);
    FUZZ_CHECK(rv == rv2 && v1 == v2, "not deterministic: 0x%lx/%x then 0x%lx/%x",
               (unsigned long)rv, v1, (unsigned long)rv2, v2);
    for (int i = 0; i < n; i++)
        rev[i] = tmpl[n - 1 - i];
    CK_RV rvr = ddsm_vkey_template_parse(rev, (CK_ULONG)n, &asset, canon, policy_extractable, &vr);
    FUZZ_CHECK((rv == CKR_OK) == (rvr == CKR_OK) && v1 == vr,
               "order matters: 0x%lx/%x, reversed 0x%lx/%x", (unsigned long)rv, v1,
               (unsigned long)rvr, vr);

    if (rv != CKR_OK) {
        FUZZ_CHECK(v1 == SENTINEL, "a rejection wrote the variant");
    } else {
        check_variant(v1, policy_extractable);
        /* The full spelling of the variant: alone, then after the input's template. */
        CK_ATTRIBUTE full[SPELL_MAX];
        uint32_t vf = SENTINEL;
        memset(full, 0, sizeof(full));
        int nf = spell(v1, &asset, canon, full);
        rv = ddsm_vkey_template_parse(full, (CK_ULONG)nf, &asset, canon, policy_extractable, &vf);
        FUZZ_CHECK(rv == CKR_OK && vf == v1, "the spelt-out variant %x gives 0x%lx/%x", v1,
                   (unsigned long)rv, vf);
        memcpy(tmpl + n, full, (size_t)nf * sizeof(full[0]));
        vf = SENTINEL;
        rv = ddsm_vkey_template_parse(tmpl, (CK_ULONG)(n + nf), &asset, canon, policy_extractable,
                                      &vf);
        FUZZ_CHECK(rv == CKR_OK && vf == v1, "template + its spelling gives 0x%lx/%x, not %x",
                   (unsigned long)rv, vf, v1);
        fuzz_free_values(full, (size_t)nf); /* tmpl[n..] alias full's values */
    }
    fuzz_free_values(tmpl, (size_t)n);
    return 0;
}
