/* SPDX-License-Identifier: Apache-2.0 */
/* HD signing-key derivation: every official BIP-32 (1-5) and SLIP-10 vector, read from
 * tests/unit/vectors/, plus the edge cases of our API (Ed25519 normal index, depths, seeds,
 * serialisation, public derivation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/hd.h"
#include "hex_support.h"

#define MAX_STEPS 8
#define MAX_VECS 12
#define MAX_INVALID 24
#define LINE_MAX_LEN 512

/* ---- helpers --------------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    assert_true(n < size);
    memcpy(dst, src, n + 1);
}

/* "m/0H/2147483647H/1" as the vector files write paths; depth 0 for "m". */
static void parse_vector_path(const char *s, ddsm_path *p)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(s[0], 'm');
    s++;
    while (*s == '/') {
        char *end = NULL;
        unsigned long v = strtoul(s + 1, &end, 10);
        assert_true(end != s + 1 && v < DDSM_HARDENED);
        uint32_t index = (uint32_t)v;
        if (*end == 'H') {
            index |= DDSM_HARDENED;
            end++;
        }
        assert_true(p->depth < DDSM_PATH_MAX_DEPTH);
        p->index[p->depth++] = index;
        s = end;
    }
    assert_int_equal(*s, '\0');
}

static FILE *open_vectors(const char *name)
{
    char path[1024];
    const char *src = getenv("DDSM_SOURCE_DIR");
    if (src != NULL && src[0] != '\0') {
        snprintf(path, sizeof(path), "%s/tests/unit/vectors/%s", src, name);
    } else {
        /* Run by hand: the vectors sit beside this source file. */
        const char *slash = strrchr(__FILE__, '/');
        int dir_len = slash != NULL ? (int)(slash - __FILE__) : 1;
        snprintf(path, sizeof(path), "%.*s/vectors/%s", dir_len, slash ? __FILE__ : ".", name);
    }
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open vector file %s", path);
    return f;
}

/* Next meaningful line split as "keyword rest"; false at end of file. */
static bool next_line(FILE *f, char *kw, size_t kw_size, char *rest, size_t rest_size)
{
    char line[LINE_MAX_LEN];
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = '\0';
        assert_true(strlen(line) < kw_size && strlen(sp + 1) < rest_size);
        strcpy(kw, line);
        strcpy(rest, sp + 1);
        return true;
    }
    return false;
}

/* ---- vector files ---------------------------------------------------------------------------- */

struct bip32_step {
    char path[80];
    char xpub[DDSM_HD_XKEY_TEXT_MAX];
    char xprv[DDSM_HD_XKEY_TEXT_MAX];
};

struct bip32_vec {
    char name[16];
    uint8_t seed[DDSM_HD_SEED_MAX];
    size_t seed_len;
    struct bip32_step steps[MAX_STEPS];
    size_t nsteps;
};

struct bip32_invalid {
    char key[160];
    char reason[160];
};

struct slip10_step {
    char path[80];
    uint8_t fingerprint[DDSM_HD_FINGERPRINT_LEN];
    uint8_t chain_code[DDSM_HD_CHAIN_LEN];
    uint8_t priv[DDSM_HD_KEY_LEN];
    uint8_t pub[DDSM_HD_PUB_COMPRESSED_LEN];
};

struct slip10_vec {
    char name[40];
    ddsm_curve curve;
    uint8_t seed[DDSM_HD_SEED_MAX];
    size_t seed_len;
    struct slip10_step steps[MAX_STEPS];
    size_t nsteps;
};

static struct bip32_vec bip32[MAX_VECS];
static size_t n_bip32;
static struct bip32_invalid bip32_bad[MAX_INVALID];
static size_t n_bip32_bad;
static struct slip10_vec slip10[MAX_VECS];
static size_t n_slip10;

static void load_bip32(void)
{
    char kw[32], rest[LINE_MAX_LEN];
    FILE *f = open_vectors("bip32.txt");
    struct bip32_vec *v = NULL;
    struct bip32_step *s = NULL;

    n_bip32 = n_bip32_bad = 0;
    while (next_line(f, kw, sizeof(kw), rest, sizeof(rest))) {
        if (strcmp(kw, "vector") == 0) {
            assert_true(n_bip32 < MAX_VECS);
            v = &bip32[n_bip32++];
            memset(v, 0, sizeof(*v));
            copy_str(v->name, sizeof(v->name), rest);
            s = NULL;
        } else if (strcmp(kw, "seed") == 0) {
            assert_non_null(v);
            v->seed_len = hexs_decode(rest, v->seed, sizeof(v->seed));
        } else if (strcmp(kw, "chain") == 0) {
            assert_non_null(v);
            assert_true(v->nsteps < MAX_STEPS);
            s = &v->steps[v->nsteps++];
            copy_str(s->path, sizeof(s->path), rest);
        } else if (strcmp(kw, "xpub") == 0 || strcmp(kw, "xprv") == 0) {
            assert_non_null(s);
            assert_true(strlen(rest) < DDSM_HD_XKEY_TEXT_MAX);
            strcpy(strcmp(kw, "xpub") == 0 ? s->xpub : s->xprv, rest);
        } else if (strcmp(kw, "invalid") == 0) {
            assert_true(n_bip32_bad < MAX_INVALID);
            struct bip32_invalid *b = &bip32_bad[n_bip32_bad++];
            char *sp = strchr(rest, ' ');
            assert_non_null(sp);
            *sp = '\0';
            copy_str(b->key, sizeof(b->key), rest);
            copy_str(b->reason, sizeof(b->reason), sp + 1);
        } else {
            fail_msg("bip32.txt: unknown keyword %s", kw);
        }
    }
    fclose(f);
}

