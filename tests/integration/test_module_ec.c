/* SPDX-License-Identifier: Apache-2.0 */
/* Virtual EC signing keys (module/src/ec.h): the private and public key objects of secp256k1,
 * ed25519 and p256 assets, their attributes (DER forms checked byte for byte against the keys
 * computed here from the docs/design.md root), finds by label and class, C_DeriveKey, the Ed25519 rule,
 * materialisation and its audit rows, rotation and retirement, and `ddsmctl asset xpub` checked by
 * a watch-only derivation. Signing is test_module_ec_sign.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "ec_support.h"
#include "p11_support.h"

#include <libpq-fe.h>

#include "ddsm/derive.h"
#include "ddsm/path.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"

static CK_SESSION_HANDLE s;

static int setup(void **state)
{
    return p11_start_user_session(&s);
}

static int teardown(void **state)
{
    return p11_end_session(s);
}

static const struct ec_asset {
    const char *id, *label, *path;
    ddsm_curve curve;
    CK_KEY_TYPE ckk;
    const char *type;
} assets[] = {
    {EC_K1_ID, EC_K1_LABEL, EC_K1_PATH, DDSM_CURVE_SECP256K1, CKK_EC, "secp256k1"},
    {EC_ED_ID, EC_ED_LABEL, EC_ED_PATH, DDSM_CURVE_ED25519, CKK_EC_EDWARDS, "ed25519"},
    {EC_P2_ID, EC_P2_LABEL, EC_P2_PATH, DDSM_CURVE_P256, CKK_EC, "p256"},
};
#define N_ASSETS (sizeof(assets) / sizeof(assets[0]))

static void label_of(const char *who, const char *path, char out[256])
{
    snprintf(out, 256, "%s/%s", who, path);
}

/* CKA_ID by hand (docs/design.md): the UUID bytes, then the path as given (the tests give canonical
 * ones unless they mean another spelling). */
static size_t key_id(const char *uuid_text, const char *path, uint8_t out[256])
{
    ddsm_uuid id;
    assert_int_equal(ddsm_uuid_parse(uuid_text, strlen(uuid_text), &id), DDSM_OK);
    memcpy(out, id.b, 16);
    memcpy(out + 16, path, strlen(path));
    return 16 + strlen(path);
}

/* The bytes of attribute t (fails the test unless CKR_OK). */
static size_t attr_bytes(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, uint8_t *out, size_t cap)
{
    CK_ATTRIBUTE a = {t, out, cap};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, &a, 1));
    return a.ulValueLen;
}

static CK_BBOOL attr_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL b = 0xAA;
    CK_ATTRIBUTE a = {t, &b, sizeof(b)};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, &a, 1));
    return b;
}

static CK_RV attr_rv(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
    uint8_t buf[128];
    CK_ATTRIBUTE a = {t, buf, sizeof(buf)};
    CK_RV rv = p11->C_GetAttributeValue(s, h, &a, 1);
    if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID)
        assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION); /* section 5.7 */
    return rv;
}

static void test_ec__label_finds_private_then_public_key_with_the_same_label_and_id(void **state)
{
    for (size_t i = 0; i < N_ASSETS; i++) {
        char label[256], got[256];
        uint8_t want_id[256], id[256];
        CK_OBJECT_HANDLE priv, pub;
        label_of(assets[i].id, assets[i].path, label);
        ec_find_pair(s, label, &priv, &pub);
        size_t id_len = key_id(assets[i].id, assets[i].path, want_id);
        for (int k = 0; k < 2; k++) {
            CK_OBJECT_HANDLE h = k == 0 ? priv : pub;
            size_t n = attr_bytes(h, CKA_LABEL, (uint8_t *)got, sizeof(got) - 1);
            got[n] = '\0';
            assert_string_equal(got, label);
            assert_int_equal(attr_bytes(h, CKA_ID, id, sizeof(id)), id_len);
            assert_memory_equal(id, want_id, id_len);
            assert_int_equal(p11_attr_ulong(s, h, CKA_KEY_TYPE), assets[i].ckk);
        }
        /* The asset's label names the same objects, whatever the hardening spelling. */
        char alt[256];
        CK_OBJECT_HANDLE p2, q2;
        snprintf(alt, sizeof(alt), "%s/%s", assets[i].label, assets[i].path);
        for (char *c = alt; *c != '\0'; c++)
            if (*c == '\'')
                *c = 'h';
        ec_find_pair(s, alt, &p2, &q2);
        assert_int_equal(p2, priv);
        assert_int_equal(q2, pub);
    }
}

