/* SPDX-License-Identifier: Apache-2.0 */
/* The module's scenarios, driven through its PKCS#11 function list only, one session per thread:
 *   derive        C_DeriveKey(CKM_DDSM_DERIVE) of a fresh (asset, path) + one C_Sign with it;
 *                 paths m/<run>/<thread>/<i> are never repeated in a process, so no derivation
 *                 is a cache hit and each one writes (and waits for) its audit row
 *   sign          C_SignInit + C_Sign CKM_SHA256_HMAC with a key derived before the clock starts
 *   find-sign     C_FindObjectsInit(CKA_LABEL "<asset>/<path>") + C_FindObjects + Final, then sign
 *   rotate-storm  derive as above while one more thread rotates the bench assets back to back
 *                 through the store (as `ddsmctl asset rotate` does); a sign that meets
 *                 CKR_KEY_HANDLE_INVALID because a rotation landed after its derive is counted, not
 *                 an error.
 * Handles are simply dropped: the module's table releases the least recently used ones. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ddsm/batch.h"
#include "ddsm/names.h"

bool bench_audit_key(bench *b, char *why, size_t why_len)
{
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf prf;
    ddsm_hsm_prf_init(&pctx, b->hsm, b->be_login, b->be_root, &prf);
    /* A writer of its own (docs/audit.md "The audit keys"): its chains are "<writer>/c<n>". */
    char writer[DDSM_AUDIT_WRITER_MAX + 1];
    ddsm_err e = ddsm_audit_instance_id("ddsm-bench/", writer, sizeof(writer));
    if (e == DDSM_OK)
        e = ddsm_audit_writer_key_derive(&prf, writer, &b->audit_key);
    if (e != DDSM_OK)
        snprintf(why, why_len, "deriving the audit key: %s%s%s", ddsm_err_str(e),
                 pctx.last_rv != CKR_OK ? ": " : "",
                 pctx.last_rv != CKR_OK ? ddsm_rv_name(pctx.last_rv) : "");
    return e == DDSM_OK;
}

bool bench_store_open(bench *b, ddsm_store **out, char *why, size_t why_len)
{
    ddsm_store_opts so = {b->cfg->store.connect_timeout_s, b->cfg->store.statement_timeout_ms,
                          "ddsm-bench", DDSM_ROLE_ANY};
    /* Chains from c64 up: c0..c63 are those of a batcher holding the same writer key (the
     * store-only scenario's), which numbers its connections from 0. */
    static atomic_uint next_chain = DDSM_BATCH_CONNECTIONS_LIMIT;
    char instance[DDSM_AUDIT_INSTANCE_MAX + 1];
    ddsm_store *st = NULL;
    ddsm_err e = DDSM_E_INPUT;
    const char *writer = ddsm_audit_key_writer(b->audit_key);
    if (writer != NULL && snprintf(instance, sizeof(instance), "%s/c%u", writer,
                                   atomic_fetch_add(&next_chain, 1)) < (int)sizeof(instance))
        e = ddsm_store_open(b->cfg->store.conninfo, &so, &st);
    if (e == DDSM_OK)
        e = ddsm_store_attach_audit(st, b->audit_key, instance);
    if (e != DDSM_OK) {
        snprintf(why, why_len, "store: %s", ddsm_err_str(e));
        ddsm_store_close(st);
        return false;
    }
    *out = st;
    return true;
}

ddsm_err bench_asset_ensure(bench *b, const char *label, const char *type, const char *default_path,
                            ddsm_asset *a)
{
    ddsm_err e = ddsm_store_asset_find(b->store, label, a);
    if (e == DDSM_E_NOT_FOUND)
        e = ddsm_store_asset_register(b->store, NULL, label, type, default_path, BENCH_REQUESTER,
                                      a);
    if (e == DDSM_OK && a->state == DDSM_STATE_INITIALIZED)
        e = ddsm_store_asset_transition(b->store, &a->id, DDSM_EV_ACTIVATE, 0, BENCH_REQUESTER, a);
    return e;
}

