/* SPDX-License-Identifier: Apache-2.0 */
/* Scale-out: two processes (two module instances, each with its own instance id, as two
 * hosts would have) share one database.
 *
 * Each child process initialises the module, signs with vec-b's key (derived and audited under its
 * own audit chain) and reports ready; the parent rotates vec-b with ddsmctl, then tells both to go.
 * Instance A hears the rotation on its LISTEN link; instance B's LISTEN link is pointed at a port
 * where nothing listens, so it must re-validate within [cache] staleness_ms. Both must refuse the
 * old handle within the staleness bound (plus scheduling slack), may sign with the old key only
 * before it, and then sign with the counter-1 key. Afterwards the audit log holds DERIVE rows of
 * both instances under distinct instance ids, each chain its own, and `ddsmctl audit verify`
 * passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11_support.h"
#include "pg_support.h"

#define STALENESS_MS 1000

/* What a child reports when it is done. */
struct report {
    int ok;
    long long refused_after_ms; /* from "go" to the old handle's first refusal */
    long long last_old_sig_ms;  /* from "go" to the last signature made with the old key (-1) */
    int new_key_ok;
    char error[200];
};

static void child_conf(const char *name, int listen_dead)
{
    char extra[1024];
    if (listen_dead)
        snprintf(extra, sizeof(extra),
                 "[store]\nlisten_conninfo = host=127.0.0.1 port=1 user=postgres connect_timeout=1"
                 "\n[cache]\nstaleness_ms = %d\n",
                 STALENESS_MS);
    else
        snprintf(extra, sizeof(extra), "[cache]\nstaleness_ms = %d\n", STALENESS_MS);
    p11_write_conf(name, NULL, extra);
}

static int sig_with(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, uint8_t out[32])
{
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG n = 32;
    CK_RV rv = p11->C_SignInit(s, &m, h);
    if (rv != CKR_OK)
        return (int)rv;
    return (int)p11->C_Sign(s, (CK_BYTE_PTR) "scale", 5, out, &n);
}

/* The child's whole life; writes its report to wfd. No cmocka in here: plain checks. */
static void child(const char *name, int listen_dead, int rfd, int wfd)
{
    struct report r;
    uint8_t sig[32], old_mac[32], new_mac[32], key[32];
    char cmd[16];
    memset(&r, 0, sizeof(r));
    r.last_old_sig_ms = -1;
    child_conf(name, listen_dead);
    p11_expected_key(VEC_B_ID, VEC_B_PATH, 0, key);
    p11_hmac_raw(key, (const uint8_t *)"scale", 5, old_mac);
    p11_expected_key(VEC_B_ID, VEC_B_PATH, 1, key);
    p11_hmac_raw(key, (const uint8_t *)"scale", 5, new_mac);

    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    const char *pin = getenv("DDSM_TEST_PIN");
    CK_RV rv = p11->C_Initialize(NULL);
    if (rv == CKR_OK)
        rv = p11->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK)
        rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    CK_OBJECT_HANDLE h = 0;
    CK_ULONG found = 0;
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "vec-b/" VEC_B_PATH, strlen("vec-b/" VEC_B_PATH)}};
    if (rv == CKR_OK && (rv = p11->C_FindObjectsInit(s, t, 1)) == CKR_OK) {
        rv = p11->C_FindObjects(s, &h, 1, &found);
        (void)p11->C_FindObjectsFinal(s);
    }
    if (rv != CKR_OK || found != 1 || (rv = (CK_RV)sig_with(s, h, sig)) != CKR_OK ||
        memcmp(sig, old_mac, 32) != 0) {
        snprintf(r.error, sizeof(r.error), "%s: set-up: %s (found %lu)", name, ddsm_rv_name(rv),
                 (unsigned long)found);
        goto out;
    }
    /* Ready; wait for the parent's rotation. */
    if (write(wfd, "R", 1) != 1 || read(rfd, cmd, 1) != 1)
        goto out;
    long long go = pgs_now_ms();
    for (;;) {
        long long now = pgs_now_ms() - go;
        int srv = sig_with(s, h, sig);
        if (srv == CKR_KEY_HANDLE_INVALID) {
            r.refused_after_ms = now;
            break;
        }
        if (srv != CKR_OK) {
            snprintf(r.error, sizeof(r.error), "%s: old handle: %s", name,
                     ddsm_rv_name((CK_RV)srv));
            goto out;
        }
        if (memcmp(sig, old_mac, 32) == 0) {
            r.last_old_sig_ms = pgs_now_ms() - go;
            /* Without its LISTEN link, a signature asked for once the staleness bound had passed
             * since the rotation returned must not use the old key: the module validated this key
             * before "go", so by then its age exceeds the bound and it is re-validated first
             * (measured from before the call: no upper bound on scheduling is involved). With
             * the link, the refusal follows the NOTIFY, whose delivery time is the machine's:
             * shown, not asserted; a module that never refuses runs into ctest's timeout. */
            if (listen_dead && now >= STALENESS_MS) {
                snprintf(r.error, sizeof(r.error),
                         "%s: the old key signed a request made %lld ms after the rotation "
                         "returned (bound %d ms)",
                         name, now, STALENESS_MS);
                goto out;
            }
        }
        p11_sleep_ms(10);
    }
    /* The key now: counter 1. */
    if ((rv = p11->C_FindObjectsInit(s, t, 1)) == CKR_OK) {
        rv = p11->C_FindObjects(s, &h, 1, &found);
        (void)p11->C_FindObjectsFinal(s);
    }
    r.new_key_ok = rv == CKR_OK && found == 1 && sig_with(s, h, sig) == CKR_OK &&
                   memcmp(sig, new_mac, 32) == 0;
    r.ok = 1;