static void test_ec__class_filtered_finds_return_only_that_class(void **state)
{
    char label[256];
    CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY, sec = CKO_SECRET_KEY;
    CK_OBJECT_HANDLE priv, pub, h[8];
    label_of(EC_K1_ID, EC_K1_PATH, label);
    ec_find_pair(s, label, &priv, &pub);
    CK_ATTRIBUTE t[] = {{CKA_LABEL, label, strlen(label)},
                        {CKA_CLASS, &priv_cls, sizeof(priv_cls)}};
    assert_int_equal(p11_find(s, t, 2, h, 8), 1);
    assert_int_equal(h[0], priv);
    t[1].pValue = &pub_cls;
    assert_int_equal(p11_find(s, t, 2, h, 8), 1);
    assert_int_equal(h[0], pub);
    t[1].pValue = &sec;
    assert_int_equal(p11_find(s, t, 2, h, 8), 0);
    /* By class and id, as pkcs11-tool --id and OpenSSL's engine look keys up. */
    uint8_t id[256];
    size_t id_len = key_id(EC_K1_ID, EC_K1_PATH, id);
    CK_ATTRIBUTE by_id[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)}, {CKA_ID, id, id_len}};
    assert_int_equal(p11_find(s, by_id, 2, h, 8), 1);
    assert_int_equal(h[0], pub);
    /* The id alone reaches a path that is not the default one: the private key, then the public
     * key, paired by the same id, in any hardening spelling of the path. */
    CK_OBJECT_HANDLE np, nq;
    label_of(EC_K1_ID, "m/44'/0'/3'/1/9", label);
    ec_find_pair(s, label, &np, &nq);
    id_len = key_id(EC_K1_ID, "m/44h/0H/3'/1/9", id);
    CK_ATTRIBUTE alone[] = {{CKA_ID, id, id_len}};
    assert_int_equal(p11_find(s, alone, 1, h, 8), 2);
    assert_int_equal(h[0], np);
    assert_int_equal(h[1], nq);
    uint8_t got[256], want[256];
    size_t want_len = key_id(EC_K1_ID, "m/44'/0'/3'/1/9", want);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(attr_bytes(h[k], CKA_ID, got, sizeof(got)), want_len);
        assert_memory_equal(got, want, want_len);
    }
    by_id[1].pValue = id;
    by_id[1].ulValueLen = id_len;
    assert_int_equal(p11_find(s, by_id, 2, h, 8), 1);
    assert_int_equal(h[0], nq);
    /* A key type filter: the Edwards key alone among the EC keys listed at default paths. */
    CK_KEY_TYPE edw = CKK_EC_EDWARDS;
    CK_ATTRIBUTE by_type[] = {{CKA_KEY_TYPE, &edw, sizeof(edw)}};
    assert_int_equal(p11_find(s, by_type, 1, h, 8), 2);
}

static void test_ec__empty_template_lists_both_objects_of_each_ec_asset(void **state)
{
    CK_OBJECT_HANDLE h[64];
    size_t n = p11_find(s, NULL, 0, h, 64);
    for (size_t i = 0; i < N_ASSETS; i++) {
        char label[256];
        CK_OBJECT_HANDLE priv, pub;
        bool have_priv = false, have_pub = false;
        label_of(assets[i].id, assets[i].path, label);
        ec_find_pair(s, label, &priv, &pub);
        for (size_t k = 0; k < n; k++) {
            have_priv = have_priv || h[k] == priv;
            have_pub = have_pub || h[k] == pub;
        }
        assert_true(have_priv);
        assert_true(have_pub);
    }
    /* Public keys only: the four EC assets' (the vectors are secret keys). */
    CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t = {CKA_CLASS, &pub_cls, sizeof(pub_cls)};
    assert_int_equal(p11_find(s, &t, 1, h, 64), 4);
}