static void load_slip10(void)
{
    char kw[32], rest[LINE_MAX_LEN];
    FILE *f = open_vectors("slip10.txt");
    struct slip10_vec *v = NULL;
    struct slip10_step *s = NULL;

    n_slip10 = 0;
    while (next_line(f, kw, sizeof(kw), rest, sizeof(rest))) {
        if (strcmp(kw, "vector") == 0) {
            assert_true(n_slip10 < MAX_VECS);
            v = &slip10[n_slip10++];
            memset(v, 0, sizeof(*v));
            copy_str(v->name, sizeof(v->name), rest);
            const char *curve = strrchr(rest, ' ');
            assert_non_null(curve);
            curve++;
            if (strcmp(curve, "secp256k1") == 0)
                v->curve = DDSM_CURVE_SECP256K1;
            else if (strcmp(curve, "nist256p1") == 0)
                v->curve = DDSM_CURVE_P256;
            else if (strcmp(curve, "ed25519") == 0)
                v->curve = DDSM_CURVE_ED25519;
            else
                fail_msg("slip10.txt: unknown curve %s", curve);
            s = NULL;
        } else if (strcmp(kw, "seed") == 0) {
            assert_non_null(v);
            v->seed_len = hexs_decode(rest, v->seed, sizeof(v->seed));
        } else if (strcmp(kw, "chain") == 0) {
            assert_non_null(v);
            assert_true(v->nsteps < MAX_STEPS);
            s = &v->steps[v->nsteps++];
            copy_str(s->path, sizeof(s->path), rest);
        } else if (strcmp(kw, "fingerprint") == 0) {
            assert_non_null(s);
            hexs_exact(rest, s->fingerprint, sizeof(s->fingerprint));
        } else if (strcmp(kw, "chaincode") == 0) {
            assert_non_null(s);
            hexs_exact(rest, s->chain_code, sizeof(s->chain_code));
        } else if (strcmp(kw, "private") == 0) {
            assert_non_null(s);
            hexs_exact(rest, s->priv, sizeof(s->priv));
        } else if (strcmp(kw, "public") == 0) {
            assert_non_null(s);
            hexs_exact(rest, s->pub, sizeof(s->pub));
        } else {
            fail_msg("slip10.txt: unknown keyword %s", kw);
        }
    }
    fclose(f);
}

static int load_vectors(void **state)
{
    (void)state;
    load_bip32();
    load_slip10();
    return 0;
}

static const struct bip32_vec *bip32_vector(const char *name)
{
    for (size_t i = 0; i < n_bip32; i++)
        if (strcmp(bip32[i].name, name) == 0)
            return &bip32[i];
    fail_msg("no BIP-32 vector %s", name);
    return NULL;
}

static const struct slip10_vec *slip10_vector(const char *name)
{
    for (size_t i = 0; i < n_slip10; i++)
        if (strcmp(slip10[i].name, name) == 0)
            return &slip10[i];
    fail_msg("no SLIP-10 vector %s", name);
    return NULL;
}

static void derive_ok(ddsm_curve curve, const uint8_t *seed, size_t seed_len, const char *path,
                      ddsm_hd_node *node)
{
    ddsm_path p;
    const char *why = NULL;
    parse_vector_path(path, &p);
    ddsm_err e = ddsm_hd_derive_path_secret(curve, seed, seed_len, &p, node, &why);
    if (e != DDSM_OK)
        fail_msg("%s %s: %s (%s)", ddsm_curve_name(curve), path, ddsm_err_str(e), why);
}

/* ---- the vector files themselves ------------------------------------------------------------- */

static void test_vectors__files_hold_every_official_vector(void **state)
{
    (void)state;
    /* BIP-32: vectors 1-5; steps 6, 6, 2, 3; 16 invalid keys. */
    assert_int_equal(n_bip32, 5);
    assert_int_equal(bip32_vector("1")->nsteps, 6);
    assert_int_equal(bip32_vector("2")->nsteps, 6);
    assert_int_equal(bip32_vector("3")->nsteps, 2);
    assert_int_equal(bip32_vector("4")->nsteps, 3);
    assert_int_equal(bip32_vector("5")->nsteps, 0);
    assert_int_equal(n_bip32_bad, 16);
    /* SLIP-10: vectors 1 and 2 for three curves, six steps each, and the two retry vectors. */
    assert_int_equal(n_slip10, 8);
    static const char *const six[] = {"1 secp256k1", "1 nist256p1", "1 ed25519",
                                      "2 secp256k1", "2 nist256p1", "2 ed25519"};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(slip10_vector(six[i])->nsteps, 6);
    assert_int_equal(slip10_vector("retry-derivation nist256p1")->nsteps, 3);
    assert_int_equal(slip10_vector("retry-seed nist256p1")->nsteps, 1);
}

/* ---- BIP-32 -----------------------------------------------------------------------------------
 */

static void test_bip32__vectors_1_to_4_every_step_xprv_and_xpub(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t i = 0; i < n_bip32; i++) {
        const struct bip32_vec *v = &bip32[i];
        for (size_t j = 0; j < v->nsteps; j++) {
            const struct bip32_step *s = &v->steps[j];
            ddsm_hd_node node;
            ddsm_hd_pub_node pub;
            char xprv[DDSM_HD_XKEY_TEXT_MAX], xpub[DDSM_HD_XKEY_TEXT_MAX];

            derive_ok(DDSM_CURVE_SECP256K1, v->seed, v->seed_len, s->path, &node);
            assert_int_equal(ddsm_hd_serialize_xprv_secret(DDSM_CURVE_SECP256K1, &node, xprv),
                             DDSM_OK);
            assert_int_equal(ddsm_hd_neuter(DDSM_CURVE_SECP256K1, &node, &pub), DDSM_OK);
            assert_int_equal(ddsm_hd_serialize_xpub(DDSM_CURVE_SECP256K1, &pub, xpub), DDSM_OK);
            if (strcmp(xprv, s->xprv) != 0 || strcmp(xpub, s->xpub) != 0)
                fail_msg("vector %s %s:\n xprv %s\n want %s\n xpub %s\n want %s", v->name, s->path,
                         xprv, s->xprv, xpub, s->xpub);
            ddsm_hd_node_wipe(&node);
            checked++;
        }
    }
    assert_int_equal(checked, 6 + 6 + 2 + 3);
}

