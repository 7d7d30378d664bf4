/* SPDX-License-Identifier: Apache-2.0 */
/* What a find of one asset whose record is fresh costs (docs/benchmark.md "Cheap finds"): no store
 * round trip and no heap allocation, counted, not timed.
 *
 * The counters: this program defines malloc, calloc, realloc and the aligned allocators (each
 * forwarding to the C library's, found with dlsym) and libpq's statement-sending functions (each
 * forwarding to libpq's), and is linked with its symbols exported, so that the module, loaded with
 * dlopen, calls these. They count on the calling thread only, and only while a find is measured:
 * the module's own threads (LISTEN, the HSM workers) do not count. The backend's part of the find
 * is answered by the fault wrapper's rules (an empty search of a backend that allocates nothing):
 * the count is the module's, the ladder and the C library it calls included, and SoftHSM's own
 * allocations are not. Each count is shown to count by a find that must allocate or read the
 * store (an asset the module never saw).
 *
 * Not in the sanitizer and valgrind passes (tests/CMakeLists.txt): their runtimes replace
 * malloc themselves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_support.h"
#include "p11_support.h"

/* ---- the counters ---- */

static _Thread_local int tl_counting;
static _Thread_local long tl_allocs, tl_statements;

static void *(*r_malloc)(size_t);
static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t);
static void (*r_free)(void *);
static int (*r_posix_memalign)(void **, size_t, size_t);
static void *(*r_aligned_alloc)(size_t, size_t);
static void *(*r_memalign)(size_t, size_t);

/* dlsym may allocate before the real allocator is known: those few bytes come from here, once. */
static _Alignas(16) char boot[16384];
static size_t boot_used;
static int resolving;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof(boot))
        abort();
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static int in_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof(boot);
}

/* Called first from the first allocation, when the process has one thread. */
static void resolve(void)
{
    resolving = 1;
    r_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    r_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    r_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    r_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    r_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    r_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    r_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    resolving = 0;
    if (r_malloc == NULL || r_calloc == NULL || r_realloc == NULL || r_free == NULL)
        abort();
}

static void counted(void)
{
    if (tl_counting)
        tl_allocs++;
}

void *malloc(size_t n)
{
    if (r_malloc == NULL) {
        if (resolving)
            return boot_alloc(n);
        resolve();
    }
    counted();
    return r_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (r_calloc == NULL) {
        if (resolving)
            return boot_alloc(a * b); /* static storage: zero */
        resolve();
    }
    counted();
    return r_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (r_realloc == NULL)
        resolve();
    if (in_boot(p)) {
        void *q = malloc(n);
        size_t left = (size_t)(boot + sizeof(boot) - (char *)p);
        if (q != NULL)
            memcpy(q, p, n < left ? n : left);
        return q;
    }
    counted();
    return r_realloc(p, n);
}

void free(void *p)
{
    if (p == NULL || in_boot(p))
        return;
    if (r_free == NULL)
        resolve();
    r_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (r_malloc == NULL)
        resolve();
    counted();
    return r_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    if (r_malloc == NULL)
        resolve();
    counted();
    return r_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    if (r_malloc == NULL)
        resolve();
    counted();
    return r_memalign(align, n);
}

/* Every statement the store sends goes through one of these (ddsm-core store_pq.c). */
#define STATEMENT(ret, name, params, args)                                                         \
    ret name params                                                                                \
    {                                                                                              \
        static ret(*real) params;                                                                  \
        if (real == NULL)                                                                          \
            real = (ret(*) params)dlsym(RTLD_NEXT, #name);                                         \
        if (tl_counting)                                                                           \
            tl_statements++;                                                                       \
        return real args;                                                                          \
    }
STATEMENT(int, PQsendQuery, (PGconn * c, const char *q), (c, q))
STATEMENT(int, PQsendQueryParams,
          (PGconn * c, const char *q, int n, const Oid *t, const char *const *v, const int *l,
           const int *f, int rf),
          (c, q, n, t, v, l, f, rf))
STATEMENT(int, PQsendQueryPrepared,
          (PGconn * c, const char *s, int n, const char *const *v, const int *l, const int *f,
           int rf),
          (c, s, n, v, l, f, rf))
STATEMENT(int, PQsendPrepare, (PGconn * c, const char *s, const char *q, int n, const Oid *t),
          (c, s, q, n, t))
STATEMENT(PGresult *, PQexec, (PGconn * c, const char *q), (c, q))
STATEMENT(PGresult *, PQexecParams,
          (PGconn * c, const char *q, int n, const Oid *t, const char *const *v, const int *l,
           const int *f, int rf),
          (c, q, n, t, v, l, f, rf))
STATEMENT(PGresult *, PQexecPrepared,
          (PGconn * c, const char *s, int n, const char *const *v, const int *l, const int *f,
           int rf),
          (c, s, n, v, l, f, rf))

/* ---- the finds ---- */

typedef struct cost {
    long allocs, statements;
    size_t found; /* virtual objects */
} cost;

/* One whole find (Init, Objects, Final) of template t, counted. */
static cost find_cost(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_OBJECT_HANDLE got[64];
    CK_ULONG count = 0, total = 0;
    cost c = {0, 0, 0};
    tl_allocs = tl_statements = 0;
    tl_counting = 1;
    CK_RV rv_init = p11->C_FindObjectsInit(s, t, n);
    CK_RV rv_find = rv_init;
    if (rv_init == CKR_OK) {
        /* Three at a time: a search is whole only once C_FindObjects returns none. */
        do {
            rv_find = p11->C_FindObjects(s, got + total, 3, &count);
            total += rv_find == CKR_OK ? count : 0;
        } while (rv_find == CKR_OK && count > 0 && total + 3 <= 64);
    }
    CK_RV rv_final = rv_init == CKR_OK ? p11->C_FindObjectsFinal(s) : rv_init;
    tl_counting = 0;
    c.allocs = tl_allocs;
    c.statements = tl_statements;
    assert_rv(CKR_OK, rv_init);
    assert_rv(CKR_OK, rv_find);
    assert_rv(CKR_OK, rv_final);
    for (CK_ULONG i = 0; i < total; i++)
        c.found += got[i] >= 0x80000000UL;
    return c;
}

/* A find of the one virtual key that costs nothing: no statement, no allocation. */
static void assert_free_find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
    cost c = find_cost(s, t, n);
    assert_int_equal(c.found, 1);
    assert_int_equal(c.statements, 0);
    assert_int_equal(c.allocs, 0);
}