static void test_ec__private_key_attributes(void **state)
{
    for (size_t i = 0; i < N_ASSETS; i++) {
        char label[256];
        uint8_t params[32], want[16];
        CK_OBJECT_HANDLE priv, pub;
        label_of(assets[i].id, assets[i].path, label);
        ec_find_pair(s, label, &priv, &pub);
        size_t wn = ec_expected_params(assets[i].curve, want);
        assert_int_equal(attr_bytes(priv, CKA_EC_PARAMS, params, sizeof(params)), wn);
        assert_memory_equal(params, want, wn);
        assert_int_equal(attr_bytes(pub, CKA_EC_PARAMS, params, sizeof(params)), wn);
        assert_memory_equal(params, want, wn);

        assert_int_equal(attr_bool(priv, CKA_SIGN), CK_TRUE);
        assert_int_equal(attr_bool(priv, CKA_SENSITIVE), CK_TRUE);
        assert_int_equal(attr_bool(priv, CKA_ALWAYS_SENSITIVE), CK_TRUE);
        assert_int_equal(attr_bool(priv, CKA_EXTRACTABLE), CK_FALSE);
        assert_int_equal(attr_bool(priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);
        assert_int_equal(attr_bool(priv, CKA_ALWAYS_AUTHENTICATE), CK_FALSE);
        assert_int_equal(attr_bool(priv, CKA_DECRYPT), CK_FALSE);
        assert_int_equal(attr_bool(priv, CKA_DERIVE), CK_FALSE);
        assert_int_equal(attr_bool(priv, CKA_TOKEN), CK_TRUE);
        assert_int_equal(attr_bool(priv, CKA_PRIVATE), CK_TRUE);
        assert_int_equal(attr_bool(priv, CKA_MODIFIABLE), CK_FALSE);
        assert_rv(CKR_ATTRIBUTE_SENSITIVE, attr_rv(priv, CKA_VALUE));
        assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, attr_rv(priv, CKA_EC_POINT));
        assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, attr_rv(priv, CKA_VERIFY));
        assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, attr_rv(priv, CKA_VALUE_LEN));

        assert_int_equal(attr_bool(pub, CKA_VERIFY), CK_TRUE);
        assert_int_equal(attr_bool(pub, CKA_ENCRYPT), CK_FALSE);
        assert_int_equal(attr_bool(pub, CKA_WRAP), CK_FALSE);
        assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, attr_rv(pub, CKA_SIGN));
        assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, attr_rv(pub, CKA_SENSITIVE));
        assert_rv(CKR_ATTRIBUTE_TYPE_INVALID, attr_rv(pub, CKA_VALUE));

        /* Allowed mechanisms name the curve's family. */
        CK_MECHANISM_TYPE mechs[4];
        size_t mn = attr_bytes(priv, CKA_ALLOWED_MECHANISMS, (uint8_t *)mechs, sizeof(mechs));
        if (assets[i].curve == DDSM_CURVE_ED25519) {
            assert_int_equal(mn, sizeof(CK_MECHANISM_TYPE));
            assert_int_equal(mechs[0], CKM_EDDSA);
        } else {
            assert_int_equal(mn, 2 * sizeof(CK_MECHANISM_TYPE));
            assert_int_equal(mechs[0], CKM_ECDSA);
            assert_int_equal(mechs[1], CKM_ECDSA_SHA256);
        }
        /* Nothing above needed the key: no derivation yet. */
        assert_int_equal(ec_derive_rows(assets[i].id), 0);
    }
}

