/* SPDX-License-Identifier: Apache-2.0 */
/* The attack "anyone can stop every derivation": a token secret key labelled like the root,
 * created directly on the backend token (never through the module) by someone without a login
 * (a public object) and by the token's user, must not stop derivations. A module process started
 * before the impostors (which looks its root up again after a new login) and one started after
 * them derive the docs/design.md vector key, each derivation with its one audit row, and the impostors
 * are logged.
 *
 * The program runs itself for the other processes:
 *   impostor public|user   create one impostor on the backend (libsofthsm2 loaded directly)
 *   derive                 a fresh module process: derive vec-a twice, print HMAC(key, "data") */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddsm/hsm.h"
#include "hex_support.h"
#include "p11_support.h"

extern char **environ;

#define BACKEND "/usr/lib/softhsm/libsofthsm2.so"
#define ROOT_LABEL "ddsm-root"
#define DATA "data"

static long derive_rows(void)
{
    return p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND "
                        "asset_id = '" VEC_A_ID "'");
}

/* HMAC(vec-a's counter-0 key, "data") as docs/design.md's vector gives it. */
static void expected_mac(uint8_t out[32])
{
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)DATA, strlen(DATA), out);
}

/* Derive vec-a through the module on session s and HMAC "data" with the derived key. The base is
 * CK_DDSM_ROOT_HANDLE: with impostors on the token, a find by label no longer names one object. */
static CK_RV derive_and_mac(CK_SESSION_HANDLE s, uint8_t mac[32])
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param,
                      p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    CK_RV rv = p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &k);
    if (rv != CKR_OK)
        return rv;
    return p11_hmac_sign(s, k, (const uint8_t *)DATA, strlen(DATA), mac);
}

/* ---- the child processes ---- */

static int child_impostor(const char *who)
{
    ddsm_hsm *h = NULL;
    char why[256];
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    bool user = strcmp(who, "user") == 0;
    if (ddsm_hsm_load(BACKEND, &h, why, sizeof(why)) != CKR_OK) {
        fprintf(stderr, "impostor: %s\n", why);
        return 2;
    }
    CK_FUNCTION_LIST_PTR fl = ddsm_hsm_functions(h);
    CK_RV rv = ddsm_hsm_find_token(h, "custody", &slot);
    if (rv == CKR_OK)
        rv = fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK && user) {
        const char *pin = getenv("DDSM_TEST_PIN");
        rv = ddsm_hsm_login_secret(h, s, pin, strlen(pin));
    }
    uint8_t value[32];
    if (getrandom(value, sizeof(value), 0) != (ssize_t)sizeof(value))
        return 2;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    /* As much like the root as the creator may make it: a token HMAC key with its label. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},    {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &t, sizeof(t)},        {CKA_PRIVATE, user ? &t : &f, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &t, sizeof(t)},    {CKA_SIGN, &t, sizeof(t)},
        {CKA_DERIVE, &t, sizeof(t)},       {CKA_LABEL, ROOT_LABEL, strlen(ROOT_LABEL)},
        {CKA_VALUE, value, sizeof(value)},
    };
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    if (rv == CKR_OK)
        rv = fl->C_CreateObject(s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (rv != CKR_OK) {
        fprintf(stderr, "impostor (%s): %s\n", who, ddsm_rv_name(rv));
        return 1;
    }
    (void)fl->C_CloseSession(s);
    ddsm_hsm_unload(h);
    return 0;
}

static int child_derive(void)
{
    uint8_t mac[32];
    char hex[65];
    CK_SESSION_HANDLE s;
    p11_load();
    CK_RV rv = p11->C_Initialize(NULL);
    if (rv != CKR_OK) {
        fprintf(stderr, "derive: C_Initialize: %s\n", ddsm_rv_name(rv));
        return 1;
    }
    rv = p11->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    const char *pin = getenv("DDSM_TEST_PIN");
    if (rv == CKR_OK)
        rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    /* Twice: the impostors must be logged once, not at every call. */
    for (int i = 0; i < 2 && rv == CKR_OK; i++)
        rv = derive_and_mac(s, mac);
    if (rv != CKR_OK) {
        CK_SESSION_INFO si;
        CK_ULONG detail = p11->C_GetSessionInfo(s, &si) == CKR_OK ? si.ulDeviceError : 0;
        fprintf(stderr, "derive: %s (detail 0x%lx)\n", ddsm_rv_name(rv), (unsigned long)detail);
        return 1;
    }
    hexs_encode(mac, sizeof(mac), hex);
    printf("%s\n", hex);
    (void)p11->C_Finalize(NULL);
    return 0;
}

