/* SPDX-License-Identifier: Apache-2.0 */
/* Derivation through the backend HSM's root key, for the root seed ceremony.
 *
 * Run without arguments (ctest integration.test_ceremony_derive): imports the docs/design.md vector
 * seed 00..1f into the test token with `ddsmctl root import`, then checks that the HSM-keyed PRF
 * (ddsm_hsm_prf + ddsm_derive_secret) gives docs/design.md's vector keys and fingerprint, and that the
 * HSM refuses to reveal the imported key.
 *
 * Run as a helper by tests/integration/test_root_ceremony.sh:
 *     test_ceremony_derive derive ASSET PATH COUNTER
 * derives (ASSET, PATH, COUNTER) under the root key on the token of $DDSM_CONF (PIN $DDSM_PIN)
 * and prints hex(HMAC-SHA256(key, "data")), never the key itself, so that tokens can be
 * compared. And
 *     test_ceremony_derive derive-module ASSET PATH
 * does the same through libddsm-pkcs11.so ($DDSM_MODULE): C_DeriveKey(CKM_DDSM_DERIVE) on the
 * root key's handle, then C_Sign(CKM_SHA256_HMAC, "data") with the derived key; the counter is
 * the asset's current one in the store (the asset must be ACTIVE). Exit 0 on success, 1 on any
 * failure (with the reason on stderr). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <spawn.h>
#include <sys/wait.h>

#include "ddsm/config.h"
#include "ddsm/derive.h"
#include "ddsm/hsm.h"
#include "ddsm/mac.h"
#include "ddsm/path.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/secmem.h"
#include "ddsm/uuid.h"
#include "design_vectors.h"
#include "hex_support.h"

extern char **environ;

/* A logged-in session on the root token of the configuration, and the root key. */
struct root_session {
    ddsm_config *cfg;
    ddsm_hsm *hsm;
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE root;
};

static int open_root(struct root_session *rs, char *why, size_t n)
{
    CK_SLOT_ID slot;
    unsigned count = 0;
    CK_RV rv;
    const char *pin = getenv("DDSM_PIN");

    memset(rs, 0, sizeof(*rs));
    if (pin == NULL)
        pin = getenv("DDSM_TEST_PIN");
    if (pin == NULL) {
        snprintf(why, n, "neither DDSM_PIN nor DDSM_TEST_PIN is set");
        return -1;
    }
    if (ddsm_config_load(ddsm_config_default_path(), &rs->cfg, why, n) != DDSM_OK)
        return -1;
    const char *token = rs->cfg->backend.root_token_label != NULL
                            ? rs->cfg->backend.root_token_label
                            : rs->cfg->backend.token_label;
    if (ddsm_hsm_load(rs->cfg->backend.module, &rs->hsm, why, n) != CKR_OK)
        return -1;
    CK_FUNCTION_LIST_PTR fl = ddsm_hsm_functions(rs->hsm);
    if ((rv = ddsm_hsm_find_token(rs->hsm, token, &slot)) != CKR_OK) {
        snprintf(why, n, "token %s: %s", token, ddsm_rv_name(rv));
        return -1;
    }
    if ((rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &rs->session)) != CKR_OK) {
        snprintf(why, n, "C_OpenSession: %s", ddsm_rv_name(rv));
        return -1;
    }
    if ((rv = ddsm_hsm_login_secret(rs->hsm, rs->session, pin, strlen(pin))) != CKR_OK) {
        snprintf(why, n, "C_Login: %s", ddsm_rv_name(rv));
        return -1;
    }
    rv = ddsm_hsm_find_object(rs->hsm, rs->session, CKO_SECRET_KEY, rs->cfg->backend.root_key_label,
                              &rs->root, &count);
    if (rv != CKR_OK || count != 1) {
        snprintf(why, n, "root key %s: %s, %u found", rs->cfg->backend.root_key_label,
                 ddsm_rv_name(rv), count);
        return -1;
    }
    return 0;
}

