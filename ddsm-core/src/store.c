/* SPDX-License-Identifier: Apache-2.0 */
/* The PostgreSQL store: migrations, the asset registry, lifecycle transitions and the derivation
 * bookkeeping. Every statement is parameterised; each operation is one statement (one round trip)
 * except migrations. Connection handling and error translation live in store_pq.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/audit.h"
#include "ddsm/log.h"
#include "ddsm/path.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "store_audit.h"
#include "store_pq.h"
#include "textbuf.h"

/* The prepared statements, by index into prepared[] below. */
enum { PREP_DERIVE, PREP_BATCH, PREP__COUNT };

struct ddsm_store {
    struct ddsm_pq pq;
    uint64_t prepared_gen[PREP__COUNT]; /* pq.generation each statement was prepared on */
    ddsm_audit_chain *chain;            /* attached chain (NULL: rows without MAC) */
    ddsm_audit_chain *owned_chain;      /* the chain of ddsm_store_attach_audit, freed with us */
    struct ddsm_asset_cache *cache;     /* expectations of chained derivations */
};

/* Serialises concurrent migrators (pg_advisory_xact_lock): "ddsm-mig" in ASCII. */
#define MIGRATION_LOCK_KEY "7234033814214633831"
/* Migrations may rewrite big tables: they get their own, generous bound. */
#define MIGRATION_TIMEOUT_MS 600000
#define MIGRATION_TIMEOUT_TEXT "600000"
/* A grace window longer than this is a typo, not a policy. */
#define GRACE_MAX_S (366LL * 24 * 3600)

/* The columns of a ddsm_asset, in the order asset_from_row reads them, for the table alias t.
 * The state is the effective one (see ddsm_effective_state in sql/001_init.sql). */
#define ASSET_COLS(t)                                                                             \
    t ".asset_id::text, " t ".label, " t ".key_type, " t ".default_path, "                        \
    t ".derivation_counter, ddsm_effective_state(" t ".state, " t ".grace_until), "             \
    "(extract(epoch FROM " t ".created_at) * 1000000)::bigint, "                                 \
    "(extract(epoch FROM " t ".updated_at) * 1000000)::bigint, "                                 \
    "CASE WHEN ddsm_effective_state(" t ".state, " t ".grace_until) = 'ROTATING' "               \
    "THEN (extract(epoch FROM " t ".grace_until) * 1000000)::bigint ELSE 0 END, "                \
    "CASE WHEN ddsm_effective_state(" t ".state, " t ".grace_until) = 'ROTATING' "               \
    "THEN greatest(1, (extract(epoch FROM " t ".grace_until - clock_timestamp()) * 1000000)"     \
    "::bigint) ELSE 0 END"
#define ASSET_NCOLS 10

/* The hot path: one statement, one round trip, no lock. It reads the registry row through its
 * primary key and inserts the DERIVE row only when the effective state is derivable, in the same
 * snapshot: a derivation whose statement starts after a rotation committed sees the new counter.
 * Zero rows: unknown asset; a NULL counter: not derivable (the state says why). */
const char ddsm_store_derive_sql[] =
    "WITH k AS ("
    " SELECT asset_id, derivation_counter,"
    "        ddsm_effective_state(state, grace_until) AS state"
    "   FROM custody_keys"
    "  WHERE asset_id = $1::uuid"
    "), ins AS ("
    " INSERT INTO custody_audit_log"
    "        (asset_id, derivation_path, counter, state_at_derivation, event, requester,"
    "         instance_id)"
    " SELECT asset_id, $2, derivation_counter, state, 'DERIVE', $3, $4"
    "   FROM k"
    "  WHERE state IN ('ACTIVE', 'ROTATING')"
    " RETURNING counter"
    ")"
    " SELECT k.state, ins.counter FROM k LEFT JOIN ins ON true";
#define DERIVE_STMT "ddsm_derive"

/* One lifecycle event in one statement. The row is locked first (FOR UPDATE returns its latest
 * committed version), so the state check, the counter bump and the audit rows agree even under
 * concurrent events. $3/$4 are the (from, to) pairs that ddsm_state_next allows for this event;
 * the event applies only when the effective state is one of the "from" states. A ROTATING row
 * whose grace ended is written down as ended (GRACE_END row) before the event's own row.
 * The trigger custody_keys_guard checks the result again. */
static const char transition_sql[] =
    "WITH cur AS ("
    " SELECT asset_id, derivation_counter, state AS stored_state,"
    "        ddsm_effective_state(state, grace_until) AS state"
    "   FROM custody_keys"
    "  WHERE asset_id = $1::uuid"
    "    FOR UPDATE"
    "), rule AS ("
    " SELECT r.from_state, r.to_state"
    "   FROM unnest($3::text[], $4::text[]) AS r(from_state, to_state)"
    "), upd AS ("
    " UPDATE custody_keys k"
    "    SET state = rule.to_state,"
    "        derivation_counter = cur.derivation_counter + $5::bigint,"
    "        grace_until = CASE WHEN rule.to_state = 'ROTATING'"
    "                           THEN now() + make_interval(secs => $6::double precision) END,"
    "        updated_at = now()"
    "   FROM cur JOIN rule ON rule.from_state = cur.state"
    "  WHERE k.asset_id = cur.asset_id"
    " RETURNING k.*"
    "), aud AS ("
    " INSERT INTO custody_audit_log"
    "        (asset_id, counter, state_at_derivation, event, requester, detail)"
    " SELECT cur.asset_id, cur.derivation_counter, 'ACTIVE', 'GRACE_END', $7,"
    "        'grace window had ended'"
    "   FROM cur, upd"
    "  WHERE cur.stored_state = 'ROTATING' AND cur.state = 'ACTIVE'"
    " UNION ALL"
    " SELECT upd.asset_id, upd.derivation_counter, upd.state, $2, $7, $8"
    "   FROM upd"
    "), rot AS ("
    " INSERT INTO custody_rotations (asset_id, from_counter, to_counter, grace_until, requester)"
    " SELECT upd.asset_id, cur.derivation_counter, upd.derivation_counter, upd.grace_until, $7"
    "   FROM upd, cur"
    "  WHERE upd.derivation_counter > cur.derivation_counter"
    " RETURNING id"
    "), note AS ("
    " SELECT pg_notify($9, upd.asset_id::text || ' ' || upd.derivation_counter || ' ' ||"
    "                      ddsm_effective_state(upd.state, upd.grace_until))"
    "   FROM upd"
    ")"
    " SELECT cur.state, (SELECT count(*) FROM note), " ASSET_COLS("upd") ","
    "        (SELECT id FROM rot)"
    "   FROM cur LEFT JOIN upd ON true";
/* Column of the rotation id in transition_sql's answer. */
#define TRANSITION_ROT_COL (2 + ASSET_NCOLS)

/* Run after a rotation has committed: a server time at or after the commit, which reconcile
 * compares with the start of derivation statements (ddsm_audit_reconcile_sql). Idempotent. */
static const char rotation_committed_sql[] = "SELECT ddsm_rotation_committed($1::bigint)";

