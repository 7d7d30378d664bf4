/* SPDX-License-Identifier: Apache-2.0 */
/* Attacks on the custody boundary at the module's entry, each performed through the module as an
 * application would. The backend is SoftHSM behind the project's fault wrapper ($DDSM_FAULTP11),
 * whose call log shows what reached the HSM: a refused call must never appear there. SoftHSM 2.6
 * lacks some of the mechanisms used (CKM_CONCATENATE_BASE_AND_KEY, CKM_ECMQV_DERIVE), so an attack
 * is shown by the call reaching the backend, where an HSM that implements the mechanism would run
 * it on the root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_support.h"
#include "p11_support.h"

#define ROOT_LABEL "ddsm-root"
#define VENDOR_MECH 0x80001234UL

/* CK_ECMQV_DERIVE_PARAMS (PKCS#11 2.40 section 2.3.17): the system header lacks it. */
typedef struct {
    CK_ULONG kdf;
    CK_ULONG ulSharedDataLen;
    CK_BYTE_PTR pSharedData;
    CK_ULONG ulPublicDataLen;
    CK_BYTE_PTR pPublicData;
    CK_ULONG ulPrivateDataLen;
    CK_OBJECT_HANDLE hPrivateData;
    CK_ULONG ulPublicDataLen2;
    CK_BYTE_PTR pPublicData2;
    CK_OBJECT_HANDLE publicKey;
} ecmqv_params;

static CK_SESSION_HANDLE s;
static CK_OBJECT_HANDLE root;

static int setup(void **state)
{
    (void)state;
    fs_faults("");
    if (p11_start_user_session(&s) != 0)
        return -1;
    root = p11_root(s);
    fs_log_reset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_faults("");
    return p11_end_session(s);
}

/* A session secret key of len bytes on the backend, made through the module. */
static CK_OBJECT_HANDLE secret(CK_SESSION_HANDLE sh, CK_KEY_TYPE kt, CK_ULONG len,
                               const char *label)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    uint8_t val[32];
    for (size_t i = 0; i < sizeof(val); i++)
        val[i] = (uint8_t)(0x40 + i);
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_DERIVE, &yes, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_LABEL, (void *)label, strlen(label)},
                        {CKA_VALUE, val, len}};
    CK_ATTRIBUTE wrap[] = {{CKA_WRAP, &yes, 1}, {CKA_UNWRAP, &yes, 1}, {CKA_ENCRYPT, &yes, 1}};
    CK_ATTRIBUTE all[11];
    memcpy(all, t, sizeof(t));
    CK_ULONG n = 8;
    if (kt == CKK_AES) {
        memcpy(all + n, wrap, sizeof(wrap));
        n += 3;
    }
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    assert_rv(CKR_OK, p11->C_CreateObject(sh, all, n, &h));
    return h;
}

/* SoftHSM refuses a NULL template before looking at the mechanism. */
static CK_BBOOL g_no = CK_FALSE;
static CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &g_no, 1}};

static long reached(const char *fn)
{
    return fs_log_count(fn);
}

/* CKM_CONCATENATE_BASE_AND_KEY takes the second key's handle as its parameter: base B (31 bytes,
 * CKA_DERIVE) with the root as parameter gives B || root[0], an HMAC key the caller can use,
 * and so the seed byte by byte, with no audit row. */
static void
test_attacks__concatenate_base_and_key_with_the_root_never_reaches_the_backend(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE b = secret(s, CKK_GENERIC_SECRET, 31, "b");
    CK_OBJECT_HANDLE param = root, out = CK_INVALID_HANDLE;
    CK_MECHANISM m = {CKM_CONCATENATE_BASE_AND_KEY, &param, sizeof(param)};
    fs_log_reset();
    CK_RV rv = p11->C_DeriveKey(s, &m, b, tmpl, 1, &out);
    assert_int_equal(reached("C_DeriveKey"), 0);
    assert_rv(CKR_MECHANISM_INVALID, rv);
    assert_int_equal(out, CK_INVALID_HANDLE);
}

