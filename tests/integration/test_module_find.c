/* SPDX-License-Identifier: Apache-2.0 */
/* Finding virtual objects (merged after the backend's), their attributes per PKCS#11 2.40
 * section 5.7, and object management refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"

#define LABEL_A VEC_A_ID "/" VEC_A_PATH

static CK_SESSION_HANDLE s;
static long audit_before;

static int setup(void **state)
{
    if (p11_start_user_session(&s) != 0)
        return -1;
    audit_before = p11_audit_count();
    return 0;
}

static int teardown(void **state)
{
    return p11_end_session(s);
}

static size_t find_n(CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, size_t max)
{
    return p11_find(s, t, n, out, max);
}

static size_t count_virtual(const CK_OBJECT_HANDLE *h, size_t n)
{
    size_t v = 0;
    for (size_t i = 0; i < n; i++)
        v += (h[i] & 0x80000000UL) != 0;
    return v;
}

static void test_find__label_by_uuid_finds_the_current_counter(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, LABEL_A);
    assert_true(h & 0x80000000UL);
    assert_int_equal(p11_attr_ulong(s, h, CKA_DDSM_COUNTER), 0);
    /* Any hardening spelling reaches the same object. */
    assert_int_equal(p11_find_label(s, VEC_A_ID "/" VEC_A_PATH_ALT), h);
    /* So does the asset's label, and the id in upper case. */
    assert_int_equal(p11_find_label(s, "vec-a/" VEC_A_PATH), h);
    assert_int_equal(p11_find_label(s, "6F9619FF-8B86-D011-B42D-00C04FC964FF/" VEC_A_PATH), h);
    /* Finding writes nothing. */
    assert_int_equal(p11_audit_count(), audit_before);
}

static void test_find__vendor_attributes_find_the_key(void **state)
{
    uint8_t id[16];
    p11_unhex("6f9619ff8b86d011b42d00c04fc964ff", id, 16);
    CK_ATTRIBUTE t[] = {{CKA_DDSM_ASSET_ID, id, 16}, {CKA_DDSM_PATH, "m/44h/0h/0h/0/0", 15}};
    CK_OBJECT_HANDLE h[4];
    assert_int_equal(find_n(t, 2, h, 4), 1);
    assert_int_equal(h[0], p11_find_label(s, LABEL_A));
    /* The asset alone: its default path. */
    assert_int_equal(find_n(t, 1, h, 4), 1);
    assert_int_equal(h[0], p11_find_label(s, LABEL_A));
    CK_ULONG zero = 0, one = 1;
    CK_ATTRIBUTE c0[] = {{CKA_DDSM_ASSET_ID, id, 16}, {CKA_DDSM_COUNTER, &zero, sizeof(zero)}};
    CK_ATTRIBUTE c1[] = {{CKA_DDSM_ASSET_ID, id, 16}, {CKA_DDSM_COUNTER, &one, sizeof(one)}};
    assert_int_equal(find_n(c0, 2, h, 4), 1);
    assert_int_equal(find_n(c1, 2, h, 4), 0);
}

static void test_find__empty_template_lists_backend_objects_then_one_per_live_asset(void **state)
{
    CK_OBJECT_HANDLE h[64];
    size_t n = find_n(NULL, 0, h, 64);
    size_t first_virtual = n;
    for (size_t i = 0; i < n; i++) {
        if (h[i] & 0x80000000UL) {
            if (first_virtual == n)
                first_virtual = i;
        } else {
            assert_true(first_virtual == n); /* no backend object after a virtual one */
        }
    }
    assert_true(first_virtual >= 1); /* the root, at least */
    /* vec-a, vec-b and aes-a are ACTIVE; fresh is INITIALIZED and gone RETIRED. */
    assert_int_equal(count_virtual(h, n), 3);
    bool a = false, b = false, aes = false;
    for (size_t i = first_virtual; i < n; i++) {
        char label[128];
        CK_ATTRIBUTE l = {CKA_LABEL, label, sizeof(label) - 1};
        assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h[i], &l, 1));
        label[l.ulValueLen] = '\0';
        a = a || strcmp(label, LABEL_A) == 0;
        b = b || strcmp(label, VEC_B_ID "/m/0") == 0;
        aes = aes || strcmp(label, AES_ID "/m/1") == 0;
    }
    assert_true(a && b && aes);
    assert_int_equal(p11_audit_count(), audit_before);
}