static void test_bip32__parse_ext_round_trips_every_vector_key(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t i = 0; i < n_bip32; i++) {
        const struct bip32_vec *v = &bip32[i];
        for (size_t j = 0; j < v->nsteps; j++) {
            const struct bip32_step *s = &v->steps[j];
            ddsm_hd_ext prv, pub;
            ddsm_hd_node derived;
            char text[DDSM_HD_XKEY_TEXT_MAX];
            const char *why = NULL;

            assert_int_equal(ddsm_hd_parse_ext(s->xprv, strlen(s->xprv), &prv, &why), DDSM_OK);
            assert_int_equal(ddsm_hd_parse_ext(s->xpub, strlen(s->xpub), &pub, &why), DDSM_OK);
            assert_true(prv.is_private);
            assert_false(pub.is_private);

            derive_ok(DDSM_CURVE_SECP256K1, v->seed, v->seed_len, s->path, &derived);
            assert_memory_equal(&prv.node, &derived, sizeof(derived));
            /* The xprv's neutered key is the xpub. */
            assert_memory_equal(&prv.pub, &pub.pub, sizeof(pub.pub));

            assert_int_equal(ddsm_hd_serialize_xprv_secret(DDSM_CURVE_SECP256K1, &prv.node, text),
                             DDSM_OK);
            assert_string_equal(text, s->xprv);
            assert_int_equal(ddsm_hd_serialize_xpub(DDSM_CURVE_SECP256K1, &pub.pub, text), DDSM_OK);
            assert_string_equal(text, s->xpub);
            ddsm_hd_ext_wipe(&prv);
            ddsm_hd_node_wipe(&derived);
            checked++;
        }
    }
    assert_int_equal(checked, 17);
}

/* Watch-only wallets: CKDpub from the parent's xpub gives the child's xpub for every normal step
 * of the official vectors. */
static void test_bip32__public_derivation_matches_every_normal_step(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t i = 0; i < n_bip32; i++) {
        const struct bip32_vec *v = &bip32[i];
        for (size_t j = 1; j < v->nsteps; j++) {
            ddsm_path p;
            parse_vector_path(v->steps[j].path, &p);
            uint32_t index = p.index[p.depth - 1];
            if (index & DDSM_HARDENED)
                continue;
            ddsm_hd_ext parent;
            ddsm_hd_pub_node child;
            char text[DDSM_HD_XKEY_TEXT_MAX];
            const char *why = NULL;
            const char *pxpub = v->steps[j - 1].xpub;
            assert_int_equal(ddsm_hd_parse_ext(pxpub, strlen(pxpub), &parent, &why), DDSM_OK);
            ddsm_err e =
                ddsm_hd_child_public(DDSM_CURVE_SECP256K1, &parent.pub, index, &child, &why);
            if (e != DDSM_OK)
                fail_msg("vector %s %s: %s", v->name, v->steps[j].path, why);
            assert_int_equal(ddsm_hd_serialize_xpub(DDSM_CURVE_SECP256K1, &child, text), DDSM_OK);
            assert_string_equal(text, v->steps[j].xpub);
            checked++;
        }
    }
    /* m/0H/1, m/0H/1/2H/2, .../1000000000; m/0, m/0/2147483647H/1, .../2 */
    assert_int_equal(checked, 6);
}

/* Test vector 5: each key is refused, for the reason the BIP gives. */
static void test_bip32__vector5_rejects_each_key_for_the_bip_reason(void **state)
{
    (void)state;
    static const struct {
        const char *bip_reason_prefix;
        const char *why;
    } reasons[] = {
        {"pubkey version / prvkey mismatch", "pubkey version / prvkey mismatch"},
        {"prvkey version / pubkey mismatch", "prvkey version / pubkey mismatch"},
        {"invalid pubkey prefix ", "invalid pubkey prefix (must be 02 or 03)"},
        {"invalid prvkey prefix ", "invalid prvkey prefix (must be 00)"},
        {"zero depth with non-zero parent fingerprint",
         "zero depth with non-zero parent fingerprint"},
        {"zero depth with non-zero index", "zero depth with non-zero index"},
        {"unknown extended key version", "unknown extended key version"},
        {"private key 0 not in 1..n-1", "private key not in 1..n-1"},
        {"private key n not in 1..n-1", "private key not in 1..n-1"},
        {"invalid pubkey 02", "invalid pubkey (not a point of secp256k1)"},
        {"invalid checksum", "invalid checksum"},
    };
    for (size_t i = 0; i < n_bip32_bad; i++) {
        const struct bip32_invalid *b = &bip32_bad[i];
        const char *expected = NULL;
        for (size_t r = 0; r < sizeof(reasons) / sizeof(reasons[0]); r++) {
            if (strncmp(b->reason, reasons[r].bip_reason_prefix,
                        strlen(reasons[r].bip_reason_prefix)) == 0) {
                expected = reasons[r].why;
                break;
            }
        }
        if (expected == NULL)
            fail_msg("no expectation for BIP reason \"%s\"", b->reason);

        ddsm_hd_ext ext, before;
        memset(&ext, 0xA5, sizeof(ext));
        memcpy(&before, &ext, sizeof(ext));
        const char *why = NULL;
        ddsm_err e = ddsm_hd_parse_ext(b->key, strlen(b->key), &ext, &why);
        if (e != DDSM_E_INPUT || why == NULL || strcmp(why, expected) != 0)
            fail_msg("%s (%s): got %s, \"%s\"; want \"%s\"", b->key, b->reason, ddsm_err_str(e),
                     why != NULL ? why : "(none)", expected);
        assert_memory_equal(&ext, &before, sizeof(ext)); /* out untouched on error */
    }
}

