/* SPDX-License-Identifier: Apache-2.0 */
/* The policy gate through the module (docs/policy.md): each rule's refusal is
 * CKR_FUNCTION_REJECTED with its DDSM_DEVERR_POLICY_* detail in ulDeviceError and one DENY audit
 * row naming the reason, and changes nothing else (no DERIVE row, no registry change, no new
 * handle); asset-state refusals keep their own codes. Also the PKCS#11 3.0 interface:
 * C_LoginUser names the user in audit rows over a backend that has no C_LoginUser,
 * C_SessionCancel, and the message functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11_support.h"
#include "pg_support.h"

static CK_SESSION_HANDLE s;
static char g_conf_keep[4096];

/* A fresh module instance reading a configuration with extra sections. */
static void start(const char *name, const char *extra)
{
    p11_write_conf(name, NULL, extra);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();
}

static void stop(void)
{
    (void)p11->C_CloseSession(s);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    setenv("DDSM_CONF", g_conf_keep, 1);
}

static CK_ULONG dev_err(CK_SESSION_HANDLE h)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(h, &info));
    return info.ulDeviceError;
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

/* Everything a refusal must leave alone: the registry (counters, states, zones) and the number
 * of DERIVE rows; DENY rows are counted separately. */
struct world {
    long registry; /* hash of custody_keys */
    long derives;
    long denies;
    long audit;
};

static void world(struct world *w)
{
    w->registry = p11_sql_long("SELECT coalesce(sum(hashtext(asset_id::text || derivation_counter "
                               "|| state || zone)), 0) FROM custody_keys");
    w->derives = p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'");
    w->denies = p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY'");
    w->audit = p11_audit_count();
}

/* Exactly one more DENY row, whose detail matches like, and nothing else. */
static void assert_one_denial(const struct world *before, const char *asset, const char *like)
{
    struct world now;
    world(&now);
    assert_int_equal(now.registry, before->registry);
    assert_int_equal(now.derives, before->derives);
    assert_int_equal(now.denies, before->denies + 1);
    assert_int_equal(now.audit, before->audit + 1);
    long n =
        sqlf("SELECT count(*) FROM (SELECT * FROM custody_audit_log ORDER BY id DESC LIMIT 1) r"
             " WHERE event = 'DENY' AND asset_id = '%s' AND detail LIKE '%s'",
             asset, like);
    if (n != 1)
        fail_msg("the last audit row is not the DENY of %s with detail like '%s'", asset, like);
}

/* Wait until the hour boundary (rate windows of /h) is not about to pass during a test. */
static void clear_of_hour_boundary(void)
{
    time_t now = time(NULL);
    long into = (long)(now % 3600);
    if (into > 3590)
        p11_sleep_ms((unsigned)(3600 - into + 1) * 1000);
}

/* ------------------------------------------------------------------------------------------ */

static void test_policy__path_outside_the_patterns_is_rejected_with_detail_and_deny_row(void **st)
{
    start("path", "[policy]\npath_pattern = m/44'/*'/*'/*/*\n");
    struct world w;
    world(&w);
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_B_ID, "m/0", NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_PATH);
    assert_one_denial(&w, VEC_B_ID, "path refused by policy%");
    /* The row names the path it refused. */
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' AND "
                          "asset_id = '%s' AND derivation_path = 'm/0'",
                          VEC_B_ID),
                     1);
    /* An allowed path still derives, and a success clears the detail. */
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(dev_err(s), DDSM_DEVERR_NONE);
    stop();
}

