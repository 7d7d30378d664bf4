/* SPDX-License-Identifier: Apache-2.0 */
/* A standby token ([backend] standby_token_label): a second SoftHSM token that `ddsmctl root
 * recover` filled from Shamir shares of the docs/design.md seed. The primary backend is the
 * fault-injecting wrapper ($DDSM_FAULTP11) over the test token; the standby is SoftHSM itself.
 * Derivations go on across a dead or silent primary with the keys computed here without the
 * module and one audit row each; when the standby dies in its turn, the recovered primary serves
 * again (both behind their own copy of the wrapper); a standby holding another root is refused
 * before anything is derived, and the log names both tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <libgfshare.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_support.h"
#include "p11_support.h"
#include "share.h"

#define STANDBY_PIN "24682468"
#define DESIGN_FP "5d02c5c109fe45418ef5953cf6b4788e" /* docs/root.md */

static char dir[1024], pin_file[2048], standby_conf_extra[8192];
/* A second copy of the fault wrapper, for a standby that can fail too (faultp11.c: in=). */
static char standby_wrapper[2048];
#define STANDBY_WRAPPER_NAME "libfaultp11-standby.so"

/* ddsmctl as the officer of token label (its own configuration, PIN STANDBY_PIN). */
static int ctl_on(const char *label, const char *args)
{
    char conf[2048], cmd[8192];
    snprintf(conf, sizeof(conf), "%s/admin-%s.conf", dir, label);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = %s\n"
            "root_key_label = ddsm-root\n\n[store]\nconninfo = %s\n",
            label, getenv("DDSM_TEST_CONNINFO"));
    fclose(f);
    chmod(conf, 0600);
    snprintf(cmd, sizeof(cmd), "DDSM_CONF='%s' DDSM_PIN=%s '%s' %s", conf, STANDBY_PIN,
             getenv("DDSM_CTL"), args);
    return system(cmd);
}

/* Shares 1 and 3 of a 2-of-3 split of the docs/design.md seed 00..1f, in ddsmctl's format. */
static void write_shares(char paths[2][2048])
{
    uint8_t seed[32], data[3][32];
    unsigned char nrs[3] = {1, 2, 3};
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    gfshare_fill_rand = gfshare_bad_idea_but_fill_rand_using_random;
    gfshare_ctx *g = gfshare_ctx_init_enc(nrs, 3, 2, 32);
    assert_non_null(g);
    gfshare_ctx_enc_setsecret(g, seed);
    for (unsigned char i = 0; i < 3; i++)
        gfshare_ctx_enc_getshare(g, i, data[i]);
    gfshare_ctx_free(g);
    const int pick[2] = {0, 2};
    for (int j = 0; j < 2; j++) {
        struct share s;
        memset(&s, 0, sizeof(s));
        memcpy(s.ceremony, "\x5e\x1d\xb7\x00\x11\x22\x33\x44", SHARE_CEREMONY_LEN);
        s.threshold = 2;
        s.shares = 3;
        s.index = (unsigned)nrs[pick[j]];
        memcpy(s.fingerprint, DESIGN_FP, sizeof(DESIGN_FP));
        memcpy(s.data, data[pick[j]], 32);
        char text[SHARE_TEXT_MAX];
        size_t len = 0;
        assert_int_equal(share_format_secret(&s, text, sizeof(text), &len), DDSM_OK);
        share_wipe(&s);
        snprintf(paths[j], 2048, "%s/share-%u.txt", dir, (unsigned)nrs[pick[j]]);
        p11_write_file(paths[j], text);
    }
}

static int group_setup(void **state)
{
    (void)state;
    char ctlf[2048], shares[2][2048], args[8192], seed[2048];
    snprintf(dir, sizeof(dir), "%s", getenv("DDSM_TEST_DIR"));
    snprintf(ctlf, sizeof(ctlf), "%s/faults", dir);
    setenv("DDSM_FAULT_CTL", ctlf, 1);
    snprintf(ctlf, sizeof(ctlf), "%s/calls", dir);
    setenv("DDSM_FAULT_LOG", ctlf, 1);
    fs_faults("");
    p11_setup_store(); /* the seed 00..1f imported into the test token, and pinned */

    /* The standby: recovered from two of three shares (it adds a RECOVER pin of the same root). */
    p11_init_token("standby", STANDBY_PIN);
    write_shares(shares);
    snprintf(args, sizeof(args), "root recover --share '%s' --share '%s' >/dev/null", shares[0],
             shares[1]);
    assert_int_equal(ctl_on("standby", args), 0);

    /* Another token with another root, pinned too (a store may pin several roots). */
    p11_init_token("stranger", STANDBY_PIN);
    snprintf(seed, sizeof(seed), "%s/other-seed.hex", dir);
    p11_write_file(seed, "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff\n");
    snprintf(args, sizeof(args), "root import --hex-file '%s' >/dev/null", seed);
    assert_int_equal(ctl_on("stranger", args), 0);

    snprintf(pin_file, sizeof(pin_file), "%s/standby.pin", dir);
    p11_write_file(pin_file, STANDBY_PIN "\n");

    snprintf(standby_wrapper, sizeof(standby_wrapper), "%s/" STANDBY_WRAPPER_NAME, dir);
    snprintf(args, sizeof(args), "cp '%s' '%s'", getenv("DDSM_FAULTP11"), standby_wrapper);
    assert_int_equal(system(args), 0);
    return 0;
}