static void test_bip32__public_derivation_refuses_hardened_index(void **state)
{
    (void)state;
    const struct bip32_vec *v = bip32_vector("1");
    ddsm_hd_ext m;
    ddsm_hd_pub_node child;
    const char *why = NULL;
    assert_int_equal(ddsm_hd_parse_ext(v->steps[0].xpub, strlen(v->steps[0].xpub), &m, &why),
                     DDSM_OK);
    assert_int_equal(
        ddsm_hd_child_public(DDSM_CURVE_SECP256K1, &m.pub, DDSM_HARDENED, &child, &why),
        DDSM_E_PATH);
    assert_string_equal(why, "a hardened child cannot be derived from a public key");
}

static void test_bip32__public_derivation_refuses_parent_off_the_curve(void **state)
{
    (void)state;
    const struct bip32_vec *v = bip32_vector("1");
    ddsm_hd_ext m;
    ddsm_hd_pub_node child;
    const char *why = NULL;
    assert_int_equal(ddsm_hd_parse_ext(v->steps[0].xpub, strlen(v->steps[0].xpub), &m, &why),
                     DDSM_OK);
    /* x = 7 has no point on secp256k1 (BIP-32 vector 5 uses it for the same reason). */
    memset(m.pub.public_key, 0, sizeof(m.pub.public_key));
    m.pub.public_key[0] = 0x02;
    m.pub.public_key[32] = 0x07;
    assert_int_equal(ddsm_hd_child_public(DDSM_CURVE_SECP256K1, &m.pub, 0, &child, &why),
                     DDSM_E_INPUT);
}

static void test_bip32__parse_ext_rejects_wrong_payload_length_and_alphabet(void **state)
{
    (void)state;
    uint8_t payload[DDSM_HD_EXT_LEN - 1] = {0x04, 0x88, 0xAD, 0xE4};
    char text[DDSM_HD_XKEY_TEXT_MAX + 8];
    ddsm_hd_ext ext;
    const char *why = NULL;

    assert_int_equal(ddsm_base58check_encode(payload, sizeof(payload), text, sizeof(text)),
                     DDSM_OK);
    assert_int_equal(ddsm_hd_parse_ext(text, strlen(text), &ext, &why), DDSM_E_INPUT);
    assert_string_equal(why, "not an extended key (the payload is not 78 bytes)");

    /* '0' is not in the Bitcoin alphabet. */
    const char *good = bip32_vector("1")->steps[0].xprv;
    char bad[DDSM_HD_XKEY_TEXT_MAX];
    strcpy(bad, good);
    bad[10] = '0';
    assert_int_equal(ddsm_hd_parse_ext(bad, strlen(bad), &ext, &why), DDSM_E_INPUT);
    assert_string_equal(why, "not Base58 (a character outside the Bitcoin alphabet)");

    /* The length is the caller's: a prefix of a valid key is not that key. */
    assert_int_equal(ddsm_hd_parse_ext(good, strlen(good) - 1, &ext, &why), DDSM_E_INPUT);
}

/* ---- SLIP-10 ----------------------------------------------------------------------------------
 */

static void check_slip10_step(const struct slip10_vec *v, const struct slip10_step *s)
{
    ddsm_hd_node node;
    uint8_t pub[DDSM_HD_PUB_MAX];
    size_t pub_len = 0;

    derive_ok(v->curve, v->seed, v->seed_len, s->path, &node);
    if (memcmp(node.chain_code, s->chain_code, sizeof(s->chain_code)) != 0)
        fail_msg("vector %s %s: chain code differs", v->name, s->path);
    if (memcmp(node.secret_key, s->priv, sizeof(s->priv)) != 0)
        fail_msg("vector %s %s: private key differs", v->name, s->path);
    if (memcmp(node.parent_fingerprint, s->fingerprint, sizeof(s->fingerprint)) != 0)
        fail_msg("vector %s %s: parent fingerprint differs", v->name, s->path);
    assert_int_equal(ddsm_hd_public(v->curve, &node, pub, &pub_len), DDSM_OK);
    if (v->curve == DDSM_CURVE_ED25519) {
        /* SLIP-10 writes Ed25519 public keys as 0x00 || key. */
        assert_int_equal(pub_len, DDSM_HD_ED25519_PUB_LEN);
        assert_int_equal(s->pub[0], 0x00);
        if (memcmp(pub, s->pub + 1, DDSM_HD_ED25519_PUB_LEN) != 0)
            fail_msg("vector %s %s: public key differs", v->name, s->path);
    } else {
        assert_int_equal(pub_len, DDSM_HD_PUB_COMPRESSED_LEN);
        if (memcmp(pub, s->pub, DDSM_HD_PUB_COMPRESSED_LEN) != 0)
            fail_msg("vector %s %s: public key differs", v->name, s->path);
    }
    ddsm_path p;
    parse_vector_path(s->path, &p);
    assert_int_equal(node.depth, p.depth);
    assert_int_equal(node.child_number, p.depth ? p.index[p.depth - 1] : 0);
    ddsm_hd_node_wipe(&node);
}