static void test_policy__mechanism_outside_the_list_is_rejected_at_init(void **st)
{
    start("mech", "[policy]\nmechanism = CKM_SHA256_HMAC_GENERAL\n");
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    struct world w;
    world(&w);
    CK_MECHANISM plain = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_FUNCTION_REJECTED, p11->C_SignInit(s, &plain, h));
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_MECHANISM);
    assert_one_denial(&w, VEC_A_ID, "mechanism CKM_SHA256_HMAC is not allowed by policy");
    assert_rv(CKR_FUNCTION_REJECTED, p11->C_VerifyInit(s, &plain, h));
    /* No operation was started: the allowed mechanism initialises at once. */
    CK_ULONG len = 16;
    CK_MECHANISM general = {CKM_SHA256_HMAC_GENERAL, &len, sizeof(len)};
    assert_rv(CKR_OK, p11->C_SignInit(s, &general, h));
    uint8_t sig[32], full[32];
    CK_ULONG sl = sizeof(sig);
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR) "m", 1, sig, &sl));
    assert_int_equal(sl, 16);
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"m", 1, full);
    assert_memory_equal(sig, full, 16);
    stop();
}

static void test_policy__unknown_mechanism_name_fails_initialize(void **st)
{
    p11_write_conf("mech-bad", NULL, "[policy]\nmechanism = CKM_NO_SUCH_THING\n");
    assert_rv(CKR_FUNCTION_FAILED, p11->C_Initialize(NULL));
    p11_write_conf("mech-syntax", NULL, "[policy]\nmechanism = sha256\n");
    assert_rv(CKR_FUNCTION_FAILED, p11->C_Initialize(NULL));
    p11_write_conf("rate-syntax", NULL, "[policy]\nrate_per_requester = 100/week\n");
    assert_rv(CKR_FUNCTION_FAILED, p11->C_Initialize(NULL));
    setenv("DDSM_CONF", g_conf_keep, 1);
}

static void test_policy__rate_per_requester_and_asset_is_enforced(void **st)
{
    clear_of_hour_boundary();
    start("rate-asset", "[policy]\nrequester = rate-asset-app\nrate_per_requester_asset = 4/h\n");
    CK_OBJECT_HANDLE h = 0;
    char path[64];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "m/44'/0'/0'/0/%d", i);
        assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, path, NULL, 0, &h));
    }
    struct world w;
    world(&w);
    h = 0;
    assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_A_ID, "m/44'/0'/0'/0/9", NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_RATE_ASSET);
    assert_one_denial(&w, VEC_A_ID, "rate limit 4/h per requester and asset reached");
    /* Another asset has a limit of its own. */
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, "m/0", NULL, 0, &h));
    /* The database granted exactly the limit, and the audit rows carry the requester. */
    assert_int_equal(sqlf("SELECT coalesce(sum(granted), 0) FROM custody_rate_windows WHERE "
                          "requester = 'rate-asset-app' AND asset_id = '%s'",
                          VEC_A_ID),
                     4);
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND "
                          "requester = 'rate-asset-app' AND asset_id = '%s'",
                          VEC_A_ID),
                     4);
    stop();
}

static void test_policy__rate_per_requester_spans_every_asset(void **st)
{
    clear_of_hour_boundary();
    start("rate-req", "[policy]\nrequester = rate-req-app\nrate_per_requester = 3/h\n");
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, "m/44'/1'/0'/0/0", NULL, 0, &h));
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, "m/1", NULL, 0, &h));
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, "m/44'/1'/0'/0/1", NULL, 0, &h));
    struct world w;
    world(&w);
    assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_B_ID, "m/2", NULL, 0, &h));
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_RATE_REQUESTER);
    assert_one_denial(&w, VEC_B_ID, "rate limit 3/h per requester reached");
    /* The first use of a found key is a derivation too: refused the same way. */
    CK_OBJECT_HANDLE found = p11_find_label(s, VEC_B_ID "/m/0");
    uint8_t sig[32];
    assert_rv(CKR_FUNCTION_REJECTED, p11_hmac_sign(s, found, (const uint8_t *)"x", 1, sig));
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_RATE_REQUESTER);
    stop();
}

