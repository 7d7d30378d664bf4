/* SPDX-License-Identifier: Apache-2.0 */
/* The custody token's PIN ([backend] root_pin_file) cannot lock the token out: a refused login
 * latches (derivations fail with CKR_DEVICE_ERROR, detail DDSM_DEVERR_CUSTODY_LOGIN) and retries
 * back off, so the token's PIN retry counter is not burnt (C_Login calls counted through the
 * fault wrapper); fixing the file recovers without a restart. The file's first line is the PIN.
 * The configuration and the PIN file are refused, with the file named, when writable by group or
 * others or owned by someone else, as OpenSSH's StrictModes does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_support.h"
#include "p11_support.h"

#define VAULT_PIN "24682468"

static char conf[4096], pin_path[4096], err_path[4096];

static char *read_all(const char *path)
{
    static char buf[65536];
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/* C_Initialize with stderr captured into err_path. */
static CK_RV initialize_capturing(void)
{
    fflush(stderr);
    int saved = dup(2);
    int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    CK_RV rv = p11->C_Initialize(NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return rv;
}

static CK_ULONG device_error(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.ulDeviceError;
}

/* C_DeriveKey(CKM_DDSM_DERIVE) of the vector on the root, which lives on the custody token. */
static CK_RV derive(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *out)
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH)};
    return p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, out);
}

static void assert_derives_vector(CK_SESSION_HANDLE s)
{
    uint8_t k0[32], got[32], want[32];
    static const uint8_t msg[] = "custody";
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, derive(s, &h));
    p11_unhex(VEC_A_KEY0, k0, 32);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, sizeof(msg) - 1, got));
    p11_hmac_raw(k0, msg, sizeof(msg) - 1, want);
    assert_memory_equal(got, want, 32);
}

static void test_custody_pin__a_refused_pin_latches_and_does_not_burn_the_retry_counter(void **st)
{
    p11_write_file(pin_path, "11112222\n");
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    fs_log_reset();
    long long t0 = fs_now_ms();
    for (int i = 0; i < 60; i++) {
        CK_OBJECT_HANDLE h = 0;
        assert_rv(CKR_DEVICE_ERROR, derive(s, &h));
        assert_int_equal(device_error(s), DDSM_DEVERR_CUSTODY_LOGIN);
        p11_sleep_ms(20);
    }
    long long t1 = fs_now_ms();
    long logins = fs_log_count("C_Login");
    /* Attempts at 0 s, then after waits of 1 s, 2 s, 4 s...: within E seconds at most
     * 1 + log2(E + 1) of them, however many derivations were asked for. */
    long bound = 1;
    for (long long step = 1000, next = 1000; next <= t1 - t0; step *= 2, next += step)
        bound++;
    print_message("60 derivations over %lld ms with a wrong PIN: %ld C_Login call(s), bound %ld\n",
                  t1 - t0, logins, bound);
    assert_true(logins >= 1);
    assert_true(logins <= bound);

    /* Fixing the file recovers without a restart (after the back-off, or at once when the file
     * changed since the refusal). */
    p11_write_file(pin_path, VAULT_PIN "\n");
    CK_RV rv = CKR_DEVICE_ERROR;
    for (int i = 0; i < 1000 && rv != CKR_OK; i++) {
        CK_OBJECT_HANDLE h = 0;
        rv = derive(s, &h);
        if (rv != CKR_OK)
            p11_sleep_ms(10);
    }
    assert_rv(CKR_OK, rv);
    assert_derives_vector(s);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_custody_pin__the_first_line_is_the_pin(void **st)
{
    static const char *const texts[] = {
        VAULT_PIN "\n",
        VAULT_PIN,
        VAULT_PIN "\r\n",
        VAULT_PIN "\nsomething else on the next line\n",
        VAULT_PIN "\r\n11112222\r\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        p11_write_file(pin_path, texts[i]);
        assert_rv(CKR_OK, p11->C_Initialize(NULL));
        CK_SESSION_HANDLE s = p11_open_user();
        assert_derives_vector(s);
        assert_rv(CKR_OK, p11->C_Finalize(NULL));
    }
    /* A PIN with trailing garbage on its line is another PIN: refused, latched. */
    p11_write_file(pin_path, VAULT_PIN " \n");
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_DEVICE_ERROR, derive(s, &h));
    assert_int_equal(device_error(s), DDSM_DEVERR_CUSTODY_LOGIN);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_custody_pin__untrusted_files_are_refused_with_their_name(void **st)
{
    char text[8192];
    p11_write_file(pin_path, VAULT_PIN "\n");

    /* The PIN file: group-writable, then world-writable, then owned by another user. */
    static const mode_t bad_modes[] = {0620, 0602};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(chmod(pin_path, bad_modes[i]), 0);
        assert_rv(CKR_FUNCTION_FAILED, initialize_capturing());
        snprintf(text, sizeof(text), "root_pin_file %s refused: writable by group or others",
                 pin_path);
        assert_non_null(strstr(read_all(err_path), text));
    }
    assert_int_equal(chmod(pin_path, 0600), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(pin_path, 65534, 65534), 0);
        assert_rv(CKR_FUNCTION_FAILED, initialize_capturing());
        snprintf(text, sizeof(text), "root_pin_file %s refused: owned by uid 65534", pin_path);
        assert_non_null(strstr(read_all(err_path), text));
        assert_int_equal(chown(pin_path, 0, 0), 0);
    }

    /* The configuration itself. */
    assert_int_equal(chmod(conf, 0660), 0);
    assert_rv(CKR_FUNCTION_FAILED, initialize_capturing());
    snprintf(text, sizeof(text), "%s: refused: writable by group or others (mode 0660", conf);
    assert_non_null(strstr(read_all(err_path), text));
    /* ddsmctl: its configuration error, the file named. */
    assert_int_equal(p11_ctl("asset list >/dev/null 2>'%s'", err_path), 2);
    assert_non_null(strstr(read_all(err_path), text));
    assert_int_equal(chmod(conf, 0600), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(conf, 65534, 65534), 0);
        assert_rv(CKR_FUNCTION_FAILED, initialize_capturing());
        snprintf(text, sizeof(text), "%s: refused: owned by uid 65534", conf);
        assert_non_null(strstr(read_all(err_path), text));
        assert_int_equal(chown(conf, 0, 0), 0);
    }
    assert_int_equal(chmod(pin_path, 0620), 0);
    assert_int_equal(p11_ctl("asset list >/dev/null 2>'%s'", err_path), 2);
    snprintf(text, sizeof(text), "root_pin_file %s refused: writable by group or others",
             pin_path);
    assert_non_null(strstr(read_all(err_path), text));

    /* 0600 (and 0644: readable is not writable) files owned by this user work. */
    assert_int_equal(chmod(pin_path, 0644), 0);
    assert_int_equal(chmod(conf, 0600), 0);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    assert_derives_vector(s);
    /* Made group-writable while the module runs: the next login refuses it (latched). */
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();
    assert_int_equal(chmod(pin_path, 0660), 0);
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_DEVICE_ERROR, derive(s, &h));
    assert_int_equal(device_error(s), DDSM_DEVERR_CUSTODY_LOGIN);
    assert_int_equal(chmod(pin_path, 0600), 0);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