static void close_root(struct root_session *rs)
{
    if (rs->hsm != NULL) {
        CK_FUNCTION_LIST_PTR fl = ddsm_hsm_functions(rs->hsm);
        if (rs->session != CK_INVALID_HANDLE) {
            (void)fl->C_Logout(rs->session);
            (void)fl->C_CloseSession(rs->session);
        }
        ddsm_hsm_unload(rs->hsm);
    }
    ddsm_config_free(rs->cfg);
    memset(rs, 0, sizeof(*rs));
}

/* Derive (asset, path, counter) under the HSM's root key into key (a secret). */
static int derive_secret_via_hsm(struct root_session *rs, const char *asset, const char *path,
                                 uint64_t counter, uint8_t key[DDSM_KEY_LEN], char *why, size_t n)
{
    ddsm_uuid u;
    ddsm_path p;
    const char *pwhy = NULL;
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf prf;
    if (ddsm_uuid_parse(asset, strlen(asset), &u) != DDSM_OK) {
        snprintf(why, n, "bad asset %s", asset);
        return -1;
    }
    if (ddsm_path_parse(path, strlen(path), &p, &pwhy) != DDSM_OK) {
        snprintf(why, n, "bad path %s: %s", path, pwhy != NULL ? pwhy : "?");
        return -1;
    }
    ddsm_hsm_prf_init(&pctx, rs->hsm, rs->session, rs->root, &prf);
    if (ddsm_derive_secret(&prf, &u, &p, counter, key) != DDSM_OK) {
        snprintf(why, n, "derivation failed: %s", ddsm_rv_name(pctx.last_rv));
        return -1;
    }
    return 0;
}

static int helper_derive(const char *asset, const char *path, const char *counter_text)
{
    struct root_session rs;
    char why[512] = "";
    uint8_t key[DDSM_KEY_LEN];
    uint8_t mac[DDSM_MAC_LEN];
    char out[2 * DDSM_MAC_LEN + 1];
    char *end = NULL;
    int rc = 1;

    unsigned long long counter = strtoull(counter_text, &end, 10);
    if (counter_text[0] == '\0' || counter_text[0] == '-' || *end != '\0') {
        fprintf(stderr, "bad counter %s\n", counter_text);
        return 1;
    }
    if (open_root(&rs, why, sizeof(why)) != 0 ||
        derive_secret_via_hsm(&rs, asset, path, counter, key, why, sizeof(why)) != 0) {
        fprintf(stderr, "test_ceremony_derive: %s\n", why);
        goto out;
    }
    if (ddsm_hmac_sha256(key, sizeof(key), (const uint8_t *)"data", 4, mac) != DDSM_OK) {
        fprintf(stderr, "test_ceremony_derive: HMAC failed\n");
        goto out;
    }
    hexs_encode(mac, sizeof(mac), out);
    printf("%s\n", out);
    rc = 0;
out:
    ddsm_wipe(key, sizeof(key));
    close_root(&rs);
    return rc;
}