/* Run this program with args; stdout and stderr to files under the test directory; exit status. */
static int run_self(const char *tag, const char *a1, const char *a2, char *out, size_t out_len,
                    char *err_path, size_t err_len)
{
    char exe[4096], out_path[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    snprintf(out_path, sizeof(out_path), "%s/%s.out", getenv("DDSM_TEST_DIR"), tag);
    snprintf(err_path, err_len, "%s/%s.err", getenv("DDSM_TEST_DIR"), tag);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {exe, (char *)a1, (char *)a2, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, exe, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    FILE *f = fopen(out_path, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, out_len - 1, f);
    out[got] = '\0';
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* How many times needle occurs in the file. */
static int file_count(const char *path, const char *needle)
{
    char buf[65536];
    int n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[len] = '\0';
    fclose(f);
    for (const char *p = strstr(buf, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static size_t backend_root_labelled(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, ROOT_LABEL, 9}};
    CK_OBJECT_HANDLE found[8];
    return p11_find(s, t, 2, found, 8);
}

static void test_attack__impostor_labelled_like_the_root_stops_no_derivation(void **state)
{
    (void)state;
    uint8_t want[32], got[32];
    char out[256], err[4096], hex[65];
    expected_mac(want);
    hexs_encode(want, sizeof(want), hex);

    /* The module process that was running before the impostors appeared. */
    CK_SESSION_HANDLE s;
    assert_int_equal(p11_start_user_session(&s), 0);
    long rows = derive_rows();
    assert_rv(CKR_OK, derive_and_mac(s, got));
    assert_memory_equal(got, want, 32);
    assert_int_equal(derive_rows(), rows + 1);

    /* Two impostors, made on the backend: one by nobody (no login), one by the token's user. */
    assert_int_equal(
        run_self("impostor-public", "impostor", "public", out, sizeof(out), err, sizeof(err)), 0);
    assert_int_equal(
        run_self("impostor-user", "impostor", "user", out, sizeof(out), err, sizeof(err)), 0);
    assert_int_equal(backend_root_labelled(s), 3);

    /* The running process, after a new login (the module looks its root up again). */
    assert_rv(CKR_OK, p11->C_Logout(s));
    const char *pin = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_OK, p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    rows = derive_rows();
    CK_RV rv = derive_and_mac(s, got);
    if (rv != CKR_OK) {
        CK_SESSION_INFO si;
        assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &si));
        fail_msg("derivation in the running module after the impostors: %s (detail 0x%lx)",
                 ddsm_rv_name(rv), (unsigned long)si.ulDeviceError);
    }
    assert_memory_equal(got, want, 32);
    assert_int_equal(derive_rows(), rows + 1);
    assert_int_equal(p11_end_session(s), 0);

    /* A module process started after the impostors. */
    rows = derive_rows();
    int rc = run_self("derive-after", "derive", NULL, out, sizeof(out), err, sizeof(err));
    if (rc != 0)
        fail_msg("the module process started after the impostors failed (%d): see %s", rc, err);
    assert_int_equal(strncmp(out, hex, 64), 0);
    assert_int_equal(derive_rows(), rows + 2);
    /* The impostors are named in the log, once for the two derivations. */
    if (file_count(err, "ignoring 2 objects labelled \"ddsm-root\"") != 1)
        fail_msg("the module did not log the impostors exactly once: see %s", err);
}

static int setup(void **state)
{
    (void)state;
    p11_load();
    p11_setup_store();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "impostor") == 0)
        return child_impostor(argv[2]);
    if (argc == 2 && strcmp(argv[1], "derive") == 0)
        return child_derive();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_attack__impostor_labelled_like_the_root_stops_no_derivation,
                                  p11_finalize_teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