/* A mechanism the module knows nothing about may carry anything, handles included. */
static void test_attacks__a_vendor_mechanism_never_reaches_the_backend(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE b = secret(s, CKK_GENERIC_SECRET, 32, "b");
    CK_OBJECT_HANDLE a = secret(s, CKK_AES, 32, "a");
    CK_OBJECT_HANDLE param = root, out = CK_INVALID_HANDLE;
    CK_MECHANISM m = {VENDOR_MECH, &param, sizeof(param)};
    uint8_t blob[256];
    CK_ULONG len = sizeof(blob);
    fs_log_reset();
    CK_RV rv = p11->C_DeriveKey(s, &m, b, tmpl, 1, &out);
    if (reached("C_DeriveKey") != 0)
        fail_msg("C_DeriveKey with a vendor mechanism reached the backend");
    assert_rv(CKR_MECHANISM_INVALID, rv);
    assert_rv(CKR_MECHANISM_INVALID, p11->C_SignInit(s, &m, b));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_VerifyInit(s, &m, b));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_EncryptInit(s, &m, a));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_DecryptInit(s, &m, a));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_SignRecoverInit(s, &m, b));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_VerifyRecoverInit(s, &m, b));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_DigestInit(s, &m));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_WrapKey(s, &m, a, b, blob, &len));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_GenerateKey(s, &m, NULL, 0, &out));
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    assert_rv(CKR_MECHANISM_INVALID, p11->C_GenerateKeyPair(s, &m, NULL, 0, NULL, 0, &pub, &priv));
    assert_rv(CKR_MECHANISM_INVALID, p11->C_UnwrapKey(s, &m, a, blob, 40, NULL, 0, &out));
    const char *fns[] = {"C_DeriveKey",         "C_SignInit",        "C_VerifyInit",
                         "C_EncryptInit",       "C_DecryptInit",     "C_SignRecoverInit",
                         "C_VerifyRecoverInit", "C_DigestInit",      "C_WrapKey",
                         "C_GenerateKey",       "C_GenerateKeyPair", "C_UnwrapKey"};
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        if (reached(fns[i]) != 0)
            fail_msg("%s with a vendor mechanism reached the backend", fns[i]);
    /* The vendor mechanism is not offered either. */
    CK_MECHANISM_INFO info;
    assert_rv(CKR_MECHANISM_INVALID, p11->C_GetMechanismInfo(0, VENDOR_MECH, &info));
}

/* Mechanisms whose parameters name a second private key: ECMQV's hPrivateData, X9.42 MQV's
 * hPrivateData. */
static void test_attacks__mqv_parameters_with_the_root_never_reach_the_backend(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE b = secret(s, CKK_GENERIC_SECRET, 32, "b"), out = CK_INVALID_HANDLE;
    uint8_t point[65] = {4};
    ecmqv_params p = {CKD_NULL, 0, NULL, sizeof(point), point, 32, root, sizeof(point), point, b};
    CK_MECHANISM m = {CKM_ECMQV_DERIVE, &p, sizeof(p)};
    CK_MECHANISM x = {CKM_X9_42_MQV_DERIVE, &p, sizeof(p)};
    fs_log_reset();
    CK_RV rv = p11->C_DeriveKey(s, &m, b, tmpl, 1, &out);
    CK_RV rv2 = p11->C_DeriveKey(s, &x, b, tmpl, 1, &out);
    assert_int_equal(reached("C_DeriveKey"), 0);
    assert_rv(CKR_MECHANISM_INVALID, rv);
    assert_rv(CKR_MECHANISM_INVALID, rv2);
}

/* The classification that tells the root from other keys fails (here: the backend answers one
 * C_GetAttributeValue with CKR_DEVICE_ERROR): the call must be refused, not forwarded. Forwarded,
 * C_SignInit(CKM_SHA256_HMAC, root) + C_Sign computes any asset key without an audit row. */
static void test_attacks__a_classification_error_refuses_the_call(void **state)
{
    (void)state;
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    fs_faults("C_GetAttributeValue rv=CKR_DEVICE_ERROR count=1\n");
    fs_log_reset();
    CK_RV rv = p11->C_SignInit(s, &hmac, root);
    if (rv == CKR_OK) {
        uint8_t sig[32];
        CK_ULONG sl = sizeof(sig);
        (void)p11->C_Sign(s, (CK_BYTE_PTR) "m", 1, sig, &sl);
        fail_msg("C_SignInit on the root was forwarded after a classification error");
    }
    assert_int_equal(reached("C_SignInit"), 0);
    fs_faults("");
    /* The same for the wrapping calls, with the root as either key. */
    CK_OBJECT_HANDLE a = secret(s, CKK_AES, 32, "a");
    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP, NULL, 0};
    uint8_t blob[128];
    CK_ULONG len = sizeof(blob);
    fs_faults("C_GetAttributeValue rv=CKR_DEVICE_ERROR count=1\n");
    fs_log_reset();
    assert_true(p11->C_WrapKey(s, &wrap, a, root, blob, &len) != CKR_OK);
    fs_faults("C_GetAttributeValue rv=CKR_DEVICE_ERROR count=1\n");
    len = sizeof(blob);
    assert_true(p11->C_WrapKey(s, &wrap, root, a, blob, &len) != CKR_OK);
    assert_int_equal(reached("C_WrapKey"), 0);
}

