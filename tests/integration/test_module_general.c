/* SPDX-License-Identifier: Apache-2.0 */
/* General-purpose functions, slot and token functions, and the exported symbols. */
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

static CK_RV init_null(void)
{
    return p11->C_Initialize(NULL);
}

static void test_general__exports_exactly_the_three_entry_points(void **state)
{
    char cmd[4096], line[512];
    int n_c = 0, get_fl = 0, get_il = 0, get_i = 0;
    snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s'", getenv("DDSM_MODULE"));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p) != NULL) {
        char *sym = strrchr(line, ' ');
        assert_non_null(sym);
        sym++;
        sym[strcspn(sym, "\n")] = '\0';
        if (strncmp(sym, "C_", 2) == 0)
            n_c++;
        get_fl += strcmp(sym, "C_GetFunctionList") == 0;
        get_il += strcmp(sym, "C_GetInterfaceList") == 0;
        get_i += strcmp(sym, "C_GetInterface") == 0;
        /* Nothing of ours but the three: no ddsm_ symbol leaks. */
        assert_null(strstr(sym, "ddsm"));
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(n_c, 3);
    assert_int_equal(get_fl + get_il + get_i, 3);
}

static void test_general__get_function_list_rejects_null(void **state)
{
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)p11_sym("C_GetFunctionList");
    assert_rv(CKR_ARGUMENTS_BAD, gfl(NULL));
    assert_int_equal(p11->version.major, 2);
    assert_int_equal(p11->version.minor, 40);
}

static void test_general__interface_list_follows_the_size_protocol(void **state)
{
    ddsm_C_GetInterfaceList_fn gil =
        (ddsm_C_GetInterfaceList_fn)(uintptr_t)p11_sym("C_GetInterfaceList");
    assert_non_null(gil);
    CK_ULONG n = 99;
    assert_rv(CKR_ARGUMENTS_BAD, gil(NULL, NULL));
    assert_rv(CKR_OK, gil(NULL, &n));
    assert_int_equal(n, 2);
    CK_INTERFACE list[3];
    n = 1;
    assert_rv(CKR_BUFFER_TOO_SMALL, gil(list, &n));
    assert_int_equal(n, 2);
    n = 3;
    assert_rv(CKR_OK, gil(list, &n));
    assert_int_equal(n, 2);
    /* The 3.0 list first (the default), then the 2.40 one that C_GetFunctionList returns. */
    assert_string_equal((const char *)list[0].pInterfaceName, "PKCS 11");
    assert_string_equal((const char *)list[1].pInterfaceName, "PKCS 11");
    const CK_FUNCTION_LIST_3_0 *f30 = list[0].pFunctionList;
    assert_int_equal(f30->version.major, 3);
    assert_int_equal(f30->version.minor, 0);
    assert_ptr_equal(list[1].pFunctionList, p11);
    /* The 3.0 list starts with the very same functions. */
    assert_ptr_equal((void *)(uintptr_t)f30->C_DeriveKey, (void *)(uintptr_t)p11->C_DeriveKey);
    assert_non_null(f30->C_LoginUser);
    assert_non_null(f30->C_MessageVerifyFinal);
}

static void test_general__get_interface_offers_pkcs11_v30_and_v240(void **state)
{
    ddsm_C_GetInterface_fn gi = (ddsm_C_GetInterface_fn)(uintptr_t)p11_sym("C_GetInterface");
    assert_non_null(gi);
    CK_INTERFACE_PTR iface = NULL;
    CK_VERSION v240 = {2, 40}, v30 = {3, 0}, v31 = {3, 1};
    assert_rv(CKR_ARGUMENTS_BAD, gi(NULL, NULL, NULL, 0));
    assert_rv(CKR_OK, gi(NULL, NULL, &iface, 0));
    assert_int_equal(((const CK_VERSION *)iface->pFunctionList)->major, 3);
    iface = NULL;
    assert_rv(CKR_OK, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &iface, 0));
    assert_ptr_equal(iface->pFunctionList, p11);
    iface = NULL;
    assert_rv(CKR_OK, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
    assert_int_equal(((const CK_VERSION *)iface->pFunctionList)->minor, 0);
    assert_rv(CKR_ARGUMENTS_BAD, gi((CK_UTF8CHAR_PTR) "Vendor XYZ", NULL, &iface, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v31, &iface, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi(NULL, NULL, &iface, CKF_INTERFACE_FORK_SAFE));
}

static void test_general__every_call_before_initialize_is_not_initialized(void **state)
{
    CK_INFO info;
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s;
    CK_SLOT_INFO si;
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GetInfo(&info));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GetSlotList(CK_FALSE, NULL, &n));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GetSlotInfo(0, &si));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED,
              p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_SignInit(1, &m, 1));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GenerateRandom(1, (CK_BYTE_PTR) "x", 1));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_Finalize(NULL));
}

