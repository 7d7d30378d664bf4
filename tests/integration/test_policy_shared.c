/* SPDX-License-Identifier: Apache-2.0 */
/* The policy across processes (docs/policy.md): a rate limit shared by two processes (two forked
 * children each deriving as fast as they can: together they get the limit, never more, and at
 * most one lease chunk per process less), and a zone disabled while another process derives and
 * signs (derivations stop the moment `ddsmctl zone disable` returns; signing with a key derived
 * before stops within the staleness bound). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "p11_support.h"

static char g_conf_keep[4096];

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long sqlf(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return p11_sql_long(sql);
}

static void clear_of_hour_boundary(void)
{
    long into = (long)(time(NULL) % 3600);
    if (into > 3580)
        p11_sleep_ms((unsigned)(3600 - into + 1) * 1000);
}

static void write_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(90);
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

static bool read_all(int fd, void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p = (char *)p + r;
        n -= (size_t)r;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* A rate limit shared by two processes                                                        */

struct rate_result {
    long ok, rejected, other;
    CK_RV other_rv;
};

/* In a forked child (no cmocka there): initialise and open a user session, or exit 91
 * (C_Initialize), 92 (C_OpenSession) or 93 (C_Login). */
static CK_SESSION_HANDLE child_user_session(void)
{
    if (p11->C_Initialize(NULL) != CKR_OK)
        _exit(91);
    CK_SESSION_HANDLE s;
    if (p11->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK)
        _exit(92);
    const char *pin = getenv("DDSM_TEST_PIN");
    if (p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK)
        _exit(93);
    return s;
}

/* In a forked child: initialise, wait for the start signal, try n derivations of fresh paths of
 * asset (alternating between assets when two are given), report through out. */
static void rate_child(int tag, int ready_fd, int go_fd, int out_fd, const char *asset1,
                       const char *asset2, int n)
{
    struct rate_result r = {0, 0, 0, CKR_OK};
    CK_SESSION_HANDLE s = child_user_session();
    write_all(ready_fd, "r", 1);
    char go = 0;
    if (!read_all(go_fd, &go, 1))
        _exit(94);
    for (int i = 0; i < n; i++) {
        char path[64];
        CK_OBJECT_HANDLE h = 0;
        snprintf(path, sizeof(path), "m/%d/%d", tag, i);
        const char *asset = asset2 != NULL && i % 2 == 1 ? asset2 : asset1;
        CK_RV rv = p11_derive(s, asset, path, NULL, 0, &h);
        if (rv == CKR_OK) {
            r.ok++;
        } else if (rv == CKR_FUNCTION_REJECTED) {
            r.rejected++;
        } else {
            r.other++;
            r.other_rv = rv;
        }
    }
    write_all(out_fd, &r, sizeof(r));
    (void)p11->C_Finalize(NULL);
    _exit(0);
}