/* The backend's part of every find: an empty search answered by the wrapper. */
#define EMPTY_BACKEND_FIND                                                                         \
    "C_FindObjectsInit rv=CKR_OK\nC_FindObjects topbit=0\nC_FindObjectsFinal rv=CKR_OK\n"

static void test_perf_find_cost__a_fresh_find_of_one_asset_costs_no_round_trip_and_no_allocation(
    void **state)
{
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    fs_faults(EMPTY_BACKEND_FIND);
    char label[128], by_name[128];
    snprintf(label, sizeof(label), "%s/%s", VEC_A_ID, VEC_A_PATH);
    snprintf(by_name, sizeof(by_name), "vec-a/%s", VEC_A_PATH);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    uint8_t uuid[16];
    fs_uuid_bytes(VEC_A_ID, uuid);
    uint8_t key_id[16 + 64];
    memcpy(key_id, uuid, 16);
    memcpy(key_id + 16, VEC_A_PATH, strlen(VEC_A_PATH));
    CK_ATTRIBUTE by_label[] = {{CKA_CLASS, &cls, sizeof(cls)},
                               {CKA_LABEL, label, strlen(label)}};
    CK_ATTRIBUTE by_asset_label[] = {{CKA_LABEL, by_name, strlen(by_name)}};
    CK_ATTRIBUTE by_id[] = {{CKA_ID, key_id, 16 + strlen(VEC_A_PATH)}};
    CK_ATTRIBUTE by_asset[] = {{CKA_DDSM_ASSET_ID, uuid, 16},
                               {CKA_DDSM_PATH, (void *)VEC_A_PATH, strlen(VEC_A_PATH)}};

    /* The counters count: the first finds make the record (an allocation) from the store. */
    cost cold = find_cost(s, by_label, 2);
    assert_int_equal(cold.found, 1);
    assert_true(cold.statements >= 1);
    assert_true(cold.allocs >= 1);
    assert_int_equal(find_cost(s, by_asset_label, 1).found, 1); /* learns the label */

    /* Fresh now ([cache] staleness_ms covers the whole test): nothing. */
    for (int i = 0; i < 3; i++) {
        assert_free_find(s, by_label, 2);
        assert_free_find(s, by_asset_label, 1);
        assert_free_find(s, by_id, 1);
        assert_free_find(s, by_asset, 2);
    }

    /* An asset the module never saw: read from the store, its record made. */
    char other[128];
    snprintf(other, sizeof(other), "%s/%s", VEC_B_ID, VEC_B_PATH);
    CK_ATTRIBUTE by_other[] = {{CKA_LABEL, other, strlen(other)}};
    cost c = find_cost(s, by_other, 1);
    assert_int_equal(c.found, 1);
    assert_true(c.statements >= 1);
    assert_true(c.allocs >= 1);
    fs_faults("");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static void test_perf_find_cost__many_candidates_still_list_whole(void **state)
{
    /* More objects than fit in the session: the list moves to the heap and nothing is lost. */
    (void)state;
    CK_SESSION_HANDLE s = p11_open_user();
    fs_faults(EMPTY_BACKEND_FIND);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    long want = p11_sql_long("SELECT count(*) FROM custody_keys WHERE state IN "
                             "('ACTIVE', 'ROTATING') AND key_type IN ('hmac', 'aes')");
    assert_true(want > 4);
    cost c = find_cost(s, t, 1);
    assert_int_equal((long)c.found, want);
    fs_faults("");
    assert_rv(CKR_OK, p11->C_CloseSession(s));
}

static int setup(void **state)
{
    (void)state;
    static char ctl[4096];
    snprintf(ctl, sizeof(ctl), "%s/faults", getenv("DDSM_TEST_DIR"));
    setenv("DDSM_FAULT_CTL", ctl, 1);
    unsetenv("DDSM_FAULT_LOG");
    fs_faults("");
    fs_write_conf("find_cost", getenv("DDSM_FAULTP11"), NULL, NULL,
                  "\n[cache]\nstaleness_ms = 3600000\n");
    return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fs_faults("");
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

int main(void)
{
    p11_load();
    p11_setup_store();
    /* More hmac assets than a session holds inline. */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(p11_ctl("asset register --label many-%d >/dev/null", i), 0);
        assert_int_equal(p11_ctl("asset activate many-%d >/dev/null", i), 0);
    }
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_perf_find_cost__a_fresh_find_of_one_asset_costs_no_round_trip_and_no_allocation),
        T(test_perf_find_cost__many_candidates_still_list_whole),
    };
    return cmocka_run_group_tests_name("perf_find_cost", tests, NULL, NULL);
}