static void test_policy__disabled_zone_refuses_derivation_and_use_until_enabled(void **st)
{
    start("zone", NULL);
    assert_int_equal(p11_ctl("zone assign vec-a z-pol >/dev/null"), 0);
    CK_OBJECT_HANDLE h = 0, h2 = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_OK, p11->C_SignInit(s, &m, h)); /* an operation in progress */

    assert_int_equal(p11_ctl("zone disable z-pol >/dev/null"), 0);
    /* The derivation statement checks the zone itself: refused at once, its DENY row written by
     * that statement. */
    struct world w;
    world(&w);
    assert_rv(CKR_FUNCTION_REJECTED, p11_derive(s, VEC_A_ID, "m/44'/0'/0'/0/7", NULL, 0, &h2));
    assert_int_equal(h2, 0);
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_ZONE);
    assert_one_denial(&w, VEC_A_ID, "zone z-pol is disabled");
    /* The key derived before stops too: within the staleness bound (the NOTIFY, or the next
     * re-validation), the step of the running operation and any new one are refused. */
    uint8_t sig[32];
    CK_ULONG sl = sizeof(sig);
    CK_RV rv; /* until it stops (a module that never stops it runs into ctest's timeout) */
    while ((rv = p11->C_Sign(s, (CK_BYTE_PTR) "m", 1, sig, &sl)) == CKR_OK) {
        assert_rv(CKR_OK, p11->C_SignInit(s, &m, h));
        p11_sleep_ms(20);
    }
    assert_rv(CKR_FUNCTION_REJECTED, rv);
    assert_int_equal(dev_err(s), DDSM_DEVERR_POLICY_ZONE);
    world(&w);
    assert_rv(CKR_FUNCTION_REJECTED, p11->C_SignInit(s, &m, h));
    assert_one_denial(&w, VEC_A_ID, "zone z-pol is disabled; sign refused");
    /* Other zones are untouched. */
    assert_rv(CKR_OK, p11_derive(s, VEC_B_ID, "m/0", NULL, 0, &h2));

    assert_int_equal(p11_ctl("zone enable z-pol >/dev/null"), 0);
    /* A derivation asked for after the enable returned succeeds at once, whether or not the
     * NOTIFY has arrived: the statement decides, not what this process remembers. */
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, "m/44'/0'/0'/0/8", NULL, 0, &h2));
    while ((rv = p11->C_SignInit(s, &m, h)) == CKR_FUNCTION_REJECTED)
        p11_sleep_ms(20);
    assert_rv(CKR_OK, rv);
    sl = sizeof(sig);
    assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR) "m", 1, sig, &sl));
    uint8_t want[32];
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"m", 1, want);
    assert_memory_equal(sig, want, 32);
    assert_int_equal(p11_ctl("zone assign vec-a default >/dev/null"), 0);
    stop();
}

static void test_policy__state_refusals_keep_their_codes_in_a_disabled_zone(void **st)
{
    start("zone-state", NULL);
    assert_int_equal(p11_ctl("zone assign gone z-state >/dev/null"), 0);
    assert_int_equal(p11_ctl("zone assign fresh z-state >/dev/null"), 0);
    assert_int_equal(p11_ctl("zone disable z-state >/dev/null"), 0);
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11_derive(s, RETIRED_ID, "m/4", NULL, 0, &h));
    assert_int_not_equal(dev_err(s), DDSM_DEVERR_POLICY_ZONE);
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11_derive(s, FRESH_ID, "m/3", NULL, 0, &h));
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, UNKNOWN_ID, "m/3", NULL, 0, &h));
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' AND "
                          "asset_id = '%s' AND detail LIKE 'zone%%'",
                          RETIRED_ID),
                     0);
    assert_int_equal(p11_ctl("zone enable z-state >/dev/null"), 0);
    stop();
}

/* ------------------------------------------------------------------------------------------ */
/* PKCS#11 3.0                                                                                  */

static CK_FUNCTION_LIST_3_0 *list30(void)
{
    ddsm_C_GetInterface_fn gi = (ddsm_C_GetInterface_fn)(uintptr_t)p11_sym("C_GetInterface");
    CK_INTERFACE_PTR iface = NULL;
    CK_VERSION v30 = {3, 0};
    assert_rv(CKR_OK, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
    return iface->pFunctionList;
}

static long requester_rows(const char *requester, const char *path)
{
    return sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE' AND requester = '%s'"
                " AND derivation_path = '%s'",
                requester, path);
}

