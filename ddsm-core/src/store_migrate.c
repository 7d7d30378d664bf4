/* SPDX-License-Identifier: Apache-2.0 */
/* The schema: the embedded migrations (sql/, compiled in) and the ddsm roles' grants as the
 * catalog has them.
 *
 * Invariants:
 *  - Each migration is one transaction that holds pg_advisory_xact_lock(MIGRATION_LOCK_KEY): the
 *    check whether it is recorded, its script and its row in ddsm_schema_migrations commit
 *    together or not at all. Concurrent migrators queue on the lock; the later one finds the row
 *    and runs nothing.
 *  - A script must leave its transaction open (no BEGIN/COMMIT of its own): otherwise the
 *    migration fails and is not recorded.
 *  - Migrations run in order; the first failure stops the run and is rolled back, keeping its own
 *    message. Their statements run without the reconnect-once rule (a lost connection ends the
 *    transaction, and that is the error returned).
 *  - Reading the grants is one read, retried once on a new connection. */
#include <stdio.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/store.h"
#include "store_audit.h"
#include "store_int.h"
#include "store_pq.h"

/* Serialises concurrent migrators (pg_advisory_xact_lock): "ddsm-mig" in ASCII. */
#define MIGRATION_LOCK_KEY "7234033814214633831"
/* Migrations may rewrite big tables: they get their own, generous bound. */
#define MIGRATION_TIMEOUT_MS 600000
#define MIGRATION_TIMEOUT_TEXT "600000"

/* Apply migration m unless it is recorded; *did tells whether it ran. One transaction holds the
 * advisory lock, the check, the script and its row in ddsm_schema_migrations. */
static ddsm_err migrate_one(ddsm_store *st, const struct ddsm_migration *m, bool *did)
{
    struct ddsm_pq *pq = &st->pq;
    PGresult *res = NULL;
    bool applied = false;
    const char *lock_key[] = {MIGRATION_LOCK_KEY};
    const char *name[] = {m->name};
    const char *local_timeout[] = {MIGRATION_TIMEOUT_TEXT};
    char what[96];
    snprintf(what, sizeof what, "migration %s", m->name);

    ddsm_err err = ddsm_pq_exec_sql(pq, "begin migration", "BEGIN", 0, NULL, 0, NULL);
    if (err != DDSM_OK)
        goto out;
    err = ddsm_pq_exec_sql(pq, "migration lock",
                           "SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)", 1, lock_key,
                           MIGRATION_TIMEOUT_MS, NULL);
    if (err != DDSM_OK)
        goto out;
    err = ddsm_pq_exec_sql(pq, "migration timeout",
                           "SELECT pg_catalog.set_config('statement_timeout', $1, true)", 1,
                           local_timeout, 0, NULL);
    if (err != DDSM_OK)
        goto out;
    /* The bookkeeping table is created by the first migration itself. */
    err = ddsm_pq_exec_sql(pq, "migration check",
                           "SELECT pg_catalog.to_regclass('ddsm_schema_migrations') IS NOT NULL", 0,
                           NULL, 0, &res);
    if (err != DDSM_OK)
        goto out;
    bool have_table = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    res = NULL;
    if (have_table) {
        err = ddsm_pq_exec_sql(pq, "migration check",
                               "SELECT 1 FROM ddsm_schema_migrations WHERE name = $1", 1, name, 0,
                               &res);
        if (err != DDSM_OK)
            goto out;
        applied = PQntuples(res) > 0;
        PQclear(res);
        res = NULL;
    }
    if (applied) {
        err = ddsm_pq_exec_sql(pq, "end migration", "ROLLBACK", 0, NULL, 0, NULL);
        goto out;
    }
    err = ddsm_pq_exec_sql(pq, what, m->sql, 0, NULL, MIGRATION_TIMEOUT_MS, NULL);
    if (err != DDSM_OK)
        goto out;
    if (st->pq.conn == NULL || PQtransactionStatus(st->pq.conn) != PQTRANS_INTRANS) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE,
                           "store: migration %s ended its transaction itself (it must not "
                           "contain BEGIN/COMMIT)", m->name);
        goto out;
    }
    err = ddsm_pq_exec_sql(pq, what, "INSERT INTO ddsm_schema_migrations (name) VALUES ($1)", 1,
                           name, 0, NULL);
    if (err != DDSM_OK)
        goto out;
    err = ddsm_pq_exec_sql(pq, what, "COMMIT", 0, NULL, MIGRATION_TIMEOUT_MS, NULL);
    if (err == DDSM_OK) {
        *did = true;
        ddsm_log(DDSM_LOG_INFO, "store: applied migration %s", m->name);
    }