static void test_general__initialize_rejects_reserved_pointer(void **state)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.pReserved = &args;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Initialize(&args));
    CK_INFO info;
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GetInfo(&info));
}

static CK_RV fake_create(CK_VOID_PTR_PTR m);
static CK_RV fake_destroy(CK_VOID_PTR m);
static CK_RV fake_lock(CK_VOID_PTR m);
static CK_RV fake_unlock(CK_VOID_PTR m);
static int n_created, n_destroyed, n_locked, n_unlocked;

static CK_RV fake_create(CK_VOID_PTR_PTR m)
{
    *m = malloc(1);
    n_created++;
    return *m != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

static CK_RV fake_destroy(CK_VOID_PTR m)
{
    free(m);
    n_destroyed++;
    return CKR_OK;
}

static CK_RV fake_lock(CK_VOID_PTR m)
{
    n_locked++;
    return CKR_OK;
}

static CK_RV fake_unlock(CK_VOID_PTR m)
{
    n_unlocked++;
    return CKR_OK;
}

static void test_general__initialize_rejects_some_but_not_all_mutex_callbacks(void **state)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.CreateMutex = fake_create;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Initialize(&args));
    args.DestroyMutex = fake_destroy;
    args.LockMutex = fake_lock;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Initialize(&args));
    assert_int_equal(n_created, 0);
}

static void test_general__initialize_uses_the_application_mutex_callbacks(void **state)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.CreateMutex = fake_create;
    args.DestroyMutex = fake_destroy;
    args.LockMutex = fake_lock;
    args.UnlockMutex = fake_unlock;
    n_created = n_destroyed = n_locked = n_unlocked = 0;
    assert_rv(CKR_OK, p11->C_Initialize(&args));
    assert_true(n_created > 0);
    CK_SESSION_HANDLE s = p11_open();
    assert_true(n_locked > 0);
    assert_int_equal(n_locked, n_unlocked);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    assert_int_equal(n_created, n_destroyed);
    assert_int_equal(n_locked, n_unlocked);

    /* With CKF_OS_LOCKING_OK the module may use its own locks: the callbacks stay unused. */
    n_created = 0;
    args.flags = CKF_OS_LOCKING_OK;
    assert_rv(CKR_OK, p11->C_Initialize(&args));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    assert_int_equal(n_created, 0);
}

static void test_general__initialize_twice_is_already_initialized(void **state)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    assert_rv(CKR_OK, p11->C_Initialize(&args));
    assert_rv(CKR_CRYPTOKI_ALREADY_INITIALIZED, p11->C_Initialize(NULL));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_Finalize((CK_VOID_PTR)&args));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_Finalize(NULL));
}

static long module_connections(void)
{
    return p11_sql_long("SELECT count(*) FROM pg_stat_activity WHERE "
                        "application_name = 'ddsm-pkcs11' AND datname = current_database()");
}

static void test_general__initialize_finalize_200_times_is_cheap(void **state)
{
    struct timespec t0, t1;
    long before = module_connections();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 200; i++) {
        assert_rv(CKR_OK, init_null());
        if (i == 100)
            assert_int_equal(module_connections(), before); /* no PostgreSQL at C_Initialize */
        assert_rv(CKR_OK, p11->C_Finalize(NULL));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* Cheap is shown structurally (no connection at C_Initialize, above); the time is printed
     * for the record only: speed is the benchmark's business, never a test's. */
    print_message("200 x C_Initialize/C_Finalize: %.3f s\n", secs);
}

static void test_general__finalize_closes_the_store_connections(void **state)
{
    uint8_t sig[32];
    long before = module_connections();
    assert_rv(CKR_OK, init_null());
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"x", 1, sig));
    assert_true(module_connections() > before);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    /* The server notices closed connections asynchronously: poll (no deadline: connections
     * that never close run into ctest's timeout). */
    while (module_connections() > before) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(module_connections(), before);
}