static void test_policy__login_user_names_the_user_in_audit_rows(void **st)
{
    p11_write_conf("user", NULL, "[policy]\nrequester = teller-app\n");
    CK_FUNCTION_LIST_3_0 *f = list30();
    assert_rv(CKR_OK, f->C_Initialize(NULL));
    CK_SESSION_HANDLE h;
    assert_rv(CKR_OK, f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    const char *pin = getenv("DDSM_TEST_PIN");
    CK_ULONG pl = strlen(pin);
    CK_SESSION_INFO info;

    /* Malformed user names: refused before anything reaches the HSM. */
    assert_rv(CKR_ARGUMENTS_BAD,
              f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl, (CK_UTF8CHAR_PTR) "", 0));
    assert_rv(CKR_ARGUMENTS_BAD,
              f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl, (CK_UTF8CHAR_PTR) "a\nb", 3));
    assert_rv(CKR_ARGUMENTS_BAD,
              f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl, (CK_UTF8CHAR_PTR) "\xff", 1));
    /* A UTF-16 surrogate and an overlong '/': not UTF-8, which PostgreSQL would refuse too. */
    assert_rv(CKR_ARGUMENTS_BAD, f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl,
                                                (CK_UTF8CHAR_PTR) "a\xed\xa0\x80", 4));
    assert_rv(CKR_ARGUMENTS_BAD, f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl,
                                                (CK_UTF8CHAR_PTR) "\xe0\x80\xaf", 3));
    char longname[80];
    memset(longname, 'u', sizeof(longname));
    assert_rv(CKR_ARGUMENTS_BAD,
              f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl, (CK_UTF8CHAR_PTR)longname, 65));
    assert_rv(CKR_ARGUMENTS_BAD, f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl, NULL, 5));
    assert_rv(CKR_OK, f->C_GetSessionInfo(h, &info));
    assert_int_equal(info.state, CKS_RW_PUBLIC_SESSION);
    /* A wrong PIN is the backend's answer; no user is recorded. */
    assert_rv(CKR_PIN_INCORRECT, f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR) "000000", 6,
                                                (CK_UTF8CHAR_PTR) "mallory", 7));

    /* SoftHSMv2 has no C_LoginUser: the module logs in with C_Login and keeps the name. */
    assert_rv(CKR_OK,
              f->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl, (CK_UTF8CHAR_PTR) "alice", 5));
    assert_rv(CKR_OK, f->C_GetSessionInfo(h, &info));
    assert_int_equal(info.state, CKS_RW_USER_FUNCTIONS);
    CK_OBJECT_HANDLE k = 0;
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    size_t n = p11_param(param, sizeof(param), VEC_B_ID, "m/20");
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, n};
    assert_rv(CKR_OK, f->C_DeriveKey(h, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &k));
    assert_int_equal(requester_rows("teller-app/alice", "m/20"), 1);
    /* Login state is the application's: another session of it derives as alice too. */
    CK_SESSION_HANDLE h2;
    assert_rv(CKR_OK, f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h2));
    n = p11_param(param, sizeof(param), VEC_B_ID, "m/21");
    m.ulParameterLen = n;
    assert_rv(CKR_OK, f->C_DeriveKey(h2, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &k));
    assert_int_equal(requester_rows("teller-app/alice", "m/21"), 1);
    /* Refusals carry the user too. */
    n = p11_param(param, sizeof(param), RETIRED_ID, "m/4");
    m.ulParameterLen = n;
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED,
              f->C_DeriveKey(h, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &k));
    assert_true(sqlf("SELECT count(*) FROM custody_audit_log WHERE event = 'DENY' AND "
                     "requester = 'teller-app/alice' AND asset_id = '%s'",
                     RETIRED_ID) >= 1);

    /* After the logout the name is gone; a plain C_Login names the application only. */
    assert_rv(CKR_OK, f->C_Logout(h));
    assert_rv(CKR_OK, f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pl));
    n = p11_param(param, sizeof(param), VEC_B_ID, "m/22");
    m.ulParameterLen = n;
    assert_rv(CKR_OK, f->C_DeriveKey(h, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &k));
    assert_int_equal(requester_rows("teller-app", "m/22"), 1);
    assert_int_equal(sqlf("SELECT count(*) FROM custody_audit_log WHERE requester LIKE "
                          "'%%mallory%%'"),
                     0);
    assert_rv(CKR_OK, f->C_Finalize(NULL));
    setenv("DDSM_CONF", g_conf_keep, 1);
}

