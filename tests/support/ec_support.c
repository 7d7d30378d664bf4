/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "p11_support.h"

#include "ec_support.h"
#include "fault_support.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "ddsm/derive.h"
#include "ddsm/path.h"
#include "ddsm/uuid.h"

static void ctl_ok(const char *what, int rc)
{
    if (rc != 0)
        fail_msg("ddsmctl %s failed with exit status %d", what, rc);
}

void ec_setup_store(void)
{
    static const struct {
        const char *id, *label, *type, *path;
    } assets[] = {
        {EC_K1_ID, EC_K1_LABEL, "secp256k1", EC_K1_PATH},
        {EC_ED_ID, EC_ED_LABEL, "ed25519", EC_ED_PATH},
        {EC_P2_ID, EC_P2_LABEL, "p256", EC_P2_PATH},
        {EC_ROT_ID, EC_ROT_LABEL, "secp256k1", EC_ROT_PATH},
    };
    for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
        ctl_ok("asset register",
               p11_ctl("asset register --label %s --id %s --type %s --default-path \"%s\""
                       " >/dev/null",
                       assets[i].label, assets[i].id, assets[i].type, assets[i].path));
        ctl_ok("asset activate", p11_ctl("asset activate %s >/dev/null", assets[i].label));
    }
}

void ec_expected_seed(const char *uuid_text, uint64_t counter, uint8_t seed[32])
{
    const ddsm_path depth0 = {.depth = 0};
    if (!fs_expected_secret(uuid_text, &depth0, counter, seed))
        fail_msg("cannot compute the asset seed of %s #%llu", uuid_text,
                 (unsigned long long)counter);
}

static void expected_node(ddsm_curve curve, const char *uuid_text, const char *path,
                          uint64_t counter, ddsm_hd_node *node)
{
    uint8_t seed[32];
    ddsm_path p;
    assert_int_equal(ddsm_path_parse(path, strlen(path), &p, NULL), DDSM_OK);
    ec_expected_seed(uuid_text, counter, seed);
    assert_int_equal(ddsm_hd_derive_path_secret(curve, seed, sizeof(seed), &p, node, NULL),
                     DDSM_OK);
}

void ec_expected_key(ddsm_curve curve, const char *uuid_text, const char *path, uint64_t counter,
                     uint8_t priv[32])
{
    ddsm_hd_node node;
    expected_node(curve, uuid_text, path, counter, &node);
    memcpy(priv, node.secret_key, 32);
}

size_t ec_expected_point(ddsm_curve curve, const char *uuid_text, const char *path,
                         uint64_t counter, uint8_t out[67])
{
    ddsm_hd_node node;
    uint8_t point[DDSM_HD_PUB_MAX];
    size_t n = 0;
    expected_node(curve, uuid_text, path, counter, &node);
    assert_int_equal(ddsm_hd_ec_point(curve, &node, point, &n), DDSM_OK);
    assert_int_equal(n, curve == DDSM_CURVE_ED25519 ? 32 : 65);
    out[0] = 0x04;
    out[1] = (uint8_t)n;
    memcpy(out + 2, point, n);
    return n + 2;
}

size_t ec_expected_params(ddsm_curve curve, uint8_t out[16])
{
    static const uint8_t k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}; /* 1.3.132.0.10 */
    static const uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                   0xce, 0x3d, 0x03, 0x01, 0x07}; /* 1.2.840.10045.3.1.7 */
    static const uint8_t ed[] = {0x06, 0x03, 0x2b, 0x65, 0x70};   /* 1.3.101.112 */
    const uint8_t *v = curve == DDSM_CURVE_SECP256K1 ? k1 : curve == DDSM_CURVE_P256 ? p256 : ed;
    size_t n = curve == DDSM_CURVE_SECP256K1 ? sizeof(k1)
               : curve == DDSM_CURVE_P256    ? sizeof(p256)
                                             : sizeof(ed);
    memcpy(out, v, n);
    return n;
}

