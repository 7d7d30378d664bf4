/* The PostgreSQL store: migrations, the asset registry, lifecycle transitions and the derivation
 * bookkeeping. Every statement is parameterised; each operation is one statement (one round trip)
 * except migrations. Connection handling and error translation live in store_pq.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/path.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "store_pq.h"

struct ddsm_store {
    struct ddsm_pq pq;
    uint64_t derive_prepared_gen; /* pq.generation the derive statement was prepared on */
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
    "THEN (extract(epoch FROM " t ".grace_until) * 1000000)::bigint ELSE 0 END"
#define ASSET_NCOLS 9

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
    "), note AS ("
    " SELECT pg_notify($9, upd.asset_id::text || ' ' || upd.derivation_counter || ' ' ||"
    "                      ddsm_effective_state(upd.state, upd.grace_until))"
    "   FROM upd"
    ")"
    " SELECT cur.state, (SELECT count(*) FROM note), " ASSET_COLS("upd")
    "   FROM cur LEFT JOIN upd ON true";

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
    free(st);
}

const char *ddsm_store_errmsg(const ddsm_store *st)
{
    if (st == NULL)
        return "store: not open";
    return st->pq.errmsg[0] != '\0' ? st->pq.errmsg : "no error";
}

static ddsm_err prepare_derive(ddsm_store *st)
{
    if (st->derive_prepared_gen == st->pq.generation)
        return DDSM_OK;
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PREPARE,
        .what = "prepare derive",
        .name = DERIVE_STMT,
        .sql = ddsm_store_derive_sql,
        .nparams = 4,
    };
    PGresult *res = NULL;
    ddsm_err err = ddsm_pq_exec(&st->pq, &q, &res, NULL);
    PQclear(res);
    if (err == DDSM_OK)
        st->derive_prepared_gen = st->pq.generation;
    return err;
}

/* Run q on a live connection. A failure on a connection that was already open may only mean the
 * server went away in between: retry once on a new connection when that is safe, i.e. the
 * statement is a read, or it provably never reached the server. */
