/* SPDX-License-Identifier: Apache-2.0 */
/* Derivation, version 1: the docs/design.md vectors, the whole first message, agreement with OpenSSL's
 * own SP 800-108 KBKDF over many random inputs, and injectivity where the original scheme
 * collided. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "ddsm/derive.h"
#include "ddsm/mac.h"
#include "design_vectors.h"
#include "hex_support.h"

static uint8_t root_seed[32]; /* 0x00, 0x01, ..., 0x1f */

static ddsm_uuid uuid_ok(const char *text)
{
    ddsm_uuid u;
    assert_int_equal(ddsm_uuid_parse(text, strlen(text), &u), DDSM_OK);
    return u;
}

static ddsm_path path_ok(const char *text)
{
    ddsm_path p;
    const char *why = NULL;
    if (ddsm_path_parse(text, strlen(text), &p, &why) != DDSM_OK)
        fail_msg("%s: %s", text, why);
    return p;
}

static int setup_prf(void **state)
{
    static ddsm_prf prf;
    for (size_t i = 0; i < sizeof(root_seed); i++)
        root_seed[i] = (uint8_t)i;
    if (ddsm_prf_openssl_new(root_seed, sizeof(root_seed), &prf) != DDSM_OK)
        return -1;
    *state = &prf;
    return 0;
}

static int teardown_prf(void **state)
{
    ddsm_prf_openssl_free(*state);
    ddsm_mac_thread_cleanup();
    return 0;
}

static void test_derive__matches_design_vectors(void **state)
{
    const ddsm_prf *prf = *state;
    for (size_t i = 0; i < DESIGN_VECTORS_COUNT; i++) {
        ddsm_uuid asset = uuid_ok(design_vectors[i].asset);
        ddsm_path path = path_ok(design_vectors[i].path);
        uint8_t key[DDSM_KEY_LEN];
        char hex[2 * DDSM_KEY_LEN + 1];
        assert_int_equal(ddsm_derive_secret(prf, &asset, &path, design_vectors[i].counter, key),
                         DDSM_OK);
        hexs_encode(key, sizeof(key), hex);
        assert_string_equal(hex, design_vectors[i].key);
    }
}

static void test_derive__builds_first_vector_message_exactly(void **state)
{
    (void)state;
    ddsm_uuid asset = uuid_ok("6f9619ff-8b86-d011-b42d-00c04fc964ff");
    ddsm_path path = path_ok("m/44'/0'/0'/0/0");
    uint8_t msg[DDSM_MSG_MAX];
    char hex[2 * DDSM_MSG_MAX + 1];
    size_t len = ddsm_derive_message(&asset, &path, 0, msg);
    assert_int_equal(len, 4 + 7 + 1 + 16 + 1 + 5 * 4 + 8 + 4);
    hexs_encode(msg, len, hex);
    assert_string_equal(hex, "000000014444534d2d7631006f9619ff8b86d011b42d00c04fc964ff058000002c"
                             "80000000800000000000000000000000000000000000000000000100");
}