static void check_slip10_vector(const char *name)
{
    const struct slip10_vec *v = slip10_vector(name);
    assert_true(v->nsteps > 0);
    for (size_t j = 0; j < v->nsteps; j++)
        check_slip10_step(v, &v->steps[j]);
}

static void test_slip10__secp256k1_vectors_every_step(void **state)
{
    (void)state;
    check_slip10_vector("1 secp256k1");
    check_slip10_vector("2 secp256k1");
}

static void test_slip10__nist256p1_vectors_every_step(void **state)
{
    (void)state;
    check_slip10_vector("1 nist256p1");
    check_slip10_vector("2 nist256p1");
}

static void test_slip10__ed25519_vectors_every_step(void **state)
{
    (void)state;
    check_slip10_vector("1 ed25519");
    check_slip10_vector("2 ed25519");
}

static const uint8_t p256_order[32] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51};

/* HMAC-SHA512 straight from OpenSSL, independent of the code under test. */
static void openssl_hmac_sha512(const void *key, size_t key_len, const uint8_t *data, size_t len,
                                uint8_t out[64])
{
    size_t out_len = 0;
    assert_non_null(
        EVP_Q_mac(NULL, "HMAC", NULL, "SHA512", NULL, key, key_len, data, len, out, 64, &out_len));
    assert_int_equal(out_len, 64);
}

static void test_slip10__p256_seed_retry_vector(void **state)
{
    (void)state;
    const struct slip10_vec *v = slip10_vector("retry-seed nist256p1");
    uint8_t I[64];
    /* The vector does exercise the retry: its first I_L is not below n. */
    openssl_hmac_sha512("Nist256p1 seed", 14, v->seed, v->seed_len, I);
    assert_true(memcmp(I, p256_order, 32) >= 0);
    check_slip10_vector("retry-seed nist256p1");
}

static void test_slip10__p256_child_retry_vector(void **state)
{
    (void)state;
    const struct slip10_vec *v = slip10_vector("retry-derivation nist256p1");
    const struct slip10_step *parent = &v->steps[1]; /* m/28578H */
    uint8_t data[33 + 4], I[64];
    /* The vector does exercise the retry: the first I_L of m/28578H/33941 is not below n. */
    assert_string_equal(parent->path, "m/28578H");
    memcpy(data, parent->pub, 33);
    data[33] = 0x00;
    data[34] = 0x00;
    data[35] = 33941 >> 8;
    data[36] = 33941 & 0xFF;
    openssl_hmac_sha512(parent->chain_code, 32, data, sizeof(data), I);
    assert_true(memcmp(I, p256_order, 32) >= 0);
    check_slip10_vector("retry-derivation nist256p1");
}

/* P-256 CKDpub (with SLIP-10's retry) agrees with CKDpriv on every normal step of the vectors,
 * the retry vector's m/28578H/33941 included. */
static void test_slip10__p256_public_derivation_matches_every_normal_step(void **state)
{
    (void)state;
    static const char *const names[] = {"1 nist256p1", "2 nist256p1", "retry-derivation nist256p1"};
    size_t checked = 0;
    for (size_t n = 0; n < 3; n++) {
        const struct slip10_vec *v = slip10_vector(names[n]);
        for (size_t j = 1; j < v->nsteps; j++) {
            ddsm_path p;
            parse_vector_path(v->steps[j].path, &p);
            uint32_t index = p.index[p.depth - 1];
            if (index & DDSM_HARDENED)
                continue;
            ddsm_hd_node parent;
            ddsm_hd_pub_node ppub, child;
            const char *why = NULL;
            derive_ok(DDSM_CURVE_P256, v->seed, v->seed_len, v->steps[j - 1].path, &parent);
            assert_int_equal(ddsm_hd_neuter(DDSM_CURVE_P256, &parent, &ppub), DDSM_OK);
            ddsm_err e = ddsm_hd_child_public(DDSM_CURVE_P256, &ppub, index, &child, &why);
            if (e != DDSM_OK)
                fail_msg("vector %s %s: %s", v->name, v->steps[j].path, why);
            assert_memory_equal(child.public_key, v->steps[j].pub, 33);
            assert_memory_equal(child.chain_code, v->steps[j].chain_code, 32);
            assert_memory_equal(child.parent_fingerprint, v->steps[j].fingerprint, 4);
            assert_int_equal(child.depth, p.depth);
            assert_int_equal(child.child_number, index);
            ddsm_hd_node_wipe(&parent);
            checked++;
        }
    }
    assert_int_equal(checked, 3 + 3 + 1);
}

/* ---- API edge cases -------------------------------------------------------------------------- */

static const uint8_t seed32[32] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                   0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                                   0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};

static void test_hd__ed25519_refuses_a_normal_index(void **state)
{
    (void)state;
    ddsm_hd_node master, child;
    const char *why = NULL;
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_ED25519, seed32, 32, &master, &why), DDSM_OK);

    memset(&child, 0x5A, sizeof(child));
    ddsm_hd_node before = child;
    assert_int_equal(ddsm_hd_child_secret(DDSM_CURVE_ED25519, &master, 0, &child, &why),
                     DDSM_E_PATH);
    assert_non_null(strstr(why, "hardened"));
    assert_memory_equal(&child, &before, sizeof(child));

    /* Through a path: refused before any derivation, whichever component is normal. */
    ddsm_path p;
    parse_vector_path("m/44H/501H/0H/0", &p);
    why = NULL;
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_ED25519, seed32, 32, &p, &child, &why),
                     DDSM_E_PATH);
    assert_non_null(strstr(why, "hardened"));
    assert_memory_equal(&child, &before, sizeof(child));

    /* The same path hardened throughout works. */
    parse_vector_path("m/44H/501H/0H/0H", &p);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_ED25519, seed32, 32, &p, &child, &why),
                     DDSM_OK);
    assert_int_equal(child.depth, 4);
    ddsm_hd_node_wipe(&master);
    ddsm_hd_node_wipe(&child);
}