static ddsm_err run(ddsm_store *st, const struct ddsm_pq_query *q, bool idempotent,
                    PGresult **res)
{
    bool fresh = false, sent = false;
    ddsm_err err = ddsm_pq_ensure(&st->pq, &fresh);
    if (err != DDSM_OK)
        return err;
    for (int attempt = 0;; attempt++) {
        if (q->mode == DDSM_PQ_PREPARED)
            err = prepare_derive(st);
        if (err == DDSM_OK)
            err = ddsm_pq_exec(&st->pq, q, res, &sent);
        if (err != DDSM_E_STORE_DOWN || fresh || attempt > 0 || (!idempotent && sent))
            return err;
        ddsm_log(DDSM_LOG_INFO, "store: %s: connection lost; retrying on a new connection",
                 q->what);
        err = ddsm_pq_ensure(&st->pq, NULL);
        if (err != DDSM_OK)
            return err;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Rows */

static bool parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* Read the ASSET_COLS starting at column col. */
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
        !parse_i64(PQgetvalue(res, row, col + 4), &counter) || counter < 0 ||
        ddsm_state_parse(PQgetvalue(res, row, col + 5), &a.state) != DDSM_OK ||
        !parse_i64(PQgetvalue(res, row, col + 6), &a.created_us) ||
        !parse_i64(PQgetvalue(res, row, col + 7), &a.updated_us) ||
        !parse_i64(PQgetvalue(res, row, col + 8), &a.grace_until_us))
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset row %s does not fit (label "
                            "%.40s...): was it written by hand?", id,
                            PQgetvalue(res, row, col + 1));
    a.counter = (uint64_t)counter;
    *out = a;
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Migrations */

static ddsm_err simple(ddsm_store *st, const char *what, const char *sql, int nparams,
                       const char *const *values, int timeout_ms, PGresult **res)
{
    const struct ddsm_pq_query q = {
        .mode = nparams > 0 ? DDSM_PQ_PARAMS : DDSM_PQ_SCRIPT,
        .what = what,
        .sql = sql,
        .nparams = nparams,
        .values = values,
        .timeout_ms = timeout_ms,
    };
    PGresult *r = NULL;
    ddsm_err err = ddsm_pq_exec(&st->pq, &q, &r, NULL);
    if (res != NULL && err == DDSM_OK)
        *res = r;
    else
        PQclear(r);
    return err;
}

/* Apply migration m unless it is recorded; *did tells whether it ran. One transaction holds the
 * advisory lock, the check, the script and its row in ddsm_schema_migrations. */
static ddsm_err migrate_one(ddsm_store *st, const struct ddsm_migration *m, bool *did)
{
    PGresult *res = NULL;
    bool applied = false;
    const char *lock_key[] = {MIGRATION_LOCK_KEY};
    const char *name[] = {m->name};
    const char *local_timeout[] = {MIGRATION_TIMEOUT_TEXT};
    char what[96];
    snprintf(what, sizeof what, "migration %s", m->name);

    ddsm_err err = simple(st, "begin migration", "BEGIN", 0, NULL, 0, NULL);
    if (err != DDSM_OK)
        goto out;
    err = simple(st, "migration lock", "SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)", 1,
                 lock_key, MIGRATION_TIMEOUT_MS, NULL);
    if (err != DDSM_OK)
        goto out;
    err = simple(st, "migration timeout",
                 "SELECT pg_catalog.set_config('statement_timeout', $1, true)", 1, local_timeout,
                 0, NULL);
    if (err != DDSM_OK)
        goto out;
    /* The bookkeeping table is created by the first migration itself. */
    err = simple(st, "migration check",
                 "SELECT pg_catalog.to_regclass('ddsm_schema_migrations') IS NOT NULL", 0, NULL, 0,
                 &res);
    if (err != DDSM_OK)
        goto out;
    bool have_table = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    res = NULL;
    if (have_table) {
        err = simple(st, "migration check",
                     "SELECT 1 FROM ddsm_schema_migrations WHERE name = $1", 1, name, 0, &res);
        if (err != DDSM_OK)
            goto out;
        applied = PQntuples(res) > 0;
        PQclear(res);
        res = NULL;
    }
    if (applied) {
        err = simple(st, "end migration", "ROLLBACK", 0, NULL, 0, NULL);
        goto out;
    }
    err = simple(st, what, m->sql, 0, NULL, MIGRATION_TIMEOUT_MS, NULL);
    if (err != DDSM_OK)
        goto out;
    if (st->pq.conn == NULL || PQtransactionStatus(st->pq.conn) != PQTRANS_INTRANS) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE,
                           "store: migration %s ended its transaction itself (it must not "
                           "contain BEGIN/COMMIT)", m->name);
        goto out;
    }
    err = simple(st, what, "INSERT INTO ddsm_schema_migrations (name) VALUES ($1)", 1, name, 0,
                 NULL);
    if (err != DDSM_OK)
        goto out;
    err = simple(st, what, "COMMIT", 0, NULL, MIGRATION_TIMEOUT_MS, NULL);
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
        if (simple(st, "rollback migration", "ROLLBACK", 0, NULL, 0, NULL) != DDSM_OK)
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

static ddsm_err check_key_type(ddsm_store *st, const char *key_type)
{
    static const char *const known[] = {"hmac", "aes"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(key_type, known[i]) == 0)
            return DDSM_OK;
    return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "unknown key type \"%.32s\" (known: hmac, aes)",
                        key_type);
}

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
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = "register asset",
        .sql = register_sql,
        .nparams = 5,
        .values = values,
    };
    err = run(st, &q, false, &res);
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
    ddsm_asset a;
    err = asset_from_row(st, res, 0, 0, &a);
    if (err == DDSM_OK && out != NULL)
        *out = a;
out:
    PQclear(res);
    return err;
}