static void test_find__class_and_type_filter_virtual_objects(void **state)
{
    CK_OBJECT_HANDLE h[64];
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY, pub = CKO_PUBLIC_KEY, cert = CKO_CERTIFICATE;
    CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t_sec[] = {{CKA_CLASS, &sec, sizeof(sec)}};
    CK_ATTRIBUTE t_pub[] = {{CKA_CLASS, &pub, sizeof(pub)}};
    CK_ATTRIBUTE t_cert[] = {{CKA_CLASS, &cert, sizeof(cert)}};
    CK_ATTRIBUTE t_aes[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};
    CK_ATTRIBUTE t_gen_sign[] = {{CKA_KEY_TYPE, &gen, sizeof(gen)}, {CKA_SIGN, &yes, 1}};
    CK_ATTRIBUTE t_value[] = {{CKA_VALUE, "x", 1}};
    CK_ATTRIBUTE t_label_a_aes[] = {{CKA_LABEL, LABEL_A, strlen(LABEL_A)},
                                    {CKA_KEY_TYPE, &aes, sizeof(aes)}};
    assert_int_equal(count_virtual(h, find_n(t_sec, 1, h, 64)), 3);
    assert_int_equal(count_virtual(h, find_n(t_pub, 1, h, 64)), 0);
    assert_int_equal(count_virtual(h, find_n(t_cert, 1, h, 64)), 0);
    size_t n = find_n(t_aes, 1, h, 64);
    assert_int_equal(count_virtual(h, n), 1);
    assert_int_equal(p11_attr_ulong(s, h[n - 1], CKA_KEY_TYPE), CKK_AES);
    assert_int_equal(count_virtual(h, find_n(t_gen_sign, 2, h, 64)), 2);
    assert_int_equal(count_virtual(h, find_n(t_value, 1, h, 64)), 0);
    assert_int_equal(find_n(t_label_a_aes, 2, h, 64), 0);
}

static void test_find__labels_that_name_nothing_find_nothing(void **state)
{
    static const char *const labels[] = {
        "no-such-asset/m/0", UNKNOWN_ID "/m/0", "vec-a",    "vec-a/", "vec-a/m/01",
        "vec-a/m/x",         "fresh/m/3",       "gone/m/4", "/m/0",   "vec-a/m/0/",
    };
    CK_OBJECT_HANDLE h[4];
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)labels[i], strlen(labels[i])}};
        size_t n = find_n(t, 1, h, 4);
        if (n != 0)
            fail_msg("label \"%s\" found %zu objects", labels[i], n);
    }
    assert_int_equal(p11_audit_count(), audit_before);
}

static void test_find__not_logged_in_finds_no_virtual_object(void **state)
{
    CK_SESSION_HANDLE pub = p11_open();
    assert_rv(CKR_OK, p11->C_Logout(s));
    CK_OBJECT_HANDLE h[64];
    size_t n = p11_find(pub, NULL, 0, h, 64);
    assert_int_equal(count_virtual(h, n), 0);
    CK_ATTRIBUTE t[] = {{CKA_LABEL, LABEL_A, strlen(LABEL_A)}};
    assert_int_equal(p11_find(pub, t, 1, h, 4), 0);
    assert_rv(CKR_OK, p11->C_CloseSession(pub));
}