/* The wrapper as the primary backend, standby_module (SoftHSM itself unless given) for the
 * standby token standby_label. */
static void standby_conf_with(const char *standby_label, unsigned timeout_ms,
                              const char *standby_module)
{
    snprintf(standby_conf_extra, sizeof(standby_conf_extra),
             "call_timeout_ms = %u\nstandby_module = %s\n"
             "standby_token_label = %s\nstandby_root_pin_file = %s\n",
             timeout_ms, standby_module, standby_label, pin_file);
    fs_write_conf("standby", getenv("DDSM_FAULTP11"), NULL, standby_conf_extra, NULL);
}

static void standby_conf(const char *standby_label, unsigned timeout_ms)
{
    standby_conf_with(standby_label, timeout_ms, "/usr/lib/softhsm/libsofthsm2.so");
}

static int teardown(void **state)
{
    (void)state;
    fs_faults("");
    (void)p11->C_Finalize(NULL);
    return 0;
}

/* C_DeriveKey(CKM_DDSM_DERIVE) on CK_DDSM_ROOT_HANDLE: no lookup of the root's backend handle,
 * which a dead primary could not answer. */
static CK_RV derive(CK_SESSION_HANDLE s, const char *path, CK_OBJECT_HANDLE *out)
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, p11_param(param, sizeof(param), VEC_A_ID, path)};
    return p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, out);
}

static CK_ULONG device_error(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.ulDeviceError;
}

/* Derive (vec-a, m/7/i) through the module and check its bytes against the key computed here
 * from the seed (HMAC of a message under both), and that exactly one audit row was added. */
static void derive_and_check(CK_SESSION_HANDLE s, unsigned i)
{
    char path[32];
    snprintf(path, sizeof(path), "m/7/%u", i);
    long before = p11_audit_count();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, derive(s, path, &h));
    assert_int_equal(p11_audit_count(), before + 1);
    uint8_t want_key[32], want[32], got[32];
    assert_true(fs_expected_key(VEC_A_ID, path, 0, want_key));
    fs_hmac(want_key, "standby", 7, want);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"standby", 7, got));
    assert_memory_equal(got, want, 32);
    const char *paths[1] = {path};
    const uint64_t counters[1] = {0};
    assert_int_equal(fs_missing_derive_rows(getenv("DDSM_TEST_CONNINFO"), VEC_A_ID, paths,
                                            counters, 1),
                     0);
}

static void test_standby__derivations_continue_across_a_dead_primary_hsm(void **state)
{
    (void)state;
    standby_conf("standby", 5000);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    derive_and_check(s, 0);
    derive_and_check(s, 1);

    /* The primary HSM dies: every call into it fails. */
    fs_faults("* rv=CKR_DEVICE_ERROR\n");
    for (unsigned i = 2; i < 6; i++)
        derive_and_check(s, i);
    /* Pass-through calls still go to the primary's slot, and get its answer. */
    CK_SESSION_INFO info;
    assert_rv(CKR_DEVICE_ERROR, p11->C_GetSessionInfo(s, &info));
    CK_SESSION_HANDLE s2 = CK_INVALID_HANDLE;
    assert_rv(CKR_DEVICE_ERROR, p11->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                                   NULL, NULL, &s2));

    /* It comes back: derivations stay where they are (no failback while the standby answers:
     * no HMAC reaches the primary) and go on giving the same keys. */
    fs_faults("");
    fs_log_reset();
    derive_and_check(s, 6);
    assert_int_equal(fs_log_count("C_Sign"), 0);
    assert_int_equal(device_error(s), 0);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_standby__a_primary_that_does_not_answer_fails_over(void **state)
{
    (void)state;
    /* A bound far above an HMAC's cost even under valgrind, and a hang twice as long. */
    standby_conf("standby", 2000);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    derive_and_check(s, 10);
    /* The next HMAC on the primary hangs past call_timeout_ms: the standby answers instead. */
    fs_faults("C_Sign delay=4000 count=1\n");
    fs_log_reset();
    derive_and_check(s, 11);
    assert_int_equal(fs_log_count("C_Sign"), 1); /* the one that hung */
    derive_and_check(s, 12);
    fs_faults("");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_standby__a_primary_that_gives_no_session_at_the_first_derivation(void **state)
{
    (void)state;
    standby_conf("standby", 5000);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    /* The module cannot open a session of its own on the primary: the first derivation of the
     * process is served by the standby, whose root the store pins. */
    fs_faults("C_OpenSession rv=CKR_DEVICE_ERROR\n");
    fs_log_reset();
    derive_and_check(s, 30);
    derive_and_check(s, 31);
    assert_int_equal(fs_log_count("C_Sign"), 0);
    fs_faults("");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* The module's log goes to stderr: stderr_to(file) sends it there until stderr_back(), which
 * returns what was written (and echoes it). */
static int saved_stderr = -1;

static void stderr_to(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_stderr >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
}

static void stderr_back(const char *path, char *text, size_t cap)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    text[0] = '\0';
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, cap - 1, f);
    fclose(f);
    text[n] = '\0';
    fputs(text, stderr);
}