static void test_ec__public_point_matches_the_hd_derivation_and_is_audited_once(void **state)
{
    static const char *const more[] = {"m/44'/0'/0'/1/5", "m/7'/8'", "m/0/1/2"};
    for (size_t i = 0; i < N_ASSETS; i++) {
        for (size_t k = 0; k < 4; k++) {
            const char *path = k == 0 ? assets[i].path : more[k - 1];
            if (assets[i].curve == DDSM_CURVE_ED25519 && k != 0 && k != 2)
                continue; /* normal indices name no Ed25519 key */
            char label[256];
            uint8_t point[67], want[67];
            CK_OBJECT_HANDLE priv, pub;
            label_of(assets[i].id, path, label);
            ec_find_pair(s, label, &priv, &pub);
            size_t wn = ec_expected_point(assets[i].curve, assets[i].id, path, 0, want);
            long rows = ec_derive_rows(assets[i].id);

            /* Length query and too small a buffer need no key: nothing derived, nothing written. */
            CK_ATTRIBUTE a = {CKA_EC_POINT, NULL, 0};
            assert_rv(CKR_OK, p11->C_GetAttributeValue(s, pub, &a, 1));
            assert_int_equal(a.ulValueLen, wn);
            a.pValue = point;
            a.ulValueLen = wn - 1;
            assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_GetAttributeValue(s, pub, &a, 1));
            assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
            assert_int_equal(ec_derive_rows(assets[i].id), rows);

            assert_int_equal(ec_read_point(s, pub, point), wn);
            assert_memory_equal(point, want, wn);
            assert_int_equal(ec_derive_rows(assets[i].id), rows + 1);
            assert_int_equal(ec_derive_rows_typed(assets[i].id, assets[i].type), rows + 1);
            /* Cached: reading again (with other attributes in the same call) derives nothing. */
            CK_OBJECT_CLASS cls = 0;
            CK_ATTRIBUTE two[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_EC_POINT, point, 67}};
            assert_rv(CKR_OK, p11->C_GetAttributeValue(s, pub, two, 2));
            assert_int_equal(cls, CKO_PUBLIC_KEY);
            assert_int_equal(two[1].ulValueLen, wn);
            assert_memory_equal(point, want, wn);
            assert_int_equal(ec_derive_rows(assets[i].id), rows + 1);
        }
    }
    /* The audit row names the key's path and counter. */
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'"
                                  " AND asset_id = '" EC_K1_ID "' AND counter = 0"
                                  " AND derivation_path = 'm/44''/0''/0''/1/5'"),
                     1);
}

static void test_ec__ed25519_normal_index_finds_nothing_and_derives_nothing(void **state)
{
    CK_OBJECT_HANDLE h[4], d = 0;
    long rows = p11_audit_count();
    const char *label = EC_ED_LABEL "/m/44'/501'/0'/0";
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    assert_int_equal(p11_find(s, &t, 1, h, 4), 0);
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, EC_ED_ID, "m/44'/501'/0'/0", NULL, 0, &d));
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, EC_ED_ID, "m/1", NULL, 0, &d));
    assert_int_equal(p11_audit_count(), rows);
    /* A hardened path of the same asset is fine. */
    assert_rv(CKR_OK, p11_derive(s, EC_ED_ID, "m/44'/501'/0'/0'", NULL, 0, &d));
}

