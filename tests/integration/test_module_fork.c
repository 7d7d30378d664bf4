/* SPDX-License-Identifier: Apache-2.0 */
/* fork(): in the child every call but C_Initialize / C_GetFunctionList / C_GetInterface* says
 * CKR_CRYPTOKI_NOT_INITIALIZED and nothing of the parent's is touched; C_Initialize in the child
 * gives fresh, working state; the parent carries on unharmed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11_support.h"

static const uint8_t msg[] = "forked";
#define MSG_LEN (sizeof(msg) - 1)

/* The child's checks; its exit status is the number of the first failed step (0: all good). */
static int child_main(CK_SESSION_HANDLE parent_session, CK_OBJECT_HANDLE parent_key)
{
    CK_INFO info;
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    uint8_t sig[32], want[32];
    CK_ULONG len = sizeof(sig);
    const char *pin = getenv("DDSM_TEST_PIN");

    if (p11->C_GetInfo(&info) != CKR_CRYPTOKI_NOT_INITIALIZED)
        return 1;
    if (p11->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_CRYPTOKI_NOT_INITIALIZED)
        return 2;
    if (p11->C_SignInit(parent_session, &m, parent_key) != CKR_CRYPTOKI_NOT_INITIALIZED)
        return 3;
    if (p11->C_CloseSession(parent_session) != CKR_CRYPTOKI_NOT_INITIALIZED)
        return 4;
    if (p11->C_Finalize(NULL) != CKR_CRYPTOKI_NOT_INITIALIZED)
        return 5;
    CK_FUNCTION_LIST_PTR fl = NULL;
    if (p11->C_GetFunctionList(&fl) != CKR_OK || fl != p11)
        return 6;
    if (p11->C_Initialize(NULL) != CKR_OK)
        return 7;
    if (p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return 8;
    CK_RV rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        return 9;
    const char *label = "vec-a/" VEC_A_PATH;
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = 0;
    if (p11->C_FindObjectsInit(s, t, 1) != CKR_OK || p11->C_FindObjects(s, &h, 1, &n) != CKR_OK ||
        p11->C_FindObjectsFinal(s) != CKR_OK || n != 1)
        return 10;
    /* The child's key comes from its own derivation (fresh state, empty cache). */
    if (p11->C_SignInit(s, &m, h) != CKR_OK ||
        p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len) != CKR_OK)
        return 11;
    uint8_t k[32];
    p11_unhex(VEC_A_KEY0, k, 32);
    p11_hmac_raw(k, msg, MSG_LEN, want);
    if (memcmp(sig, want, 32) != 0)
        return 12;
    if (p11->C_Finalize(NULL) != CKR_OK)
        return 13;
    return 0;
}

static void test_fork__child_must_initialize_and_parent_carries_on(void **state)
{
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    uint8_t before[32], after[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, before));
    long audit = p11_audit_count();

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_main(s, h));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("child failed at step %d", WEXITSTATUS(st));
    /* The child derived once for itself (its own audit row). */
    assert_int_equal(p11_audit_count(), audit + 1);

    /* The parent's session, handle, cached key and connections still work. */
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, after));
    assert_memory_equal(before, after, 32);
    CK_OBJECT_HANDLE d;
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, VEC_B_PATH, NULL, 0, &d));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_fork__child_of_an_uninitialized_parent_initializes_normally(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        CK_INFO info;
        int rc = p11->C_GetInfo(&info) == CKR_CRYPTOKI_NOT_INITIALIZED &&
                         p11->C_Initialize(NULL) == CKR_OK && p11->C_GetInfo(&info) == CKR_OK &&
                         p11->C_Finalize(NULL) == CKR_OK
                     ? 0
                     : 1;
        _exit(rc);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork__child_must_initialize_and_parent_carries_on),
        cmocka_unit_test(test_fork__child_of_an_uninitialized_parent_initializes_normally),
    };
    return cmocka_run_group_tests_name("fork", tests, NULL, NULL);
}