void ec_find_pair(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *priv,
                  CK_OBJECT_HANDLE *pub)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[4];
    size_t n = p11_find(s, &t, 1, h, 4);
    if (n != 2)
        fail_msg("label %s found %zu objects, expected a private and a public key", label, n);
    CK_ULONG c0 = p11_attr_ulong(s, h[0], CKA_CLASS), c1 = p11_attr_ulong(s, h[1], CKA_CLASS);
    if (c0 != CKO_PRIVATE_KEY || c1 != CKO_PUBLIC_KEY)
        fail_msg("label %s: classes 0x%lx, 0x%lx (expected private then public)", label, c0, c1);
    *priv = h[0];
    *pub = h[1];
}

size_t ec_read_point(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, uint8_t out[67])
{
    CK_ATTRIBUTE a = {CKA_EC_POINT, out, 67};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, pub, &a, 1));
    return a.ulValueLen;
}

CK_RV ec_sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE m, const uint8_t *data,
              size_t len, uint8_t sig[64])
{
    return p11_sign_fixed(s, key, m, data, len, sig, 64);
}

/* An OpenSSL public key from CKA_EC_POINT (DER OCTET STRING). */
static EVP_PKEY *openssl_pub(ddsm_curve curve, const uint8_t *point, size_t point_len)
{
    EVP_PKEY *pkey = NULL;
    if (point_len < 2 || point[0] != 0x04 || point[1] != point_len - 2)
        fail_msg("CKA_EC_POINT is not a DER OCTET STRING");
    if (curve == DDSM_CURVE_ED25519)
        return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, point + 2, point_len - 2);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    assert_non_null(bld);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(
                         bld, OSSL_PKEY_PARAM_GROUP_NAME,
                         curve == DDSM_CURVE_SECP256K1 ? "secp256k1" : "prime256v1", 0),
                     1);
    assert_int_equal(
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point + 2, point_len - 2),
        1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    assert_non_null(params);
    assert_non_null(kctx);
    assert_int_equal(EVP_PKEY_fromdata_init(kctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(kctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(kctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

bool ec_openssl_verify(ddsm_curve curve, const uint8_t *point, size_t point_len,
                       CK_MECHANISM_TYPE m, const uint8_t *data, size_t len, const uint8_t sig[64])
{
    EVP_PKEY *pkey = openssl_pub(curve, point, point_len);
    bool ok = false;
    assert_non_null(pkey);
    if (m == CKM_EDDSA) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        static const uint8_t empty[1];
        assert_non_null(md);
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey), 1);
        ok = EVP_DigestVerify(md, sig, 64, len > 0 ? data : empty, len) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pkey);
        return ok;
    }
    uint8_t hash[32];
    const uint8_t *tbs = data;
    size_t tbs_len = len;
    if (m == CKM_ECDSA_SHA256) {
        unsigned int hl = 0;
        assert_int_equal(EVP_Digest(data, len, hash, &hl, EVP_sha256(), NULL), 1);
        tbs = hash;
        tbs_len = hl;
    }
    /* PKCS#11's raw r || s as the DER ECDSA-Sig-Value OpenSSL verifies. */
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    assert_non_null(es);
    assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    assert_true(der_len > 0);
    EVP_PKEY_CTX *vctx = EVP_PKEY_CTX_new(pkey, NULL);
    assert_non_null(vctx);
    assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
    ok = EVP_PKEY_verify(vctx, der, (size_t)der_len, tbs, tbs_len) == 1;
    EVP_PKEY_CTX_free(vctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_free(pkey);
    return ok;
}

long ec_derive_rows(const char *uuid_text)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND asset_id = '%s'",
             uuid_text);
    return p11_sql_long(sql);
}

long ec_derive_rows_typed(const char *uuid_text, const char *key_type)
{
    char sql[320];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND asset_id = '%s'"
             " AND detail = 'key type %s'",
             uuid_text, key_type);
    return p11_sql_long(sql);
}
