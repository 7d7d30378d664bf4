/* SPDX-License-Identifier: Apache-2.0 */
/* The store handle: its connection, its prepared statements, the audit chain attached to it, and
 * the one way every statement of the store is run (ddsm_store_run). The statements themselves
 * live in store_migrate.c, store_registry.c, store_lifecycle.c and store_derive.c; the libpq
 * layer and error translation in store_pq.c.
 *
 * Invariants:
 *  - A ddsm_store is one connection, used by one thread at a time: nothing here locks.
 *  - A statement is retried at most once, on a new connection, and only when it is idempotent
 *    (a read) or provably never reached the server: a write is never applied twice.
 *  - A prepared statement runs only after it was prepared on the current connection generation;
 *    behind a transaction pooler its text is sent unnamed every time instead.
 *  - The chain attached is borrowed, except the one ddsm_store_attach_audit made, which the store
 *    owns until it is replaced or the store is closed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/audit.h"
#include "ddsm/log.h"
#include "ddsm/store.h"
#include "store_audit.h"
#include "store_int.h"
#include "store_pq.h"

ddsm_err ddsm_store_open(const char *conninfo, const ddsm_store_opts *opts, ddsm_store **out)
{
    if (conninfo == NULL || out == NULL)
        return DDSM_E_ARG;
    ddsm_store *st = calloc(1, sizeof *st);
    if (st == NULL)
        return DDSM_E_NOMEM;
    ddsm_err err = ddsm_pq_init(&st->pq, conninfo, opts);
    if (err != DDSM_OK) {
        ddsm_pq_fini(&st->pq);
        free(st);
        return err;
    }
    *out = st;
    return DDSM_OK;
}

void ddsm_store_close(ddsm_store *st)
{
    if (st == NULL)
        return;
    ddsm_pq_fini(&st->pq);
    ddsm_audit_chain_free(st->owned_chain);
    free(st->cache);
    free(st);
}

struct ddsm_pq *ddsm_store_pq(ddsm_store *st)
{
    return &st->pq;
}

ddsm_audit_chain *ddsm_store_chain(ddsm_store *st)
{
    return st->chain;
}

const char *ddsm_store_errmsg(const ddsm_store *st)
{
    if (st == NULL)
        return "store: not open";
    return st->pq.errmsg[0] != '\0' ? st->pq.errmsg : "no error";
}

static const struct {
    const char *name;
    const char *sql;
    int nparams;
} prepared[PREP__COUNT] = {
    [PREP_DERIVE] = {DERIVE_STMT, ddsm_store_derive_sql, 4},
    [PREP_BATCH] = {BATCH_STMT, ddsm_store_derive_batch_sql, BATCH_NPARAMS},
};

/* Prepare the named statement on this connection unless it already is. */
static ddsm_err prepare_stmt(ddsm_store *st, const char *name)
{
    for (unsigned i = 0; i < PREP__COUNT; i++) {
        if (strcmp(prepared[i].name, name) != 0)
            continue;
        if (st->prepared_gen[i] == st->pq.generation)
            return DDSM_OK;
        char what[64];
        snprintf(what, sizeof what, "prepare %s", name);
        const struct ddsm_pq_query q = {
            .mode = DDSM_PQ_PREPARE,
            .what = what,
            .name = prepared[i].name,
            .sql = prepared[i].sql,
            .nparams = prepared[i].nparams,
        };
        PGresult *res = NULL;
        ddsm_err err = ddsm_pq_exec(&st->pq, &q, &res, NULL);
        PQclear(res);
        if (err == DDSM_OK)
            st->prepared_gen[i] = st->pq.generation;
        return err;
    }
    return ddsm_pq_fail(&st->pq, DDSM_E_ARG, "store: no prepared statement %s", name);
}

/* Run q on a live connection. A failure on a connection that was already open may only mean the
 * server went away in between: retry once on a new connection when that is safe, i.e. the
 * statement is a read, or it provably never reached the server. *sent_out (may be NULL): whether
 * the statement that failed or succeeded last may have reached the server. */