static void test_ec__derive_key_gives_the_private_or_the_public_object(void **state)
{
    char label[256];
    CK_OBJECT_HANDLE priv, pub, d = 0;
    label_of(EC_P2_ID, EC_P2_PATH, label);
    ec_find_pair(s, label, &priv, &pub);
    assert_rv(CKR_OK, p11_derive(s, EC_P2_ID, EC_P2_PATH, NULL, 0, &d));
    assert_int_equal(d, priv);

    CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY, priv_cls = CKO_PRIVATE_KEY, sec = CKO_SECRET_KEY;
    CK_KEY_TYPE ec = CKK_EC, edw = CKK_EC_EDWARDS, gen = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, two = 2;
    uint8_t params[16];
    size_t pn = ec_expected_params(DDSM_CURVE_P256, params);
    CK_ATTRIBUTE full[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)},
                           {CKA_KEY_TYPE, &ec, sizeof(ec)},
                           {CKA_EC_PARAMS, params, pn},
                           {CKA_VERIFY, &yes, 1},
                           {CKA_TOKEN, &yes, 1},
                           {CKA_LABEL, label, strlen(label)}};
    assert_rv(CKR_OK, p11_derive(s, EC_P2_ID, "m/1h/2/3", full, 6, &d));
    assert_int_equal(d, pub);
    CK_ATTRIBUTE as_priv[] = {{CKA_CLASS, &priv_cls, sizeof(priv_cls)},
                              {CKA_SIGN, &yes, 1},
                              {CKA_SENSITIVE, &yes, 1},
                              {CKA_EXTRACTABLE, &no, 1}};
    assert_rv(CKR_OK, p11_derive(s, EC_P2_ID, EC_P2_PATH, as_priv, 4, &d));
    assert_int_equal(d, priv);

    struct {
        CK_ATTRIBUTE a;
        CK_RV rv;
    } bad[] = {
        {{CKA_CLASS, &sec, sizeof(sec)}, CKR_TEMPLATE_INCONSISTENT},
        {{CKA_KEY_TYPE, &edw, sizeof(edw)}, CKR_TEMPLATE_INCONSISTENT},
        {{CKA_KEY_TYPE, &gen, sizeof(gen)}, CKR_TEMPLATE_INCONSISTENT},
        {{CKA_EXTRACTABLE, &yes, 1}, CKR_TEMPLATE_INCONSISTENT},
        {{CKA_SENSITIVE, &no, 1}, CKR_TEMPLATE_INCONSISTENT},
        {{CKA_SIGN, &two, 1}, CKR_ATTRIBUTE_VALUE_INVALID},
        {{CKA_EC_PARAMS, params, pn - 1}, CKR_TEMPLATE_INCONSISTENT},
        {{CKA_VALUE, params, 4}, CKR_ATTRIBUTE_READ_ONLY},
        {{CKA_EC_POINT, params, 4}, CKR_ATTRIBUTE_READ_ONLY},
        {{CKA_VALUE_LEN, &ec, sizeof(ec)}, CKR_ATTRIBUTE_TYPE_INVALID},
        {{CKA_VERIFY, &yes, 1}, CKR_ATTRIBUTE_TYPE_INVALID}, /* not a private key attribute */
        {{CKA_LABEL, "other", 5}, CKR_TEMPLATE_INCONSISTENT},
    };
    long rows = p11_audit_count();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CK_RV rv = p11_derive(s, EC_P2_ID, EC_P2_PATH, &bad[i].a, 1, &d);
        if (rv != bad[i].rv)
            fail_msg("template %zu (%s): %s, expected %s", i, ddsm_attr_name(bad[i].a.type),
                     ddsm_rv_name(rv), ddsm_rv_name(bad[i].rv));
    }
    /* An EC template on an HMAC asset is no more consistent. */
    CK_ATTRIBUTE ec_on_hmac = {CKA_CLASS, &priv_cls, sizeof(priv_cls)};
    assert_rv(CKR_TEMPLATE_INCONSISTENT, p11_derive(s, VEC_B_ID, VEC_B_PATH, &ec_on_hmac, 1, &d));
    assert_int_equal(p11_audit_count(), rows);
}

static void test_ec__token_false_derives_session_objects_that_go_with_their_session(void **state)
{
    char label[256];
    CK_OBJECT_HANDLE priv, pub, sp = 0, spub = 0;
    label_of(EC_P2_ID, EC_P2_PATH, label);
    ec_find_pair(s, label, &priv, &pub);
    CK_SESSION_HANDLE s2 = p11_open();
    CK_BBOOL no = CK_FALSE;
    CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE session_priv[] = {{CKA_TOKEN, &no, 1}};
    CK_ATTRIBUTE session_pub[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)}, {CKA_TOKEN, &no, 1}};
    assert_rv(CKR_OK, p11_derive(s2, EC_P2_ID, EC_P2_PATH, session_priv, 1, &sp));
    assert_rv(CKR_OK, p11_derive(s2, EC_P2_ID, EC_P2_PATH, session_pub, 2, &spub));
    assert_int_not_equal(sp, priv);
    assert_int_not_equal(spub, pub);
    assert_int_equal(attr_bool(sp, CKA_TOKEN), CK_FALSE);
    assert_int_equal(attr_bool(spub, CKA_TOKEN), CK_FALSE);
    assert_int_equal(attr_bool(priv, CKA_TOKEN), CK_TRUE);
    /* The same key as the token object's: the same public point. */
    uint8_t a[128], b[128];
    size_t na = attr_bytes(spub, CKA_EC_POINT, a, sizeof(a));
    size_t nb = attr_bytes(pub, CKA_EC_POINT, b, sizeof(b));
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    static const uint8_t digest[32] = {7, 7, 7};
    uint8_t sig[64];
    assert_rv(CKR_OK, ec_sign(s, sp, CKM_ECDSA, digest, 32, sig));
    /* Their session closes: they go, the token objects stay. */
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
    assert_rv(CKR_KEY_HANDLE_INVALID, ec_sign(s, sp, CKM_ECDSA, digest, 32, sig));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, attr_rv(spub, CKA_EC_POINT));
    assert_rv(CKR_OK, ec_sign(s, priv, CKM_ECDSA, digest, 32, sig));
}