static void test_derive__context_is_the_middle_of_the_message(void **state)
{
    (void)state;
    ddsm_uuid asset = uuid_ok("00000000-0000-4000-8000-000000000001");
    ddsm_path path = path_ok("m/1'/2/3'");
    uint8_t msg[DDSM_MSG_MAX], ctx[DDSM_MSG_MAX];
    size_t mlen = ddsm_derive_message(&asset, &path, UINT64_MAX, msg);
    size_t clen = ddsm_derive_context(&asset, &path, UINT64_MAX, ctx);
    assert_int_equal(clen, 16 + 1 + 3 * 4 + 8);
    assert_int_equal(mlen, 4 + 7 + 1 + clen + 4);
    assert_memory_equal(msg + 12, ctx, clen);
    /* the counter is big-endian in the last 8 context bytes */
    const uint8_t ff[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_memory_equal(ctx + clen - 8, ff, 8);
}

static void test_derive__message_of_depth_zero_is_the_asset_seed_shape(void **state)
{
    (void)state;
    ddsm_uuid nil;
    memset(&nil, 0, sizeof(nil));
    ddsm_path none;
    memset(&none, 0, sizeof(none));
    uint8_t msg[DDSM_MSG_MAX];
    size_t len = ddsm_derive_message(&nil, &none, 0, msg);
    assert_int_equal(len, 4 + 7 + 1 + 16 + 1 + 8 + 4);
    assert_int_equal(msg[12 + 16], 0); /* depth byte */
}

static void test_derive__refuses_depth_above_16(void **state)
{
    const ddsm_prf *prf = *state;
    ddsm_uuid asset = uuid_ok("00000000-0000-4000-8000-000000000001");
    ddsm_path path = path_ok("m/0");
    path.depth = DDSM_PATH_MAX_DEPTH + 1;
    uint8_t msg[DDSM_MSG_MAX];
    assert_int_equal(ddsm_derive_message(&asset, &path, 0, msg), 0);
    assert_int_equal(ddsm_derive_context(&asset, &path, 0, msg), 0);
    uint8_t key[DDSM_KEY_LEN];
    memset(key, 0xaa, sizeof(key));
    assert_int_equal(ddsm_derive_secret(prf, &asset, &path, 0, key), DDSM_E_ARG);
    const uint8_t zero[DDSM_KEY_LEN] = {0};
    assert_memory_equal(key, zero, sizeof(key));
}

static ddsm_err failing_hmac(void *ctx, const uint8_t *msg, size_t len, uint8_t out[DDSM_KEY_LEN])
{
    (void)msg;
    (void)len;
    memset(out, 0x77, DDSM_KEY_LEN / 2); /* a half-written result that must not survive */
    return *(ddsm_err *)ctx;
}

static void test_derive__wipes_key_and_passes_error_when_prf_fails(void **state)
{
    (void)state;
    ddsm_err why = DDSM_E_HSM;
    ddsm_prf prf = {failing_hmac, &why};
    ddsm_uuid asset = uuid_ok("00000000-0000-4000-8000-000000000001");
    ddsm_path path = path_ok("m/0");
    uint8_t key[DDSM_KEY_LEN];
    memset(key, 0xaa, sizeof(key));
    assert_int_equal(ddsm_derive_secret(&prf, &asset, &path, 0, key), DDSM_E_HSM);
    const uint8_t zero[DDSM_KEY_LEN] = {0};
    assert_memory_equal(key, zero, sizeof(key));
}

/* A small deterministic generator (splitmix64) so a failure names a reproducible case. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* OpenSSL's own SP 800-108 counter-mode KDF: key = seed, salt = Label, info = Context. */
static void openssl_kbkdf(const uint8_t *ctx, size_t ctx_len, uint8_t out[DDSM_KEY_LEN])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
    assert_non_null(kdf);
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    assert_non_null(kctx);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, (char *)"COUNTER", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)"HMAC", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, root_seed, sizeof(root_seed)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (char *)DDSM_LABEL,
                                          strlen(DDSM_LABEL)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)ctx, ctx_len),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(EVP_KDF_derive(kctx, out, DDSM_KEY_LEN, params), 1);
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
}

