/* SPDX-License-Identifier: Apache-2.0 */
/* The baselines: in-process OpenSSL HMAC (the ceiling for `sign`), the backend HSM's own HMAC on
 * the root key (the floor under `derive`), and the design this project replaces (`seed-design`).
 *
 * seed-design reproduces the original derivation against the same PostgreSQL, statement for
 * statement, one libpq connection per thread:
 *     BEGIN ISOLATION LEVEL SERIALIZABLE
 *     SELECT pg_advisory_xact_lock(1001)                      -- one lock for the whole cluster
 *     SELECT derivation_counter, state FROM custody_keys WHERE asset_id = $1 FOR UPDATE
 *     HMAC-SHA256(root, path || decimal(counter)) in the HSM  -- the original's message, no asset
 *     INSERT INTO <audit table> (...) VALUES (...)
 *     COMMIT
 * with serialization failures (40001) and deadlocks (40P01) rolled back, retried and counted. The
 * HSM call sits inside the transaction, where the original makes it (it needs the counter it just
 * locked, and logs only what it derived). Its audit rows go to custody_audit_log_seed, a copy of
 * custody_audit_log's columns, constraints and index that the bench creates and drops at the end,
 * so that `ddsmctl audit verify` and `ddsmctl reconcile` never see them. */
#include <libpq-fe.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ddsm/secmem.h"

/* A fixed message of len bytes starting with 'B' (not secret). */
static void fill_msg(uint8_t *msg, size_t len, unsigned tid)
{
    for (size_t i = 0; i < len; i++)
        msg[i] = (uint8_t)('B' + (i + tid) % 26);
}

/* ---- openssl ---- */

typedef struct ossl_thread {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx;
    uint8_t msg[BENCH_MSG_LEN];
} ossl_thread;