out:
    if (s != CK_INVALID_HANDLE)
        (void)p11->C_CloseSession(s);
    (void)p11->C_Finalize(NULL);
    if (write(wfd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        _exit(3);
    _exit(0);
}

struct kid {
    pid_t pid;
    int to[2], from[2];
};

static void spawn(struct kid *k, const char *name, int listen_dead)
{
    assert_int_equal(pipe(k->to), 0);
    assert_int_equal(pipe(k->from), 0);
    k->pid = fork();
    assert_true(k->pid >= 0);
    if (k->pid == 0) {
        close(k->to[1]);
        close(k->from[0]);
        child(name, listen_dead, k->to[0], k->from[1]);
    }
    close(k->to[0]);
    close(k->from[1]);
}

static void wait_ready(struct kid *k)
{
    char c = 0;
    assert_int_equal(read(k->from[0], &c, 1), 1);
    if (c != 'R') {
        /* The child failed early and wrote its report: show it. */
        struct report r;
        memset(&r, 0, sizeof(r));
        ((char *)&r)[0] = c;
        ssize_t got = read(k->from[0], (char *)&r + 1, sizeof(r) - 1);
        fail_msg("child %d not ready (%zd): %s", (int)k->pid, got, r.error);
    }
}

static struct report finish(struct kid *k)
{
    struct report r;
    memset(&r, 0, sizeof(r));
    ssize_t got = read(k->from[0], &r, sizeof(r));
    int st = 0;
    waitpid(k->pid, &st, 0);
    close(k->from[0]);
    close(k->to[1]);
    if (got != (ssize_t)sizeof(r) || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d ended badly (status 0x%x)", (int)k->pid, st);
    return r;
}

static void test_scaleout__two_instances_share_one_database(void **state)
{
    struct kid a, b;
    /* One after the other: two SoftHSM instances loading one token directory at the same moment
     * may miss the token (its file lock); two hosts would have an HSM each. */
    spawn(&a, "instance-a", 0);
    wait_ready(&a);
    spawn(&b, "instance-b-no-listen", 1);
    wait_ready(&b);

    /* The rotation returns; only then do the children start watching the clock. */
    assert_int_equal(p11_ctl("asset rotate vec-b >/dev/null"), 0);
    assert_int_equal(write(a.to[1], "G", 1), 1);
    assert_int_equal(write(b.to[1], "G", 1), 1);
    struct report ra = finish(&a), rb = finish(&b);
    struct report *r[2] = {&ra, &rb};
    for (int i = 0; i < 2; i++) {
        if (!r[i]->ok)
            fail_msg("%s", r[i]->error);
        print_message("instance %c: old handle refused after %lld ms, last old-key signature at "
                      "%lld ms\n",
                      'A' + i, r[i]->refused_after_ms, r[i]->last_old_sig_ms);
        if (!r[i]->new_key_ok)
            fail_msg("instance %c: the counter-1 key did not sign as expected", 'A' + i);
    }

    /* Both instances wrote DERIVE rows under their own instance ids ("<host>/<pid>/<random>",
     * plus the chain suffix of each writing connection). */
    PGconn *c = pgs_connect(pgs_conninfo());
    char pa[16], pb[16];
    snprintf(pa, sizeof(pa), "%d", (int)a.pid);
    snprintf(pb, sizeof(pb), "%d", (int)b.pid);
    const char *params[] = {pa, pb};
    long long per_pid =
        pgs_int(c,
                "SELECT count(DISTINCT split_part(instance_id, '/', 2)) FROM custody_audit_log"
                " WHERE event = 'DERIVE' AND split_part(instance_id, '/', 2) IN ($1, $2)",
                2, params);
    assert_int_equal(per_pid, 2);
    long long shared = pgs_int(
        c,
        "SELECT count(*) FROM (SELECT instance_id FROM custody_audit_log"
        " WHERE split_part(instance_id, '/', 2) IN ($1, $2)"
        " GROUP BY instance_id HAVING count(DISTINCT split_part(instance_id, '/', 2)) > 1) x",
        2, params);
    assert_int_equal(shared, 0);
    /* Each chain's sequence numbers are its own: 1, 2, ... without gaps or repeats. */
    long long broken =
        pgs_int(c,
                "SELECT count(*) FROM (SELECT instance_id, count(*) AS n, count(DISTINCT seq) AS d,"
                " min(seq) AS lo, max(seq) AS hi FROM custody_audit_log"
                " WHERE split_part(instance_id, '/', 2) IN ($1, $2) GROUP BY instance_id) x"
                " WHERE n <> d OR lo <> 1 OR hi <> n",
                2, params);
    assert_int_equal(broken, 0);
    PQfinish(c);
    assert_int_equal(p11_ctl("audit verify >/dev/null"), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scaleout__two_instances_share_one_database),
    };
    return cmocka_run_group_tests_name("scale-out", tests, NULL, NULL);
}