static void test_derive__agrees_with_openssl_kbkdf_on_random_inputs(void **state)
{
    const ddsm_prf *prf = *state;
    static const char marks[] = {'\'', 'h', 'H'};
    unsigned hardened_seen = 0, plain_seen = 0, depth_seen = 0;

    rng_state = UINT64_C(20240601);
    for (int n = 0; n < 2000; n++) {
        ddsm_uuid asset;
        for (size_t i = 0; i < sizeof(asset.b); i++)
            asset.b[i] = (uint8_t)rng();
        /* The path goes through its text form, so marks and parsing are exercised too. */
        unsigned depth = 1 + (unsigned)(rng() % DDSM_PATH_MAX_DEPTH);
        char text[DDSM_PATH_TEXT_MAX + 16];
        size_t o = 0;
        text[o++] = 'm';
        for (unsigned i = 0; i < depth; i++) {
            uint64_t r = rng();
            uint32_t index = (r & 4) ? (uint32_t)(r >> 33) : (uint32_t)((r >> 40) % 100);
            o += (size_t)snprintf(text + o, sizeof(text) - o, "/%u", index);
            if (r & 1) {
                text[o++] = marks[(r >> 1) % 3];
                hardened_seen++;
            } else {
                plain_seen++;
            }
        }
        text[o] = '\0';
        depth_seen |= 1u << (depth - 1);
        uint64_t counter = n % 10 == 0 ? 0 : n % 10 == 1 ? UINT64_MAX : rng() >> (rng() % 64);

        ddsm_path path = path_ok(text);
        uint8_t msg[DDSM_MSG_MAX], ctx[DDSM_MSG_MAX];
        uint8_t ours[DDSM_KEY_LEN], theirs[DDSM_KEY_LEN], via_msg[DDSM_KEY_LEN];
        size_t mlen = ddsm_derive_message(&asset, &path, counter, msg);
        size_t clen = ddsm_derive_context(&asset, &path, counter, ctx);
        assert_int_equal(mlen, 4 + 7 + 1 + 16 + 1 + 4 * depth + 8 + 4);
        assert_int_equal(ddsm_derive_secret(prf, &asset, &path, counter, ours), DDSM_OK);
        assert_int_equal(ddsm_hmac_sha256(root_seed, sizeof(root_seed), msg, mlen, via_msg),
                         DDSM_OK);
        openssl_kbkdf(ctx, clen, theirs);
        if (memcmp(ours, theirs, sizeof(ours)) != 0 || memcmp(via_msg, theirs, sizeof(ours)))
            fail_msg("case %d differs from OpenSSL KBKDF: path %s counter %llu", n, text,
                     (unsigned long long)counter);
    }
    assert_int_equal(depth_seen, 0xffffu); /* every depth 1..16 was covered */
    assert_true(hardened_seen > 1000 && plain_seen > 1000);
}

static void derive_hex(const ddsm_prf *prf, const char *asset, const char *path, uint64_t counter,
                       char out[2 * DDSM_KEY_LEN + 1])
{
    ddsm_uuid a = uuid_ok(asset);
    ddsm_path p = path_ok(path);
    uint8_t key[DDSM_KEY_LEN];
    assert_int_equal(ddsm_derive_secret(prf, &a, &p, counter, key), DDSM_OK);
    hexs_encode(key, sizeof(key), out);
}

/* docs/design.md "Known flaws we fix": path || decimal(counter) made .../0/1 at counter 23 and
 * .../0/12 at counter 3 the same key; leaving the asset out made assets share keys. */
static void test_derive__path_and_counter_encoding_is_injective(void **state)
{
    const ddsm_prf *prf = *state;
    const char *asset = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    char a[2 * DDSM_KEY_LEN + 1], b[2 * DDSM_KEY_LEN + 1];
    derive_hex(prf, asset, "m/44'/0'/0'/0/1", 23, a);
    derive_hex(prf, asset, "m/44'/0'/0'/0/12", 3, b);
    assert_string_not_equal(a, b);
    derive_hex(prf, asset, "m/1/2", 3, a); /* a longer path vs. a bigger counter */
    derive_hex(prf, asset, "m/1/23", 0, b);
    assert_string_not_equal(a, b);
    derive_hex(prf, asset, "m/1/2/3", 0, a); /* depth is bound: no shifting indices into counter */
    derive_hex(prf, asset, "m/1/2", 3, b);
    assert_string_not_equal(a, b);
    derive_hex(prf, asset, "m/5", 0, a); /* hardening is bound */
    derive_hex(prf, asset, "m/5'", 0, b);
    assert_string_not_equal(a, b);
}

static void test_derive__asset_is_bound_into_the_key(void **state)
{
    const ddsm_prf *prf = *state;
    char a[2 * DDSM_KEY_LEN + 1], b[2 * DDSM_KEY_LEN + 1];
    derive_hex(prf, "6f9619ff-8b86-d011-b42d-00c04fc964ff", "m/44'/0'/0'/0/0", 0, a);
    derive_hex(prf, "6f9619ff-8b86-d011-b42d-00c04fc964fe", "m/44'/0'/0'/0/0", 0, b);
    assert_string_not_equal(a, b);
}