static void test_find__follows_the_operation_protocol(void **state)
{
    CK_OBJECT_HANDLE h[8];
    CK_ULONG got = 0;
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_FindObjects(s, h, 8, &got));
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_FindObjectsFinal(s));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_FindObjectsInit(s, NULL, 1));
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_FindObjectsInit(s + 100, NULL, 0));
    assert_rv(CKR_OK, p11->C_FindObjectsInit(s, NULL, 0));
    assert_rv(CKR_OPERATION_ACTIVE, p11->C_FindObjectsInit(s, NULL, 0));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_FindObjects(s, NULL, 8, &got));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_FindObjects(s, h, 8, NULL));
    /* One at a time still yields every object exactly once. */
    CK_OBJECT_HANDLE all[64];
    size_t n = 0;
    do {
        assert_rv(CKR_OK, p11->C_FindObjects(s, h, 1, &got));
        if (got == 1)
            all[n++] = h[0];
    } while (got == 1 && n < 64);
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(s));
    assert_int_equal(count_virtual(all, n), 3);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(all[i], all[j]);
    /* A zero-sized request returns nothing and keeps the find going. */
    assert_rv(CKR_OK, p11->C_FindObjectsInit(s, NULL, 0));
    assert_rv(CKR_OK, p11->C_FindObjects(s, h, 0, &got));
    assert_int_equal(got, 0);
    assert_rv(CKR_OK, p11->C_FindObjects(s, h, 8, &got));
    assert_true(got > 0);
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(s));
}

static void test_find__first_use_derives_and_audits_once(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-b/m/0");
    uint8_t sig[32];
    assert_int_equal(p11_audit_count(), audit_before);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"1", 1, sig));
    assert_int_equal(p11_audit_count(), audit_before + 1);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"2", 1, sig));
    assert_int_equal(p11_audit_count(), audit_before + 1);
}

/* CKA_ID as docs/design.md defines it, built here by hand: the UUID bytes, then the path text. */
static size_t expected_id(const char *uuid_hex, const char *path, uint8_t out[256])
{
    p11_unhex(uuid_hex, out, 16);
    memcpy(out + 16, path, strlen(path));
    return 16 + strlen(path);
}

#define VEC_A_HEX "6f9619ff8b86d011b42d00c04fc964ff"

/* pkcs11-tool --id and a URI's id= select by CKA_ID alone: any path of any live asset is
 * reachable that way, in any hardening spelling, and reports its canonical id; the key behind it
 * is the one the KDF gives for that path. */
static void test_find__id_alone_finds_any_path_and_reports_the_canonical_id(void **state)
{
    static const char *const spellings[] = {"m/7'/1/2h", "m/7h/1/2H", "m/7H/1/2'"};
    uint8_t id[256], canon_id[256], got[256], sig[32], want[32], key[32];
    size_t canon_len = expected_id(VEC_A_HEX, "m/7'/1/2'", canon_id);
    CK_OBJECT_HANDLE h[4], first = CK_INVALID_HANDLE;
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        size_t n = expected_id(VEC_A_HEX, spellings[i], id);
        CK_ATTRIBUTE t[] = {{CKA_ID, id, n}};
        assert_int_equal(find_n(t, 1, h, 4), 1);
        assert_true((h[0] & 0x80000000UL) != 0);
        if (i == 0)
            first = h[0];
        assert_int_equal(h[0], first);
        CK_ATTRIBUTE a[] = {{CKA_ID, got, sizeof(got)}};
        assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h[0], a, 1));
        assert_int_equal(a[0].ulValueLen, canon_len);
        assert_memory_equal(got, canon_id, canon_len);
    }
    assert_int_equal(p11_find_label(s, VEC_A_ID "/m/7'/1/2'"), first);
    /* Finding wrote nothing; the first use derives the key of that path, audited once. */
    assert_int_equal(p11_audit_count(), audit_before);
    assert_rv(CKR_OK, p11_hmac_sign(s, first, (const uint8_t *)"id", 2, sig));
    p11_expected_key(VEC_A_ID, "m/7'/1/2'", 0, key);
    p11_hmac_raw(key, (const uint8_t *)"id", 2, want);
    assert_memory_equal(sig, want, 32);
    assert_int_equal(p11_audit_count(), audit_before + 1);
    /* With a class it still finds the key; with a class it is not, nothing. */
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY, pub = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tc[] = {{CKA_CLASS, &sec, sizeof(sec)}, {CKA_ID, canon_id, canon_len}};
    assert_int_equal(find_n(tc, 2, h, 4), 1);
    assert_int_equal(h[0], first);
    tc[0].pValue = &pub;
    assert_int_equal(find_n(tc, 2, h, 4), 0);
    /* A label and an id that name different keys find nothing. */
    CK_ATTRIBUTE tl[] = {{CKA_LABEL, LABEL_A, strlen(LABEL_A)}, {CKA_ID, canon_id, canon_len}};
    assert_int_equal(find_n(tl, 2, h, 4), 0);
}