/* Wrapping with the root as the wrapping key and as the key wrapped, logged in: refused before
 * the backend. */
static void test_attacks__wrapping_with_or_of_the_root_never_reaches_the_backend(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE a = secret(s, CKK_AES, 32, "a");
    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP, NULL, 0};
    uint8_t blob[128];
    CK_ULONG len = sizeof(blob);
    fs_log_reset();
    assert_rv(CKR_MECHANISM_INVALID, p11->C_WrapKey(s, &wrap, root, a, blob, &len));
    len = sizeof(blob);
    assert_rv(CKR_KEY_UNEXTRACTABLE, p11->C_WrapKey(s, &wrap, a, root, blob, &len));
    CK_OBJECT_HANDLE out = CK_INVALID_HANDLE;
    assert_rv(CKR_MECHANISM_INVALID, p11->C_UnwrapKey(s, &wrap, root, blob, 40, NULL, 0, &out));
    assert_rv(CKR_KEY_INDIGESTIBLE, p11->C_DigestKey(s, root));
    assert_int_equal(reached("C_WrapKey") + reached("C_UnwrapKey") + reached("C_DigestKey"), 0);
}

/* Nothing made through the module may carry the root's label, whoever asks: here a public R/W
 * session without any login. */
static void test_attacks__nothing_can_be_created_with_the_root_label(void **state)
{
    (void)state;
    CK_SESSION_HANDLE pub = p11_open();
    assert_rv(CKR_OK, p11->C_Logout(s)); /* login is per application: nobody is logged in now */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    uint8_t val[32] = {1};
    /* A session object (a token object would outlive a failed run). */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_LABEL, ROOT_LABEL, 9},
                        {CKA_VALUE, val, sizeof(val)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    fs_log_reset();
    CK_RV rv = p11->C_CreateObject(pub, t, 7, &h);
    if (rv == CKR_OK)
        (void)p11->C_CloseSession(pub); /* its session objects go with it */
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, rv);
    assert_int_equal(h, CK_INVALID_HANDLE);
    assert_int_equal(reached("C_CreateObject"), 0);
    /* ...nor a data object of that label. */
    CK_OBJECT_CLASS dcls = CKO_DATA;
    CK_ATTRIBUTE d[] = {
        {CKA_CLASS, &dcls, sizeof(dcls)}, {CKA_TOKEN, &no, 1}, {CKA_LABEL, ROOT_LABEL, 9}};
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_CreateObject(pub, d, 3, &h));
    /* ...nor a generated one. */
    CK_ULONG vlen = 32;
    CK_ATTRIBUTE g[] = {
        {CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &vlen, sizeof(vlen)}, {CKA_LABEL, ROOT_LABEL, 9}};
    CK_MECHANISM gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_GenerateKey(pub, &gen, g, 3, &h));
    assert_int_equal(reached("C_GenerateKey"), 0);
    assert_rv(CKR_OK, p11->C_CloseSession(pub));
}

static void
test_attacks__no_object_can_be_copied_relabelled_or_derived_to_the_root_label(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE b = secret(s, CKK_GENERIC_SECRET, 32, "b");
    CK_OBJECT_HANDLE a = secret(s, CKK_AES, 32, "a");
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ATTRIBUTE lab[] = {{CKA_LABEL, ROOT_LABEL, 9}};
    fs_log_reset();
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_CopyObject(s, b, lab, 1, &h));
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_SetAttributeValue(s, b, lab, 1));
    assert_int_equal(reached("C_CopyObject") + reached("C_SetAttributeValue"), 0);

    CK_KEY_DERIVATION_STRING_DATA sd = {(CK_BYTE_PTR) "abc", 3};
    CK_MECHANISM concat = {CKM_CONCATENATE_DATA_AND_BASE, &sd, sizeof(sd)};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE dt[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_TOKEN, &no, 1},
                         {CKA_LABEL, ROOT_LABEL, 9}};
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_DeriveKey(s, &concat, b, dt, 4, &h));
    assert_int_equal(reached("C_DeriveKey"), 0);

    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP, NULL, 0};
    uint8_t blob[128];
    CK_ULONG len = sizeof(blob);
    assert_rv(CKR_OK, p11->C_WrapKey(s, &wrap, a, b, blob, &len));
    fs_log_reset();
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID, p11->C_UnwrapKey(s, &wrap, a, blob, len, dt, 4, &h));
    assert_int_equal(reached("C_UnwrapKey"), 0);

    CK_ULONG bits = 1024;
    CK_BYTE e[] = {1, 0, 1};
    CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &no, 1},
                         {CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, e, 3},
                         {CKA_LABEL, ROOT_LABEL, 9}};
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &no, 1}, {CKA_LABEL, ROOT_LABEL, 9}};
    CK_MECHANISM kp = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID,
              p11->C_GenerateKeyPair(s, &kp, pt, 3, vt, 2, &pub, &priv));
    assert_rv(CKR_ATTRIBUTE_VALUE_INVALID,
              p11->C_GenerateKeyPair(s, &kp, pt, 4, vt, 1, &pub, &priv));
    assert_int_equal(reached("C_GenerateKeyPair"), 0);
}