static const char register_sql[] =
    "WITH k AS ("
    " INSERT INTO custody_keys (asset_id, label, key_type, default_path, state)"
    " VALUES ($1::uuid, $2, $3, $4, 'INITIALIZED')"
    " RETURNING *"
    "), aud AS ("
    " INSERT INTO custody_audit_log"
    "        (asset_id, derivation_path, counter, state_at_derivation, event, requester)"
    " SELECT asset_id, default_path, derivation_counter, state, 'REGISTER', $5 FROM k"
    ")"
    " SELECT " ASSET_COLS("k") " FROM k";

static const char get_sql[] =
    "SELECT " ASSET_COLS("k") " FROM custody_keys k WHERE k.asset_id = $1::uuid";
static const char find_label_sql[] =
    "SELECT " ASSET_COLS("k") " FROM custody_keys k WHERE k.label = $1";
static const char list_sql[] =
    "SELECT " ASSET_COLS("k") " FROM custody_keys k ORDER BY k.label, k.asset_id";

/* ------------------------------------------------------------------------------------------ */

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

#define BATCH_STMT "ddsm_derive_batch"
#define BATCH_NPARAMS 14

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

/* DDSM_E_NOT_FOUND ("no asset <shown>") when a statement about one asset found no row. */
static ddsm_err require_asset_row(ddsm_store *st, const PGresult *res, const char *shown)
{
    if (PQntuples(res) == 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", shown);
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Rows */

static bool copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* Read the ASSET_COLS starting at column col into *out (may be NULL: only check them). */
static ddsm_err asset_from_row(ddsm_store *st, const PGresult *res, int row, int col,
                               ddsm_asset *out)
{
    ddsm_asset a;
    int64_t counter = 0;
    memset(&a, 0, sizeof a);
    const char *id = PQgetvalue(res, row, col);
    if (ddsm_uuid_parse(id, strlen(id), &a.id) != DDSM_OK ||
        !copy_text(a.label, sizeof a.label, PQgetvalue(res, row, col + 1)) ||
        !copy_text(a.key_type, sizeof a.key_type, PQgetvalue(res, row, col + 2)) ||
        !copy_text(a.default_path, sizeof a.default_path, PQgetvalue(res, row, col + 3)) ||
        !ddsm_pq_get_i64(res, row, col + 4, &counter) || counter < 0 ||
        ddsm_state_parse(PQgetvalue(res, row, col + 5), &a.state) != DDSM_OK ||
        !ddsm_pq_get_i64(res, row, col + 6, &a.created_us) ||
        !ddsm_pq_get_i64(res, row, col + 7, &a.updated_us) ||
        !ddsm_pq_get_i64(res, row, col + 8, &a.grace_until_us) ||
        !ddsm_pq_get_i64(res, row, col + 9, &a.grace_left_us) || a.grace_left_us < 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset row %s does not fit (label "
                            "%.40s...): was it written by hand?", id,
                            PQgetvalue(res, row, col + 1));
    a.counter = (uint64_t)counter;
    if (out != NULL)
        *out = a;
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Migrations */

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

/* ------------------------------------------------------------------------------------------ */
/* Registry */

/* A label appears in "<label>/<path>" and is looked up where a UUID is also accepted: it must
 * be printable ASCII, without '/', without surrounding spaces, and not readable as a UUID in any
 * of the forms PostgreSQL accepts (hex digits with optional dashes and braces). */
static ddsm_err check_label(ddsm_store *st, const char *label)
{
    if (label == NULL || label[0] == '\0')
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label is empty");
    size_t n = strlen(label);
    if (n > DDSM_ASSET_LABEL_MAX)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label is %zu characters long; the "
                            "limit is %d", n, DDSM_ASSET_LABEL_MAX);
    size_t hex = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];
        if (c < 0x20 || c > 0x7e)
            return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label has a non-printable or "
                                "non-ASCII byte 0x%02x at offset %zu", c, i);
        if (c == '/')
            return ddsm_pq_fail(&st->pq, DDSM_E_INPUT,
                                "asset label may not contain '/' (labels prefix paths)");
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            hex++;
        else if (c != '-' && c != '{' && c != '}')
            other++;
    }
    if (label[0] == ' ' || label[n - 1] == ' ')
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT,
                            "asset label may not begin or end with a space");
    if (hex == 32 && other == 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label \"%s\" looks like a UUID; "
                            "labels and asset ids must not be confusable", label);
    return DDSM_OK;
}

/* The key types of sql/003_key_types.sql's CHECK. */
static ddsm_err check_key_type(ddsm_store *st, const char *key_type)
{
    static const char *const known[] = {"hmac", "aes", "secp256k1", "ed25519", "p256"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(key_type, known[i]) == 0)
            return DDSM_OK;
    return ddsm_pq_fail(&st->pq, DDSM_E_INPUT,
                        "unknown key type \"%.32s\" (known: hmac, aes, secp256k1, ed25519, p256)",
                        key_type);
}

/* SLIP-10 Ed25519 has hardened children only: a default path with a normal index would name no
 * key at all. */
static ddsm_err check_path_for_type(ddsm_store *st, const char *key_type, const ddsm_path *path,
                                    const char *path_text)
{
    if (strcmp(key_type, "ed25519") != 0)
        return DDSM_OK;
    for (unsigned i = 0; i < path->depth; i++)
        if ((path->index[i] & DDSM_HARDENED) == 0)
            return ddsm_pq_fail(&st->pq, DDSM_E_PATH,
                                "default path \"%s\": ed25519 keys (SLIP-10) have hardened "
                                "indices only (component %u is not hardened)",
                                path_text, i + 1);
    return DDSM_OK;
}

static ddsm_err register_chained(ddsm_store *st, const char *id_text, const ddsm_uuid *id,
                                 const char *label, const char *key_type, const char *path_text,
                                 const char *requester, PGresult **res);

ddsm_err ddsm_store_asset_register(ddsm_store *st, const ddsm_uuid *id, const char *label,
                                   const char *key_type, const char *default_path,
                                   const char *requester, ddsm_asset *out)
{
    if (st == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_uuid uid;
    ddsm_path path;
    const char *why = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char path_text[DDSM_PATH_TEXT_MAX];
    ddsm_err err;

    if (key_type == NULL)
        key_type = "hmac";
    if (default_path == NULL)
        default_path = "m/0";
    err = check_label(st, label);
    if (err != DDSM_OK)
        goto out;
    err = check_key_type(st, key_type);
    if (err != DDSM_OK)
        goto out;
    err = ddsm_path_parse(default_path, strlen(default_path), &path, &why);
    if (err != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_PATH, "default path \"%.64s\": %s", default_path,
                           why != NULL ? why : "malformed");
        goto out;
    }
    ddsm_path_format(&path, path_text);
    err = check_path_for_type(st, key_type, &path, path_text);
    if (err != DDSM_OK)
        goto out;
    if (id != NULL) {
        if (ddsm_uuid_is_nil(id)) {
            err = ddsm_pq_fail(&st->pq, DDSM_E_UUID,
                               "the nil UUID names the module's own keys, never an asset");
            goto out;
        }
        uid = *id;
    } else {
        err = ddsm_uuid_random(&uid);
        if (err != DDSM_OK) {
            err = ddsm_pq_fail(&st->pq, err, "cannot generate a random asset id");
            goto out;
        }
    }
    ddsm_uuid_format(&uid, id_text);

    const char *values[] = {id_text, label, key_type, path_text, requester};
    if (st->chain != NULL)
        err = register_chained(st, id_text, &uid, label, key_type, path_text, requester, &res);
    else
        err =
            ddsm_store_run_params(st, "register asset", register_sql, 5, values, false, &res, NULL);
    if (err == DDSM_E_EXISTS) {
        if (strcmp(st->pq.constraint, "custody_keys_label_key") == 0)
            ddsm_pq_fail(&st->pq, err, "an asset labelled \"%s\" already exists", label);
        else
            ddsm_pq_fail(&st->pq, err, "an asset with id %s already exists", id_text);
        goto out;
    }
    if (err != DDSM_OK)
        goto out;
    if (PQntuples(res) != 1) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: register asset: no row returned");
        goto out;
    }
    err = asset_from_row(st, res, 0, 0, out);