static void test_derive__root_fingerprint_is_lower_hex_of_first_16_mac_bytes(void **state)
{
    const ddsm_prf *prf = *state;
    char fp[DDSM_FINGERPRINT_HEX + 1];
    assert_int_equal(ddsm_root_fingerprint(prf, fp), DDSM_OK);
    assert_int_equal(strlen(fp), DDSM_FINGERPRINT_HEX);
    /* HMAC-SHA256(00..1f, "DDSM-v1 root fingerprint"), computed independently */
    assert_string_equal(fp, "5d02c5c109fe45418ef5953cf6b4788e");
    uint8_t mac[32];
    unsigned mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), root_seed, sizeof(root_seed),
                         (const uint8_t *)DDSM_FINGERPRINT_MSG, strlen(DDSM_FINGERPRINT_MSG), mac,
                         &mac_len));
    char hex[65];
    hexs_encode(mac, 16, hex);
    assert_string_equal(fp, hex);
}

static void test_derive__fingerprint_differs_for_another_root(void **state)
{
    (void)state;
    uint8_t other[32];
    memset(other, 0x42, sizeof(other));
    ddsm_prf prf;
    assert_int_equal(ddsm_prf_openssl_new(other, sizeof(other), &prf), DDSM_OK);
    char fp[DDSM_FINGERPRINT_HEX + 1];
    assert_int_equal(ddsm_root_fingerprint(&prf, fp), DDSM_OK);
    assert_string_not_equal(fp, "5d02c5c109fe45418ef5953cf6b4788e");
    ddsm_prf_openssl_free(&prf);
    assert_null(prf.ctx);
    assert_null(prf.hmac_root);
    ddsm_prf_openssl_free(&prf); /* twice is harmless */
}

static void test_derive__prf_openssl_rejects_missing_seed(void **state)
{
    (void)state;
    ddsm_prf prf;
    uint8_t seed[1] = {1};
    assert_int_equal(ddsm_prf_openssl_new(NULL, 32, &prf), DDSM_E_ARG);
    assert_int_equal(ddsm_prf_openssl_new(seed, 0, &prf), DDSM_E_ARG);
    assert_int_equal(ddsm_prf_openssl_new(seed, 1, NULL), DDSM_E_ARG);
}

static void test_derive__prf_keeps_its_own_copy_of_the_seed(void **state)
{
    (void)state;
    uint8_t seed[32];
    memcpy(seed, root_seed, sizeof(seed));
    ddsm_prf prf;
    assert_int_equal(ddsm_prf_openssl_new(seed, sizeof(seed), &prf), DDSM_OK);
    memset(seed, 0, sizeof(seed)); /* the caller wipes its copy right away */
    char hex[2 * DDSM_KEY_LEN + 1];
    derive_hex(&prf, design_vectors[2].asset, design_vectors[2].path, design_vectors[2].counter,
               hex);
    assert_string_equal(hex, design_vectors[2].key);
    ddsm_prf_openssl_free(&prf);
}

/* CKA_ID: the UUID bytes then the canonical path, read back in any spelling, up to the longest
 * path; anything that is no asset key's id is refused without writing the outputs. */
