/* SPDX-License-Identifier: Apache-2.0 */
/* soak: fresh derivations (each + one C_Sign, as derive) for ten times the module's handle table
 * ([cache] handles) in one process, however long that takes (--seconds does not apply). A handle
 * table that never runs out answers every one of them; a derivation or sign that fails is counted
 * as a failure (the goal is 0) instead of ending the run. The process's resident memory is read
 * once the first table-full of derivations is done (the table and the key cache are then full)
 * and again at the end: after the warm-up it should stay flat. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ddsm/names.h"

#define SOAK_FACTOR 10

uint64_t bench_rss_kb(void)
{
    char line[256];
    uint64_t kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %llu kB", (unsigned long long *)&kb) == 1)
            break;
    fclose(f);
    return kb;
}

typedef struct soak_thread {
    bench_mod_thread base;
    uint8_t msg[BENCH_MSG_LEN];
} soak_thread;

static bool soak_prepare(bench *b, char *why, size_t why_len)
{
    b->soak_warm = b->cfg->cache.handles;
    b->soak_target = (uint64_t)b->cfg->cache.handles * SOAK_FACTOR;
    atomic_store(&b->soak_next, 0);
    atomic_store(&b->soak_failures, 0);
    atomic_store(&b->soak_rss_warm_kb, 0);
    b->soak_rss_end_kb = 0;
    return true;
}

static bool soak_init(bench_thread *t)
{
    if (!bench_mod_thread_init(t, sizeof(soak_thread)))
        return false;
    soak_thread *m = t->priv;
    for (unsigned i = 0; i < BENCH_MSG_LEN; i++)
        m->msg[i] = (uint8_t)(i * 5 + t->tid);
    return true;
}

static bench_rc soak_op(bench_thread *t, uint64_t i)
{
    bench *b = t->b;
    soak_thread *m = t->priv;
    uint64_t k = atomic_fetch_add(&b->soak_next, 1);
    if (k >= b->soak_target)
        return BENCH_OP_DONE;
    if (k == b->soak_warm)
        atomic_store(&b->soak_rss_warm_kb, bench_rss_kb());
    char path[64];
    snprintf(path, sizeof(path), "m/%u/%llu", t->run, (unsigned long long)k);
    CK_OBJECT_HANDLE h;
    uint8_t mac[32];
    CK_RV rv = bench_module_derive(b, m->base.s, &b->assets[k % b->n_assets], path, &h);
    if (rv == CKR_OK)
        rv = bench_p11_hmac(b->mod, m->base.s, h, m->msg, sizeof(m->msg), mac);
    if (rv != CKR_OK) {
        if (atomic_fetch_add(&b->soak_failures, 1) == 0)
            snprintf(b->soak_first_failure, sizeof(b->soak_first_failure), "%s at derivation %llu",
                     ddsm_rv_name(rv), (unsigned long long)k);
        return BENCH_OP_EXPECTED;
    }
    return BENCH_OP_OK;
}

static bool soak_finish(bench *b, char *why, size_t why_len)
{
    b->soak_rss_end_kb = bench_rss_kb();
    return true;
}

const bench_scenario bench_sc_soak = {
    .name = "soak",
    .about = "derive + sign, fresh paths, for 10x [cache] handles in one process: failures, RSS",
    .needs_module = true,
    .needs_store = true,
    .until_done = true,
    .prepare = soak_prepare,
    .thread_init = soak_init,
    .op = soak_op,
    .thread_fini = bench_mod_thread_fini,
    .finish = soak_finish,
};