static void test_standby__a_dead_standby_hands_back_to_the_recovered_primary(void **state)
{
    (void)state;
    /* Both tokens behind their own copy of the fault wrapper: either can die alone. */
    char primary_dead[256];
    const char *primary = strrchr(getenv("DDSM_FAULTP11"), '/');
    snprintf(primary_dead, sizeof(primary_dead), "* rv=CKR_DEVICE_ERROR in=%s\n",
             primary != NULL ? primary + 1 : getenv("DDSM_FAULTP11"));
    standby_conf_with("standby", 5000, standby_wrapper);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    derive_and_check(s, 40);

    char log_path[2048], text[8192];
    CK_SESSION_INFO info;
    stderr_to("failback.log", log_path, sizeof(log_path));
    /* The primary dies (the application's own session, on its slot, shows it): only the standby
     * can have derived these. */
    fs_faults(primary_dead);
    CK_RV primary_rv = p11->C_GetSessionInfo(s, &info);
    derive_and_check(s, 41);
    derive_and_check(s, 42);

    /* The primary is back and the standby dies: only the primary can have derived these. */
    fs_faults("* rv=CKR_DEVICE_ERROR in=" STANDBY_WRAPPER_NAME "\n");
    CK_RV back_rv = p11->C_GetSessionInfo(s, &info);
    derive_and_check(s, 43);
    derive_and_check(s, 44);
    stderr_back(log_path, text, sizeof(text));
    assert_rv(CKR_DEVICE_ERROR, primary_rv);
    assert_rv(CKR_OK, back_rv);
    const char *away = strstr(text, "fail over from token \"custody\" to token \"standby\"");
    assert_non_null(away);
    assert_non_null(strstr(away, "fail over from token \"standby\" to token \"custody\""));

    /* Both dead: refused, no key. */
    fs_faults("* rv=CKR_DEVICE_ERROR\n");
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_DEVICE_ERROR, derive(s, "m/7/45", &h));
    assert_int_equal(h, 0);

    /* The primary is back alone: it serves. */
    fs_faults("* rv=CKR_DEVICE_ERROR in=" STANDBY_WRAPPER_NAME "\n");
    derive_and_check(s, 46);
    fs_faults("");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_standby__a_standby_with_another_root_is_refused(void **state)
{
    (void)state;
    char log_path[2048];
    standby_conf("stranger", 5000);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    long before = p11_audit_count();

    /* The module's log goes to stderr: catch it around the refused derivation. */
    snprintf(log_path, sizeof(log_path), "%s/mismatch.log", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    CK_OBJECT_HANDLE h = 0;
    CK_RV rv = derive(s, "m/7/20", &h);
    CK_RV rv2 = derive(s, "m/7/21", &h);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);

    assert_rv(CKR_DEVICE_ERROR, rv);
    assert_rv(CKR_DEVICE_ERROR, rv2);
    assert_int_equal(h, 0);
    assert_int_equal(device_error(s), DDSM_DEVERR_STANDBY_MISMATCH);
    assert_int_equal(p11_audit_count(), before);

    char text[8192] = "";
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    fputs(text, stderr);
    assert_non_null(strstr(text, "\"custody\""));
    assert_non_null(strstr(text, "\"stranger\""));
    assert_non_null(strstr(text, DESIGN_FP));
    assert_non_null(strstr(text, "DDSM_DEVERR_STANDBY_MISMATCH"));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

int main(void)
{
    p11_load();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_standby__derivations_continue_across_a_dead_primary_hsm,
                                  teardown),
        cmocka_unit_test_teardown(test_standby__a_primary_that_does_not_answer_fails_over,
                                  teardown),
        cmocka_unit_test_teardown(
            test_standby__a_primary_that_gives_no_session_at_the_first_derivation, teardown),
        cmocka_unit_test_teardown(
            test_standby__a_dead_standby_hands_back_to_the_recovered_primary, teardown),
        cmocka_unit_test_teardown(test_standby__a_standby_with_another_root_is_refused, teardown),
    };
    return cmocka_run_group_tests_name("standby", tests, group_setup, NULL);
}