static ddsm_err get_one(ddsm_store *st, const char *sql, const char *key, const char *shown,
                        ddsm_asset *out)
{
    PGresult *res = NULL;
    const char *values[] = {key};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = "look up asset",
        .sql = sql,
        .nparams = 1,
        .values = values,
    };
    ddsm_err err = run(st, &q, true, &res);
    if (err != DDSM_OK)
        goto out;
    if (PQntuples(res) == 0) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", shown);
        goto out;
    }
    ddsm_asset a;
    err = asset_from_row(st, res, 0, 0, &a);
    if (err == DDSM_OK && out != NULL)
        *out = a;
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
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = "list assets",
        .sql = list_sql,
    };
    ddsm_err err = run(st, &q, true, &res);
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

ddsm_err ddsm_store_asset_transition(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                     int64_t grace_s, const char *requester, ddsm_asset *out)
{
    if (st == NULL || id == NULL || (unsigned)ev >= DDSM_EV__COUNT)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char from[128], to[128], grace[24], detail[64];
    const char *grace_param = NULL, *detail_param = NULL;
    ddsm_err err;

    ddsm_uuid_format(id, id_text);
    if (ev == DDSM_EV_ROTATE_GRACE) {
        if (grace_s <= 0 || grace_s > GRACE_MAX_S) {
            err = ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "grace period of %" PRId64 " s is out of "
                               "range (1 s to %lld s)", grace_s, GRACE_MAX_S);
            goto out;
        }
        snprintf(grace, sizeof grace, "%" PRId64, grace_s);
        snprintf(detail, sizeof detail, "grace %" PRId64 " s", grace_s);
        grace_param = grace;
        detail_param = detail;
    }
    transition_rules(ev, from, to);

    const char *values[] = {id_text, audit_event_name(ev), from, to,
                            event_bumps_counter(ev) ? "1" : "0", grace_param, requester,
                            detail_param, DDSM_NOTIFY_CHANNEL};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = ddsm_event_name(ev),
        .sql = transition_sql,
        .nparams = 9,
        .values = values,
    };
    err = run(st, &q, false, &res);
    if (err != DDSM_OK)
        goto out;
    if (PQntuples(res) == 0) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", id_text);
        goto out;
    }
    if (PQgetisnull(res, 0, 2)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot %s", id_text,
                           PQgetvalue(res, 0, 0), ddsm_event_name(ev));
        goto out;
    }
    ddsm_asset a;
    err = asset_from_row(st, res, 0, 2, &a);
    if (err == DDSM_OK && out != NULL)
        *out = a;
out:
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Derivation */

ddsm_err ddsm_store_derive(ddsm_store *st, const ddsm_derive_req *req, uint64_t *counter,
                           ddsm_state *state)
{
    if (st == NULL || req == NULL || req->path == NULL || counter == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    ddsm_path path;
    char canonical[DDSM_PATH_TEXT_MAX];
    ddsm_state s;
    int64_t c = 0;
    ddsm_err err;

    /* The audit log names paths in one form only. */
    size_t plen = strlen(req->path);
    const char *why = NULL;
    if (ddsm_path_parse(req->path, plen, &path, &why) != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_PATH, "path \"%.64s\": %s", req->path,
                           why != NULL ? why : "malformed");
        goto out;
    }
    ddsm_path_format(&path, canonical);
    if (strcmp(canonical, req->path) != 0) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_PATH, "path \"%.64s\" is not canonical (\"%s\")",
                           req->path, canonical);
        goto out;
    }
    ddsm_uuid_format(&req->asset, id_text);

    const char *values[] = {id_text, req->path, req->requester, req->instance};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PREPARED,
        .what = "derive",
        .name = DERIVE_STMT,
        .nparams = 4,
        .values = values,
    };
    /* Not idempotent: retried only when it provably never reached the server. */
    err = run(st, &q, false, &res);
    if (err != DDSM_OK)
        goto out;
    if (PQntuples(res) == 0) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", id_text);
        goto out;
    }
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
    if (!parse_i64(PQgetvalue(res, 0, 1), &c) || c < 0) {
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