out:
    PQclear(res);
    return err;
}

static ddsm_err get_one(ddsm_store *st, const char *sql, const char *key, const char *shown,
                        ddsm_asset *out)
{
    PGresult *res = NULL;
    const char *values[] = {key};
    ddsm_err err = ddsm_store_run_params(st, "look up asset", sql, 1, values, true, &res, NULL);
    if (err == DDSM_OK)
        err = require_asset_row(st, res, shown);
    if (err != DDSM_OK)
        goto out;
    err = asset_from_row(st, res, 0, 0, out);
out:
    PQclear(res);
    return err;
}

ddsm_err ddsm_store_asset_get(ddsm_store *st, const ddsm_uuid *id, ddsm_asset *out)
{
    if (st == NULL || id == NULL)
        return DDSM_E_ARG;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(id, id_text);
    return get_one(st, get_sql, id_text, id_text, out);
}

ddsm_err ddsm_store_asset_find(ddsm_store *st, const char *id_or_label, ddsm_asset *out)
{
    if (st == NULL || id_or_label == NULL)
        return DDSM_E_ARG;
    if (id_or_label[0] == '\0')
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "empty asset id or label");
    size_t n = strlen(id_or_label);
    ddsm_uuid id;
    if (n == DDSM_UUID_TEXT_LEN && ddsm_uuid_parse(id_or_label, n, &id) == DDSM_OK)
        return ddsm_store_asset_get(st, &id, out);
    if (n > DDSM_ASSET_LABEL_MAX)
        return ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset labelled \"%.40s...\"",
                            id_or_label);
    char shown[DDSM_ASSET_LABEL_MAX + 16];
    snprintf(shown, sizeof shown, "labelled \"%s\"", id_or_label);
    return get_one(st, find_label_sql, id_or_label, shown, out);
}

ddsm_err ddsm_store_asset_list(ddsm_store *st, ddsm_asset_cb cb, void *arg)
{
    if (st == NULL || cb == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_err err = ddsm_store_run_params(st, "list assets", list_sql, 0, NULL, true, &res, NULL);
    if (err != DDSM_OK)
        goto out;
    for (int i = 0; i < PQntuples(res); i++) {
        ddsm_asset a;
        err = asset_from_row(st, res, i, 0, &a);
        if (err != DDSM_OK)
            goto out;
        if (cb(&a, arg) != 0)
            break;
    }
out:
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle */

static bool event_bumps_counter(ddsm_event ev)
{
    return ev == DDSM_EV_ROTATE || ev == DDSM_EV_ROTATE_GRACE;
}

/* The audit log's event names: a rotation with grace is a ROTATE whose state is ROTATING. */
static const char *audit_event_name(ddsm_event ev)
{
    return ev == DDSM_EV_ROTATE_GRACE ? "ROTATE" : ddsm_event_name(ev);
}

/* Postgres array literals of the states ev may leave from and where each one leads, as
 * ddsm_state_next says. Built from our own state names (no user text). */
static void transition_rules(ddsm_event ev, char from[128], char to[128])
{
    size_t nf = 0, nt = 0;
    from[nf++] = '{';
    to[nt++] = '{';
    for (unsigned s = 0; s < DDSM_STATE__COUNT; s++) {
        ddsm_state next;
        if (ddsm_state_next((ddsm_state)s, ev, &next) != DDSM_OK)
            continue;
        nf += (size_t)snprintf(from + nf, 128 - nf, "%s%s", nf > 1 ? "," : "",
                               ddsm_state_name((ddsm_state)s));
        nt += (size_t)snprintf(to + nt, 128 - nt, "%s%s", nt > 1 ? "," : "",
                               ddsm_state_name(next));
    }
    snprintf(from + nf, 128 - nf, "}");
    snprintf(to + nt, 128 - nt, "}");
}

/* The parameters a grace window adds to a lifecycle event: for ROTATE_GRACE its length in seconds
 * and the audit detail naming it; NULL (SQL NULL) for every other event. */
struct grace_params {
    char grace[24], detail[64];
    const char *grace_v, *detail_v;
};

static ddsm_err grace_params(ddsm_store *st, ddsm_event ev, int64_t grace_s, struct grace_params *g)
{
    g->grace_v = g->detail_v = NULL;
    if (ev != DDSM_EV_ROTATE_GRACE)
        return DDSM_OK;
    if (grace_s <= 0 || grace_s > GRACE_MAX_S)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "grace period of %" PRId64 " s is out of "
                            "range (1 s to %lld s)", grace_s, GRACE_MAX_S);
    snprintf(g->grace, sizeof g->grace, "%" PRId64, grace_s);
    snprintf(g->detail, sizeof g->detail, "grace %" PRId64 " s", grace_s);
    g->grace_v = g->grace;
    g->detail_v = g->detail;
    return DDSM_OK;
}

/* Stamp the rotation rot_id (text) as committed. Best effort: the rotation itself has committed
 * and stands; without the stamp reconcile bounds its commit by the next rotation instead. */
static void rotation_committed(ddsm_store *st, const char *rot_id)
{
    const char *values[] = {rot_id};
    PGresult *res = NULL;
    char keep[sizeof st->pq.errmsg];
    memcpy(keep, st->pq.errmsg, sizeof keep);
    if (ddsm_store_run_params(st, "stamp rotation", rotation_committed_sql, 1, values, true, &res,
                              NULL) != DDSM_OK)
        ddsm_log(DDSM_LOG_WARN, "store: rotation %s committed but could not be stamped: %s",
                 rot_id, st->pq.errmsg);
    memcpy(st->pq.errmsg, keep, sizeof keep);
    PQclear(res);
}

static ddsm_err transition_chained(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                   int64_t grace_s, const char *requester, ddsm_asset *out);

ddsm_err ddsm_store_asset_transition(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                     int64_t grace_s, const char *requester, ddsm_asset *out)
{
    if (st == NULL || id == NULL || (unsigned)ev >= DDSM_EV__COUNT)
        return DDSM_E_ARG;
    if (st->chain != NULL)
        return transition_chained(st, id, ev, grace_s, requester, out);
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char from[128], to[128];
    struct grace_params g;
    ddsm_err err;

    ddsm_uuid_format(id, id_text);
    err = grace_params(st, ev, grace_s, &g);
    if (err != DDSM_OK)
        goto out;
    transition_rules(ev, from, to);

    const char *values[] = {id_text, audit_event_name(ev), from, to,
                            event_bumps_counter(ev) ? "1" : "0", g.grace_v, requester,
                            g.detail_v, DDSM_NOTIFY_CHANNEL};
    err = ddsm_store_run_params(st, ddsm_event_name(ev), transition_sql, 9, values, false, &res,
                                NULL);
    if (err == DDSM_OK)
        err = require_asset_row(st, res, id_text);
    if (err != DDSM_OK)
        goto out;
    if (PQgetisnull(res, 0, 2)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot %s", id_text,
                           PQgetvalue(res, 0, 0), ddsm_event_name(ev));
        goto out;
    }
    ddsm_asset a;
    err = asset_from_row(st, res, 0, 2, &a);
    if (err != DDSM_OK)
        goto out;
    if (!PQgetisnull(res, 0, TRANSITION_ROT_COL))
        rotation_committed(st, PQgetvalue(res, 0, TRANSITION_ROT_COL));
    if (out != NULL)
        *out = a;
out:
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Derivation */

static ddsm_err derive_chained(ddsm_store *st, const ddsm_derive_req *req, const char *reason,
                               uint64_t *counter, ddsm_state *state);

/* The audit log names paths in one form only: DDSM_E_PATH unless path_text is canonical. */
static ddsm_err check_canonical_path(ddsm_store *st, const char *path_text)
{
    ddsm_path path;
    char canonical[DDSM_PATH_TEXT_MAX];
    const char *why = NULL;
    if (ddsm_path_parse(path_text, strlen(path_text), &path, &why) != DDSM_OK)
        return ddsm_pq_fail(&st->pq, DDSM_E_PATH, "path \"%.64s\": %s", path_text,
                            why != NULL ? why : "malformed");
    ddsm_path_format(&path, canonical);
    if (strcmp(canonical, path_text) != 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_PATH, "path \"%.64s\" is not canonical (\"%s\")",
                            path_text, canonical);
    return DDSM_OK;
}

ddsm_err ddsm_store_derive(ddsm_store *st, const ddsm_derive_req *req, uint64_t *counter,
                           ddsm_state *state)
{
    if (st == NULL || req == NULL || req->path == NULL || counter == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    ddsm_state s;
    int64_t c = 0;
    ddsm_err err;

    err = check_canonical_path(st, req->path);
    if (err != DDSM_OK)
        goto out;
    ddsm_uuid_format(&req->asset, id_text);
    if (st->chain != NULL) {
        err = derive_chained(st, req, NULL, counter, state);
        goto out;
    }

    const char *values[] = {id_text, req->path, req->requester, req->instance};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PREPARED,
        .what = "derive",
        .name = DERIVE_STMT,
        .nparams = 4,
        .values = values,
    };
    /* Not idempotent: retried only when it provably never reached the server. */
    err = ddsm_store_run(st, &q, false, &res, NULL);
    if (err == DDSM_OK)
        err = require_asset_row(st, res, id_text);
    if (err != DDSM_OK)
        goto out;
    if (ddsm_state_parse(PQgetvalue(res, 0, 0), &s) != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset %s has an unknown state", id_text);
        goto out;
    }
    if (PQgetisnull(res, 0, 1)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot derive", id_text,
                           ddsm_state_name(s));
        if (state != NULL)
            *state = s;
        goto out;
    }
    if (!ddsm_pq_get_i64(res, 0, 1, &c) || c < 0) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive returned a bad counter");
        goto out;
    }
    *counter = (uint64_t)c;
    if (state != NULL)
        *state = s;