/* Login between check and use. With application mutex callbacks, every lock the module takes
 * runs application code; here that code logs in (on another session: login is per application)
 * right after the module asked the backend about the key handle and before the forwarded call.
 * SoftHSM drops the handles of private objects at logout and numbers handles in sequence as
 * objects are found, so the attacker predicts the handle the root will get: at the check, that
 * handle names nothing the logged-out session can see; the application then logs in and finds the
 * root, which takes that handle; the forwarded C_SignInit would run on the root. */
static pthread_t g_main;
static int g_armed;
static CK_SESSION_HANDLE g_other;
static CK_RV g_login_rv = CKR_GENERAL_ERROR;
static CK_OBJECT_HANDLE g_found = CK_INVALID_HANDLE;

static CK_RV app_create(CK_VOID_PTR_PTR out)
{
    pthread_mutex_t *m = malloc(sizeof(*m));
    if (m == NULL)
        return CKR_HOST_MEMORY;
    pthread_mutex_init(m, NULL);
    *out = m;
    return CKR_OK;
}

static CK_RV app_destroy(CK_VOID_PTR m)
{
    pthread_mutex_destroy(m);
    free(m);
    return CKR_OK;
}

/* The application's code in the gap: log in, find the root (no cmocka assertion here). */
static void login_and_find_root(void)
{
    const char *pin = getenv("DDSM_TEST_PIN");
    g_login_rv = p11->C_Login(g_other, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, ROOT_LABEL, 9}};
    CK_ULONG n = 0;
    if (p11->C_FindObjectsInit(g_other, t, 2) != CKR_OK)
        return;
    if (p11->C_FindObjects(g_other, &g_found, 1, &n) != CKR_OK || n != 1)
        g_found = CK_INVALID_HANDLE;
    (void)p11->C_FindObjectsFinal(g_other);
}

static CK_RV app_lock(CK_VOID_PTR m)
{
    if (g_armed && pthread_equal(pthread_self(), g_main) && reached("C_GetAttributeValue") > 0) {
        g_armed = 0;
        login_and_find_root();
    }
    pthread_mutex_lock(m);
    return CKR_OK;
}

static CK_RV app_unlock(CK_VOID_PTR m)
{
    pthread_mutex_unlock(m);
    return CKR_OK;
}

static int setup_app_mutexes(void **state)
{
    (void)state;
    fs_faults("");
    CK_C_INITIALIZE_ARGS args = {app_create, app_destroy, app_lock, app_unlock, 0, NULL};
    if (p11->C_Initialize(&args) != CKR_OK)
        return -1;
    s = p11_open_user();
    root = p11_root(s);
    return 0;
}

