/* SPDX-License-Identifier: Apache-2.0 */
/* Secret memory: zeroed, distinct, locked where allowed, never in core dumps, wiped on free. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddsm/secmem.h"

/* The VmFlags of the mapping holding p, from /proc/self/smaps ("" when not found). */
static void vm_flags_of(const void *p, char *out, size_t out_len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    out[0] = '\0';
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, out_len, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static int has_flag(const char *flags, const char *flag)
{
    char padded[8];
    snprintf(padded, sizeof(padded), " %s", flag);
    return strstr(flags, padded) != NULL;
}

/* Whether this process can lock `bytes` at all: root (CAP_IPC_LOCK) or a large enough
 * RLIMIT_MEMLOCK, and mlock really taking effect here (ASan, for one, turns it into a no-op). */
static int mlock_expected(size_t bytes)
{
    struct rlimit rl;
    if (geteuid() != 0 && !(getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
                            (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 4 * bytes + (1u << 20))))
        return 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *probe = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(probe != MAP_FAILED);
    char flags[512];
    int locked = mlock(probe, page) == 0;
    vm_flags_of(probe, flags, sizeof(flags));
    locked = locked && has_flag(flags, "lo");
    munlock(probe, page);
    munmap(probe, page);
    if (!locked)
        print_message("mlock has no effect in this process: lock flags not checked\n");
    return locked;
}

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return 0;
    }
    return 1;
}

static void test_secmem__alloc_returns_zeroed_distinct_buffers(void **state)
{
    (void)state;
    enum { N = 300 };
    static uint8_t *p[N];
    static size_t len[N];
    for (size_t i = 0; i < N; i++) {
        len[i] = 1 + (i * 37) % 3000; /* small slots and page-sized allocations */
        p[i] = ddsm_secure_alloc(len[i]);
        assert_non_null(p[i]);
        assert_true(is_zero(p[i], len[i]));
        memset(p[i], (int)(i & 0xff) | 1, len[i]);
    }
    /* no buffer overlaps another: each still holds its own fill */
    for (size_t i = 0; i < N; i++) {
        for (size_t j = 0; j < len[i]; j++)
            assert_int_equal(p[i][j], (uint8_t)((i & 0xff) | 1));
    }
    for (size_t i = 0; i < N; i++)
        ddsm_secure_free(p[i], len[i]);
}

static void test_secmem__reused_slot_comes_back_zeroed(void **state)
{
    (void)state;
    for (int round = 0; round < 50; round++) {
        uint8_t *a = ddsm_secure_alloc(32);
        assert_non_null(a);
        assert_true(is_zero(a, 32));
        memset(a, 0xee, 32);
        ddsm_secure_free(a, 32);
    }
}

/* The slot's memory stays mapped while a neighbour lives, so what free left behind is visible:
 * nothing but the allocator's free-list link in the first pointer-sized bytes. */
static void test_secmem__free_wipes_the_buffer(void **state)
{
    (void)state;
    uint8_t *keep = ddsm_secure_alloc(64);
    uint8_t *key = ddsm_secure_alloc(64);
    assert_non_null(keep);
    assert_non_null(key);
    memset(key, 0xc3, 64);
    ddsm_secure_free(key, 64);
    assert_true(is_zero(key + sizeof(void *), 64 - sizeof(void *)));
    ddsm_secure_free(keep, 64);
}

/* A size that does not match the allocation is a caller bug: the allocator must neither crash
 * nor scribble over a neighbour, and stays usable. */
static void test_secmem__free_with_wrong_size_leaves_neighbours_alone(void **state)
{
    (void)state;
    uint8_t *a = ddsm_secure_alloc(32);
    uint8_t *b = ddsm_secure_alloc(32);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 0x11, 32);
    memset(b, 0x22, 32);
    ddsm_secure_free(a + 32 == b ? a : b, 1000); /* the lower one: its neighbour follows it */
    uint8_t *upper = a + 32 == b ? b : a;
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(upper[i], upper == b ? 0x22 : 0x11);
    ddsm_secure_free(upper, 32);
    uint8_t *c = ddsm_secure_alloc(32);
    assert_non_null(c);
    ddsm_secure_free(c, 32);
}