/* The same through the module: C_DeriveKey with CKM_DDSM_DERIVE, C_Sign with the result. */
static int helper_derive_module(const char *asset, const char *path)
{
    const char *module = getenv("DDSM_MODULE");
    const char *pin = getenv("DDSM_PIN");
    ddsm_config *cfg = NULL;
    ddsm_hsm *m = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_SLOT_ID slot;
    CK_OBJECT_HANDLE root = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    unsigned count = 0;
    char why[512] = "";
    unsigned char param[DDSM_DERIVE_PARAM_MAX];
    uint8_t mac[32];
    CK_ULONG mac_len = sizeof(mac);
    char out[2 * sizeof(mac) + 1];
    ddsm_uuid u;
    CK_RV rv = CKR_OK;
    int rc = 1;

    if (module == NULL || pin == NULL) {
        fprintf(stderr, "test_ceremony_derive: DDSM_MODULE and DDSM_PIN must be set\n");
        return 1;
    }
    if (ddsm_uuid_parse(asset, strlen(asset), &u) != DDSM_OK) {
        fprintf(stderr, "test_ceremony_derive: bad asset %s\n", asset);
        return 1;
    }
    size_t plen = ddsm_derive_param(param, sizeof(param), u.b, path);
    if (plen == 0) {
        fprintf(stderr, "test_ceremony_derive: path too long\n");
        return 1;
    }
    if (ddsm_config_load(ddsm_config_default_path(), &cfg, why, sizeof(why)) != DDSM_OK ||
        ddsm_hsm_load(module, &m, why, sizeof(why)) != CKR_OK)
        goto out;
    CK_FUNCTION_LIST_PTR fl = ddsm_hsm_functions(m);
    const char *what = "C_GetSlotList";
    if ((rv = ddsm_hsm_find_token(m, cfg->backend.token_label, &slot)) != CKR_OK)
        goto fail;
    what = "C_OpenSession";
    if ((rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s)) != CKR_OK)
        goto fail;
    what = "C_Login";
    if ((rv = ddsm_hsm_login_secret(m, s, pin, strlen(pin))) != CKR_OK)
        goto fail;
    what = "finding the root key";
    rv = ddsm_hsm_find_object(m, s, CKO_SECRET_KEY, cfg->backend.root_key_label, &root, &count);
    if (rv == CKR_OK && count != 1)
        rv = CKR_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        goto fail;
    CK_MECHANISM mech = {CKM_DDSM_DERIVE, param, plen};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    what = "C_DeriveKey(CKM_DDSM_DERIVE)";
    if ((rv = fl->C_DeriveKey(s, &mech, root, tmpl, 2, &key)) != CKR_OK)
        goto fail;
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    what = "C_SignInit";
    if ((rv = fl->C_SignInit(s, &hmac, key)) != CKR_OK)
        goto fail;
    what = "C_Sign";
    if ((rv = fl->C_Sign(s, (CK_BYTE_PTR) "data", 4, mac, &mac_len)) != CKR_OK)
        goto fail;
    if (mac_len != sizeof(mac)) {
        snprintf(why, sizeof(why), "C_Sign returned %lu bytes", (unsigned long)mac_len);
        goto out;
    }
    hexs_encode(mac, sizeof(mac), out);
    printf("%s\n", out);
    rc = 0;
    goto out;
fail:
    snprintf(why, sizeof(why), "%s: %s", what, ddsm_rv_name(rv));
out:
    if (rc != 0)
        fprintf(stderr, "test_ceremony_derive: %s\n", why);
    if (m != NULL) {
        if (s != CK_INVALID_HANDLE)
            (void)ddsm_hsm_functions(m)->C_CloseSession(s);
        ddsm_hsm_unload(m);
    }
    ddsm_config_free(cfg);
    return rc;
}

/* ----------------------------------------------------------------------------------------- */
/* Self-test: the docs/design.md vectors through the HSM. */