bool bench_assets_setup(bench *b, char *why, size_t why_len)
{
    for (unsigned i = 0; i < b->n_assets; i++) {
        char label[32];
        ddsm_asset a;
        snprintf(label, sizeof(label), "bench-%u", i);
        ddsm_err e = bench_asset_ensure(b, label, "hmac", NULL, &a);
        if (e != DDSM_OK) {
            snprintf(why, why_len,
                     "asset %s: %s: %s (is the database migrated? `ddsmctl db migrate`)", label,
                     ddsm_err_str(e), ddsm_store_errmsg(b->store));
            return false;
        }
        if (!ddsm_state_derivable(a.state)) {
            snprintf(why, why_len, "asset %s is %s: its keys cannot be derived", label,
                     ddsm_state_name(a.state));
            return false;
        }
        b->assets[i] = a.id;
        ddsm_uuid_format(&a.id, b->asset_text[i]);
    }
    return true;
}

typedef struct mod_thread {
    bench_mod_thread base;
    CK_OBJECT_HANDLE key;                    /* sign, find-sign */
    char label[DDSM_UUID_TEXT_LEN + 1 + 64]; /* find-sign */
    uint8_t msg[BENCH_MSG_LEN];
} mod_thread;

static bool mod_init(bench_thread *t)
{
    if (!bench_mod_thread_init(t, sizeof(mod_thread)))
        return false;
    mod_thread *m = t->priv;
    for (unsigned i = 0; i < BENCH_MSG_LEN; i++)
        m->msg[i] = (uint8_t)(i * 7 + t->tid);
    return true;
}

/* mod_init plus one key of this thread, derived before the clock starts. */
static bool mod_init_key(bench_thread *t)
{
    if (!mod_init(t))
        return false;
    mod_thread *m = t->priv;
    unsigned a = t->tid % t->b->n_assets;
    char path[64];
    snprintf(path, sizeof(path), "m/%u/%u", t->run, t->tid);
    CK_RV rv = bench_module_derive(t->b, m->base.s, &t->b->assets[a], path, &m->key);
    if (rv != CKR_OK)
        return bench_thread_fail_rv(t, "C_DeriveKey", rv);
    snprintf(m->label, sizeof(m->label), "%s/%s", t->b->asset_text[a], path);
    return true;
}

static bench_rc sign_with(bench_thread *t, mod_thread *m, CK_OBJECT_HANDLE key, bool storm)
{
    uint8_t mac[32];
    CK_RV rv = bench_p11_hmac(t->b->mod, m->base.s, key, m->msg, sizeof(m->msg), mac);
    if (rv == CKR_OK)
        return BENCH_OP_OK;
    if (storm && rv == CKR_KEY_HANDLE_INVALID)
        return BENCH_OP_EXPECTED;
    bench_thread_fail_rv(t, "C_SignInit/C_Sign", rv);
    return BENCH_OP_FAIL;
}

static bench_rc derive_sign(bench_thread *t, uint64_t i, bool storm)
{
    mod_thread *m = t->priv;
    CK_OBJECT_HANDLE h;
    char path[64];
    snprintf(path, sizeof(path), "m/%u/%u/%llu", t->run, t->tid, (unsigned long long)i);
    CK_RV rv = bench_module_derive(t->b, m->base.s, &t->b->assets[(t->tid + i) % t->b->n_assets],
                                   path, &h);
    if (rv != CKR_OK) {
        bench_thread_fail_rv(t, "C_DeriveKey", rv);
        return BENCH_OP_FAIL;
    }
    return sign_with(t, m, h, storm);
}

static bench_rc derive_op(bench_thread *t, uint64_t i)
{
    return derive_sign(t, i, false);
}

static bench_rc storm_op(bench_thread *t, uint64_t i)
{
    return derive_sign(t, i, true);
}

static bench_rc sign_op(bench_thread *t, uint64_t i)
{
    mod_thread *m = t->priv;
    return sign_with(t, m, m->key, false);
}