/* Sign until the module refuses (it heard of a rotation or retirement); that refusal. */
static CK_RV sign_until_refused(CK_OBJECT_HANDLE priv)
{
    static const uint8_t digest[32] = {1, 2, 3};
    uint8_t sig[64];
    CK_RV rv; /* no deadline: a module that never refuses runs into ctest's timeout */
    while ((rv = ec_sign(s, priv, CKM_ECDSA, digest, 32, sig)) == CKR_OK)
        p11_sleep_ms(10);
    return rv;
}

static void test_ec__rotation_kills_the_handles_and_changes_the_public_key(void **state)
{
    char label[256];
    uint8_t p0[67], p1[67], want[67], sig[64];
    static const uint8_t digest[32] = {9, 9, 9};
    CK_OBJECT_HANDLE priv0, pub0, priv1, pub1;
    label_of(EC_ROT_LABEL, EC_ROT_PATH, label);
    ec_find_pair(s, label, &priv0, &pub0);
    size_t n0 = ec_read_point(s, pub0, p0);
    ec_expected_point(DDSM_CURVE_SECP256K1, EC_ROT_ID, EC_ROT_PATH, 0, want);
    assert_memory_equal(p0, want, n0);
    assert_rv(CKR_OK, ec_sign(s, priv0, CKM_ECDSA, digest, 32, sig));

    assert_int_equal(p11_ctl("asset rotate " EC_ROT_LABEL " >/dev/null"), 0);
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_until_refused(priv0));
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_VerifyInit(s, &ecdsa, pub0));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, attr_rv(pub0, CKA_EC_POINT));

    ec_find_pair(s, label, &priv1, &pub1);
    assert_int_not_equal(priv1, priv0);
    assert_int_not_equal(pub1, pub0);
    assert_int_equal(p11_attr_ulong(s, pub1, CKA_DDSM_COUNTER), 1);
    size_t n1 = ec_read_point(s, pub1, p1);
    ec_expected_point(DDSM_CURVE_SECP256K1, EC_ROT_ID, EC_ROT_PATH, 1, want);
    assert_int_equal(n1, n0);
    assert_memory_equal(p1, want, n1);
    assert_memory_not_equal(p1, p0, n1);
    assert_rv(CKR_OK, ec_sign(s, priv1, CKM_ECDSA, digest, 32, sig));
    assert_true(ec_openssl_verify(DDSM_CURVE_SECP256K1, p1, n1, CKM_ECDSA, digest, 32, sig));
    assert_false(ec_openssl_verify(DDSM_CURVE_SECP256K1, p0, n0, CKM_ECDSA, digest, 32, sig));
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'"
                                  " AND asset_id = '" EC_ROT_ID "' AND counter = 1"
                                  " AND detail = 'key type secp256k1'"),
                     1);

    /* Retirement reaches EC keys the same way. */
    assert_int_equal(p11_ctl("asset retire " EC_ROT_LABEL " >/dev/null"), 0);
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_until_refused(priv1));
    CK_ATTRIBUTE t = {CKA_LABEL, label, strlen(label)};
    CK_OBJECT_HANDLE h[4];
    assert_int_equal(p11_find(s, &t, 1, h, 4), 0);
}

