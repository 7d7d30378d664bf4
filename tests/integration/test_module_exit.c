/* SPDX-License-Identifier: Apache-2.0 */
/* C_CloseSession and C_Finalize from an exit handler that the host registered before it loaded the
 * module: what OpenSSL does with pkcs11-provider (OPENSSL_cleanup, registered at OpenSSL's first
 * use, tears the provider down, which closes its sessions and finalises the module). By then the
 * backend's own exit-time destructors have run (SoftHSMv2's C++ singletons are registered later,
 * so they go first): a call into it crashes the process. The module answers these calls without
 * the backend once the process is exiting, and still finalises the backend when it is not.
 *
 * The same with a standby token ([backend] standby_token_label) holding the same root: the first
 * derivation's pairing check leaves an idle session of the module's own on the standby, and the
 * exiting host must not reach the standby's backend either.
 *
 * Each exiting host is a child process of its own, forked from this process before it ever calls
 * the module (so SoftHSM is first loaded in the child, after the child's exit handler), whose exit
 * status the test reads: a signal or a refused call fails it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_support.h"
#include "p11_support.h"

#define STANDBY_PIN "24682468"

/* The test token's configuration, and the same with the standby token. */
static char plain_conf[2048], standby_conf[2048];
static CK_SESSION_HANDLE g_child_session;
static const uint8_t msg[] = "sign at exit";

/* Child exit codes: which step failed. */
enum { CHILD_OK = 0, CHILD_CLOSE = 3, CHILD_FINALIZE = 4, CHILD_SETUP = 5 };

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

/* In the child: the handler first, then the module (configured by conf), a login and a signature
 * with a virtual key (the module's own derivation session to the backend is open, and with a
 * standby, one to the standby too), then exit(). */
static void child_uses_the_module_then_exits(const char *conf)
{
    uint8_t sig[32];
    /* cmocka's handlers would turn a crash into a failed test that goes on in the child. */
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    if (setenv("DDSM_CONF", conf, 1) != 0 || atexit(close_and_finalize_at_exit) != 0 ||
        p11->C_Initialize(NULL) != CKR_OK)
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
    const char label[] = VEC_A_ID "/" VEC_A_PATH;
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, sizeof(label) - 1}};
    CK_OBJECT_HANDLE key;
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG sig_len = sizeof(sig);
    if (p11->C_FindObjectsInit(g_child_session, t, 1) != CKR_OK ||
        p11->C_FindObjects(g_child_session, &key, 1, &n) != CKR_OK || n != 1 ||
        p11->C_FindObjectsFinal(g_child_session) != CKR_OK ||
        p11->C_SignInit(g_child_session, &hmac, key) != CKR_OK ||
        p11->C_Sign(g_child_session, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &sig_len) != CKR_OK)
        _exit(CHILD_SETUP);
    exit(CHILD_OK);
}

static void exiting_host(const char *conf)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_uses_the_module_then_exits(conf);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("the exiting host died of signal %d in its exit handler", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), CHILD_OK);
}

static void test_exit__finalize_from_an_earlier_exit_handler_succeeds(void **state)
{
    (void)state;
    exiting_host(plain_conf);
}

/* The child's first signature checks the pairing, which opens a standby session and leaves it
 * idle. Before the fix the child died of SIGSEGV in its exit handler (C_CloseSession into the
 * standby's SoftHSM). */
static void test_exit__finalize_from_an_earlier_exit_handler_with_a_standby(void **state)
{
    (void)state;
    exiting_host(standby_conf);
}

/* Not exiting: C_Finalize still finalises the backend. The test holds the backend library open
 * itself (the same mapping the module uses), so after the module's C_Finalize the backend's own
 * C_Initialize answers CKR_OK, not CKR_CRYPTOKI_ALREADY_INITIALIZED. */
static void test_exit__finalize_before_exit_finalizes_the_backend(void **state)
{
    (void)state;
    setenv("DDSM_CONF", plain_conf, 1);
    void *dl = dlopen("/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)dlsym(dl, "C_GetFunctionList");
    assert_non_null(gfl);
    CK_FUNCTION_LIST_PTR be = NULL;
    assert_rv(CKR_OK, gfl(&be));

    CK_SESSION_HANDLE s;
    assert_int_equal(p11_start_user_session(&s), 0);
    assert_rv(CKR_CRYPTOKI_ALREADY_INITIALIZED, be->C_Initialize(NULL));
    assert_int_equal(p11_end_session(s), 0);
    assert_rv(CKR_OK, be->C_Initialize(NULL));
    assert_rv(CKR_OK, be->C_Finalize(NULL));
    dlclose(dl);
}

/* A second token, "standby", with the same seed (ddsmctl as its officer, in a child process:
 * nothing of SoftHSM is loaded here), and standby_conf naming it. */
static void setup_standby(void)
{
    const char *dir = getenv("DDSM_TEST_DIR");
    char cmd[8192], conf[2048], pin_file[2048], text[4096];
    p11_init_token("standby", STANDBY_PIN);
    snprintf(conf, sizeof(conf), "%s/admin-standby.conf", dir);
    snprintf(text, sizeof(text),
             "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = standby\n"
             "root_key_label = ddsm-root\n\n[store]\nconninfo = %s\n",
             getenv("DDSM_TEST_CONNINFO"));
    p11_write_file(conf, text);
    snprintf(cmd, sizeof(cmd),
             "DDSM_CONF='%s' DDSM_PIN=%s '%s' root import --hex-file '%s/seed.hex' >/dev/null",
             conf, STANDBY_PIN, getenv("DDSM_CTL"), dir);
    assert_int_equal(system(cmd), 0);
    snprintf(pin_file, sizeof(pin_file), "%s/standby.pin", dir);
    p11_write_file(pin_file, STANDBY_PIN "\n");
    snprintf(text, sizeof(text), "standby_token_label = standby\nstandby_root_pin_file = %s\n",
             pin_file);
    snprintf(standby_conf, sizeof(standby_conf), "%s",
             fs_write_conf("exit-standby", NULL, NULL, text, NULL));
}

int main(void)
{
    p11_load();
    p11_setup_store(); /* the docs/design.md seed on the test token, pinned */
    snprintf(plain_conf, sizeof(plain_conf), "%s", getenv("DDSM_CONF"));
    setup_standby();
    const struct CMUnitTest tests[] = {
        /* First: the children fork from a process that has started no thread of the module. */
        cmocka_unit_test(test_exit__finalize_from_an_earlier_exit_handler_succeeds),
        cmocka_unit_test(test_exit__finalize_from_an_earlier_exit_handler_with_a_standby),
        cmocka_unit_test(test_exit__finalize_before_exit_finalizes_the_backend),
    };
    return cmocka_run_group_tests_name("exit", tests, NULL, NULL);
}
