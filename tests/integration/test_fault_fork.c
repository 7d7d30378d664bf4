/* SPDX-License-Identifier: Apache-2.0 */
/* fork() and the parent's connections (fills the gaps of test_module_fork.c, which covers the
 * refusal of a few calls in a child, a child that re-initialises, and the parent's session and
 * key afterwards):
 *  - a child that does not re-initialise gets CKR_CRYPTOKI_NOT_INITIALIZED from every function
 *    that needs the library (derivation included, and it writes no audit row), and neither those
 *    calls nor its exit() (atexit handlers and destructors run) touch the parent's PostgreSQL
 *    connections: the server processes serving the parent are the same before and after, and
 *    keep serving it;
 *  - a child that re-initialises derives through connections of its own (new server processes)
 *    under an audit chain of its own, and its C_Finalize and exit leave the parent's connections
 *    alone; both chains verify. */
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

#include <libpq-fe.h>

#include "fault_support.h"
#include "p11_support.h"

#define MAX_PIDS 64

static const uint8_t msg[] = "forked";
#define MSG_LEN (sizeof(msg) - 1)

typedef struct pidset {
    long pid[MAX_PIDS];
    size_t n;
} pidset;

/* A child abandons its parent's state on purpose and never frees it (ctx_abandon: freeing would
 * close the parent's connections). LeakSanitizer (the ASan pass of scripts/test) must not call
 * that a leak when a child exits; the parent is checked as usual. */
static volatile int g_in_child;
int __lsan_is_turned_off(void)
{
    return g_in_child;
}

static bool has(const pidset *s, long pid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->pid[i] == pid)
            return true;
    return false;
}

/* Server processes serving the module in this database; in a child, no cmocka (fails: n = 0). */
static size_t backends_nofail(pidset *out)
{
    out->n = 0;
    PGconn *c = PQconnectdb(getenv("DDSM_TEST_CONNINFO"));
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE application_name = "
                                "'ddsm-pkcs11' AND datname = current_database()");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            for (int i = 0; i < PQntuples(r) && out->n < MAX_PIDS; i++)
                out->pid[out->n++] = strtol(PQgetvalue(r, i, 0), NULL, 10);
        PQclear(r);
    }
    PQfinish(c);
    return out->n;
}

/* The parent at work: a found key signed with (derivation, store pool connection, LISTEN
 * connection) and a C_DeriveKey; waits until its LISTEN connection shows up. */
static void parent_busy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *h, uint8_t sig[32], pidset *pids)
{
    *h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(s, *h, msg, MSG_LEN, sig));
    CK_OBJECT_HANDLE d;
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, "m/5/5", NULL, 0, &d));
    /* The pool connection, the batcher's and the listener's (which connects on its own
     * thread): wait for the set to settle at three or more. */
    while (backends_nofail(pids) < 3) /* a hang runs into ctest's timeout */
        p11_sleep_ms(20);
}

static void assert_still_serving(const pidset *before, const char *when)
{
    pidset now;
    p11_sleep_ms(100); /* a closed connection's server process needs a moment to go */
    backends_nofail(&now);
    for (size_t i = 0; i < before->n; i++)
        if (!has(&now, before->pid[i]))
            fail_msg("%s: the parent's server process %ld is gone", when, before->pid[i]);
}

static int wait_child(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Every call that needs the library, in a child that did not call C_Initialize. Returns the
 * number of the first that did not answer CKR_CRYPTOKI_NOT_INITIALIZED, 0 when all did. */
static int child_refused_everywhere(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_INFO info;
    CK_SLOT_INFO slot;
    CK_TOKEN_INFO tok;
    CK_SESSION_INFO si;
    CK_SESSION_HANDLE s2;
    CK_ULONG n = 0, len = 32;
    CK_BYTE buf[64];
    CK_OBJECT_HANDLE out;
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM derive = {CKM_DDSM_DERIVE, param,
                           p11_param(param, sizeof(param), VEC_A_ID, "m/66/6")};
    CK_ULONG counter;
    CK_ATTRIBUTE a = {CKA_DDSM_COUNTER, &counter, sizeof(counter)};
    const char *pin = getenv("DDSM_TEST_PIN");
    const CK_RV want = CKR_CRYPTOKI_NOT_INITIALIZED;
    int step = 0;

#define REFUSED(call)                                                                              \
    do {                                                                                           \
        step++;                                                                                    \
        if ((call) != want)                                                                        \
            return step;                                                                           \
    } while (0)
    REFUSED(p11->C_GetInfo(&info));
    REFUSED(p11->C_GetSlotList(CK_TRUE, NULL, &n));
    REFUSED(p11->C_GetSlotInfo(0, &slot));
    REFUSED(p11->C_GetTokenInfo(0, &tok));
    REFUSED(p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s2));
    REFUSED(p11->C_GetSessionInfo(s, &si));
    REFUSED(p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));
    REFUSED(p11->C_DeriveKey(s, &derive, CK_DDSM_ROOT_HANDLE, NULL, 0, &out));
    REFUSED(p11->C_FindObjectsInit(s, NULL, 0));
    REFUSED(p11->C_FindObjects(s, &out, 1, &n));
    REFUSED(p11->C_GetAttributeValue(s, h, &a, 1));
    REFUSED(p11->C_SignInit(s, &hmac, h));
    REFUSED(p11->C_Sign(s, (CK_BYTE_PTR)msg, MSG_LEN, buf, &len));
    REFUSED(p11->C_VerifyInit(s, &hmac, h));
    REFUSED(p11->C_DigestInit(s, &sha));
    REFUSED(p11->C_GenerateRandom(s, buf, 16));
    REFUSED(p11->C_Logout(s));
    REFUSED(p11->C_CloseSession(s));
    REFUSED(p11->C_CloseAllSessions(0));
    REFUSED(p11->C_Finalize(NULL));