out:
    PQclear(res);
    return err;
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
/* The asset cache */

static size_t cache_slot(const ddsm_uuid *a)
{
    /* Random v4 ids: their bytes are already well spread. */
    return ((size_t)a->b[15] | (size_t)a->b[14] << 8) % DDSM_ASSET_CACHE_SLOTS;
}

bool ddsm_asset_cache_get(const struct ddsm_asset_cache *c, const ddsm_uuid *a, bool *found,
                          ddsm_state *state, uint64_t *counter)
{
    const struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    if (!e->used || memcmp(e->asset.b, a->b, sizeof a->b) != 0)
        return false;
    *found = e->found;
    *state = e->state;
    *counter = e->counter;
    return true;
}

void ddsm_asset_cache_put(struct ddsm_asset_cache *c, const ddsm_uuid *a, bool found,
                          ddsm_state state, uint64_t counter)
{
    struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    e->used = true;
    e->found = found;
    e->asset = *a;
    e->state = state;
    e->counter = counter;
    e->zone_off = false;
    e->zone[0] = '\0';
}

void ddsm_asset_cache_set_zone(struct ddsm_asset_cache *c, const ddsm_uuid *a, bool zone_off,
                               const char *zone)
{
    struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    if (!e->used || memcmp(e->asset.b, a->b, sizeof a->b) != 0)
        return;
    e->zone_off = zone_off;
    snprintf(e->zone, sizeof e->zone, "%s", zone != NULL ? zone : "");
}

void ddsm_asset_cache_get_zone(const struct ddsm_asset_cache *c, struct ddsm_batch_item *it)
{
    const struct ddsm_asset_cache_entry *e = &c->e[cache_slot(&it->asset)];
    it->zone_off = false;
    it->zone[0] = '\0';
    if (!e->used || memcmp(e->asset.b, it->asset.b, sizeof it->asset.b) != 0)
        return;
    it->zone_off = e->zone_off;
    snprintf(it->zone, sizeof it->zone, "%s", e->zone);
}

void ddsm_asset_cache_forget(struct ddsm_asset_cache *c, const ddsm_uuid *a)
{
    struct ddsm_asset_cache_entry *e = &c->e[cache_slot(a)];
    if (e->used && memcmp(e->asset.b, a->b, sizeof a->b) == 0)
        e->used = false;
}

/* ------------------------------------------------------------------------------------------ */
/* The optimistic multi-row statement */

/* $1 asset, $2 path, $3 requester, $4 kind, $5 expected state, $6 expected counter, $7 event,
 * $8 detail, $9 ts, $10 seq, $11 mac (arrays, one element per row, in chain order); $12 the
 * chain's instance id; $13/$14 the checkpoint (seq and MAC of the last row).
 * Kinds: D derive (exists, derivable, its zone enabled, in the expected state and counter), S
 * refused (exists in the expected non-derivable state and counter), U unknown (does not exist),
 * P policy (no check), Z zone (exists, derivable, its zone disabled). Every row's expectation
 * is checked through the primary key (the LATERAL subquery with LIMIT is never flattened into a
 * join over the registry; the zone is one more primary-key probe, sql/003_policy.sql); all rows
 * are inserted, in order, with the checkpoint, or none is. The answer has one row per element:
 * what was found, the zone last. */