static int import_vector_seed(void **state)
{
    (void)state;
    const char *ctl = getenv("DDSM_CTL");
    const char *dir = getenv("DDSM_TEST_DIR");
    const char *pin = getenv("DDSM_TEST_PIN");
    char file[4096];
    pid_t pid;
    int status = 0;
    if (ctl == NULL || dir == NULL || pin == NULL) {
        fprintf(stderr, "DDSM_CTL, DDSM_TEST_DIR and DDSM_TEST_PIN must be set "
                        "(run through scripts/lib/run-integration)\n");
        return -1;
    }
    snprintf(file, sizeof(file), "%s/vector-seed.hex", dir);
    FILE *f = fopen(file, "w");
    if (f == NULL)
        return -1;
    for (int i = 0; i < 32; i++)
        fprintf(f, "%02x%s", i, i % 8 == 7 ? "\n" : " ");
    fclose(f);
    setenv("DDSM_PIN", pin, 1);
    char *argv[] = {(char *)ctl, "root", "import", "--hex-file", file, NULL};
    if (posix_spawn(&pid, ctl, NULL, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ddsmctl root import failed (status %d)\n", status);
        return -1;
    }
    return 0;
}

static void test_ceremony__hsm_prf_gives_the_design_vectors(void **state)
{
    (void)state;
    struct root_session rs;
    char why[512] = "";
    if (open_root(&rs, why, sizeof(why)) != 0)
        fail_msg("cannot reach the root key: %s", why);
    for (size_t i = 0; i < DESIGN_VECTORS_COUNT; i++) {
        uint8_t key[DDSM_KEY_LEN];
        char got[2 * DDSM_KEY_LEN + 1];
        if (derive_secret_via_hsm(&rs, design_vectors[i].asset, design_vectors[i].path,
                                  design_vectors[i].counter, key, why, sizeof(why)) != 0)
            fail_msg("vector %zu: %s", i, why);
        hexs_encode(key, sizeof(key), got);
        ddsm_wipe(key, sizeof(key));
        assert_string_equal(got, design_vectors[i].key);
    }
    close_root(&rs);
}

static void test_ceremony__hsm_fingerprint_equals_the_in_memory_one(void **state)
{
    (void)state;
    struct root_session rs;
    char why[512] = "";
    uint8_t seed[32];
    ddsm_prf mem;
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf hsm;
    char fp_mem[DDSM_FINGERPRINT_HEX + 1];
    char fp_hsm[DDSM_FINGERPRINT_HEX + 1];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    assert_int_equal(ddsm_prf_openssl_new(seed, sizeof(seed), &mem), DDSM_OK);
    assert_int_equal(ddsm_root_fingerprint(&mem, fp_mem), DDSM_OK);
    ddsm_prf_openssl_free(&mem);
    if (open_root(&rs, why, sizeof(why)) != 0)
        fail_msg("cannot reach the root key: %s", why);
    ddsm_hsm_prf_init(&pctx, rs.hsm, rs.session, rs.root, &hsm);
    assert_int_equal(ddsm_root_fingerprint(&hsm, fp_hsm), DDSM_OK);
    assert_string_equal(fp_hsm, fp_mem);
    close_root(&rs);
}

static void test_ceremony__imported_root_value_cannot_be_read(void **state)
{
    (void)state;
    struct root_session rs;
    char why[512] = "";
    uint8_t value[64];
    CK_BBOOL b = CK_TRUE;
    if (open_root(&rs, why, sizeof(why)) != 0)
        fail_msg("cannot reach the root key: %s", why);
    CK_FUNCTION_LIST_PTR fl = ddsm_hsm_functions(rs.hsm);
    CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof(value)};
    CK_RV rv = fl->C_GetAttributeValue(rs.session, rs.root, &a, 1);
    assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
    CK_ATTRIBUTE e = {CKA_EXTRACTABLE, &b, sizeof(b)};
    assert_int_equal(fl->C_GetAttributeValue(rs.session, rs.root, &e, 1), CKR_OK);
    assert_int_equal(b, CK_FALSE);
    /* CKA_VERIFY is false: the root only signs (HMAC) and derives. */
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    assert_int_equal(fl->C_VerifyInit(rs.session, &mech, rs.root), CKR_KEY_FUNCTION_NOT_PERMITTED);
    close_root(&rs);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "derive") == 0)
        return helper_derive(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "derive-module") == 0)
        return helper_derive_module(argv[2], argv[3]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [derive ASSET PATH COUNTER | derive-module ASSET PATH]\n",
                argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceremony__hsm_prf_gives_the_design_vectors),
        cmocka_unit_test(test_ceremony__hsm_fingerprint_equals_the_in_memory_one),
        cmocka_unit_test(test_ceremony__imported_root_value_cannot_be_read),
    };
    return cmocka_run_group_tests(tests, import_vector_seed, NULL);
}
