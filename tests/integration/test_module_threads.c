/* SPDX-License-Identifier: Apache-2.0 */
/* Several threads signing and deriving at once, each in its own session, with the module's own
 * locking (CKF_OS_LOCKING_OK): every signature is right and every derivation is audited once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"

#define N_THREADS 8
#define N_SIGNS 2000
#define N_DERIVES 8

typedef struct worker {
    int id;
    CK_RV rv;
    int wrong;
    const char *what;
} worker;

static uint8_t key_a[32];

static void *signer(void *arg)
{
    worker *w = arg;
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    w->rv = p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (w->rv != CKR_OK) {
        w->what = "C_OpenSession";
        return NULL;
    }
    /* Find by label: the same handle in every thread. */
    const char *label = "vec-a/" VEC_A_PATH;
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = 0;
    CK_ULONG n = 0;
    if ((w->rv = p11->C_FindObjectsInit(s, t, 1)) != CKR_OK ||
        (w->rv = p11->C_FindObjects(s, &h, 1, &n)) != CKR_OK ||
        (w->rv = p11->C_FindObjectsFinal(s)) != CKR_OK || n != 1) {
        w->what = "find";
        goto out;
    }
    for (int i = 0; i < N_SIGNS; i++) {
        uint8_t data[16], sig[32], want[32];
        CK_ULONG len = sizeof(sig);
        snprintf((char *)data, sizeof(data), "%02d:%06d", w->id, i);
        if ((w->rv = p11->C_SignInit(s, &m, h)) != CKR_OK ||
            (w->rv = p11->C_Sign(s, data, 9, sig, &len)) != CKR_OK) {
            w->what = "sign";
            goto out;
        }
        p11_hmac_raw(key_a, data, 9, want);
        w->wrong += memcmp(sig, want, 32) != 0;
    }
    /* Distinct derivations from every thread: each its own audit row. */
    for (int i = 0; i < N_DERIVES; i++) {
        char path[32];
        uint8_t param[DDSM_DERIVE_PARAM_MAX], want[32], sig[32];
        CK_OBJECT_HANDLE root = CK_DDSM_ROOT_HANDLE, d;
        CK_ULONG len = sizeof(sig);
        snprintf(path, sizeof(path), "m/%d/%d", w->id, i);
        CK_MECHANISM dm = {CKM_DDSM_DERIVE, param,
                           ddsm_derive_param(param, sizeof(param),
                                             (const unsigned char *)"\x6f\x96\x19\xff\x8b\x86"
                                                                    "\xd0\x11\xb4\x2d\x00\xc0"
                                                                    "\x4f\xc9\x64\xff",
                                             path)};
        if ((w->rv = p11->C_DeriveKey(s, &dm, root, NULL, 0, &d)) != CKR_OK ||
            (w->rv = p11->C_SignInit(s, &m, d)) != CKR_OK ||
            (w->rv = p11->C_Sign(s, (CK_BYTE_PTR) "d", 1, sig, &len)) != CKR_OK) {
            w->what = "derive";
            goto out;
        }
        uint8_t k[32];
        p11_expected_key(VEC_A_ID, path, 0, k);
        p11_hmac_raw(k, (const uint8_t *)"d", 1, want);
        w->wrong += memcmp(sig, want, 32) != 0;
    }
out:
    p11->C_CloseSession(s);
    return NULL;
}

static void test_threads__concurrent_signing_and_deriving_are_correct(void **state)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    p11_unhex(VEC_A_KEY0, key_a, 32);
    assert_rv(CKR_OK, p11->C_Initialize(&args));
    /* Keep the login alive while the workers open and close sessions. */
    CK_SESSION_HANDLE keeper = p11_open_user();
    /* Derive the shared key once up front, so that every thread finds it cached. */
    uint8_t sig[32];
    assert_rv(CKR_OK, p11_hmac_sign(keeper, p11_find_label(keeper, "vec-a/" VEC_A_PATH),
                                    (const uint8_t *)"warm", 4, sig));
    long before = p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'");

    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, signer, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].rv != CKR_OK)
            fail_msg("thread %d: %s: %s", i, w[i].what, ddsm_rv_name(w[i].rv));
        assert_int_equal(w[i].wrong, 0);
    }
    long after = p11_sql_long("SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'");
    /* One row per C_DeriveKey; the cached key signed N_THREADS * N_SIGNS times without one. */
    assert_int_equal(after - before, N_THREADS * N_DERIVES);
    assert_rv(CKR_OK, p11->C_CloseSession(keeper));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads__concurrent_signing_and_deriving_are_correct),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