/* Run `ddsmctl asset xpub <args>` and return its exit status; stdout's first line in out. */
static int ctl_xpub(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "DDSM_PIN='%s' '%s' asset xpub %s 2>/dev/null",
             getenv("DDSM_TEST_PIN"), getenv("DDSM_CTL"), args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    out[0] = '\0';
    if (fgets(out, (int)cap, f) != NULL)
        out[strcspn(out, "\n")] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_ec__xpub_lets_a_watch_only_wallet_derive_the_module_public_keys(void **state)
{
    char xpub[256];
    long rows = ec_derive_rows_typed(EC_K1_ID, "secp256k1");
    assert_int_equal(ctl_xpub(EC_K1_LABEL " --path \"m/44h/0h/0h\"", xpub, sizeof(xpub)), 0);
    /* Audited like a derivation: a chained DERIVE row naming the node's path and key type. */
    assert_int_equal(ec_derive_rows_typed(EC_K1_ID, "secp256k1"), rows + 1);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'"
                                  " AND asset_id = '" EC_K1_ID "' AND derivation_path = "
                                  "'m/44''/0''/0''' AND requester LIKE 'ddsmctl:%'"
                                  " AND mac IS NOT NULL"),
                     1);

    /* The same xpub, serialised here from the node computed from the known root. */
    uint8_t seed[32];
    ddsm_path p;
    ddsm_hd_node node;
    ddsm_hd_pub_node pn;
    char want[DDSM_HD_XKEY_TEXT_MAX];
    ec_expected_seed(EC_K1_ID, 0, seed);
    assert_int_equal(ddsm_path_parse("m/44'/0'/0'", 11, &p, NULL), DDSM_OK);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_SECP256K1, seed, 32, &p, &node, NULL),
                     DDSM_OK);
    assert_int_equal(ddsm_hd_neuter(DDSM_CURVE_SECP256K1, &node, &pn), DDSM_OK);
    assert_int_equal(ddsm_hd_serialize_xpub(DDSM_CURVE_SECP256K1, &pn, want), DDSM_OK);
    assert_string_equal(xpub, want);

    /* Watch-only: CKD_pub from the printed xpub alone, for m/44'/0'/0'/0/5 and /1/0. */
    static const uint32_t kids[][2] = {{0, 5}, {1, 0}};
    for (size_t k = 0; k < 2; k++) {
        ddsm_hd_ext ext;
        ddsm_hd_pub_node c1, c2;
        uint8_t point[65], got[67];
        char label[256];
        CK_OBJECT_HANDLE priv, pub;
        assert_int_equal(ddsm_hd_parse_ext(xpub, strlen(xpub), &ext, NULL), DDSM_OK);
        assert_false(ext.is_private);
        assert_int_equal(
            ddsm_hd_child_public(DDSM_CURVE_SECP256K1, &ext.pub, kids[k][0], &c1, NULL), DDSM_OK);
        assert_int_equal(ddsm_hd_child_public(DDSM_CURVE_SECP256K1, &c1, kids[k][1], &c2, NULL),
                         DDSM_OK);
        assert_int_equal(ddsm_hd_point_uncompress(DDSM_CURVE_SECP256K1, c2.public_key, point),
                         DDSM_OK);
        snprintf(label, sizeof(label), EC_K1_LABEL "/m/44'/0'/0'/%u/%u", kids[k][0], kids[k][1]);
        ec_find_pair(s, label, &priv, &pub);
        assert_int_equal(ec_read_point(s, pub, got), 67);
        assert_memory_equal(got + 2, point, 65);
    }

    /* Other key types have no xpub: exit 2, nothing written. */
    long all = p11_audit_count();
    assert_int_equal(ctl_xpub(EC_ED_LABEL, xpub, sizeof(xpub)), 2);
    assert_int_equal(ctl_xpub(EC_P2_LABEL, xpub, sizeof(xpub)), 2);
    assert_int_equal(ctl_xpub("vec-a", xpub, sizeof(xpub)), 2);
    assert_int_equal(ctl_xpub(EC_K1_LABEL " --path m/x", xpub, sizeof(xpub)), 2);
    assert_int_equal(ctl_xpub("no-such-asset", xpub, sizeof(xpub)), 1);
    assert_int_equal(p11_audit_count(), all);
}