/* An id that decodes to nothing valid finds nothing: no error, no audit row (not even DENY). */
static void test_find__ids_that_name_nothing_find_nothing(void **state)
{
    static const char *const paths[] = {"m/0/",
                                        "m/01",
                                        "m/x",
                                        "m",
                                        "M/0",
                                        "m//0",
                                        "m/2147483648",
                                        "m/0 ",
                                        "m/0\xe2\x80\x99",
                                        "m/\xc0\xaf"
                                        "0",
                                        "m/0\x80"};
    uint8_t id[256];
    CK_OBJECT_HANDLE h[64];
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        size_t n = expected_id(VEC_A_HEX, paths[i], id);
        CK_ATTRIBUTE t[] = {{CKA_ID, id, n}};
        if (count_virtual(h, find_n(t, 1, h, 64)) != 0)
            fail_msg("id with path \"%s\" found an object", paths[i]);
    }
    /* Too short: nothing, the UUID alone, one byte short of it. */
    expected_id(VEC_A_HEX, "m/0", id);
    static const size_t lens[] = {0, 1, 15, 16};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        CK_ATTRIBUTE t[] = {{CKA_ID, id, lens[i]}};
        assert_int_equal(count_virtual(h, find_n(t, 1, h, 64)), 0);
    }
    /* Unknown and nil assets, then assets not yet active and retired. */
    static const char *const assets[] = {"99999999888847778666555555555555",
                                         "00000000000000000000000000000000", NULL};
    for (size_t i = 0; assets[i] != NULL; i++) {
        size_t n = expected_id(assets[i], "m/0", id);
        CK_ATTRIBUTE t[] = {{CKA_ID, id, n}};
        assert_int_equal(count_virtual(h, find_n(t, 1, h, 64)), 0);
    }
    char hex[33];
    static const char *const others[] = {FRESH_ID, RETIRED_ID};
    for (size_t i = 0; i < 2; i++) {
        size_t k = 0;
        for (const char *c = others[i]; *c != '\0'; c++)
            if (*c != '-')
                hex[k++] = *c;
        hex[k] = '\0';
        size_t n = expected_id(hex, i == 0 ? "m/3" : "m/4", id);
        CK_ATTRIBUTE t[] = {{CKA_ID, id, n}};
        assert_int_equal(count_virtual(h, find_n(t, 1, h, 64)), 0);
    }
    /* A NULL value of a non-zero length. */
    CK_ATTRIBUTE tn[] = {{CKA_ID, NULL, 19}};
    assert_int_equal(count_virtual(h, find_n(tn, 1, h, 64)), 0);
    assert_int_equal(p11_audit_count(), audit_before);
}