ddsm_err ddsm_store_run(ddsm_store *st, const struct ddsm_pq_query *q, bool idempotent,
                        PGresult **res, bool *sent_out)
{
    bool fresh = false, sent = false;
    if (sent_out != NULL)
        *sent_out = false;
    struct ddsm_pq_query unnamed;
    if (q->mode == DDSM_PQ_PREPARED && st->pq.pooled) {
        /* Behind a transaction pooler a named statement prepared in one transaction is gone (or
         * on another client's server connection) in the next: send the text each time. */
        unnamed = *q;
        unnamed.mode = DDSM_PQ_PARAMS;
        unnamed.sql = NULL;
        for (unsigned i = 0; i < PREP__COUNT; i++)
            if (strcmp(prepared[i].name, q->name) == 0)
                unnamed.sql = prepared[i].sql;
        if (unnamed.sql == NULL)
            return ddsm_pq_fail(&st->pq, DDSM_E_ARG, "store: no prepared statement %s", q->name);
        q = &unnamed;
    }
    ddsm_err err = ddsm_pq_ensure(&st->pq, &fresh);
    if (err != DDSM_OK)
        return err;
    for (int attempt = 0;; attempt++) {
        sent = false;
        if (q->mode == DDSM_PQ_PREPARED)
            err = prepare_stmt(st, q->name);
        if (err == DDSM_OK)
            err = ddsm_pq_exec(&st->pq, q, res, &sent);
        if (sent_out != NULL)
            *sent_out = sent;
        if (err != DDSM_E_STORE_DOWN || fresh || attempt > 0 || (!idempotent && sent))
            return err;
        ddsm_log(DDSM_LOG_INFO, "store: %s: connection lost; retrying on a new connection",
                 q->what);
        err = ddsm_pq_ensure(&st->pq, NULL);
        if (err != DDSM_OK)
            return err;
    }
}

ddsm_err ddsm_store_run_params(ddsm_store *st, const char *what, const char *sql, int nparams,
                               const char *const *values, bool idempotent, PGresult **res,
                               bool *sent)
{
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = what,
        .sql = sql,
        .nparams = nparams,
        .values = values,
    };
    return ddsm_store_run(st, &q, idempotent, res, sent);
}

/* ------------------------------------------------------------------------------------------ */
/* The audit chain: attaching it */

void ddsm_store_set_audit(ddsm_store *st, ddsm_audit_chain *chain)
{
    if (st == NULL)
        return;
    st->chain = chain;
    if (chain != st->owned_chain) {
        ddsm_audit_chain_free(st->owned_chain);
        st->owned_chain = NULL;
    }
}

ddsm_err ddsm_store_attach_audit(ddsm_store *st, const ddsm_audit_key *key, const char *instance)
{
    if (st == NULL || key == NULL || instance == NULL)
        return DDSM_E_ARG;
    ddsm_audit_chain *c = NULL;
    ddsm_err err = ddsm_audit_chain_new(key, instance, &c);
    if (err == DDSM_E_INPUT)
        return ddsm_pq_fail(&st->pq, err, "audit: the instance id must be 1..%d printable "
                            "characters", DDSM_AUDIT_INSTANCE_MAX);
    if (err != DDSM_OK)
        return err;
    ddsm_store_set_audit(st, c);
    st->owned_chain = c;
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Planning */

void ddsm_store_set_generic_plans(ddsm_store *st, bool on)
{
    if (st != NULL)
        st->pq.generic_plans = on;
}

static const char plan_counts_sql[] =
    "SELECT coalesce(sum(generic_plans), 0)::bigint, coalesce(sum(custom_plans), 0)"
    "::bigint FROM pg_prepared_statements";

ddsm_err ddsm_store_plan_counts(ddsm_store *st, uint64_t *generic, uint64_t *custom)
{
    if (st == NULL || generic == NULL || custom == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    int64_t g = 0, c = 0;
    ddsm_err err =
        ddsm_store_run_params(st, "plan counts", plan_counts_sql, 0, NULL, true, &res, NULL);
    if (err == DDSM_OK && (PQntuples(res) != 1 || !ddsm_pq_get_i64(res, 0, 0, &g) ||
                           !ddsm_pq_get_i64(res, 0, 1, &c) || g < 0 || c < 0))
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: plan counts: unexpected answer");
    PQclear(res);
    if (err == DDSM_OK) {
        *generic = (uint64_t)g;
        *custom = (uint64_t)c;
    }
    return err;
}