const char ddsm_store_derive_batch_sql[] =
    "WITH r AS ("
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
    "                      $6::bigint[], $7::text[], $8::text[], $9::timestamptz[],"
    "                      $10::bigint[], $11::bytea[])"
    "        WITH ORDINALITY AS r(asset_id, path, requester, kind, exp_state, exp_counter, event,"
    "                             detail, ts, seq, mac, ord)"
    "), k AS ("
    " SELECT r.ord, r.kind, r.exp_state, r.exp_counter, c.asset_id IS NOT NULL AS found,"
    "        c.derivation_counter AS counter, c.state, coalesce(c.zone_on, true) AS zone_on,"
    "        c.zone"
    "   FROM r LEFT JOIN LATERAL ("
    "        SELECT ck.asset_id, ck.derivation_counter,"
    "               ddsm_effective_state(ck.state, ck.grace_until) AS state,"
    "               coalesce((SELECT z.enabled FROM custody_zones z WHERE z.zone = ck.zone),"
    "                        false) AS zone_on, ck.zone"
    "          FROM custody_keys ck WHERE ck.asset_id = r.asset_id LIMIT 1) c ON true"
    "), v AS ("
    " SELECT coalesce(bool_and(CASE k.kind"
    "          WHEN 'D' THEN k.found AND k.state IN ('ACTIVE', 'ROTATING') AND k.zone_on"
    "                        AND k.state = k.exp_state AND k.counter = k.exp_counter"
    "          WHEN 'S' THEN k.found AND k.state = k.exp_state AND k.counter = k.exp_counter"
    "          WHEN 'U' THEN NOT k.found"
    "          WHEN 'P' THEN true"
    "          WHEN 'Z' THEN k.found AND NOT k.zone_on AND k.state IN ('ACTIVE', 'ROTATING')"
    "          ELSE false END), false) AS ok"
    "   FROM k"
    "), ins AS ("
    " INSERT INTO custody_audit_log (asset_id, derivation_path, counter, state_at_derivation, ts,"
    "        event, requester, instance_id, seq, detail, mac)"
    " SELECT r.asset_id, r.path, r.exp_counter, r.exp_state, r.ts, r.event, r.requester,"
    "        $12::text, r.seq, r.detail, r.mac"
    "   FROM r, v WHERE v.ok ORDER BY r.ord"
    " RETURNING 1"
    "), head AS ("
    " INSERT INTO custody_audit_chain_heads (instance_id, seq, mac, updated_at)"
    " SELECT $12::text, $13::bigint, $14::bytea, now() FROM v WHERE v.ok"
    " ON CONFLICT (instance_id) DO UPDATE"
    "   SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at"
    " RETURNING 1"
    ")"
    " SELECT k.ord, k.found, k.counter, k.state, v.ok, (SELECT count(*) FROM ins),"
    "        (SELECT count(*) FROM head), k.zone_on, k.zone"
    "   FROM k, v ORDER BY k.ord";

static const char *const refused_detail[DDSM_STATE__COUNT] = {
    [DDSM_STATE_INITIALIZED] = "asset is INITIALIZED; cannot derive",
    [DDSM_STATE_ACTIVE] = "asset is ACTIVE",
    [DDSM_STATE_ROTATING] = "asset is ROTATING",
    [DDSM_STATE_RETIRED] = "asset is RETIRED; cannot derive",
};

void ddsm_batch_item_expect(struct ddsm_batch_item *it, bool known, bool found, ddsm_state state,
                            uint64_t counter)
{
    it->exp_state = DDSM_STATE_ACTIVE;
    it->exp_counter = 0;
    if (it->deny_reason == it->zone_reason)
        it->deny_reason = NULL; /* a zone refusal is decided again from this answer */
    if (it->deny_reason == NULL && known && found && it->zone_off && ddsm_state_derivable(state)) {
        /* Refused by the zone: a DENY row naming it, which the statement writes only while the
         * zone is still disabled (the state refusals come first). */
        snprintf(it->zone_reason, sizeof it->zone_reason, "zone %s is disabled",
                 it->zone[0] != '\0' ? it->zone : "?");
        it->deny_reason = it->zone_reason;
        it->expect = DDSM_EXPECT_ZONE_OFF;
        return;
    }
    if (it->deny_reason != NULL) {
        it->expect = DDSM_EXPECT_NONE;
    } else if (!known) {
        /* A guess: a wrong one costs the round trip that teaches the right one. */
        it->expect = DDSM_EXPECT_DERIVE;
    } else if (!found) {
        it->expect = DDSM_EXPECT_MISSING;
    } else {
        it->exp_state = state;
        it->exp_counter = counter;
        it->expect = ddsm_state_derivable(state) ? DDSM_EXPECT_DERIVE : DDSM_EXPECT_REFUSED;
    }
}

enum ddsm_chain_outcome ddsm_chain_failed_outcome(ddsm_err err, bool sent)
{
    /* A server error rolled the statement back; a lost link after sending leaves it unknown. */
    return sent && err == DDSM_E_STORE_DOWN ? DDSM_CHAIN_UNKNOWN : DDSM_CHAIN_NOT_WRITTEN;
}

ddsm_err ddsm_store_batch_exec(ddsm_store *st, ddsm_audit_chain *chain,
                               struct ddsm_batch_item *items, size_t n, bool *written)
{
    if (st == NULL || chain == NULL || items == NULL || n == 0 || written == NULL)
        return DDSM_E_ARG;
    ddsm_audit_row *rows = calloc(n, sizeof *rows);
    uint8_t(*macs)[DDSM_AUDIT_MAC_LEN] = calloc(n, DDSM_AUDIT_MAC_LEN);
    char *idtext = calloc(n, DDSM_UUID_TEXT_LEN + 1);
    ddsm_textbuf a[11];
    PGresult *res = NULL;
    bool sealed = false, sent = false;
    char ts_text[40], head_seq[24], head_mac[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    char mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    ddsm_err err;

    memset(a, 0, sizeof a);
    if (rows == NULL || macs == NULL || idtext == NULL) {
        err = DDSM_E_NOMEM;
        goto out;
    }
    int64_t ts = ddsm_audit_now_us();
    ddsm_audit_format_ts(ts, ts_text);
    for (size_t i = 0; i < n; i++) {
        struct ddsm_batch_item *it = &items[i];
        ddsm_audit_row *r = &rows[i];
        r->has_asset = true;
        r->asset = it->asset;
        r->path = it->path;
        r->ts_us = ts;
        r->requester = it->requester;
        switch (it->expect) {
        case DDSM_EXPECT_DERIVE:
        case DDSM_EXPECT_REFUSED:
            r->event = it->expect == DDSM_EXPECT_DERIVE ? "DERIVE" : "DENY";
            r->has_counter = true;
            r->counter = (int64_t)it->exp_counter;
            r->state = ddsm_state_name(it->exp_state);
            r->detail =
                it->expect == DDSM_EXPECT_DERIVE ? it->detail : refused_detail[it->exp_state];
            break;
        case DDSM_EXPECT_MISSING:
            r->event = "DENY";
            r->detail = "no such asset";
            break;
        case DDSM_EXPECT_NONE:
        case DDSM_EXPECT_ZONE_OFF:
            r->event = "DENY";
            r->detail = it->deny_reason;
            break;
        }
    }
    err = ddsm_audit_chain_seal(chain, rows, n, macs);
    if (err != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, err, "audit: cannot seal %zu rows: %s", n, ddsm_err_str(err));
        goto out;
    }
    sealed = true;