int main(void)
{
    const char *dir = getenv("DDSM_TEST_DIR");
    const char *faultp11 = getenv("DDSM_FAULTP11");
    char backend_keys[8192], log_path[4096], seed[4096];
    assert_non_null(dir);
    assert_non_null(faultp11);
    snprintf(log_path, sizeof(log_path), "%s/calls.log", dir);
    setenv("DDSM_FAULT_LOG", log_path, 1);
    snprintf(pin_path, sizeof(pin_path), "%s/vault.pin", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr.txt", dir);
    p11_load();

    p11_init_token("vault", VAULT_PIN);
    p11_write_file(pin_path, VAULT_PIN "\n");
    snprintf(backend_keys, sizeof(backend_keys), "root_token_label = vault\nroot_pin_file = %s\n",
             pin_path);
    snprintf(conf, sizeof(conf), "%s", fs_write_conf("custody-pin", faultp11, NULL, backend_keys,
                                                      NULL));
    snprintf(seed, sizeof(seed), "%s/seed.hex", dir);
    FILE *f = fopen(seed, "w");
    assert_non_null(f);
    for (int i = 0; i < 32; i++)
        fprintf(f, "%02x", i);
    fclose(f);
    assert_int_equal(p11_ctl("db migrate >/dev/null"), 0);
    assert_int_equal(p11_ctl("root import --hex-file '%s' >/dev/null", seed), 0);
    assert_int_equal(p11_ctl("asset register --label vec-a --id %s --default-path \"%s\" "
                             ">/dev/null",
                             VEC_A_ID, VEC_A_PATH),
                     0);
    assert_int_equal(p11_ctl("asset activate vec-a >/dev/null"), 0);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_custody_pin__a_refused_pin_latches_and_does_not_burn_the_retry_counter,
            p11_finalize_teardown),
        cmocka_unit_test_teardown(test_custody_pin__the_first_line_is_the_pin,
                                  p11_finalize_teardown),
        cmocka_unit_test_teardown(test_custody_pin__untrusted_files_are_refused_with_their_name,
                                  p11_finalize_teardown),
    };
    return cmocka_run_group_tests_name("custody_pin", tests, NULL, NULL);
}
