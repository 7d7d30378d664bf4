/* SPDX-License-Identifier: Apache-2.0 */
/* Secret memory. Small buffers (derived keys, seeds) come from 64 KiB slabs of fixed-size slots;
 * each slab is one page-aligned mapping, mlock'ed where RLIMIT_MEMLOCK allows and marked
 * MADV_DONTDUMP, so a cache of thousands of 32-byte keys costs a few locked pages instead of one
 * page (and five system calls) per key. Larger buffers get a mapping of their own. Slots are wiped
 * when freed; a freed slot holds only the free-list link.
 *
 * Memory from ddsm_secure_alloc_fork_wiped (the module's derived-key cache) comes from slabs and
 * mappings of its own that are also MADV_WIPEONFORK where the kernel offers it (Linux 4.14 and
 * later): a fork child sees zeros in place of those keys, so no code path in the child (a stale
 * handle, a missed fork-generation check) can use them. Those slabs' own headers are zeros in the
 * child too, so the child starts with none of them and abandons the parent's (their slots are
 * leaked, never reused). Other secret memory is inherited as usual (a library user may fork and
 * go on with its keys). */
#include "ddsm/secmem.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ddsm/log.h"

#define SLAB_SIZE ((size_t)64 * 1024)
#define SLAB_MAGIC UINT64_C(0x6464736d736c6162) /* "ddsmslab" */
#define MIN_SLOT 16u
#define N_CLASSES 8u /* 16, 32, ..., 2048 */

struct slab {
    uint64_t magic;
    struct slab *prev, *next; /* in its class's list of slabs with a free slot */
    void *free_list;          /* first free slot; each free slot starts with the next link */
    uint32_t slot_size;
    uint32_t first_off; /* offset of slot 0: the header rounded up to a slot */
    uint32_t nslots;
    uint32_t nfree;
    uint32_t wof; /* one of the MADV_WIPEONFORK slabs */
};

static pthread_mutex_t sec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slab *avail[2][N_CLASSES]; /* slabs with a free slot; [1]: wiped on fork */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static atomic_bool mlock_refusal_logged;
static atomic_bool forked; /* this process is a fork child of one that used secret memory */

/* A fork while another thread holds sec_lock must not leave the child's copy locked forever. */
static void sec_prepare(void)
{
    pthread_mutex_lock(&sec_lock);
}

static void sec_release(void)
{
    pthread_mutex_unlock(&sec_lock);
}

static void sec_child(void)
{
#ifdef MADV_WIPEONFORK
    /* The inherited slabs read as zeros here (a header without its magic): never allocate from
     * them. Where the kernel refused the advice they are intact, but dropping them is harmless. */
    for (unsigned c = 0; c < N_CLASSES; c++)
        avail[1][c] = NULL;
    atomic_store(&forked, true);
#endif
    pthread_mutex_unlock(&sec_lock);
}

static void register_atfork(void)
{
    (void)pthread_atfork(sec_prepare, sec_release, sec_child);
}

void ddsm_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

bool ddsm_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return true;
    if (a == NULL || b == NULL)
        return false;
    return CRYPTO_memcmp(a, b, n) == 0;
}

static size_t page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* Lock and exclude from core dumps. Refused mlock (RLIMIT_MEMLOCK, no CAP_IPC_LOCK) is not fatal:
 * the memory is still wiped and undumpable; it is logged once. */