#undef REFUSED
    return 0;
}

static void
test_fault_fork__an_uninitialised_child_is_refused_and_leaves_the_parent_alone(void **state)
{
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h;
    uint8_t before[32], after[32];
    pidset pids;
    parent_busy(s, &h, before, &pids);
    long audit = p11_audit_count();

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        g_in_child = 1;
        exit(child_refused_everywhere(s, h)); /* exit(), not _exit(): destructors run too */
    }
    int step = wait_child(pid);
    if (step != 0)
        fail_msg("the child's call number %d was not refused with CKR_CRYPTOKI_NOT_INITIALIZED",
                 step);
    /* The child derived nothing and closed nothing of the parent's. */
    assert_int_equal(p11_audit_count(), audit);
    assert_still_serving(&pids, "after the child exited");
    /* The parent goes on through the very same connections. */
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, after));
    assert_memory_equal(before, after, 32);
    CK_OBJECT_HANDLE d;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, "m/66/7", NULL, 0, &d));
    assert_int_equal(p11_audit_count(), audit + 1);
    assert_still_serving(&pids, "after the parent's next derivation");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* A child that re-initialises: derives on connections of its own. Exit status: 0, or the number
 * of the failed step. */
static int child_reinitialises(const pidset *parent)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE d;
    const char *pin = getenv("DDSM_TEST_PIN");
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM derive = {CKM_DDSM_DERIVE, param,
                           p11_param(param, sizeof(param), VEC_A_ID, "m/77/1")};
    if (p11->C_Initialize(NULL) != CKR_OK)
        return 1;
    if (p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return 2;
    CK_RV rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        return 3;
    if (p11->C_DeriveKey(s, &derive, CK_DDSM_ROOT_HANDLE, NULL, 0, &d) != CKR_OK)
        return 4;
    uint8_t sig[32], key[32], want[32];
    if (p11_hmac_sign(s, d, msg, MSG_LEN, sig) != CKR_OK ||
        !fs_expected_key(VEC_A_ID, "m/77/1", 0, key))
        return 5;
    fs_hmac(key, msg, MSG_LEN, want);
    if (memcmp(sig, want, 32) != 0)
        return 6;
    /* Its derivation went through a server process that is not one of the parent's. */
    pidset now;
    backends_nofail(&now);
    size_t own = 0;
    for (size_t i = 0; i < now.n; i++)
        own += !has(parent, now.pid[i]);
    if (own == 0)
        return 7;
    if (p11->C_Finalize(NULL) != CKR_OK)
        return 8;
    return 0;
}

static void test_fault_fork__a_reinitialising_child_has_its_own_connections_and_chain(void **state)
{
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h;
    uint8_t before[32], after[32];
    pidset pids;
    parent_busy(s, &h, before, &pids);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        g_in_child = 1;
        exit(child_reinitialises(&pids));
    }
    int step = wait_child(pid);
    if (step != 0)
        fail_msg("the re-initialising child failed at step %d", step);
    assert_still_serving(&pids, "after the child's C_Finalize and exit");

    /* The child's row is in a chain of its own (its instance id names its pid). */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND "
             "derivation_path = 'm/77/1' AND instance_id LIKE '%%/%ld/%%'",
             (long)pid);
    assert_int_equal(p11_sql_long(sql), 1);

    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, MSG_LEN, after));
    assert_memory_equal(before, after, 32);
    CK_OBJECT_HANDLE d;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, "m/77/2", NULL, 0, &d));
    assert_still_serving(&pids, "after the parent's next derivation");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    assert_int_equal(p11_ctl("audit verify >/dev/null"), 0);
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_teardown(f, p11_finalize_teardown)
    const struct CMUnitTest tests[] = {
        T(test_fault_fork__an_uninitialised_child_is_refused_and_leaves_the_parent_alone),
        T(test_fault_fork__a_reinitialising_child_has_its_own_connections_and_chain),
    };
    return cmocka_run_group_tests_name("fault_fork", tests, NULL, NULL);
}