static void test_secmem__small_buffers_are_locked_and_excluded_from_dumps(void **state)
{
    (void)state;
    char flags[512];
    uint8_t *key = ddsm_secure_alloc(32);
    assert_non_null(key);
    vm_flags_of(key, flags, sizeof(flags));
    assert_true(flags[0] != '\0');
    if (!has_flag(flags, "dd"))
        fail_msg("no MADV_DONTDUMP on the key's mapping: %s", flags);
    if (mlock_expected(64 * 1024) && !has_flag(flags, "lo"))
        fail_msg("key's mapping not mlock'ed: %s", flags);
    ddsm_secure_free(key, 32);
}

static void test_secmem__large_buffers_are_locked_and_excluded_from_dumps(void **state)
{
    (void)state;
    char flags[512];
    size_t n = 3 * 4096 + 5;
    uint8_t *big = ddsm_secure_alloc(n);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
    assert_true(is_zero(big, n));
    big[n - 1] = 1;
    vm_flags_of(big + n - 1, flags, sizeof(flags));
    if (!has_flag(flags, "dd"))
        fail_msg("no MADV_DONTDUMP on the large buffer: %s", flags);
    if (mlock_expected(n) && !has_flag(flags, "lo"))
        fail_msg("large buffer not mlock'ed: %s", flags);
    ddsm_secure_free(big, n);
}

/* Whether this kernel offers MADV_WIPEONFORK (Linux 4.14 and later). */
static int wipeonfork_offered(void)
{
#ifdef MADV_WIPEONFORK
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *probe = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(probe != MAP_FAILED);
    int ok = madvise(probe, page, MADV_WIPEONFORK) == 0;
    munmap(probe, page);
    return ok;
#else
    return 0;
#endif
}

/* In a fork child every key the parent held in fork-wiped secret memory reads as zeros, small
 * (slab) and large alike; other secret memory is inherited; the child can still allocate and free
 * secret memory of its own. */
static void test_secmem__keys_read_as_zeros_in_a_fork_child(void **state)
{
    (void)state;
    if (!wipeonfork_offered()) {
        print_message("no MADV_WIPEONFORK on this kernel: nothing to check\n");
        skip();
    }
    char flags[512];
    size_t big_n = 2 * 4096 + 1;
    uint8_t *key = ddsm_secure_alloc_fork_wiped(32), *big = ddsm_secure_alloc_fork_wiped(big_n);
    uint8_t *kept = ddsm_secure_alloc(32);
    assert_non_null(key);
    assert_non_null(big);
    assert_non_null(kept);
    memset(key, 0x5a, 32);
    memset(big, 0xa5, big_n);
    memset(kept, 0x77, 32);
    vm_flags_of(key, flags, sizeof(flags));
    if (!has_flag(flags, "wf"))
        fail_msg("no MADV_WIPEONFORK on the key's mapping: %s", flags);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        if (!is_zero(key, 32))
            bad |= 1;
        if (!is_zero(big, big_n))
            bad |= 2;
        for (size_t i = 0; i < 32; i++)
            if (kept[i] != 0x77)
                bad |= 8;
        uint8_t *fresh = ddsm_secure_alloc_fork_wiped(32);
        if (fresh == NULL || !is_zero(fresh, 32))
            bad |= 4;
        else {
            memset(fresh, 1, 32);
            ddsm_secure_free(fresh, 32);
        }
        ddsm_secure_free(key, 32); /* the parent's slot: leaked, no crash */
        ddsm_secure_free(big, big_n);
        _exit(bad);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("fork child: bits %d (1 small key not wiped, 2 large buffer not wiped, 4 no "
                 "fresh allocation, 8 ordinary secret memory lost)",
                 WEXITSTATUS(status));
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(key[i], 0x5a); /* the parent keeps its keys */
    assert_int_equal(big[big_n - 1], 0xa5);
    ddsm_secure_free(key, 32);
    ddsm_secure_free(big, big_n);
    ddsm_secure_free(kept, 32);
}

static void test_secmem__zero_huge_and_null_are_handled(void **state)
{
    (void)state;
    assert_null(ddsm_secure_alloc(0));
    assert_null(ddsm_secure_alloc(SIZE_MAX)); /* no wrap-around to a small mapping */
    ddsm_secure_free(NULL, 0);
    ddsm_secure_free(NULL, 32);
}