static void test_attacks__a_login_between_check_and_use_cannot_reach_the_root(void **state)
{
    (void)state;
    g_other = p11_open();
    assert_rv(CKR_OK, p11->C_Logout(s));
    /* The next handle SoftHSM gives out: one more than a fresh public object's. */
    CK_OBJECT_CLASS dcls = CKO_DATA;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE d[] = {
        {CKA_CLASS, &dcls, sizeof(dcls)}, {CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &no, 1}};
    CK_OBJECT_HANDLE probe;
    assert_rv(CKR_OK, p11->C_CreateObject(g_other, d, 3, &probe));
    assert_rv(CKR_OK, p11->C_DestroyObject(g_other, probe));
    CK_OBJECT_HANDLE predicted = probe + 1;

    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    g_main = pthread_self();
    fs_log_reset();
    g_armed = 1;
    CK_RV rv = p11->C_SignInit(s, &hmac, predicted);
    /* A module that takes no lock of its own between the check and the forwarded call never runs
     * the callback there: the application logs in now instead, and the refused call must have
     * left nothing behind that the login could make usable. */
    if (g_armed) {
        g_armed = 0;
        login_and_find_root();
    }
    /* The login happened and the root took the predicted handle. */
    assert_rv(CKR_OK, g_login_rv);
    assert_int_equal(g_found, predicted);
    if (rv == CKR_OK) {
        /* The attack as a whole: an HMAC under the root is any asset key, unaudited. */
        uint8_t msg[] = "m", sig[32], want[32];
        CK_ULONG sl = sizeof(sig);
        CK_RV srv = p11->C_Sign(s, msg, 1, sig, &sl);
        p11_hmac_expected("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", msg,
                          1, want);
        fail_msg("C_SignInit on the root was forwarded after a login in the gap (C_Sign: %s, %s "
                 "the root's HMAC)",
                 ddsm_rv_name(srv), srv == CKR_OK && memcmp(sig, want, 32) == 0 ? "is" : "is not");
    }
    if (reached("C_SignInit") != 0)
        fail_msg("C_SignInit on the root reached the backend (%s)", ddsm_rv_name(rv));
    assert_rv(CKR_KEY_HANDLE_INVALID, rv);
    uint8_t sig[32];
    CK_ULONG sl = sizeof(sig);
    assert_rv(CKR_OPERATION_NOT_INITIALIZED, p11->C_Sign(s, (CK_BYTE_PTR) "m", 1, sig, &sl));
    assert_rv(CKR_OK, p11->C_CloseSession(g_other));
}

/* An operator's [backend] extra_mechanisms passes a mechanism on, unchecked (the documented
 * risk): the calls that the allowlist stopped above now reach the backend. */
static int setup_extra(void **state)
{
    fs_write_conf("attacks-extra", getenv("DDSM_FAULTP11"), NULL,
                  "extra_mechanisms = 0x80001234, CKM_CONCATENATE_BASE_AND_KEY\n", NULL);
    return setup(state);
}

static int teardown_extra(void **state)
{
    int r = teardown(state);
    fs_write_conf("attacks", getenv("DDSM_FAULTP11"), NULL, NULL, NULL);
    return r;
}

static void test_attacks__extra_mechanisms_pass_only_what_the_operator_lists(void **state)
{
    (void)state;
    CK_OBJECT_HANDLE b = secret(s, CKK_GENERIC_SECRET, 31, "b");
    CK_OBJECT_HANDLE param = b, out = CK_INVALID_HANDLE;
    CK_MECHANISM cat = {CKM_CONCATENATE_BASE_AND_KEY, &param, sizeof(param)};
    CK_MECHANISM vendor = {VENDOR_MECH, NULL, 0};
    CK_MECHANISM other = {0x80001235UL, NULL, 0};
    fs_log_reset();
    (void)p11->C_DeriveKey(s, &cat, b, tmpl, 1, &out);
    (void)p11->C_SignInit(s, &vendor, b);
    assert_rv(CKR_MECHANISM_INVALID, p11->C_SignInit(s, &other, b));
    assert_int_equal(reached("C_DeriveKey"), 1);
    assert_int_equal(reached("C_SignInit"), 1);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    char path[4096];
    snprintf(path, sizeof(path), "%s/faults", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_CTL", path, 1);
    snprintf(path, sizeof(path), "%s/calls.log", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_LOG", path, 1);
    setenv("DDSM_FAULT_TARGET", "/usr/lib/softhsm/libsofthsm2.so", 1);
    fs_write_conf("attacks", getenv("DDSM_FAULTP11"), NULL, NULL, NULL);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_attacks__concatenate_base_and_key_with_the_root_never_reaches_the_backend),
        T(test_attacks__a_vendor_mechanism_never_reaches_the_backend),
        T(test_attacks__mqv_parameters_with_the_root_never_reach_the_backend),
        T(test_attacks__a_classification_error_refuses_the_call),
        T(test_attacks__wrapping_with_or_of_the_root_never_reaches_the_backend),
        T(test_attacks__nothing_can_be_created_with_the_root_label),
        T(test_attacks__no_object_can_be_copied_relabelled_or_derived_to_the_root_label),
        cmocka_unit_test_setup_teardown(
            test_attacks__a_login_between_check_and_use_cannot_reach_the_root, setup_app_mutexes,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_attacks__extra_mechanisms_pass_only_what_the_operator_lists, setup_extra,
            teardown_extra),
    };
    return cmocka_run_group_tests_name("attacks_guard", tests, NULL, NULL);
}