/* Keys a per-thread EVP_MAC_CTX once with a random throwaway key (a secret, wiped here). */
static bool ossl_init_secret(bench_thread *t)
{
    ossl_thread *o = bench_thread_alloc(t, sizeof(*o));
    uint8_t key[32];
    bool ok = false;

    if (o == NULL)
        return false;
    fill_msg(o->msg, sizeof(o->msg), t->tid);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (RAND_bytes(key, sizeof(key)) != 1 || (o->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
        (o->ctx = EVP_MAC_CTX_new(o->mac)) == NULL ||
        EVP_MAC_init(o->ctx, key, sizeof(key), params) != 1) {
        snprintf(t->why, sizeof(t->why), "OpenSSL HMAC set-up failed");
        goto out;
    }
    ok = true;
out:
    ddsm_wipe(key, sizeof(key));
    return ok;
}

static bench_rc ossl_op(bench_thread *t, uint64_t i)
{
    ossl_thread *o = t->priv;
    uint8_t mac[32];
    size_t len = 0;
    if (EVP_MAC_init(o->ctx, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(o->ctx, o->msg, sizeof(o->msg)) != 1 ||
        EVP_MAC_final(o->ctx, mac, &len, sizeof(mac)) != 1 || len != sizeof(mac)) {
        snprintf(t->why, sizeof(t->why), "EVP_MAC failed");
        return BENCH_OP_FAIL;
    }
    return BENCH_OP_OK;
}

static void ossl_fini(bench_thread *t)
{
    ossl_thread *o = t->priv;
    if (o == NULL)
        return;
    EVP_MAC_CTX_free(o->ctx); /* wipes the key */
    EVP_MAC_free(o->mac);
    free(o);
    t->priv = NULL;
}

const bench_scenario bench_sc_openssl = {
    .name = "openssl",
    .about = "baseline: EVP_MAC HMAC-SHA256 of 64 bytes, one reused context per thread",
    .thread_init = ossl_init_secret,
    .op = ossl_op,
    .thread_fini = ossl_fini,
};

/* ---- hsm-direct ---- */

typedef struct hsm_thread {
    CK_SESSION_HANDLE s;
    bool have_s;
    /* As long as a depth-3 derivation message (53 bytes), but starting with 'B' where every
     * derivation message starts with 00 00 00 01: the MAC is no asset key, so not a secret. */
    uint8_t msg[53];
} hsm_thread;

static bool hsm_init(bench_thread *t)
{
    hsm_thread *h = bench_thread_alloc(t, sizeof(*h));
    if (h == NULL)
        return false;
    fill_msg(h->msg, sizeof(h->msg), t->tid);
    CK_RV rv = bench_backend_session(t->b, &h->s);
    if (rv != CKR_OK)
        return bench_thread_fail_rv(t, "backend C_OpenSession", rv);
    h->have_s = true;
    return true;
}

/* The backend's HMAC-SHA256 of msg under the root key, on session s; false with t->why. mac is a
 * secret when msg is a derivation message (seed-design): the caller wipes it. */
static bool root_hmac_secret(bench_thread *t, CK_SESSION_HANDLE s, const uint8_t *msg, size_t len,
                             uint8_t mac[32])
{
    CK_RV rv = bench_p11_hmac(t->b->be, s, t->b->be_root, msg, len, mac);
    if (rv != CKR_OK)
        return bench_thread_fail_rv(t, "backend C_Sign(CKM_SHA256_HMAC)", rv);
    return true;
}

static bench_rc hsm_op(bench_thread *t, uint64_t i)
{
    hsm_thread *h = t->priv;
    uint8_t mac[32];
    return root_hmac_secret(t, h->s, h->msg, sizeof(h->msg), mac) ? BENCH_OP_OK : BENCH_OP_FAIL;
}

static void hsm_fini(bench_thread *t)
{
    hsm_thread *h = t->priv;
    if (h == NULL)
        return;
    if (h->have_s)
        (void)t->b->be->C_CloseSession(h->s);
    free(h);
    t->priv = NULL;
}

const bench_scenario bench_sc_hsm_direct = {
    .name = "hsm-direct",
    .about = "baseline: C_SignInit + C_Sign CKM_SHA256_HMAC on the root key straight through the "
             "backend",
    .needs_backend = true,
    .thread_init = hsm_init,
    .op = hsm_op,
    .thread_fini = hsm_fini,
};

/* ---- seed-design ---- */

#define SEED_TABLE "custody_audit_log_seed"

static const char seed_create_sql[] =
    "CREATE TABLE " SEED_TABLE " ("
    " id bigserial PRIMARY KEY,"
    " asset_id uuid,"
    " derivation_path text,"
    " counter bigint,"
    " state_at_derivation text CHECK (state_at_derivation IN"
    "  ('INITIALIZED', 'ACTIVE', 'ROTATING', 'RETIRED')),"
    " ts timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " event text NOT NULL CHECK (event IN ('DERIVE', 'REGISTER', 'ACTIVATE', 'ROTATE',"
    "  'GRACE_END', 'RETIRE', 'DENY')),"
    " requester text,"
    " instance_id text,"
    " seq bigint,"
    " detail text);"
    "CREATE INDEX " SEED_TABLE "_asset_ts ON " SEED_TABLE " (asset_id, ts)";

static const char seed_lock_sql[] = "SELECT pg_advisory_xact_lock(1001)";
static const char seed_select_sql[] =
    "SELECT derivation_counter, state FROM custody_keys WHERE asset_id = $1::uuid FOR UPDATE";
static const char seed_insert_sql[] =
    "INSERT INTO " SEED_TABLE
    " (asset_id, derivation_path, counter, state_at_derivation, event, requester)"
    " VALUES ($1::uuid, $2, $3::bigint, $4, 'DERIVE', $5)";

static bool exec_ok(PGconn *c, const char *sql, char *why, size_t why_len)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(why, why_len, "%s", PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* Create the scratch audit table once per invocation (dropping a leftover of an interrupted run).
 */
static bool seed_prepare(bench *b, char *why, size_t why_len)
{
    if (b->seed_table)
        return true;
    PGconn *c = PQconnectdb(b->cfg->store.conninfo);
    bool ok = PQstatus(c) == CONNECTION_OK &&
              exec_ok(c, "SET client_min_messages = warning", why, why_len) &&
              exec_ok(c, "DROP TABLE IF EXISTS " SEED_TABLE, why, why_len) &&
              exec_ok(c, seed_create_sql, why, why_len);
    if (PQstatus(c) != CONNECTION_OK)
        snprintf(why, why_len, "PostgreSQL: %s", PQerrorMessage(c));
    PQfinish(c);
    b->seed_table = ok;
    return ok;
}

void bench_seed_cleanup(bench *b)
{
    char why[BENCH_WHY] = "";
    if (!b->seed_table)
        return;
    PGconn *c = PQconnectdb(b->cfg->store.conninfo);
    if (PQstatus(c) != CONNECTION_OK ||
        !exec_ok(c, "DROP TABLE IF EXISTS " SEED_TABLE, why, sizeof(why)))
        fprintf(stderr, "ddsm-bench: warning: could not drop %s: %s", SEED_TABLE,
                PQstatus(c) != CONNECTION_OK ? PQerrorMessage(c) : why);
    PQfinish(c);
    b->seed_table = false;
}

typedef struct seed_thread {
    PGconn *pg;
    CK_SESSION_HANDLE s;
    bool have_s;
} seed_thread;

static bool seed_init(bench_thread *t)
{
    seed_thread *st = bench_thread_alloc(t, sizeof(*st));
    if (st == NULL)
        return false;
    st->pg = PQconnectdb(t->b->cfg->store.conninfo);
    if (PQstatus(st->pg) != CONNECTION_OK) {
        snprintf(t->why, sizeof(t->why), "PostgreSQL: %s", PQerrorMessage(st->pg));
        return false;
    }
    CK_RV rv = bench_backend_session(t->b, &st->s);
    if (rv != CKR_OK)
        return bench_thread_fail_rv(t, "backend C_OpenSession", rv);
    st->have_s = true;
    return true;
}

typedef enum { STEP_OK, STEP_RETRY, STEP_FAIL } step;

/* The outcome of one statement: a serialization failure or deadlock asks for a retry. */
static step step_of(seed_thread *st, PGresult *r, const char *what, bench_thread *t)
{
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
        return STEP_OK;
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (code != NULL && (strcmp(code, "40001") == 0 || strcmp(code, "40P01") == 0))
        return STEP_RETRY;
    snprintf(t->why, sizeof(t->why), "%s: %s", what, PQerrorMessage(st->pg));
    return STEP_FAIL;
}

/* One attempt of the original derivation. The HMAC output is what the original used as the asset
 * key: a secret, wiped before returning. */
static step seed_attempt_secret(bench_thread *t, seed_thread *st, const char *asset,
                                const char *path)
{
    uint8_t key[32];
    char msg[DDSM_PATH_TEXT_MAX + 24];
    char counter[24];
    step res;
    PGresult *r = PQexec(st->pg, "BEGIN ISOLATION LEVEL SERIALIZABLE");
    if ((res = step_of(st, r, "BEGIN", t)) != STEP_OK)
        goto out;
    PQclear(r);
    r = PQexec(st->pg, seed_lock_sql);
    if ((res = step_of(st, r, "pg_advisory_xact_lock", t)) != STEP_OK)
        goto out;
    PQclear(r);
    const char *sel[1] = {asset};
    r = PQexecParams(st->pg, seed_select_sql, 1, NULL, sel, NULL, NULL, 0);
    if ((res = step_of(st, r, "SELECT ... FOR UPDATE", t)) != STEP_OK)
        goto out;
    if (PQntuples(r) != 1) {
        snprintf(t->why, sizeof(t->why), "asset %s is not in custody_keys", asset);
        res = STEP_FAIL;
        goto out;
    }
    snprintf(counter, sizeof(counter), "%s", PQgetvalue(r, 0, 0));
    char state[16];
    snprintf(state, sizeof(state), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    r = NULL;
    int n = snprintf(msg, sizeof(msg), "%s%s", path, counter);
    bool hmac_ok = root_hmac_secret(t, st->s, (const uint8_t *)msg, (size_t)n, key);
    ddsm_wipe(key, sizeof(key));
    if (!hmac_ok) {
        res = STEP_FAIL;
        goto out;
    }
    const char *ins[5] = {asset, path, counter, state, BENCH_REQUESTER ":seed-design"};
    r = PQexecParams(st->pg, seed_insert_sql, 5, NULL, ins, NULL, NULL, 0);
    if ((res = step_of(st, r, "INSERT audit row", t)) != STEP_OK)
        goto out;
    PQclear(r);
    r = PQexec(st->pg, "COMMIT");
    res = step_of(st, r, "COMMIT", t);
out:
    PQclear(r);
    if (res != STEP_OK && PQtransactionStatus(st->pg) != PQTRANS_IDLE)
        PQclear(PQexec(st->pg, "ROLLBACK"));
    return res;
}

static bench_rc seed_op(bench_thread *t, uint64_t i)
{
    seed_thread *st = t->priv;
    char path[64];
    const char *asset = t->b->asset_text[(t->tid + i) % t->b->n_assets];
    snprintf(path, sizeof(path), "m/%u/%u/%llu", t->run, t->tid, (unsigned long long)i);
    for (;;) {
        step s = seed_attempt_secret(t, st, asset, path);
        if (s == STEP_OK)
            return BENCH_OP_OK;
        if (s == STEP_FAIL)
            return BENCH_OP_FAIL;
        t->retries++;
    }
}

static void seed_fini(bench_thread *t)
{
    seed_thread *st = t->priv;
    if (st == NULL)
        return;
    if (st->have_s)
        (void)t->b->be->C_CloseSession(st->s);
    PQfinish(st->pg);
    free(st);
    t->priv = NULL;
}

const bench_scenario bench_sc_seed_design = {
    .name = "seed-design",
    .about =
        "baseline: the original design's derivation (SERIALIZABLE, advisory lock 1001, FOR UPDATE, "
        "audit INSERT, COMMIT, HSM HMAC)",
    .needs_backend = true,
    .needs_store = true,
    .prepare = seed_prepare,
    .thread_init = seed_init,
    .op = seed_op,
    .thread_fini = seed_fini,
};