static void test_general__initialize_fails_on_a_missing_config(void **state)
{
    const char *saved = getenv("DDSM_CONF");
    char keep[4096];
    snprintf(keep, sizeof(keep), "%s", saved);
    setenv("DDSM_CONF", "/nonexistent/ddsm.conf", 1);
    assert_rv(CKR_FUNCTION_FAILED, init_null());
    p11_write_conf("badtoken", NULL, NULL);
    /* Rewrite with a token label the backend does not have. */
    FILE *f = fopen(getenv("DDSM_CONF"), "w");
    fprintf(f,
            "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = nope\n"
            "[store]\nconninfo = %s\n",
            getenv("DDSM_TEST_CONNINFO"));
    fclose(f);
    assert_rv(CKR_FUNCTION_FAILED, init_null());
    setenv("DDSM_CONF", keep, 1);
    CK_INFO info;
    assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GetInfo(&info));
}

static void test_general__get_info_reports_the_version_of_its_function_list(void **state)
{
    CK_INFO info;
    assert_rv(CKR_OK, init_null());
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetInfo(NULL));
    assert_rv(CKR_OK, p11->C_GetInfo(&info));
    assert_int_equal(info.cryptokiVersion.major, 2);
    assert_int_equal(info.cryptokiVersion.minor, 40);
    assert_memory_equal(info.manufacturerID, "ddsm-pkcs11 ", 12);
    /* Reached through the 3.0 interface, the same call says 3.0. */
    ddsm_C_GetInterface_fn gi = (ddsm_C_GetInterface_fn)(uintptr_t)p11_sym("C_GetInterface");
    CK_INTERFACE_PTR iface = NULL;
    CK_VERSION v30 = {3, 0};
    assert_rv(CKR_OK, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
    const CK_FUNCTION_LIST_3_0 *f30 = iface->pFunctionList;
    assert_rv(CKR_ARGUMENTS_BAD, f30->C_GetInfo(NULL));
    assert_rv(CKR_OK, f30->C_GetInfo(&info));
    assert_int_equal(info.cryptokiVersion.major, 3);
    assert_int_equal(info.cryptokiVersion.minor, 0);
    assert_memory_equal(info.manufacturerID, "ddsm-pkcs11 ", 12);
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static int init_group(void **state)
{
    return init_null() == CKR_OK ? 0 : -1;
}

static int fini_group(void **state)
{
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

static void test_slot__exactly_one_slot_numbered_zero(void **state)
{
    CK_SLOT_ID slots[4];
    CK_ULONG n = 0;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetSlotList(CK_TRUE, NULL, NULL));
    assert_rv(CKR_OK, p11->C_GetSlotList(CK_TRUE, NULL, &n));
    assert_int_equal(n, 1);
    n = 0;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_GetSlotList(CK_FALSE, slots, &n));
    assert_int_equal(n, 1);
    n = 4;
    assert_rv(CKR_OK, p11->C_GetSlotList(CK_FALSE, slots, &n));
    assert_int_equal(n, 1);
    assert_int_equal(slots[0], 0);
}

static void test_slot__token_keeps_the_backend_label(void **state)
{
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;
    assert_rv(CKR_OK, p11->C_GetTokenInfo(0, &ti));
    assert_memory_equal(ti.label, "custody ", 8);
    assert_rv(CKR_OK, p11->C_GetSlotInfo(0, &si));
    assert_true(si.flags & CKF_TOKEN_PRESENT);
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_GetTokenInfo(1, &ti));
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_GetSlotInfo(7, &si));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetTokenInfo(0, NULL));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetSlotInfo(0, NULL));
}