out:
    PQclear(res);
    if (err != DDSM_OK && st->pq.conn != NULL &&
        PQtransactionStatus(st->pq.conn) != PQTRANS_IDLE) {
        /* Keep the message of the first failure. */
        char keep[sizeof st->pq.errmsg];
        memcpy(keep, st->pq.errmsg, sizeof keep);
        if (ddsm_pq_exec_sql(pq, "rollback migration", "ROLLBACK", 0, NULL, 0, NULL) != DDSM_OK)
            ddsm_pq_reset(&st->pq);
        memcpy(st->pq.errmsg, keep, sizeof keep);
    }
    return err;
}

ddsm_err ddsm_store_migrate(ddsm_store *st, unsigned *applied)
{
    if (st == NULL)
        return DDSM_E_ARG;
    unsigned n = 0;
    ddsm_err err = ddsm_pq_ensure(&st->pq, NULL);
    if (err != DDSM_OK)
        return err;
    for (unsigned i = 0; i < ddsm_migrations_count; i++) {
        bool did = false;
        err = migrate_one(st, &ddsm_migrations[i], &did);
        if (err != DDSM_OK)
            return err;
        n += did ? 1 : 0;
    }
    if (applied != NULL)
        *applied = n;
    return DDSM_OK;
}

static const char role_grants_sql[] =
    "WITH r AS ("
    " SELECT oid, rolname FROM pg_catalog.pg_roles"
    "  WHERE rolname IN ('ddsm_module', 'ddsm_admin', 'ddsm_auditor')"
    "), s AS (SELECT pg_catalog.current_schema()::regnamespace AS oid"
    "), g AS ("
    " SELECT a.grantee, a.privilege_type, 'database' AS kind, d.datname::text AS object"
    "   FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a"
    "  WHERE d.datname = pg_catalog.current_database()"
    " UNION ALL"
    " SELECT a.grantee, a.privilege_type, 'schema', n.nspname::text"
    "   FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a, s"
    "  WHERE n.oid = s.oid"
    " UNION ALL"
    " SELECT a.grantee, a.privilege_type,"
    "        CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, c.relname::text"
    "   FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, s"
    "  WHERE c.relnamespace = s.oid"
    " UNION ALL"
    " SELECT a.grantee, a.privilege_type, 'function', p.oid::regprocedure::text"
    "   FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a, s"
    "  WHERE p.pronamespace = s.oid"
    ")"
    " SELECT r.rolname, g.privilege_type, g.kind, g.object FROM g JOIN r ON r.oid = g.grantee"
    "  ORDER BY 1, 3, 4, 2";

ddsm_err ddsm_store_role_grants(ddsm_store *st, ddsm_grant_cb cb, void *arg)
{
    if (st == NULL || cb == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_err err =
        ddsm_store_run_params(st, "list grants", role_grants_sql, 0, NULL, true, &res, NULL);
    if (err == DDSM_OK) {
        for (int i = 0; i < PQntuples(res); i++)
            if (cb(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                   PQgetvalue(res, i, 3), arg) != 0)
                break;
    }
    PQclear(res);
    return err;
}