static void test_hd__normal_index_works_on_weierstrass_curves(void **state)
{
    (void)state;
    ddsm_path p;
    ddsm_hd_node a, b;
    parse_vector_path("m/44H/0H/0H/0/5", &p);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_SECP256K1, seed32, 32, &p, &a, NULL),
                     DDSM_OK);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_P256, seed32, 32, &p, &b, NULL),
                     DDSM_OK);
    /* Same seed, same path, different curves: different keys (different master HMAC keys). */
    assert_memory_not_equal(a.secret_key, b.secret_key, 32);
    assert_int_equal(a.child_number, 5);
    assert_int_equal(a.depth, 5);
}

static void test_hd__depth_zero_path_is_the_master(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_ED25519, DDSM_CURVE_P256};
    for (size_t i = 0; i < 3; i++) {
        ddsm_path p = {.depth = 0};
        ddsm_hd_node m, d;
        assert_int_equal(ddsm_hd_master_secret(curves[i], seed32, 32, &m, NULL), DDSM_OK);
        assert_int_equal(ddsm_hd_derive_path_secret(curves[i], seed32, 32, &p, &d, NULL), DDSM_OK);
        assert_memory_equal(&m, &d, sizeof(m));
        assert_int_equal(d.depth, 0);
        assert_int_equal(d.child_number, 0);
        static const uint8_t zero[4] = {0};
        assert_memory_equal(d.parent_fingerprint, zero, 4);
    }
}

static void test_hd__path_is_child_by_child(void **state)
{
    (void)state;
    ddsm_path p;
    ddsm_hd_node m, c1, c2, direct;
    uint8_t fp[4];
    parse_vector_path("m/7H/9", &p);
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_P256, seed32, 32, &m, NULL), DDSM_OK);
    assert_int_equal(ddsm_hd_child_secret(DDSM_CURVE_P256, &m, 7 | DDSM_HARDENED, &c1, NULL),
                     DDSM_OK);
    assert_int_equal(ddsm_hd_child_secret(DDSM_CURVE_P256, &c1, 9, &c2, NULL), DDSM_OK);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_P256, seed32, 32, &p, &direct, NULL),
                     DDSM_OK);
    assert_memory_equal(&c2, &direct, sizeof(c2));
    assert_int_equal(ddsm_hd_fingerprint(DDSM_CURVE_P256, &c1, fp), DDSM_OK);
    assert_memory_equal(c2.parent_fingerprint, fp, 4);
}

static void test_hd__sixteen_levels_work_and_seventeen_are_refused(void **state)
{
    (void)state;
    ddsm_path p = {.depth = 16};
    ddsm_hd_node n;
    for (unsigned i = 0; i < 16; i++)
        p.index[i] = i | DDSM_HARDENED;
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_ED25519, seed32, 32, &p, &n, NULL),
                     DDSM_OK);
    assert_int_equal(n.depth, 16);
    assert_int_equal(n.child_number, 15 | DDSM_HARDENED);

    p.depth = DDSM_PATH_MAX_DEPTH + 1; /* a malformed struct: our own misuse */
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_ED25519, seed32, 32, &p, &n, NULL),
                     DDSM_E_ARG);
}

static void test_hd__depth_255_has_no_child(void **state)
{
    (void)state;
    ddsm_hd_node m, c;
    ddsm_hd_pub_node pm, pc;
    const char *why = NULL;
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_SECP256K1, seed32, 32, &m, NULL), DDSM_OK);
    m.depth = 254;
    assert_int_equal(ddsm_hd_child_secret(DDSM_CURVE_SECP256K1, &m, 1, &c, &why), DDSM_OK);
    assert_int_equal(c.depth, 255);
    assert_int_equal(ddsm_hd_child_secret(DDSM_CURVE_SECP256K1, &c, 1, &m, &why), DDSM_E_PATH);
    assert_non_null(strstr(why, "255"));
    assert_int_equal(ddsm_hd_neuter(DDSM_CURVE_SECP256K1, &c, &pm), DDSM_OK);
    assert_int_equal(ddsm_hd_child_public(DDSM_CURVE_SECP256K1, &pm, 1, &pc, &why), DDSM_E_PATH);
}

static void test_hd__seed_must_be_16_to_64_bytes(void **state)
{
    (void)state;
    uint8_t seed[65] = {1};
    ddsm_hd_node n;
    const char *why = NULL;
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_SECP256K1, seed, 15, &n, &why), DDSM_E_INPUT);
    assert_non_null(strstr(why, "16 to 64"));
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_P256, seed, 65, &n, &why), DDSM_E_INPUT);
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_ED25519, seed, 16, &n, &why), DDSM_OK);
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_ED25519, seed, 64, &n, &why), DDSM_OK);
    ddsm_path p = {.depth = 0};
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_P256, seed, 0, &p, &n, &why),
                     DDSM_E_INPUT);
}