    static const char kinds[] = {[DDSM_EXPECT_DERIVE] = 'D', [DDSM_EXPECT_REFUSED] = 'S',
                                 [DDSM_EXPECT_MISSING] = 'U', [DDSM_EXPECT_NONE] = 'P',
                                 [DDSM_EXPECT_ZONE_OFF] = 'Z'};
    for (size_t k = 0; k < 11; k++)
        ddsm_textbuf_putn(&a[k], "{", 1);
    for (size_t i = 0; i < n; i++) {
        const ddsm_audit_row *r = &rows[i];
        char *idt = idtext + i * (DDSM_UUID_TEXT_LEN + 1);
        char kind[2] = {kinds[items[i].expect], '\0'};
        ddsm_uuid_format(&r->asset, idt);
        ddsm_pq_bytea_hex(macs[i], DDSM_AUDIT_MAC_LEN, mac_text);
        ddsm_textbuf_array_elem(&a[0], i, idt);
        ddsm_textbuf_array_elem(&a[1], i, r->path);
        ddsm_textbuf_array_elem(&a[2], i, r->requester);
        ddsm_textbuf_array_elem(&a[3], i, kind);
        ddsm_textbuf_array_elem(&a[4], i, r->state);
        ddsm_textbuf_array_i64(&a[5], i, r->has_counter, r->counter);
        ddsm_textbuf_array_elem(&a[6], i, r->event);
        ddsm_textbuf_array_elem(&a[7], i, r->detail);
        ddsm_textbuf_array_elem(&a[8], i, ts_text);
        ddsm_textbuf_array_i64(&a[9], i, true, r->seq);
        ddsm_textbuf_array_elem(&a[10], i, mac_text);
    }
    for (size_t k = 0; k < 11; k++) {
        ddsm_textbuf_putn(&a[k], "}", 1);
        if (a[k].oom) {
            err = DDSM_E_NOMEM;
            goto out;
        }
    }
    snprintf(head_seq, sizeof head_seq, "%" PRId64, rows[n - 1].seq);
    ddsm_pq_bytea_hex(macs[n - 1], DDSM_AUDIT_MAC_LEN, head_mac);
    const char *values[BATCH_NPARAMS] = {a[0].p, a[1].p, a[2].p, a[3].p, a[4].p,
                                         a[5].p, a[6].p, a[7].p, a[8].p, a[9].p,
                                         a[10].p, ddsm_audit_chain_instance(chain), head_seq,
                                         head_mac};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PREPARED,
        .what = "derive",
        .name = BATCH_STMT,
        .nparams = BATCH_NPARAMS,
        .values = values,
    };
    /* Not idempotent: retried only when it provably never reached the server. */
    err = ddsm_store_run(st, &q, false, &res, &sent);
    if (err != DDSM_OK) {
        ddsm_audit_chain_settle(chain, n, macs[n - 1], ddsm_chain_failed_outcome(err, sent));
        sealed = false;
        goto out;
    }
    bool ok = PQntuples(res) == (int)n && strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    int64_t ins = 0, head = 0;
    bool counts = PQntuples(res) == (int)n && ddsm_pq_get_i64(res, 0, 5, &ins) &&
                  ddsm_pq_get_i64(res, 0, 6, &head);
    if (!counts || (ok && (ins != (int64_t)n || head != 1))) {
        /* Cannot happen with our schema; if it does, trust nothing about this chain. */
        ddsm_audit_chain_settle(chain, n, macs[n - 1], DDSM_CHAIN_UNKNOWN);
        sealed = false;
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive: unexpected answer (%d rows "
                           "for %zu, %" PRId64 " inserted)", PQntuples(res), n, ins);
        goto out;
    }
    ddsm_audit_chain_settle(chain, n, macs[n - 1],
                            ok ? DDSM_CHAIN_COMMITTED : DDSM_CHAIN_NOT_WRITTEN);
    sealed = false;
    for (size_t i = 0; i < n; i++) {
        struct ddsm_batch_item *it = &items[i];
        int64_t c = 0;
        it->found = strcmp(PQgetvalue(res, (int)i, 1), "t") == 0;
        it->state = DDSM_STATE_INITIALIZED;
        it->counter = 0;
        it->zone_off = false;
        it->zone[0] = '\0';
        if (!it->found)
            continue;
        it->zone_off = PQnfields(res) > 8 && strcmp(PQgetvalue(res, (int)i, 7), "f") == 0;
        if (PQnfields(res) > 8)
            snprintf(it->zone, sizeof it->zone, "%s", PQgetvalue(res, (int)i, 8));
        if (!ddsm_pq_get_i64(res, (int)i, 2, &c) || c < 0 ||
            ddsm_state_parse(PQgetvalue(res, (int)i, 3), &it->state) != DDSM_OK) {
            err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive: bad counter or state");
            goto out;
        }
        it->counter = (uint64_t)c;
    }
    *written = ok;
out:
    if (sealed)
        ddsm_audit_chain_settle(chain, n, macs[n - 1], DDSM_CHAIN_NOT_WRITTEN);
    PQclear(res);
    for (size_t k = 0; k < 11; k++)
        free(a[k].p);
    free(idtext);
    free(rows);
    free(macs);
    return err;
}

ddsm_err ddsm_batch_item_result(const struct ddsm_batch_item *it, char *msg, size_t cap,
                                uint64_t *counter, ddsm_state *state)
{
    char idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&it->asset, idt);
    switch (it->expect) {
    case DDSM_EXPECT_DERIVE:
        *counter = it->exp_counter;
        if (state != NULL)
            *state = it->exp_state;
        return DDSM_OK;
    case DDSM_EXPECT_REFUSED:
        snprintf(msg, cap, "asset %s is %s; cannot derive", idt, ddsm_state_name(it->exp_state));
        if (state != NULL)
            *state = it->exp_state;
        return DDSM_E_STATE;
    case DDSM_EXPECT_MISSING:
        snprintf(msg, cap, "no asset %s", idt);
        return DDSM_E_NOT_FOUND;
    case DDSM_EXPECT_NONE:
    case DDSM_EXPECT_ZONE_OFF:
        snprintf(msg, cap, "asset %s: refused: %s", idt, it->deny_reason);
        return DDSM_E_POLICY;
    }
    return DDSM_E_ARG;
}