static void test_attr__virtual_objects_have_the_documented_attributes(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, LABEL_A);
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
    CK_ULONG len, counter, st, gen_mech;
    CK_BBOOL token, priv, modifiable, destroyable, copyable, sensitive, extractable, sign, verify,
        encrypt, local, always, never, derive;
    char label[128], unique[160], path[64];
    uint8_t id[256], asset[16], want_id[256], want_asset[16];
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &token, 1},
        {CKA_PRIVATE, &priv, 1},
        {CKA_MODIFIABLE, &modifiable, 1},
        {CKA_DESTROYABLE, &destroyable, 1},
        {CKA_COPYABLE, &copyable, 1},
        {CKA_SENSITIVE, &sensitive, 1},
        {CKA_EXTRACTABLE, &extractable, 1},
        {CKA_SIGN, &sign, 1},
        {CKA_VERIFY, &verify, 1},
        {CKA_ENCRYPT, &encrypt, 1},
        {CKA_LOCAL, &local, 1},
        {CKA_ALWAYS_SENSITIVE, &always, 1},
        {CKA_NEVER_EXTRACTABLE, &never, 1},
        {CKA_DERIVE, &derive, 1},
        {CKA_KEY_GEN_MECHANISM, &gen_mech, sizeof(gen_mech)},
        {CKA_LABEL, label, sizeof(label)},
        {CKA_UNIQUE_ID, unique, sizeof(unique)},
        {CKA_ID, id, sizeof(id)},
        {CKA_DDSM_ASSET_ID, asset, sizeof(asset)},
        {CKA_DDSM_PATH, path, sizeof(path)},
        {CKA_DDSM_COUNTER, &counter, sizeof(counter)},
        {CKA_DDSM_STATE, &st, sizeof(st)},
    };
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, t, sizeof(t) / sizeof(t[0])));
    assert_int_equal(cls, CKO_SECRET_KEY);
    assert_int_equal(kt, CKK_GENERIC_SECRET);
    assert_int_equal(len, 32);
    assert_true(token && priv && sensitive && sign && verify && always && never);
    assert_false(modifiable || destroyable || copyable || extractable || encrypt || local ||
                 derive);
    assert_int_equal(gen_mech, CKM_DDSM_DERIVE);
    assert_int_equal(t[18].ulValueLen, strlen(LABEL_A));
    assert_memory_equal(label, LABEL_A, strlen(LABEL_A));
    assert_int_equal(t[19].ulValueLen, strlen(LABEL_A "#0"));
    assert_memory_equal(unique, LABEL_A "#0", strlen(LABEL_A "#0"));
    size_t id_len = expected_id(VEC_A_HEX, VEC_A_PATH, want_id);
    assert_int_equal(t[20].ulValueLen, id_len);
    assert_memory_equal(id, want_id, id_len);
    p11_unhex("6f9619ff8b86d011b42d00c04fc964ff", want_asset, 16);
    assert_memory_equal(asset, want_asset, 16);
    assert_int_equal(t[22].ulValueLen, strlen(VEC_A_PATH));
    assert_memory_equal(path, VEC_A_PATH, strlen(VEC_A_PATH));
    assert_int_equal(counter, 0);
    assert_int_equal(st, CK_DDSM_STATE_ACTIVE);
    /* The id finds the key too (PKCS#11 URI tooling selects by it). */
    CK_ATTRIBUTE by_id[] = {{CKA_ID, id, id_len}};
    CK_OBJECT_HANDLE found[4];
    assert_int_equal(find_n(by_id, 1, found, 4), 1);
    assert_int_equal(found[0], h);
}