static void test_policy__session_cancel_ends_the_operations_it_names(void **st)
{
    start("cancel", NULL);
    CK_FUNCTION_LIST_3_0 *f = list30();
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    uint8_t sig[32];
    CK_ULONG sl = sizeof(sig);

    assert_rv(CKR_OK, f->C_SessionCancel(s, 0)); /* no flag: nothing happens */
    assert_rv(CKR_OK, f->C_SignInit(s, &m, h));
    assert_rv(CKR_OK, f->C_VerifyInit(s, &m, h));
    assert_rv(CKR_OK, f->C_SessionCancel(s, CKF_SIGN | CKF_ENCRYPT)); /* encrypt: not running */
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, f->C_Sign(s, (CK_BYTE_PTR) "m", 1, sig, &sl));
    /* The verification named by no flag goes on. */
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"m", 1, sig);
    assert_rv(CKR_OK, f->C_Verify(s, (CK_BYTE_PTR) "m", 1, sig, 32));
    /* A search, the backend's part included. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
    assert_rv(CKR_OK, f->C_FindObjectsInit(s, &t, 1));
    assert_rv(CKR_OK, f->C_SessionCancel(s, CKF_FIND_OBJECTS));
    CK_OBJECT_HANDLE out[2];
    CK_ULONG nout = 0;
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, f->C_FindObjects(s, out, 2, &nout));
    assert_rv(CKR_OK, f->C_FindObjectsInit(s, &t, 1));
    assert_rv(CKR_OK, f->C_FindObjectsFinal(s));
    /* Operations a 2.40 backend cannot cancel (and the module cannot see) fail as the
     * standard says. */
    assert_rv(CKR_OPERATION_CANCEL_FAILED, f->C_SessionCancel(s, CKF_DIGEST));
    assert_rv(CKR_SESSION_HANDLE_INVALID, f->C_SessionCancel(0x7777, CKF_SIGN));
    /* The message-based functions are not offered. */
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED, f->C_MessageSignInit(s, &m, h));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED,
              f->C_SignMessage(s, NULL, 0, (CK_BYTE_PTR) "m", 1, sig, &sl));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED, f->C_MessageEncryptInit(s, &m, h));
    assert_rv(CKR_FUNCTION_NOT_SUPPORTED, f->C_MessageVerifyFinal(s));
    assert_rv(CKR_SESSION_HANDLE_INVALID, f->C_MessageDecryptFinal(0x7777));
    stop();
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, f->C_SessionCancel(s, CKF_SIGN));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, f->C_MessageSignFinal(s));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    snprintf(g_conf_keep, sizeof(g_conf_keep), "%s", getenv("DDSM_CONF"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_policy__path_outside_the_patterns_is_rejected_with_detail_and_deny_row),
        cmocka_unit_test(test_policy__mechanism_outside_the_list_is_rejected_at_init),
        cmocka_unit_test(test_policy__unknown_mechanism_name_fails_initialize),
        cmocka_unit_test(test_policy__rate_per_requester_and_asset_is_enforced),
        cmocka_unit_test(test_policy__rate_per_requester_spans_every_asset),
        cmocka_unit_test(test_policy__disabled_zone_refuses_derivation_and_use_until_enabled),
        cmocka_unit_test(test_policy__state_refusals_keep_their_codes_in_a_disabled_zone),
        cmocka_unit_test(test_policy__login_user_names_the_user_in_audit_rows),
        cmocka_unit_test(test_policy__session_cancel_ends_the_operations_it_names),
    };
    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