static void test_hd__null_arguments_and_unknown_curve_are_refused(void **state)
{
    (void)state;
    ddsm_hd_node n;
    ddsm_path p = {.depth = 0};
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_SECP256K1, NULL, 32, &n, NULL), DDSM_E_ARG);
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_SECP256K1, seed32, 32, NULL, NULL),
                     DDSM_E_ARG);
    assert_int_equal(ddsm_hd_master_secret((ddsm_curve)7, seed32, 32, &n, NULL), DDSM_E_ARG);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_P256, seed32, 32, NULL, &n, NULL),
                     DDSM_E_ARG);
    assert_int_equal(ddsm_hd_child_secret(DDSM_CURVE_P256, NULL, 0, &n, NULL), DDSM_E_ARG);
    assert_int_equal(ddsm_hd_derive_path_secret(DDSM_CURVE_P256, seed32, 32, &p, &n, NULL),
                     DDSM_OK);
}

static void test_hd__ec_point_is_the_uncompressed_public_key(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_P256};
    for (size_t i = 0; i < 2; i++) {
        ddsm_hd_node m;
        ddsm_hd_pub_node pub;
        uint8_t comp[DDSM_HD_PUB_MAX], point[DDSM_HD_PUB_MAX], unc[65];
        size_t comp_len = 0, point_len = 0;
        assert_int_equal(ddsm_hd_master_secret(curves[i], seed32, 32, &m, NULL), DDSM_OK);
        assert_int_equal(ddsm_hd_public(curves[i], &m, comp, &comp_len), DDSM_OK);
        assert_int_equal(ddsm_hd_ec_point(curves[i], &m, point, &point_len), DDSM_OK);
        assert_int_equal(comp_len, 33);
        assert_int_equal(point_len, 65);
        assert_int_equal(point[0], 0x04);
        assert_memory_equal(point + 1, comp + 1, 32);      /* same X */
        assert_int_equal(comp[0], 0x02 | (point[64] & 1)); /* parity of Y */
        assert_int_equal(ddsm_hd_neuter(curves[i], &m, &pub), DDSM_OK);
        assert_int_equal(ddsm_hd_point_uncompress(curves[i], pub.public_key, unc), DDSM_OK);
        assert_memory_equal(unc, point, 65);
    }
    /* Ed25519: CKA_EC_POINT carries the 32-byte key itself. */
    ddsm_hd_node m;
    uint8_t a[DDSM_HD_PUB_MAX], b[DDSM_HD_PUB_MAX];
    size_t a_len = 0, b_len = 0;
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_ED25519, seed32, 32, &m, NULL), DDSM_OK);
    assert_int_equal(ddsm_hd_public(DDSM_CURVE_ED25519, &m, a, &a_len), DDSM_OK);
    assert_int_equal(ddsm_hd_ec_point(DDSM_CURVE_ED25519, &m, b, &b_len), DDSM_OK);
    assert_int_equal(a_len, 32);
    assert_int_equal(b_len, 32);
    assert_memory_equal(a, b, 32);
}

static void test_hd__point_uncompress_refuses_non_points(void **state)
{
    (void)state;
    uint8_t pub[33] = {0x02}, out[65];
    pub[32] = 0x07; /* x = 7 is not on secp256k1 */
    assert_int_equal(ddsm_hd_point_uncompress(DDSM_CURVE_SECP256K1, pub, out), DDSM_E_INPUT);
    pub[0] = 0x04;
    assert_int_equal(ddsm_hd_point_uncompress(DDSM_CURVE_P256, pub, out), DDSM_E_INPUT);
    assert_int_equal(ddsm_hd_point_uncompress(DDSM_CURVE_ED25519, pub, out), DDSM_E_ARG);
}

static void test_hd__xkeys_and_public_derivation_only_where_defined(void **state)
{
    (void)state;
    ddsm_hd_node m;
    ddsm_hd_pub_node pub, child;
    char text[DDSM_HD_XKEY_TEXT_MAX];
    const char *why = NULL;

    memset(&child, 0, sizeof(child));
    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_P256, seed32, 32, &m, NULL), DDSM_OK);
    assert_int_equal(ddsm_hd_serialize_xprv_secret(DDSM_CURVE_P256, &m, text), DDSM_E_INPUT);
    assert_int_equal(ddsm_hd_neuter(DDSM_CURVE_P256, &m, &pub), DDSM_OK);
    assert_int_equal(ddsm_hd_serialize_xpub(DDSM_CURVE_P256, &pub, text), DDSM_E_INPUT);

    assert_int_equal(ddsm_hd_master_secret(DDSM_CURVE_ED25519, seed32, 32, &m, NULL), DDSM_OK);
    assert_int_equal(ddsm_hd_neuter(DDSM_CURVE_ED25519, &m, &pub), DDSM_E_INPUT);
    assert_int_equal(ddsm_hd_serialize_xprv_secret(DDSM_CURVE_ED25519, &m, text), DDSM_E_INPUT);
    /* Even handed a public node, Ed25519 has no CKDpub. */
    assert_int_equal(ddsm_hd_child_public(DDSM_CURVE_ED25519, &child, 0, &pub, &why), DDSM_E_INPUT);
    assert_non_null(strstr(why, "Ed25519"));
}

static void test_hd__curve_names_round_trip(void **state)
{
    (void)state;
    static const ddsm_curve curves[] = {DDSM_CURVE_SECP256K1, DDSM_CURVE_ED25519, DDSM_CURVE_P256};
    for (size_t i = 0; i < 3; i++) {
        ddsm_curve c;
        assert_int_equal(ddsm_curve_parse(ddsm_curve_name(curves[i]), &c), DDSM_OK);
        assert_int_equal(c, curves[i]);
    }
    ddsm_curve c = DDSM_CURVE_P256;
    assert_int_equal(ddsm_curve_parse("P256", &c), DDSM_E_INPUT);
    assert_int_equal(ddsm_curve_parse("nist256p1", &c), DDSM_E_INPUT);
    assert_int_equal(c, DDSM_CURVE_P256);
    assert_string_equal(ddsm_curve_name((ddsm_curve)9), "unknown");
}