static void test_attr__get_attribute_value_follows_section_5_7(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, LABEL_A);
    /* Size queries. */
    CK_ATTRIBUTE q[] = {{CKA_LABEL, NULL, 0}, {CKA_CLASS, NULL, 0}, {CKA_ID, NULL, 0}};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, q, 3));
    assert_int_equal(q[0].ulValueLen, strlen(LABEL_A));
    assert_int_equal(q[1].ulValueLen, sizeof(CK_OBJECT_CLASS));
    assert_int_equal(q[2].ulValueLen, 16 + strlen(VEC_A_PATH));
    /* Too small a buffer. */
    char small[4];
    CK_ATTRIBUTE ts[] = {{CKA_LABEL, small, sizeof(small)}};
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_GetAttributeValue(s, h, ts, 1));
    assert_int_equal(ts[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    /* Sensitive value, unknown type, and good attributes in one call: all processed. */
    uint8_t value[32];
    CK_OBJECT_CLASS cls = 0;
    CK_ULONG modulus = 0;
    CK_ATTRIBUTE mix[] = {{CKA_VALUE, value, sizeof(value)},
                          {CKA_CLASS, &cls, sizeof(cls)},
                          {CKA_MODULUS, &modulus, sizeof(modulus)},
                          {CKA_LABEL, small, sizeof(small)}};
    CK_RV rv = p11->C_GetAttributeValue(s, h, mix, 4);
    assert_true(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
                rv == CKR_BUFFER_TOO_SMALL);
    assert_int_equal(mix[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(mix[1].ulValueLen, sizeof(cls));
    assert_int_equal(cls, CKO_SECRET_KEY);
    assert_int_equal(mix[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(mix[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CK_ATTRIBUTE only_value[] = {{CKA_VALUE, NULL, 0}};
    assert_rv(CKR_ATTRIBUTE_SENSITIVE, p11->C_GetAttributeValue(s, h, only_value, 1));
    assert_int_equal(only_value[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CK_ATTRIBUTE only_unknown[] = {{CKA_MODULUS, NULL, 0}};
    assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, p11->C_GetAttributeValue(s, h, only_unknown, 1));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetAttributeValue(s, h, NULL, 1));
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, NULL, 0));
    /* Reading attributes writes nothing. */
    assert_int_equal(p11_audit_count(), audit_before);
}

static void test_attr__forged_and_stale_handles_are_invalid(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, LABEL_A);
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_OBJECT_HANDLE forged[] = {
        h ^ (1UL << 20),             /* another generation of the same slot */
        h + 1,                       /* a slot never used */
        0x800FFFFFUL,                /* the last slot */
        0xFFFFFFFFUL & ~(1UL << 20), /* a generation never issued */
        h | (1UL << 32),             /* wider than 32 bits */
    };
    for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++) {
        CK_RV rv = p11->C_GetAttributeValue(s, forged[i], t, 1);
        if (rv != CKR_OBJECT_HANDLE_INVALID)
            fail_msg("handle 0x%lx: %s", (unsigned long)forged[i], ddsm_rv_name(rv));
    }
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_SignInit(s, &m, h ^ (1UL << 20)));
}

static void test_attr__not_logged_in_cannot_read_virtual_objects(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, LABEL_A);
    assert_rv(CKR_OK, p11->C_Logout(s));
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    /* Private objects do not exist without a login (2.40 lists no USER_NOT_LOGGED_IN here). */
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetAttributeValue(s, h, t, 1));
}

static void test_object__virtual_objects_are_read_only(void **state)
{
    CK_OBJECT_HANDLE h = p11_find_label(s, LABEL_A), copy = 0;
    CK_ATTRIBUTE relabel[] = {{CKA_LABEL, "mine", 4}};
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_SetAttributeValue(s, h, relabel, 1));
    assert_rv(CKR_ACTION_PROHIBITED, p11->C_CopyObject(s, h, NULL, 0, &copy));
    assert_int_equal(copy, 0);
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_CopyObject(s, h, NULL, 0, NULL));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_SetAttributeValue(s, h, NULL, 1));
    CK_ULONG size = 0;
    assert_rv(CKR_OK, p11->C_GetObjectSize(s, h, &size));
    assert_int_equal(size, CK_UNAVAILABLE_INFORMATION);
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetObjectSize(s, h, NULL));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetObjectSize(s, h ^ (1UL << 20), &size));
    /* Still there, unchanged. */
    assert_int_equal(p11_find_label(s, LABEL_A), h);
    assert_int_equal(p11_audit_count(), audit_before);
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_find__label_by_uuid_finds_the_current_counter),
        T(test_find__vendor_attributes_find_the_key),
        T(test_find__empty_template_lists_backend_objects_then_one_per_live_asset),
        T(test_find__class_and_type_filter_virtual_objects),
        T(test_find__labels_that_name_nothing_find_nothing),
        T(test_find__id_alone_finds_any_path_and_reports_the_canonical_id),
        T(test_find__ids_that_name_nothing_find_nothing),
        T(test_find__not_logged_in_finds_no_virtual_object),
        T(test_find__follows_the_operation_protocol),
        T(test_find__first_use_derives_and_audits_once),
        T(test_attr__virtual_objects_have_the_documented_attributes),
        T(test_attr__get_attribute_value_follows_section_5_7),
        T(test_attr__forged_and_stale_handles_are_invalid),
        T(test_attr__not_logged_in_cannot_read_virtual_objects),
        T(test_object__virtual_objects_are_read_only),
    };
    return cmocka_run_group_tests_name("find", tests, NULL, NULL);
}