static void protect_region(void *p, size_t len, bool wof)
{
    (void)madvise(p, len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
    if (wof) /* EINVAL before Linux 4.14: the module's fork generation check remains */
        (void)madvise(p, len, MADV_WIPEONFORK);
#else
    (void)wof;
#endif
    if (mlock(p, len) != 0 && !atomic_exchange(&mlock_refusal_logged, true))
        ddsm_log(DDSM_LOG_DEBUG, "secure memory: mlock refused (RLIMIT_MEMLOCK?): continuing "
                                 "with unlocked, undumpable pages");
}

static void unprotect_and_unmap(void *p, size_t len)
{
    (void)munlock(p, len); /* fails harmlessly when the lock was refused */
    (void)munmap(p, len);
}

/* The size class serving n bytes, or -1 when n needs its own mapping. */
static int class_of(size_t n)
{
    size_t slot = MIN_SLOT;
    for (unsigned c = 0; c < N_CLASSES; c++, slot <<= 1) {
        if (n <= slot)
            return (int)c;
    }
    return -1;
}

static struct slab *slab_new_locked(unsigned cls, bool wof)
{
    /* Over-map, then trim to a SLAB_SIZE-aligned window so a slot's slab is found by masking. */
    size_t span = 2 * SLAB_SIZE;
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t base = ((uintptr_t)raw + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
    size_t head = base - (uintptr_t)raw;
    size_t tail = span - head - SLAB_SIZE;
    if (head > 0)
        (void)munmap(raw, head);
    if (tail > 0)
        (void)munmap((uint8_t *)base + SLAB_SIZE, tail);

    struct slab *s = (struct slab *)base;
    protect_region(s, SLAB_SIZE, wof);
    s->magic = SLAB_MAGIC;
    s->wof = wof;
    s->slot_size = MIN_SLOT << cls;
    s->first_off = (uint32_t)round_up(sizeof(*s), s->slot_size);
    s->nslots = (uint32_t)((SLAB_SIZE - s->first_off) / s->slot_size);
    s->nfree = s->nslots;
    s->prev = NULL;
    s->next = NULL;
    /* Thread the free list through the zero-filled slots, lowest address first. */
    s->free_list = NULL;
    for (uint32_t i = s->nslots; i-- > 0;) {
        void **slot = (void **)((uint8_t *)s + s->first_off + (size_t)i * s->slot_size);
        *slot = s->free_list;
        s->free_list = slot;
    }
    return s;
}

static void avail_push_locked(unsigned cls, struct slab *s)
{
    struct slab **head = &avail[s->wof ? 1 : 0][cls];
    s->prev = NULL;
    s->next = *head;
    if (*head != NULL)
        (*head)->prev = s;
    *head = s;
}

static void avail_remove_locked(unsigned cls, struct slab *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        avail[s->wof ? 1 : 0][cls] = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = NULL;
    s->next = NULL;
}

static void *large_alloc(size_t n, bool wof)
{
    if (n > SIZE_MAX - page_size())
        return NULL;
    size_t len = round_up(n, page_size());
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    protect_region(p, len, wof);
    return p; /* anonymous mappings are zero-filled */
}

static void *secure_alloc(size_t n, bool wof)
{
    void *p = NULL;

    if (n == 0)
        return NULL;
    (void)pthread_once(&atfork_once, register_atfork);
    int cls = class_of(n);
    if (cls < 0)
        return large_alloc(n, wof);

    pthread_mutex_lock(&sec_lock);
    struct slab *s = avail[wof ? 1 : 0][cls];
    if (s == NULL) {
        s = slab_new_locked((unsigned)cls, wof);
        if (s == NULL)
            goto out;
        avail_push_locked((unsigned)cls, s);
    }
    p = s->free_list;
    s->free_list = *(void **)p;
    *(void **)p = NULL; /* the rest of the slot was wiped when it was freed */
    if (--s->nfree == 0)
        avail_remove_locked((unsigned)cls, s);
out:
    pthread_mutex_unlock(&sec_lock);
    return p;
}

void *ddsm_secure_alloc(size_t n)
{
    return secure_alloc(n, false);
}

void *ddsm_secure_alloc_fork_wiped(size_t n)
{
    return secure_alloc(n, true);
}

void ddsm_secure_free(void *p, size_t n)
{
    if (p == NULL)
        return;
    if (n == 0) {
        ddsm_log(DDSM_LOG_ERROR, "ddsm_secure_free: %p freed with size 0; leaking it", p);
        return;
    }
    int cls = class_of(n);
    if (cls < 0) {
        size_t len = round_up(n, page_size());
        ddsm_wipe(p, len);
        unprotect_and_unmap(p, len);
        return;
    }

    struct slab *s = (struct slab *)((uintptr_t)p & ~(uintptr_t)(SLAB_SIZE - 1));
    size_t off = (size_t)((uint8_t *)p - (uint8_t *)s);
    if (s->magic == 0 && atomic_load(&forked))
        return; /* a slot of a slab inherited from the parent, wiped by the kernel: leaked */
    if (s->magic != SLAB_MAGIC || s->slot_size != (MIN_SLOT << cls) || off < s->first_off ||
        (off - s->first_off) % s->slot_size != 0) {
        /* Freed with a size it was not allocated with: a bug in the caller. Leak the slot rather
         * than corrupt the allocator; wipe it only when its real extent is known. */
        ddsm_log(DDSM_LOG_ERROR, "ddsm_secure_free: %zu bytes at %p were not allocated with that "
                                 "size; leaking them", n, p);
        if (s->magic == SLAB_MAGIC && off >= s->first_off)
            ddsm_wipe(p, n < s->slot_size ? n : s->slot_size);
        return;
    }

    pthread_mutex_lock(&sec_lock);
    ddsm_wipe(p, s->slot_size);
    *(void **)p = s->free_list;
    s->free_list = p;
    if (s->nfree++ == 0)
        avail_push_locked((unsigned)cls, s);
    /* Give an empty slab back unless it is the only one its class has left. */
    if (s->nfree == s->nslots && (s->prev != NULL || s->next != NULL)) {
        avail_remove_locked((unsigned)cls, s);
        s->magic = 0;
        unprotect_and_unmap(s, SLAB_SIZE);
    }
    pthread_mutex_unlock(&sec_lock);
}