static ddsm_err derive_chained(ddsm_store *st, const ddsm_derive_req *req, const char *reason,
                               uint64_t *counter, ddsm_state *state)
{
    struct ddsm_batch_item it;
    bool written = false;
    char idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_err err = DDSM_OK;

    if (st->cache == NULL) {
        st->cache = calloc(1, sizeof *st->cache);
        if (st->cache == NULL)
            return DDSM_E_NOMEM;
    }
    memset(&it, 0, sizeof it);
    it.asset = req->asset;
    it.path = req->path;
    it.requester = req->requester;
    it.deny_reason = reason;
    it.detail = req->detail;
    for (int attempt = 0; attempt < DDSM_OPTIMISTIC_ATTEMPTS && !written; attempt++) {
        bool found = false;
        ddsm_state s = DDSM_STATE_INITIALIZED;
        uint64_t c = 0;
        bool known = ddsm_asset_cache_get(st->cache, &it.asset, &found, &s, &c);
        ddsm_asset_cache_get_zone(st->cache, &it);
        ddsm_batch_item_expect(&it, known, found, s, c);
        err = ddsm_store_batch_exec(st, st->chain, &it, 1, &written);
        if (err != DDSM_OK) {
            ddsm_asset_cache_forget(st->cache, &it.asset);
            return err;
        }
        ddsm_asset_cache_put(st->cache, &it.asset, it.found, it.state, it.counter);
        ddsm_asset_cache_set_zone(st->cache, &it.asset, it.zone_off, it.zone);
    }
    ddsm_uuid_format(&it.asset, idt);
    if (!written)
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive: asset %s changed %d times "
                            "while its audit row was being written; try again", idt,
                            DDSM_OPTIMISTIC_ATTEMPTS);
    char msg[DDSM_PQ_ERRMSG_MAX];
    uint64_t cv = 0;
    ddsm_state sv = DDSM_STATE_INITIALIZED;
    err = ddsm_batch_item_result(&it, msg, sizeof msg, &cv, &sv);
    if (err == DDSM_OK) {
        *counter = cv;
        if (state != NULL)
            *state = sv;
        return DDSM_OK;
    }
    if (err == DDSM_E_STATE && state != NULL)
        *state = sv;
    return ddsm_pq_fail(&st->pq, err, "%s", msg);
}

static const char deny_sql[] =
    "INSERT INTO custody_audit_log (asset_id, derivation_path, event, requester,"
    " instance_id, detail) VALUES ($1::uuid, $2, 'DENY', $3, $4, $5)";

ddsm_err ddsm_store_deny(ddsm_store *st, const ddsm_derive_req *req, const char *reason)
{
    if (st == NULL || req == NULL)
        return DDSM_E_ARG;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    PGresult *res = NULL;
    ddsm_err err;

    if (reason == NULL || reason[0] == '\0' || strlen(reason) > 500)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "deny: the reason must be 1..500 characters");
    if (req->path != NULL) {
        err = check_canonical_path(st, req->path);
        if (err != DDSM_OK)
            return err;
    }
    if (st->chain != NULL) {
        uint64_t c = 0;
        err = derive_chained(st, req, reason, &c, NULL);
        return err == DDSM_E_POLICY ? DDSM_OK : err;
    }
    ddsm_uuid_format(&req->asset, id_text);
    const char *values[] = {id_text, req->path, req->requester, req->instance, reason};
    err = ddsm_store_run_params(st, "deny", deny_sql, 5, values, false, &res, NULL);
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Chained registration and lifecycle */

/* Through the SECURITY DEFINER function of sql/006_roles.sql, which ddsm_admin may call. */
static const char register_chained_sql[] =
    "SELECT (r.o_asset).*, r.o_audit, r.o_head"
    "  FROM ddsm_asset_register($1::uuid, $2, $3, $4, $5, $6::timestamptz, $7::text, $8::bigint,"
    "                           $9::bytea) r";

static ddsm_err register_chained(ddsm_store *st, const char *id_text, const ddsm_uuid *id,
                                 const char *label, const char *key_type, const char *path_text,
                                 const char *requester, PGresult **res)
{
    ddsm_audit_row row;
    uint8_t mac[1][DDSM_AUDIT_MAC_LEN];
    char ts_text[40], seq[24], mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    bool sent = false;
    int64_t aud = 0, head = 0;

    memset(&row, 0, sizeof row);
    row.event = "REGISTER";
    row.has_asset = true;
    row.asset = *id;
    row.path = path_text;
    row.has_counter = true;
    row.counter = 0;
    row.state = "INITIALIZED";
    row.ts_us = ddsm_audit_now_us();
    row.requester = requester;
    ddsm_err err = ddsm_audit_chain_seal(st->chain, &row, 1, mac);
    if (err != DDSM_OK)
        return ddsm_pq_fail(&st->pq, err, "audit: cannot seal the REGISTER row");
    ddsm_audit_format_ts(row.ts_us, ts_text);
    snprintf(seq, sizeof seq, "%" PRId64, row.seq);
    ddsm_pq_bytea_hex(mac[0], DDSM_AUDIT_MAC_LEN, mac_text);
    const char *values[] = {id_text, label, key_type, path_text, requester, ts_text,
                            row.instance, seq, mac_text};
    err = ddsm_store_run_params(st, "register asset", register_chained_sql, 9, values, false, res,
                                &sent);
    if (err != DDSM_OK) {
        ddsm_audit_chain_settle(st->chain, 1, mac[0], ddsm_chain_failed_outcome(err, sent));
        return err;
    }
    if (PQntuples(*res) != 1 || !ddsm_pq_get_i64(*res, 0, ASSET_NCOLS, &aud) ||
        !ddsm_pq_get_i64(*res, 0, ASSET_NCOLS + 1, &head) || aud != 1 || head != 1) {
        ddsm_audit_chain_settle(st->chain, 1, mac[0], DDSM_CHAIN_UNKNOWN);
        PQclear(*res);
        *res = NULL;
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: register asset: unexpected answer");
    }
    ddsm_audit_chain_settle(st->chain, 1, mac[0], DDSM_CHAIN_COMMITTED);
    return DDSM_OK;
}

/* The chained form of transition_sql, through the SECURITY DEFINER function of
 * sql/006_roles.sql (which ddsm_admin may call; it sends the NOTIFY). The writer predicts the rows
 * from the state it read ($2 stored state, $3 effective state, $4 counter) and the function applies
 * the event only while that prediction holds (under the row lock); otherwise it changes nothing
 * and answers what it found. $5 the new state (NULL: the event is refused and only the DENY row is
 * written), $6 the counter increment, $7 grace seconds, $8 requester, $9 instance id, $10..$16 the
 * rows (counter, state, ts, event, seq, detail, mac), $17/$18 the checkpoint. */
static const char transition_chained_sql[] =
    "SELECT r.o_stored_state, r.o_state, r.o_counter, r.o_ok, r.o_audit, r.o_head, r.o_notified,"
    "       r.o_rotation, (r.o_asset).*"
    "  FROM ddsm_asset_transition($1::uuid, $2, $3, $4::bigint, $5, $6::bigint,"
    "                             $7::double precision, $8, $9, $10::bigint[], $11::text[],"
    "                             $12::timestamptz[], $13::text[], $14::bigint[], $15::text[],"
    "                             $16::bytea[], $17::bigint, $18::bytea) r";
#define CHAINED_ASSET_COL 8

static const char asset_state_sql[] =
    "SELECT state, ddsm_effective_state(state, grace_until), derivation_counter"
    "  FROM custody_keys WHERE asset_id = $1::uuid";

/* stored state, effective state and counter from columns col.. of row 0. */
static bool read_cur(const PGresult *res, int col, ddsm_state *stored, ddsm_state *eff,
                     int64_t *counter)
{
    return ddsm_state_parse(PQgetvalue(res, 0, col), stored) == DDSM_OK &&
           ddsm_state_parse(PQgetvalue(res, 0, col + 1), eff) == DDSM_OK &&
           ddsm_pq_get_i64(res, 0, col + 2, counter) && *counter >= 0;
}