static void shared_rate(const char *name, const char *requester, const char *policy,
                        const char *asset2, long limit, long chunk)
{
    char extra[512];
    clear_of_hour_boundary();
    snprintf(extra, sizeof(extra), "[policy]\nrequester = %s\n%s\n", requester, policy);
    p11_write_conf(name, NULL, extra);
    int go[2], out[2], ready[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(ready), 0);
    pid_t kids[2];
    const int n = (int)(limit * 3 / 2); /* each alone would exceed the limit */
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            close(out[0]);
            close(ready[0]);
            rate_child(k + 1, ready[1], go[0], out[1], VEC_A_ID, asset2, n);
        }
        /* One at a time through C_Initialize and C_Login: SoftHSMv2 rewrites its token file at
         * a login, and a process reading it meanwhile may miss the token. */
        char c;
        assert_true(read_all(ready[0], &c, 1));
    }
    close(go[0]);
    close(out[1]);
    close(ready[0]);
    close(ready[1]);
    assert_int_equal(write(go[1], "gg", 2), 2);
    struct rate_result r[2];
    for (int k = 0; k < 2; k++)
        assert_true(read_all(out[0], &r[k], sizeof(r[k])));
    for (int k = 0; k < 2; k++) {
        int st = 0;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (r[k].other != 0)
            fail_msg("child %d: %ld derivations failed otherwise, e.g. %s", k, r[k].other,
                     ddsm_rv_name(r[k].other_rv));
        assert_int_equal(r[k].ok + r[k].rejected, n);
    }
    close(go[1]);
    close(out[0]);

    long ok = r[0].ok + r[1].ok;
    printf("shared %s: %ld + %ld allowed of a limit of %ld (chunk %ld)\n", name, r[0].ok, r[1].ok,
           limit, chunk);
    /* Never more than the limit; less only by what a process leased and left unused. */
    assert_true(ok <= limit);
    assert_true(ok >= limit - 2 * chunk);
    /* The database agrees: the grants of the window stay within the limit, every allowed
     * derivation is one DERIVE row, every refusal one DENY row with the reason. */
    assert_true(sqlf("SELECT coalesce(max(granted), 0) FROM custody_rate_windows WHERE "
                     "requester = '%s'",
                     requester) <= limit);
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND "
                          "requester = '%s'",
                          requester),
                     ok);
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' AND "
                          "requester = '%s' AND detail LIKE 'rate limit %%'",
                          requester),
                     2L * n - ok);
    setenv("DDSM_CONF", g_conf_keep, 1);
}

static void test_policy_shared__rate_per_requester_and_asset_holds_across_two_processes(void **st)
{
    shared_rate("shared-asset", "shared-asset-app", "rate_per_requester_asset = 40/h", NULL, 40, 4);
}

static void test_policy_shared__rate_per_requester_holds_across_two_processes(void **st)
{
    shared_rate("shared-req", "shared-req-app", "rate_per_requester = 30/h", VEC_B_ID, 30, 3);
}

/* ------------------------------------------------------------------------------------------ */
/* A zone disabled while another process derives and signs                                     */

/* What the child saw of one kind of call (derive, sign). */
struct zone_calls {
    long long last_ok, first_rejected; /* when the call started / returned */
    long ok;
    CK_ULONG detail; /* ulDeviceError after the first refusal */
};

struct zone_result {
    struct zone_calls derive, sign;
    CK_RV bad_rv; /* an answer other than OK / FUNCTION_REJECTED, CKR_OK when none */
};

/* Count rv, the answer to a call on s made at started that returned at t, into c (or bad_rv). */
static void zone_record(struct zone_calls *c, CK_RV *bad_rv, CK_SESSION_HANDLE s, CK_RV rv,
                        long long started, long long t)
{
    CK_SESSION_INFO info;
    if (rv == CKR_OK) {
        c->last_ok = started; /* when it was asked for */
        c->ok++;
    } else if (rv == CKR_FUNCTION_REJECTED) {
        if (c->first_rejected == 0) {
            c->first_rejected = t;
            (void)p11->C_GetSessionInfo(s, &info);
            c->detail = info.ulDeviceError;
        }
    } else {
        *bad_rv = rv;
    }
}

static void zone_child(int ready_fd, int out_fd)
{
    struct zone_result r;
    memset(&r, 0, sizeof(r));
    CK_SESSION_HANDLE s = child_user_session();
    CK_OBJECT_HANDLE key = 0;
    if (p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &key) != CKR_OK)
        _exit(94);
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    bool told = false;
    /* Until both calls have been refused for a while (no deadline: a module that never refuses
     * them runs into ctest's timeout). The parent disables the zone once this process has
     * derived and signed in the loop: told, not timed. */
    for (int i = 0;; i++) {
        char path[64];
        CK_OBJECT_HANDLE h = 0;
        snprintf(path, sizeof(path), "m/44'/9'/0'/0/%d", i);
        long long started = wall_ms();
        CK_RV rv = p11_derive(s, VEC_A_ID, path, NULL, 0, &h);
        long long t = wall_ms();
        zone_record(&r.derive, &r.bad_rv, s, rv, started, t);
        uint8_t sig[32];
        started = wall_ms();
        rv = p11_hmac_sign(s, key, (const uint8_t *)"z", 1, sig);
        t = wall_ms();
        zone_record(&r.sign, &r.bad_rv, s, rv, started, t);
        if (!told && r.derive.ok > 0 && r.sign.ok > 0) {
            write_all(ready_fd, "r", 1);
            told = true;
        }
        if (r.derive.first_rejected != 0 && r.sign.first_rejected != 0 &&
            t > r.sign.first_rejected + 500)
            break; /* refused for a while: nothing more to learn */
    }
    (void)m;
    write_all(out_fd, &r, sizeof(r));
    (void)p11->C_Finalize(NULL);
    _exit(0);
}