static void test_ec__mechanisms_are_listed_with_their_info(void **state)
{
    CK_MECHANISM_TYPE list[256];
    CK_ULONG n = 256;
    assert_rv(CKR_OK, p11->C_GetMechanismList(0, list, &n));
    static const CK_MECHANISM_TYPE want[] = {CKM_ECDSA, CKM_ECDSA_SHA256, CKM_EDDSA};
    for (size_t w = 0; w < 3; w++) {
        bool found = false;
        for (CK_ULONG i = 0; i < n; i++)
            found = found || list[i] == want[w];
        assert_true(found);
        CK_MECHANISM_INFO mi;
        assert_rv(CKR_OK, p11->C_GetMechanismInfo(0, want[w], &mi));
        assert_true((mi.flags & (CKF_SIGN | CKF_VERIFY)) == (CKF_SIGN | CKF_VERIFY));
        assert_true(mi.ulMinKeySize <= 256 && mi.ulMaxKeySize >= 255);
    }
}

/* The SQLSTATE of a statement expected to fail ("" when it succeeded). */
static void sql_state(const char *sql, char out[6])
{
    PGconn *c = PQconnectdb(getenv("DDSM_TEST_CONNINFO"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(out, 6, "%s", st != NULL ? st : "");
    PQclear(r);
    PQfinish(c);
}

static void test_ec__registry_refuses_unknown_types_and_normal_ed25519_paths(void **state)
{
    /* ddsmctl: usage errors, nothing written. */
    assert_int_equal(p11_ctl("asset register --label bad-1 --type rsa >/dev/null 2>&1"), 2);
    assert_int_equal(
        p11_ctl("asset register --label bad-2 --type ed25519 --default-path m/1 >/dev/null 2>&1"),
        2);
    assert_int_equal(p11_ctl("asset register --label bad-3 --type ed25519 >/dev/null 2>&1"), 2);
    /* ddsm-core's register, for callers other than ddsmctl. */
    ddsm_store *st = NULL;
    ddsm_asset a;
    assert_int_equal(ddsm_store_open(getenv("DDSM_TEST_CONNINFO"), NULL, &st), DDSM_OK);
    assert_int_equal(ddsm_store_asset_register(st, NULL, "bad-4", "ed25519", "m/0'/1", "t", &a),
                     DDSM_E_PATH);
    assert_non_null(strstr(ddsm_store_errmsg(st), "hardened"));
    assert_int_equal(ddsm_store_asset_register(st, NULL, "bad-5", "rsa", NULL, "t", &a),
                     DDSM_E_INPUT);
    assert_int_equal(ddsm_store_asset_register(st, NULL, "ok-p256", "p256", "m/5", "t", &a),
                     DDSM_OK);
    assert_string_equal(a.key_type, "p256");
    ddsm_store_close(st);
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_keys WHERE label LIKE 'bad-%'"), 0);
    /* The database itself, around ddsm-core: the CHECK, and a key type that never changes. */
    char sqlstate[6];
    sql_state("INSERT INTO custody_keys (asset_id, label, key_type, default_path)"
              " VALUES ('ec000000-0000-4000-8000-0000000000ff', 'raw', 'rsa', 'm/0')",
              sqlstate);
    assert_string_equal(sqlstate, "23514"); /* check_violation */
    sql_state("UPDATE custody_keys SET key_type = 'hmac' WHERE asset_id = '" EC_K1_ID "'",
              sqlstate);
    assert_string_equal(sqlstate, "ZD004");
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_keys WHERE asset_id = '" EC_K1_ID
                                  "' AND key_type = 'secp256k1'"),
                     1);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    ec_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ec__label_finds_private_then_public_key_with_the_same_label_and_id),
        T(test_ec__class_filtered_finds_return_only_that_class),
        T(test_ec__empty_template_lists_both_objects_of_each_ec_asset),
        T(test_ec__private_key_attributes),
        T(test_ec__public_point_matches_the_hd_derivation_and_is_audited_once),
        T(test_ec__ed25519_normal_index_finds_nothing_and_derives_nothing),
        T(test_ec__derive_key_gives_the_private_or_the_public_object),
        T(test_ec__token_false_derives_session_objects_that_go_with_their_session),
        T(test_ec__rotation_kills_the_handles_and_changes_the_public_key),
        T(test_ec__xpub_lets_a_watch_only_wallet_derive_the_module_public_keys),
        T(test_ec__mechanisms_are_listed_with_their_info),
        T(test_ec__registry_refuses_unknown_types_and_normal_ed25519_paths),
    };
    return cmocka_run_group_tests_name("module_ec", tests, NULL, NULL);
}