static void test_derive__key_id_round_trips_and_refuses_what_names_no_key(void **state)
{
    ddsm_uuid a, got;
    ddsm_path p, q;
    char canon[DDSM_PATH_TEXT_MAX], longest[DDSM_PATH_TEXT_MAX];
    uint8_t id[DDSM_KEY_ID_MAX + 8];
    size_t len = 0;
    assert_int_equal(ddsm_uuid_parse("6f9619ff-8b86-d011-b42d-00c04fc964ff", 36, &a), DDSM_OK);
    assert_int_equal(ddsm_key_id(&a, "m/44'/0'/0'/0/0", id, &len), DDSM_OK);
    assert_int_equal(len, 16 + 15);
    assert_memory_equal(id, a.b, 16);
    assert_memory_equal(id + 16, "m/44'/0'/0'/0/0", 15);
    assert_int_equal(ddsm_key_id_parse(id, len, &got, &p), DDSM_OK);
    ddsm_path_format(&p, canon);
    assert_memory_equal(got.b, a.b, 16);
    assert_string_equal(canon, "m/44'/0'/0'/0/0");
    memcpy(id + 16, "m/44h/0H/0'/0/0", 15);
    assert_int_equal(ddsm_key_id_parse(id, len, &got, &q), DDSM_OK);
    assert_memory_equal(&q, &p, sizeof(p));

    /* The longest canonical path: 16 hardened components of 10 digits. */
    strcpy(longest, "m");
    for (int i = 0; i < 16; i++)
        strcat(longest, "/2147483647'");
    assert_int_equal(strlen(longest), DDSM_PATH_TEXT_MAX - 1);
    assert_int_equal(ddsm_key_id(&a, longest, id, &len), DDSM_OK);
    assert_int_equal(len, DDSM_KEY_ID_MAX);
    assert_int_equal(ddsm_key_id_parse(id, len, &got, &p), DDSM_OK);
    assert_int_equal(p.depth, 16);
    assert_int_equal(ddsm_key_id_parse(id, len + 1, &got, &p), DDSM_E_INPUT);

    /* Refused: too short, the nil UUID, malformed paths; outputs untouched. */
    memset(&q, 0xAB, sizeof(q));
    memset(&got, 0xCD, sizeof(got));
    assert_int_equal(ddsm_key_id(&a, "m/1", id, &len), DDSM_OK);
    for (size_t n = 0; n <= 16; n++)
        assert_int_equal(ddsm_key_id_parse(id, n, &got, &q), DDSM_E_INPUT);
    static const char *const bad[] = {"m",     "m/",    "M/1",  "m/01",         "m/1/",
                                      "m//1",  "m/1''", "m/-1", "m/2147483648", "m/1\xe2\x80\x99",
                                      "m/\xff"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(id + 16, bad[i], strlen(bad[i]));
        assert_int_equal(ddsm_key_id_parse(id, 16 + strlen(bad[i]), &got, &q), DDSM_E_INPUT);
    }
    memset(id, 0, 16);
    memcpy(id + 16, "m/1", 3);
    assert_int_equal(ddsm_key_id_parse(id, 19, &got, &q), DDSM_E_INPUT);
    uint8_t q_bytes[sizeof(q)], got_bytes[sizeof(got)];
    memset(q_bytes, 0xAB, sizeof(q_bytes));
    memset(got_bytes, 0xCD, sizeof(got_bytes));
    assert_memory_equal(&q, q_bytes, sizeof(q));
    assert_memory_equal(&got, got_bytes, sizeof(got));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive__matches_design_vectors),
        cmocka_unit_test(test_derive__key_id_round_trips_and_refuses_what_names_no_key),
        cmocka_unit_test(test_derive__builds_first_vector_message_exactly),
        cmocka_unit_test(test_derive__context_is_the_middle_of_the_message),
        cmocka_unit_test(test_derive__message_of_depth_zero_is_the_asset_seed_shape),
        cmocka_unit_test(test_derive__refuses_depth_above_16),
        cmocka_unit_test(test_derive__wipes_key_and_passes_error_when_prf_fails),
        cmocka_unit_test(test_derive__agrees_with_openssl_kbkdf_on_random_inputs),
        cmocka_unit_test(test_derive__path_and_counter_encoding_is_injective),
        cmocka_unit_test(test_derive__asset_is_bound_into_the_key),
        cmocka_unit_test(test_derive__root_fingerprint_is_lower_hex_of_first_16_mac_bytes),
        cmocka_unit_test(test_derive__fingerprint_differs_for_another_root),
        cmocka_unit_test(test_derive__prf_openssl_rejects_missing_seed),
        cmocka_unit_test(test_derive__prf_keeps_its_own_copy_of_the_seed),
    };
    return cmocka_run_group_tests(tests, setup_prf, teardown_prf);
}