static void test_policy_shared__zone_disabled_while_another_process_derives(void **st)
{
    /* The default staleness bound: 1000 ms. */
    p11_write_conf("zone-live", NULL, NULL);
    assert_int_equal(p11_ctl("zone assign vec-a z-live >/dev/null"), 0);
    int ready[2], out[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(out), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        close(ready[0]);
        close(out[0]);
        zone_child(ready[1], out[1]);
    }
    close(ready[1]);
    close(out[1]);
    char c;
    assert_true(read_all(ready[0], &c, 1));
    /* It has derived and signed in its loop; it goes on meanwhile. */
    long long t0 = wall_ms();
    assert_int_equal(p11_ctl("zone disable z-live >/dev/null"), 0);
    long long t1 = wall_ms();
    struct zone_result r;
    assert_true(read_all(out[0], &r, sizeof(r)));
    int status = 0;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    close(out[0]);
    printf("disable %lld..%lld ms; last derive ok %+lld, first refused %+lld; last sign ok %+lld, "
           "first refused %+lld (relative to the disable returning)\n",
           t0 % 100000, t1 % 100000, r.derive.last_ok - t1, r.derive.first_rejected - t1,
           r.sign.last_ok - t1, r.sign.first_rejected - t1);

    if (r.bad_rv != CKR_OK)
        fail_msg("the child got %s", ddsm_rv_name(r.bad_rv));
    assert_true(r.derive.ok > 0 && r.sign.ok > 0); /* it was working before */
    /* Derivation: the statement checks the zone; none asked for after the disable returned
     * succeeds, and none commits after it. */
    assert_true(r.derive.last_ok <= t1);
    assert_true(r.derive.first_rejected >= t0);
    assert_int_equal(r.derive.detail, DDSM_DEVERR_POLICY_ZONE);
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND "
                          "asset_id = '%s' AND recorded_at > to_timestamp(%lld / 1000.0)",
                          VEC_A_ID, t1),
                     0);
    /* Signing with the key derived before stops, for good (when, after the disable, depends on
     * when the NOTIFY arrives: printed above, not asserted). */
    assert_true(r.sign.first_rejected != 0);
    assert_true(r.sign.last_ok < r.sign.first_rejected);
    assert_int_equal(r.sign.detail, DDSM_DEVERR_POLICY_ZONE);
    assert_true(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' AND "
                     "asset_id = '%s' AND detail = 'zone z-live is disabled; sign refused'",
                     VEC_A_ID) >= 1);
    assert_int_equal(p11_ctl("zone enable z-live >/dev/null"), 0);
    assert_int_equal(p11_ctl("zone assign vec-a default >/dev/null"), 0);
    setenv("DDSM_CONF", g_conf_keep, 1);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    snprintf(g_conf_keep, sizeof(g_conf_keep), "%s", getenv("DDSM_CONF"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_policy_shared__rate_per_requester_and_asset_holds_across_two_processes),
        cmocka_unit_test(test_policy_shared__rate_per_requester_holds_across_two_processes),
        cmocka_unit_test(test_policy_shared__zone_disabled_while_another_process_derives),
    };
    return cmocka_run_group_tests_name("policy_shared", tests, NULL, NULL);
}