static ddsm_err transition_chained(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                   int64_t grace_s, const char *requester, ddsm_asset *out)
{
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char deny[96];
    struct grace_params g;
    ddsm_state stored, eff;
    int64_t counter = 0;
    ddsm_err err;

    ddsm_uuid_format(id, id_text);
    err = grace_params(st, ev, grace_s, &g);
    if (err != DDSM_OK)
        return err;
    const char *idv[] = {id_text};
    err = ddsm_store_run_params(st, "read asset", asset_state_sql, 1, idv, true, &res, NULL);
    if (err == DDSM_OK)
        err = require_asset_row(st, res, id_text);
    if (err != DDSM_OK)
        goto out;
    if (!read_cur(res, 0, &stored, &eff, &counter)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset %s has a bad state", id_text);
        goto out;
    }
    PQclear(res);
    res = NULL;

    for (int attempt = 0; attempt < DDSM_OPTIMISTIC_ATTEMPTS; attempt++) {
        ddsm_audit_row rows[2];
        uint8_t macs[2][DDSM_AUDIT_MAC_LEN];
        size_t n = 0;
        ddsm_state next;
        bool allowed = ddsm_state_next(eff, ev, &next) == DDSM_OK;
        int64_t bump = allowed && event_bumps_counter(ev) ? 1 : 0;
        int64_t ts = ddsm_audit_now_us();
        memset(rows, 0, sizeof rows);
        if (allowed && stored == DDSM_STATE_ROTATING && eff == DDSM_STATE_ACTIVE) {
            rows[n].event = "GRACE_END";
            rows[n].counter = counter;
            rows[n].state = "ACTIVE";
            rows[n].detail = "grace window had ended";
            n++;
        }
        if (allowed) {
            rows[n].event = audit_event_name(ev);
            rows[n].counter = counter + bump;
            rows[n].state = ddsm_state_name(next);
            rows[n].detail = g.detail_v;
        } else {
            snprintf(deny, sizeof deny, "%s refused: the asset is %s", ddsm_event_name(ev),
                     ddsm_state_name(eff));
            rows[n].event = "DENY";
            rows[n].counter = counter;
            rows[n].state = ddsm_state_name(eff);
            rows[n].detail = deny;
        }
        n++;
        for (size_t i = 0; i < n; i++) {
            rows[i].has_asset = true;
            rows[i].asset = *id;
            rows[i].has_counter = true;
            rows[i].ts_us = ts;
            rows[i].requester = requester;
        }
        err = ddsm_audit_chain_seal(st->chain, rows, n, macs);
        if (err != DDSM_OK) {
            err = ddsm_pq_fail(&st->pq, err, "audit: cannot seal the %s rows",
                               ddsm_event_name(ev));
            goto out;
        }

        ddsm_textbuf a[7];
        char ts_text[40], mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
        char cnt[24], bumpt[24], head_seq[24], head_mac[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
        memset(a, 0, sizeof a);
        ddsm_audit_format_ts(ts, ts_text);
        for (size_t k = 0; k < 7; k++)
            ddsm_textbuf_putn(&a[k], "{", 1);
        for (size_t i = 0; i < n; i++) {
            ddsm_pq_bytea_hex(macs[i], DDSM_AUDIT_MAC_LEN, mac_text);
            ddsm_textbuf_array_i64(&a[0], i, true, rows[i].counter);
            ddsm_textbuf_array_elem(&a[1], i, rows[i].state);
            ddsm_textbuf_array_elem(&a[2], i, ts_text);
            ddsm_textbuf_array_elem(&a[3], i, rows[i].event);
            ddsm_textbuf_array_i64(&a[4], i, true, rows[i].seq);
            ddsm_textbuf_array_elem(&a[5], i, rows[i].detail);
            ddsm_textbuf_array_elem(&a[6], i, mac_text);
        }
        bool oom = false;
        for (size_t k = 0; k < 7; k++) {
            ddsm_textbuf_putn(&a[k], "}", 1);
            oom = oom || a[k].oom;
        }
        snprintf(cnt, sizeof cnt, "%" PRId64, counter);
        snprintf(bumpt, sizeof bumpt, "%" PRId64, bump);
        snprintf(head_seq, sizeof head_seq, "%" PRId64, rows[n - 1].seq);
        ddsm_pq_bytea_hex(macs[n - 1], DDSM_AUDIT_MAC_LEN, head_mac);
        const char *values[] = {id_text, ddsm_state_name(stored), ddsm_state_name(eff), cnt,
                                allowed ? ddsm_state_name(next) : NULL, bumpt, g.grace_v,
                                requester, rows[0].instance, a[0].p, a[1].p, a[2].p, a[3].p,
                                a[4].p, a[5].p, a[6].p, head_seq, head_mac};
        bool sent = false;
        err = oom ? DDSM_E_NOMEM
                  : ddsm_store_run_params(st, ddsm_event_name(ev), transition_chained_sql, 18,
                                          values, false, &res, &sent);
        for (size_t k = 0; k < 7; k++)
            free(a[k].p);
        if (err != DDSM_OK) {
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1],
                                    ddsm_chain_failed_outcome(err, sent));
            goto out;
        }
        int64_t okn = 0, audn = 0, headn = 0;
        if (PQntuples(res) == 0) {
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_NOT_WRITTEN);
            err = ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", id_text);
            goto out;
        }
        if (!ddsm_pq_get_i64(res, 0, 3, &okn) || !ddsm_pq_get_i64(res, 0, 4, &audn) ||
            !ddsm_pq_get_i64(res, 0, 5, &headn) ||
            (okn == 1 && (audn != (int64_t)n || headn != 1))) {
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_UNKNOWN);
            err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: %s: unexpected answer",
                               ddsm_event_name(ev));
            goto out;
        }
        if (okn == 0) {
            /* The asset moved since we read it: predict again from what the statement saw. */
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_NOT_WRITTEN);
            if (!read_cur(res, 0, &stored, &eff, &counter)) {
                err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset %s has a bad state",
                                   id_text);
                goto out;
            }
            PQclear(res);
            res = NULL;
            continue;
        }
        ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_COMMITTED);
        if (!allowed) {
            if (st->cache != NULL)
                ddsm_asset_cache_put(st->cache, id, true, eff, (uint64_t)counter);
            err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot %s", id_text,
                               ddsm_state_name(eff), ddsm_event_name(ev));
            goto out;
        }
        ddsm_asset a1;
        err = asset_from_row(st, res, 0, CHAINED_ASSET_COL, &a1);
        if (err != DDSM_OK)
            goto out;
        if (st->cache != NULL)
            ddsm_asset_cache_put(st->cache, id, true, a1.state, a1.counter);
        if (!PQgetisnull(res, 0, 7))
            rotation_committed(st, PQgetvalue(res, 0, 7));
        if (out != NULL)
            *out = a1;
        goto out;
    }
    err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: %s: asset %s changed %d times while its "
                       "audit rows were being written; try again", ddsm_event_name(ev), id_text,
                       DDSM_OPTIMISTIC_ATTEMPTS);
out:
    PQclear(res);
    return err;
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
