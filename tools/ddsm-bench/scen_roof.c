/* SPDX-License-Identifier: Apache-2.0 */
/* store-only: the roofline's store half. What the module's audit path can do with nothing else
 * to do: the module's own group-commit batcher (ddsm-core batch.h, the same chained statement,
 * [audit] batch_max, batch_wait_us and connections from the same configuration), one fresh path
 * per operation, no policy, no HSM call, no handle. Its rows are real DERIVE rows of the bench
 * assets, chained under the audit key like the module's, with the requester
 * "ddsm-bench:store-only" so that they can be told apart: no key was computed for them.
 *
 * The HSM half is hsm-direct (the HSM's HMAC alone). A derivation needs one of each, so derive
 * can at best reach the slower of the two at the same thread count (they run on different
 * resources, except that on a small machine PostgreSQL, SoftHSM and the callers share the
 * cores); the report prints derive as a fraction of that limit. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "ddsm/batch.h"

#define STORE_ONLY_REQUESTER BENCH_REQUESTER ":store-only"

static bool roof_prepare(bench *b, char *why, size_t why_len)
{
    ddsm_store_opts so = {b->cfg->store.connect_timeout_s, b->cfg->store.statement_timeout_ms,
                          "ddsm-bench", DDSM_ROLE_ANY};
    /* One batcher for every run of the process (main.c frees it): it chains its rows as the writer
     * whose key it holds, as the module's does, and a second batcher of the same writer would
     * start its chains over. */
    if (b->roof_batcher != NULL)
        return true;
    const char *writer = ddsm_audit_key_writer(b->audit_key);
    ddsm_err e = writer == NULL ? DDSM_E_INPUT
                                : ddsm_batcher_new(b->cfg->store.conninfo, &so,
                                                   b->cfg->audit.batch_max ? b->cfg->audit.batch_max
                                                                           : 64,
                                                   b->cfg->audit.batch_wait_us,
                                                   b->cfg->audit.connections
                                                       ? b->cfg->audit.connections
                                                       : 2,
                                                   b->audit_key, writer, &b->roof_batcher);
    if (e != DDSM_OK) {
        snprintf(why, why_len, "store-only: the batcher: %s", ddsm_err_str(e));
        return false;
    }
    return true;
}

static bool roof_init(bench_thread *t)
{
    return true;
}

static bench_rc roof_op(bench_thread *t, uint64_t i)
{
    bench *b = t->b;
    char path[64];
    snprintf(path, sizeof(path), "m/%u/%u/%llu", t->run, t->tid, (unsigned long long)i);
    ddsm_derive_req req = {
        .asset = b->assets[(t->tid + i) % b->n_assets],
        .path = path,
        .requester = STORE_ONLY_REQUESTER,
    };
    uint64_t counter;
    ddsm_err e = ddsm_batcher_derive(b->roof_batcher, &req, &counter, NULL);
    if (e != DDSM_OK) {
        snprintf(t->why, sizeof(t->why), "ddsm_batcher_derive: %s: %s", ddsm_err_str(e),
                 ddsm_batcher_errmsg());
        return BENCH_OP_FAIL;
    }
    return BENCH_OP_OK;
}

const bench_scenario bench_sc_store_only = {
    .name = "store-only",
    .about = "the module's audit batcher alone: one chained DERIVE row per fresh path, no HSM",
    .needs_store = true,
    .prepare = roof_prepare,
    .thread_init = roof_init,
    .op = roof_op,
};