static void test_slot__mechanism_list_adds_ddsm_derive(void **state)
{
    CK_ULONG n = 0;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetMechanismList(0, NULL, NULL));
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_GetMechanismList(3, NULL, &n));
    assert_rv(CKR_OK, p11->C_GetMechanismList(0, NULL, &n));
    assert_true(n > 1);
    CK_MECHANISM_TYPE *list = calloc(n, sizeof(*list));
    CK_ULONG small = n - 1;
    assert_rv(CKR_BUFFER_TOO_SMALL, p11->C_GetMechanismList(0, list, &small));
    assert_int_equal(small, n);
    assert_rv(CKR_OK, p11->C_GetMechanismList(0, list, &n));
    int ours = 0, hmac = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        ours += list[i] == CKM_DDSM_DERIVE;
        hmac += list[i] == CKM_SHA256_HMAC;
    }
    free(list);
    assert_int_equal(ours, 1);
    assert_int_equal(hmac, 1);

    CK_MECHANISM_INFO mi;
    assert_rv(CKR_OK, p11->C_GetMechanismInfo(0, CKM_DDSM_DERIVE, &mi));
    assert_int_equal(mi.flags, CKF_DERIVE);
    assert_rv(CKR_OK, p11->C_GetMechanismInfo(0, CKM_SHA256_HMAC, &mi));
    assert_true(mi.flags & CKF_SIGN);
    assert_rv(CKR_MECHANISM_INVALID, p11->C_GetMechanismInfo(0, 0x7ffffff0UL, &mi));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_GetMechanismInfo(0, CKM_DDSM_DERIVE, NULL));
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_GetMechanismInfo(1, CKM_DDSM_DERIVE, &mi));
}

static void test_slot__init_token_is_refused_while_the_root_lives_on_it(void **state)
{
    const char *so = getenv("DDSM_TEST_SO_PIN");
    CK_UTF8CHAR label[32];
    memset(label, ' ', sizeof(label));
    memcpy(label, "custody", 7);
    assert_rv(CKR_TOKEN_WRITE_PROTECTED,
              p11->C_InitToken(0, (CK_UTF8CHAR_PTR)so, strlen(so), label));
    assert_rv(CKR_SLOT_ID_INVALID, p11->C_InitToken(5, (CK_UTF8CHAR_PTR)so, strlen(so), label));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_InitToken(0, (CK_UTF8CHAR_PTR)so, strlen(so), NULL));
    /* The token still has its root key. */
    CK_SESSION_HANDLE s = p11_open_user();
    assert_true(p11_root(s) != CK_INVALID_HANDLE);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_slot__wait_for_slot_event_checks_arguments(void **state)
{
    CK_SLOT_ID slot;
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL));
    assert_rv(CKR_ARGUMENTS_BAD, p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, &slot));
    /* SoftHSM does not implement it: the backend's answer comes through. */
    CK_RV rv = p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
    assert_true(rv == CKR_FUNCTION_NOT_SUPPORTED || rv == CKR_NO_EVENT);
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest uninit[] = {
        cmocka_unit_test(test_general__exports_exactly_the_three_entry_points),
        cmocka_unit_test(test_general__get_function_list_rejects_null),
        cmocka_unit_test(test_general__interface_list_follows_the_size_protocol),
        cmocka_unit_test(test_general__get_interface_offers_pkcs11_v30_and_v240),
        cmocka_unit_test(test_general__every_call_before_initialize_is_not_initialized),
        cmocka_unit_test(test_general__initialize_rejects_reserved_pointer),
        cmocka_unit_test(test_general__initialize_rejects_some_but_not_all_mutex_callbacks),
        cmocka_unit_test(test_general__initialize_uses_the_application_mutex_callbacks),
        cmocka_unit_test(test_general__initialize_twice_is_already_initialized),
        cmocka_unit_test(test_general__initialize_finalize_200_times_is_cheap),
        cmocka_unit_test(test_general__finalize_closes_the_store_connections),
        cmocka_unit_test(test_general__initialize_fails_on_a_missing_config),
        cmocka_unit_test(test_general__get_info_reports_the_version_of_its_function_list),
    };
    const struct CMUnitTest slots[] = {
        cmocka_unit_test(test_slot__exactly_one_slot_numbered_zero),
        cmocka_unit_test(test_slot__token_keeps_the_backend_label),
        cmocka_unit_test(test_slot__mechanism_list_adds_ddsm_derive),
        cmocka_unit_test(test_slot__init_token_is_refused_while_the_root_lives_on_it),
        cmocka_unit_test(test_slot__wait_for_slot_event_checks_arguments),
    };
    int failed = cmocka_run_group_tests_name("general", uninit, NULL, NULL);
    failed += cmocka_run_group_tests_name("slot", slots, init_group, fini_group);
    return failed;
}