/* ---- Base58Check ----------------------------------------------------------------------------- */

static void test_base58__round_trips_and_keeps_leading_zero_bytes(void **state)
{
    (void)state;
    const uint8_t payload[] = {0x00, 0x00, 0x00, 0x01, 0xff, 0x3a};
    char text[64];
    uint8_t back[16];
    size_t back_len = 0;
    const char *why = NULL;
    assert_int_equal(ddsm_base58check_encode(payload, sizeof(payload), text, sizeof(text)),
                     DDSM_OK);
    assert_memory_equal(text, "111", 3); /* one '1' per leading zero byte */
    assert_true(text[3] != '1');
    assert_int_equal(
        ddsm_base58check_decode(text, strlen(text), back, sizeof(back), &back_len, &why), DDSM_OK);
    assert_int_equal(back_len, sizeof(payload));
    assert_memory_equal(back, payload, sizeof(payload));

    /* The empty payload is its checksum alone. */
    assert_int_equal(ddsm_base58check_encode(payload, 0, text, sizeof(text)), DDSM_OK);
    assert_int_equal(
        ddsm_base58check_decode(text, strlen(text), back, sizeof(back), &back_len, &why), DDSM_OK);
    assert_int_equal(back_len, 0);
}

static void test_base58__rejects_bad_text(void **state)
{
    (void)state;
    const uint8_t payload[] = {0x04, 0x88, 0xB2, 0x1E, 0x00};
    char text[64];
    uint8_t back[16];
    size_t back_len = 0;
    const char *why = NULL;

    assert_int_equal(ddsm_base58check_encode(payload, sizeof(payload), text, sizeof(text)),
                     DDSM_OK);
    size_t n = strlen(text);
    /* A changed last character breaks the checksum. */
    text[n - 1] = (text[n - 1] == 'z') ? 'y' : 'z';
    assert_int_equal(ddsm_base58check_decode(text, n, back, sizeof(back), &back_len, &why),
                     DDSM_E_INPUT);
    assert_string_equal(why, "invalid checksum");
    static const char *const outside[] = {"0", "O", "I", "l", "+", " "};
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        assert_int_equal(
            ddsm_base58check_decode(outside[i], 1, back, sizeof(back), &back_len, &why),
            DDSM_E_INPUT);
        assert_non_null(strstr(why, "alphabet"));
    }
    assert_int_equal(ddsm_base58check_decode("", 0, back, sizeof(back), &back_len, &why),
                     DDSM_E_INPUT);
    /* Four zero bytes are not the checksum of the empty payload. */
    assert_int_equal(ddsm_base58check_decode("1111", 4, back, sizeof(back), &back_len, &why),
                     DDSM_E_INPUT);
    assert_string_equal(why, "invalid checksum");
    /* Output too small for the payload. */
    assert_int_equal(ddsm_base58check_encode(payload, sizeof(payload), text, sizeof(text)),
                     DDSM_OK);
    assert_int_equal(ddsm_base58check_decode(text, strlen(text), back, 2, &back_len, &why),
                     DDSM_E_INPUT);
    /* Encoding into a buffer that is too small. */
    assert_int_equal(ddsm_base58check_encode(payload, sizeof(payload), text, 4), DDSM_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors__files_hold_every_official_vector),
        cmocka_unit_test(test_bip32__vectors_1_to_4_every_step_xprv_and_xpub),
        cmocka_unit_test(test_bip32__parse_ext_round_trips_every_vector_key),
        cmocka_unit_test(test_bip32__public_derivation_matches_every_normal_step),
        cmocka_unit_test(test_bip32__vector5_rejects_each_key_for_the_bip_reason),
        cmocka_unit_test(test_bip32__public_derivation_refuses_hardened_index),
        cmocka_unit_test(test_bip32__public_derivation_refuses_parent_off_the_curve),
        cmocka_unit_test(test_bip32__parse_ext_rejects_wrong_payload_length_and_alphabet),
        cmocka_unit_test(test_slip10__secp256k1_vectors_every_step),
        cmocka_unit_test(test_slip10__nist256p1_vectors_every_step),
        cmocka_unit_test(test_slip10__ed25519_vectors_every_step),
        cmocka_unit_test(test_slip10__p256_seed_retry_vector),
        cmocka_unit_test(test_slip10__p256_child_retry_vector),
        cmocka_unit_test(test_slip10__p256_public_derivation_matches_every_normal_step),
        cmocka_unit_test(test_hd__ed25519_refuses_a_normal_index),
        cmocka_unit_test(test_hd__normal_index_works_on_weierstrass_curves),
        cmocka_unit_test(test_hd__depth_zero_path_is_the_master),
        cmocka_unit_test(test_hd__path_is_child_by_child),
        cmocka_unit_test(test_hd__sixteen_levels_work_and_seventeen_are_refused),
        cmocka_unit_test(test_hd__depth_255_has_no_child),
        cmocka_unit_test(test_hd__seed_must_be_16_to_64_bytes),
        cmocka_unit_test(test_hd__null_arguments_and_unknown_curve_are_refused),
        cmocka_unit_test(test_hd__ec_point_is_the_uncompressed_public_key),
        cmocka_unit_test(test_hd__point_uncompress_refuses_non_points),
        cmocka_unit_test(test_hd__xkeys_and_public_derivation_only_where_defined),
        cmocka_unit_test(test_hd__curve_names_round_trip),
        cmocka_unit_test(test_base58__round_trips_and_keeps_leading_zero_bytes),
        cmocka_unit_test(test_base58__rejects_bad_text),
    };
    return cmocka_run_group_tests(tests, load_vectors, NULL);
}
