/* SPDX-License-Identifier: Apache-2.0 */
/* test_module_exit.c's exiting host, with a standby token ([backend] standby_token_label): the
 * first derivation checks that both tokens hold the same root, which leaves an idle session of
 * the module's own on the standby. C_Finalize from an exit handler the host registered before it
 * loaded the module (OpenSSL's, with pkcs11-provider) runs after the backend's own exit-time
 * destructors; the module must then make no call into the standby's backend either.
 *
 * Both tokens are SoftHSM's, in one library, first loaded in the child (after its exit handler),
 * as in a host that loads the module once. The child's exit status is the verdict: a signal, or a
 * refused call, fails the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddsm/pkcs11-ddsm.h"
#include "fault_support.h"
#include "p11_support.h"

#define STANDBY_PIN "24682468"

static CK_SESSION_HANDLE g_child_session;

/* Child exit codes: which step failed. */
enum { CHILD_OK = 0, CHILD_CLOSE = 3, CHILD_FINALIZE = 4, CHILD_SETUP = 5, CHILD_DERIVE = 6 };

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

static void close_and_finalize_at_exit(void)
{
    CK_RV rv = p11->C_CloseSession(g_child_session);
    if (rv != CKR_OK) {
        fprintf(stderr, "exit handler: C_CloseSession: %s\n", ddsm_rv_name(rv));
        _exit(CHILD_CLOSE);
    }
    rv = p11->C_Finalize(NULL);
    if (rv != CKR_OK) {
        fprintf(stderr, "exit handler: C_Finalize: %s\n", ddsm_rv_name(rv));
        _exit(CHILD_FINALIZE);
    }
}

/* In the child: the handler first, then the module, a login and one derivation (the pairing
 * check opens a standby session and leaves it idle), then exit(). */
static void child_derives_then_exits(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    if (atexit(close_and_finalize_at_exit) != 0 || p11->C_Initialize(NULL) != CKR_OK)
        _exit(CHILD_SETUP);
    CK_SLOT_ID slot;
    CK_ULONG n = 1;
    if (p11->C_GetSlotList(CK_TRUE, &slot, &n) != CKR_OK || n != 1 ||
        p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                           &g_child_session) != CKR_OK)
        _exit(CHILD_SETUP);
    const char *pin = getenv("DDSM_TEST_PIN");
    if (p11->C_Login(g_child_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK)
        _exit(CHILD_SETUP);
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, p11_param(param, sizeof(param), VEC_A_ID, "m/9/1")};
    CK_OBJECT_HANDLE key = 0;
    CK_RV rv = p11->C_DeriveKey(g_child_session, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &key);
    if (rv != CKR_OK) {
        fprintf(stderr, "child: C_DeriveKey: %s\n", ddsm_rv_name(rv));
        _exit(CHILD_DERIVE);
    }
    exit(CHILD_OK);
}

static void test_exit_standby__finalize_from_an_earlier_exit_handler_succeeds(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_derives_then_exits();
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("the exiting host died of signal %d in its exit handler", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), CHILD_OK);
}

int main(void)
{
    char dir[1024], cmd[8192], conf[2048], pin_file[2048], extra[4096];
    p11_load();
    p11_setup_store(); /* the docs/design.md seed on the test token, pinned */

    /* The standby token holds the same seed (ddsmctl as its officer, in a child process: nothing
     * of SoftHSM is loaded here before the fork). */
    snprintf(dir, sizeof(dir), "%s", getenv("DDSM_TEST_DIR"));
    snprintf(cmd, sizeof(cmd),
             "softhsm2-util --init-token --free --label standby --pin %s --so-pin 87654321 "
             ">/dev/null",
             STANDBY_PIN);
    if (system(cmd) != 0)
        return 1;
    snprintf(conf, sizeof(conf), "%s/admin-standby.conf", dir);
    snprintf(extra, sizeof(extra),
             "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = standby\n"
             "root_key_label = ddsm-root\n\n[store]\nconninfo = %s\n",
             getenv("DDSM_TEST_CONNINFO"));
    write_file(conf, extra);
    snprintf(cmd, sizeof(cmd),
             "DDSM_CONF='%s' DDSM_PIN=%s '%s' root import --hex-file '%s/seed.hex' >/dev/null",
             conf, STANDBY_PIN, getenv("DDSM_CTL"), dir);
    if (system(cmd) != 0)
        return 1;
    snprintf(pin_file, sizeof(pin_file), "%s/standby.pin", dir);
    write_file(pin_file, STANDBY_PIN "\n");
    snprintf(extra, sizeof(extra), "standby_token_label = standby\nstandby_root_pin_file = %s\n",
             pin_file);
    (void)fs_write_conf("exit-standby", NULL, NULL, extra, NULL);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_standby__finalize_from_an_earlier_exit_handler_succeeds),
    };
    return cmocka_run_group_tests_name("exit_standby", tests, NULL, NULL);
}