static bench_rc find_sign_op(bench_thread *t, uint64_t i)
{
    mod_thread *m = t->priv;
    CK_FUNCTION_LIST_PTR fl = t->b->mod;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, m->label, strlen(m->label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = fl->C_FindObjectsInit(m->base.s, tmpl, 2);
    if (rv != CKR_OK) {
        bench_thread_fail_rv(t, "C_FindObjectsInit", rv);
        return BENCH_OP_FAIL;
    }
    rv = fl->C_FindObjects(m->base.s, found, 2, &n);
    CK_RV frv = fl->C_FindObjectsFinal(m->base.s);
    if (rv != CKR_OK || frv != CKR_OK) {
        bench_thread_fail_rv(t, rv != CKR_OK ? "C_FindObjects" : "C_FindObjectsFinal",
                             rv != CKR_OK ? rv : frv);
        return BENCH_OP_FAIL;
    }
    if (n != 1) {
        snprintf(t->why, sizeof(t->why), "C_FindObjects for \"%s\" found %lu objects, not 1",
                 m->label, (unsigned long)n);
        return BENCH_OP_FAIL;
    }
    return sign_with(t, m, found[0], false);
}

/* The rotator: ACTIVE -> ACTIVE with counter + 1, one asset after another, on its own
 * connection, until stopped. */
static bool storm_side(bench *b, const atomic_bool *stop, uint64_t *count, char *why,
                       size_t why_len)
{
    ddsm_store *st = NULL;
    ddsm_err e = DDSM_OK;
    uint64_t k = 0;
    if (!bench_store_open(b, &st, why, why_len))
        return false;
    while (e == DDSM_OK && !atomic_load_explicit(stop, memory_order_relaxed)) {
        ddsm_asset a;
        e = ddsm_store_asset_transition(st, &b->assets[k % b->n_assets], DDSM_EV_ROTATE, 0,
                                        BENCH_REQUESTER ":rotate-storm", &a);
        if (e == DDSM_OK)
            (*count)++;
        k++;
    }
    if (e != DDSM_OK)
        snprintf(why, why_len, "rotation: %s: %s", ddsm_err_str(e), ddsm_store_errmsg(st));
    ddsm_store_close(st);
    return e == DDSM_OK;
}

const bench_scenario bench_sc_derive = {
    .name = "derive",
    .about =
        "C_DeriveKey(CKM_DDSM_DERIVE) of a fresh (asset, path), audited, + one C_Sign with the key",
    .needs_module = true,
    .needs_store = true,
    .thread_init = mod_init,
    .op = derive_op,
    .thread_fini = bench_mod_thread_fini,
};

const bench_scenario bench_sc_sign = {
    .name = "sign",
    .about = "C_SignInit + C_Sign HMAC-SHA256 of 64 bytes with an already-derived key handle",
    .needs_module = true,
    .needs_store = true,
    .thread_init = mod_init_key,
    .op = sign_op,
    .thread_fini = bench_mod_thread_fini,
};

const bench_scenario bench_sc_find_sign = {
    .name = "find-sign",
    .about =
        "C_FindObjects by CKA_LABEL \"<asset>/<path>\" (as a URI-driven tool would), then sign",
    .needs_module = true,
    .needs_store = true,
    .thread_init = mod_init_key,
    .op = find_sign_op,
    .thread_fini = bench_mod_thread_fini,
};

const bench_scenario bench_sc_rotate_storm = {
    .name = "rotate-storm",
    .about = "derive + sign while one more thread rotates the bench assets continuously",
    .needs_module = true,
    .needs_store = true,
    .thread_init = mod_init,
    .op = storm_op,
    .thread_fini = bench_mod_thread_fini,
    .side = storm_side,
};

const bench_scenario *const bench_scenarios[] = {
    &bench_sc_openssl, &bench_sc_hsm_direct, &bench_sc_seed_design,  &bench_sc_store_only,
    &bench_sc_derive,
    &bench_sc_sign,    &bench_sc_find_sign,  &bench_sc_rotate_storm, &bench_sc_ec_sign,
    &bench_sc_soak,
};
const size_t bench_scenarios_count = sizeof(bench_scenarios) / sizeof(bench_scenarios[0]);