static void test_secmem__wipe_clears_every_byte(void **state)
{
    (void)state;
    uint8_t buf[77];
    memset(buf, 0xa5, sizeof(buf));
    ddsm_wipe(buf + 1, sizeof(buf) - 2);
    assert_int_equal(buf[0], 0xa5);
    assert_true(is_zero(buf + 1, sizeof(buf) - 2));
    assert_int_equal(buf[sizeof(buf) - 1], 0xa5);
    ddsm_wipe(NULL, 10); /* accepted */
}

static void test_secmem__ct_equal_compares_every_byte(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    memset(a, 7, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_true(ddsm_ct_equal(a, b, sizeof(a)));
    for (size_t i = 0; i < sizeof(a); i++) {
        b[i] ^= 0x80;
        assert_false(ddsm_ct_equal(a, b, sizeof(a)));
        b[i] ^= 0x80;
    }
    assert_true(ddsm_ct_equal(a, b, 0));
    assert_true(ddsm_ct_equal(NULL, NULL, 0));
    assert_false(ddsm_ct_equal(NULL, b, 1));
}

/* A slab is given back once empty (except the last of its class); allocation keeps working. */
static void test_secmem__many_keys_then_free_all(void **state)
{
    (void)state;
    enum { N = 6000 }; /* several 64 KiB slabs of 32-byte slots */
    uint8_t **p = calloc(N, sizeof(*p));
    assert_non_null(p);
    for (size_t i = 0; i < N; i++) {
        p[i] = ddsm_secure_alloc(32);
        assert_non_null(p[i]);
        p[i][0] = (uint8_t)i;
        p[i][31] = (uint8_t)(i >> 8);
    }
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(p[i][0], (uint8_t)i);
        assert_int_equal(p[i][31], (uint8_t)(i >> 8));
    }
    for (size_t i = 0; i < N; i += 2)
        ddsm_secure_free(p[i], 32);
    for (size_t i = 1; i < N; i += 2)
        ddsm_secure_free(p[i], 32);
    free(p);
    uint8_t *again = ddsm_secure_alloc(32);
    assert_non_null(again);
    assert_true(is_zero(again, 32));
    ddsm_secure_free(again, 32);
}

static void *churn(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint8_t *held[64] = {0};
    size_t sizes[64] = {0};
    for (unsigned r = 0; r < 20000; r++) {
        unsigned k = (r * 2654435761u + (unsigned)id) % 64;
        if (held[k] != NULL) {
            for (size_t i = 0; i < sizes[k]; i++) {
                if (held[k][i] != (uint8_t)(id + k))
                    return (void *)1; /* someone else wrote into our buffer */
            }
            ddsm_secure_free(held[k], sizes[k]);
            held[k] = NULL;
        } else {
            sizes[k] = 1 + (r % 200);
            held[k] = ddsm_secure_alloc(sizes[k]);
            if (held[k] == NULL)
                return (void *)1;
            memset(held[k], (int)(uint8_t)(id + k), sizes[k]);
        }
    }
    for (unsigned k = 0; k < 64; k++)
        ddsm_secure_free(held[k], sizes[k]);
    return NULL;
}

static void test_secmem__concurrent_alloc_and_free_keep_buffers_apart(void **state)
{
    (void)state;
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(i * 64)), 0);
    for (int i = 0; i < 4; i++) {
        void *rv = (void *)1;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secmem__alloc_returns_zeroed_distinct_buffers),
        cmocka_unit_test(test_secmem__reused_slot_comes_back_zeroed),
        cmocka_unit_test(test_secmem__free_wipes_the_buffer),
        cmocka_unit_test(test_secmem__free_with_wrong_size_leaves_neighbours_alone),
        cmocka_unit_test(test_secmem__small_buffers_are_locked_and_excluded_from_dumps),
        cmocka_unit_test(test_secmem__large_buffers_are_locked_and_excluded_from_dumps),
        cmocka_unit_test(test_secmem__keys_read_as_zeros_in_a_fork_child),
        cmocka_unit_test(test_secmem__zero_huge_and_null_are_handled),
        cmocka_unit_test(test_secmem__wipe_clears_every_byte),
        cmocka_unit_test(test_secmem__ct_equal_compares_every_byte),
        cmocka_unit_test(test_secmem__many_keys_then_free_all),
        cmocka_unit_test(test_secmem__concurrent_alloc_and_free_keep_buffers_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
