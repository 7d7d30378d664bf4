/* SPDX-License-Identifier: Apache-2.0 */
/* The store's libpq layer: lazy (re)connect, bounded waits, and the one place where libpq and
 * PostgreSQL errors become ddsm_err. Never logs or echoes the conninfo (it may hold a password). */
#include "store_pq.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddsm/log.h"
#include "ddsm/secmem.h"

#define DEFAULT_CONNECT_TIMEOUT_S 5
#define DEFAULT_STATEMENT_TIMEOUT_MS 5000
/* The server's statement_timeout should fire first (a clean error, transaction rolled back); the
 * client gives up this much later, when the server itself no longer answers. */
#define CLIENT_MARGIN_MS 2000

/* Stores opened behind a transaction pooler (ddsm_store_set_transaction_pooler). */
static atomic_bool g_pooled;

void ddsm_store_set_transaction_pooler(bool on)
{
    atomic_store(&g_pooled, on);
}

/* Connections established again after a loss, process-wide (ddsm_store_reconnects). */
static _Atomic uint64_t g_reconnects;

uint64_t ddsm_store_reconnects(void)
{
    return g_reconnects;
}

int64_t ddsm_pq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy src into the message buffer as one line: newlines and tabs become spaces, runs of
 * spaces collapse, trailing spaces go. */
static void one_line(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    bool space = false;
    for (const char *p = src; *p != '\0' && n + 1 < cap; p++) {
        char c = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        if (c == ' ') {
            if (space || n == 0)
                continue;
            space = true;
        } else {
            space = false;
        }
        dst[n++] = c;
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

ddsm_err ddsm_pq_fail(struct ddsm_pq *pq, ddsm_err err, const char *fmt, ...)
{
    char buf[DDSM_PQ_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    one_line(pq->errmsg, sizeof pq->errmsg, buf);
    return err;
}

ddsm_err ddsm_pq_init(struct ddsm_pq *pq, const char *conninfo, const ddsm_store_opts *opts)
{
    memset(pq, 0, sizeof *pq);
    if (conninfo == NULL)
        return DDSM_E_ARG;
    /* Validate the syntax now, so a typo is a configuration error and not "store down" forever.
     * libpq's message may quote a fragment of the string (a password, say): do not repeat it. */
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(conninfo, &perr);
    if (parsed == NULL) {
        PQfreemem(perr);
        ddsm_log(DDSM_LOG_ERROR, "store: the conninfo is not a valid libpq connection string");
        return DDSM_E_INPUT;
    }
    PQconninfoFree(parsed);

    pq->conninfo = strdup(conninfo);
    if (pq->conninfo == NULL)
        return DDSM_E_NOMEM;
    pq->connect_timeout_s = DEFAULT_CONNECT_TIMEOUT_S;
    pq->statement_timeout_ms = DEFAULT_STATEMENT_TIMEOUT_MS;
    pq->pooled = atomic_load(&g_pooled);
    snprintf(pq->application_name, sizeof pq->application_name, "%s", "ddsm");
    if (opts != NULL) {
        if (opts->connect_timeout_s != 0)
            pq->connect_timeout_s = opts->connect_timeout_s;
        if (opts->statement_timeout_ms != 0)
            pq->statement_timeout_ms = opts->statement_timeout_ms;
        pq->role = opts->role;
        if (opts->application_name != NULL)
            snprintf(pq->application_name, sizeof pq->application_name, "%s",
                     opts->application_name);
    }
    return DDSM_OK;
}

void ddsm_pq_reset(struct ddsm_pq *pq)
{
    if (pq->conn != NULL) {
        PQfinish(pq->conn);
        pq->conn = NULL;
    }
}

void ddsm_pq_fini(struct ddsm_pq *pq)
{
    if (pq == NULL)
        return;
    ddsm_pq_reset(pq);
    if (pq->conninfo != NULL) {
        /* It may hold a password. */
        ddsm_wipe(pq->conninfo, strlen(pq->conninfo));
        free(pq->conninfo);
        pq->conninfo = NULL;
    }
}

/* Whether SQLSTATE says the session or the server is gone (reconnecting may help). */
static bool sqlstate_is_connection(const char *s)
{
    return strncmp(s, "08", 2) == 0       /* connection exception */
           || strcmp(s, "57P01") == 0     /* admin shutdown */
           || strcmp(s, "57P02") == 0     /* crash shutdown */
           || strcmp(s, "57P03") == 0     /* cannot connect now (starting up) */
           || strcmp(s, "53300") == 0;    /* too many connections */
}

ddsm_err ddsm_pq_error(struct ddsm_pq *pq, const char *what, const PGresult *res)
{
    bool conn_bad = pq->conn == NULL || PQstatus(pq->conn) != CONNECTION_OK;
    const char *libpq_msg = pq->conn != NULL ? PQerrorMessage(pq->conn) : "not connected";
    ddsm_err err;

    pq->constraint[0] = '\0';
    if (res == NULL) {
        ddsm_pq_fail(pq, DDSM_E_STORE_DOWN, "store unavailable: %s: %s", what,
                     conn_bad ? libpq_msg : "no result (out of memory or connection lost)");
        ddsm_pq_reset(pq);
        return DDSM_E_STORE_DOWN;
    }
    ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return DDSM_OK;

    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    if (constraint != NULL)
        snprintf(pq->constraint, sizeof pq->constraint, "%s", constraint);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (primary == NULL)
        primary = PQresultErrorMessage(res);
    if (state == NULL) {
        /* Generated by libpq itself: the connection broke, or a protocol problem. */
        if (conn_bad) {
            ddsm_pq_fail(pq, DDSM_E_STORE_DOWN, "store unavailable: %s: %s", what, primary);
            ddsm_pq_reset(pq);
            return DDSM_E_STORE_DOWN;
        }
        return ddsm_pq_fail(pq, DDSM_E_STORE, "store: %s: %s", what, primary);
    }

    if (sqlstate_is_connection(state) || conn_bad)
        err = DDSM_E_STORE_DOWN;
    else if (strcmp(state, "23505") == 0) /* unique_violation */
        err = DDSM_E_EXISTS;
    else if (strncmp(state, "ZD", 2) == 0) /* our lifecycle guard (sql/001_init.sql) */
        err = DDSM_E_STATE;
    else if (strcmp(state, "22P02") == 0    /* invalid_text_representation (bad uuid...) */
             || strcmp(state, "23514") == 0 /* check_violation */
             || strcmp(state, "23502") == 0 /* not_null_violation */
             || strcmp(state, "22001") == 0 /* string_data_right_truncation */
             || strcmp(state, "22003") == 0 /* numeric_value_out_of_range */
             || strcmp(state, "22021") == 0 /* character_not_in_repertoire */
             || strcmp(state, "22008") == 0 /* datetime_field_overflow */
             || strcmp(state, "22007") == 0) /* invalid_datetime_format */
        err = DDSM_E_INPUT;
    else if (strcmp(state, "42501") == 0) /* insufficient_privilege */
        err = DDSM_E_PRIVILEGE;
    else if (strcmp(state, "57014") == 0    /* query_canceled: statement_timeout */
             || strcmp(state, "55P03") == 0) /* lock_not_available */
        err = DDSM_E_TIMEOUT;
    else
        err = DDSM_E_STORE;

    if (err == DDSM_E_STORE_DOWN) {
        ddsm_pq_fail(pq, err, "store unavailable: %s: %s (SQLSTATE %s)", what, primary, state);
        ddsm_pq_reset(pq);
    } else if (err == DDSM_E_PRIVILEGE) {
        ddsm_pq_fail(pq, err, "store: %s: role \"%s\" lacks a privilege: %s (SQLSTATE %s; see "
                     "\"Database roles\" in docs/audit.md)", what,
                     pq->conn != NULL ? PQuser(pq->conn) : "?", primary, state);
    } else if (strcmp(state, "42P01") == 0 || strcmp(state, "42883") == 0) {
        ddsm_pq_fail(pq, err, "store: %s: %s (SQLSTATE %s; is the schema migrated? run "
                     "`ddsmctl db migrate`)", what, primary, state);
    } else {
        ddsm_pq_fail(pq, err, "store: %s: %s (SQLSTATE %s)", what, primary, state);
    }
    return err;
}

/* Wait until the socket is ready for `events` or the deadline passes. 1 ready, 0 timeout,
 * -1 error. */
static int wait_socket(PGconn *conn, short events, int64_t deadline_ms)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -1;
    for (;;) {
        int64_t left = deadline_ms - ddsm_pq_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n > 0)
            return 1;
    }
}

/* A connection the server has closed (shutdown, restart, terminated backend) has something to
 * read while we are idle: the FATAL message and the end of stream. Noticing it here, without a
 * round trip, means the next statement goes to a new connection instead of failing. */
static bool conn_still_usable(struct ddsm_pq *pq)
{
    PGconn *conn = pq->conn;
    if (pq->ended)
        return false;
    if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
        return false;
    int fd = PQsocket(conn);
    if (fd < 0)
        return false;
    /* Read until nothing more is pending: the end of stream usually follows the FATAL message,
     * and only a read that hits it tells libpq the link is gone. Bounded: a server pushing
     * notices without end is not worth more than a few syscalls here. */
    for (int i = 0; i < 8; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        int n;
        do {
            n = poll(&p, 1, 0);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            break;
        if (n < 0 || !PQconsumeInput(conn))
            return false;
        /* Drop whatever was queued while idle. */
        while (!PQisBusy(conn)) {
            PGresult *r = PQgetResult(conn);
            if (r == NULL)
                break;
            PQclear(r);
        }
        /* A FATAL that arrived while we were idle (libpq hands it to the notice receiver) is the
         * server ending this session: unusable even before the end of stream that follows it. */
        if (pq->ended || PQstatus(conn) != CONNECTION_OK)
            return false;
    }
    return PQstatus(conn) == CONNECTION_OK;
}

/* Server notices (and a FATAL that arrives while idle) go to our log, not raw to stderr; a FATAL
 * or PANIC marks the session as ended by the server; a WARNING is counted, and ddsm_pq_exec
 * refuses to call a statement that drew one a success. */
static void notice_received(void *arg, const PGresult *res)
{
    struct ddsm_pq *pq = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
        pq->ended = true;
    char line[DDSM_PQ_ERRMSG_MAX];
    one_line(line, sizeof line, PQresultErrorMessage(res));
    if (sev != NULL && strcmp(sev, "WARNING") == 0) {
        pq->warnings++;
        memcpy(pq->warning, line, sizeof pq->warning);
    }
    ddsm_log(DDSM_LOG_INFO, "store: server says: %s", line);
}

/* One privilege a kind of connection needs: kind "table", "sequence" or "function". */
struct needed {
    const char *kind, *object, *privilege;
};

static const struct needed module_needs[] = {
    {"table", "custody_keys", "SELECT"},
    {"table", "custody_zones", "SELECT"},
    {"table", "custody_audit_log", "INSERT"},
    {"sequence", "custody_audit_log_id_seq", "USAGE"},
    {"table", "custody_audit_chain_heads", "SELECT"},
    {"table", "custody_audit_chain_heads", "INSERT"},
    {"table", "custody_audit_chain_heads", "UPDATE"},
    {"function", "ddsm_effective_state", "EXECUTE"},
    {"function", "ddsm_rate_lease", "EXECUTE"},
};
static const struct needed admin_needs[] = {
    {"table", "custody_keys", "SELECT"},
    {"table", "custody_zones", "SELECT"},
    {"function", "ddsm_effective_state", "EXECUTE"},
    {"function", "ddsm_asset_register", "EXECUTE"},
    {"function", "ddsm_asset_transition", "EXECUTE"},
    {"function", "ddsm_rotation_committed", "EXECUTE"},
    {"function", "ddsm_zone_set", "EXECUTE"},
    {"function", "ddsm_zone_assign", "EXECUTE"},
};
static const struct needed auditor_needs[] = {
    {"table", "custody_keys", "SELECT"},
    {"table", "custody_zones", "SELECT"},
    {"table", "custody_rotations", "SELECT"},
    {"table", "custody_audit_log", "SELECT"},
    {"table", "custody_audit_log_default", "SELECT"},
    {"table", "custody_audit_chain_heads", "SELECT"},
    {"table", "custody_audit_meta", "SELECT"},
    {"function", "ddsm_effective_state", "EXECUTE"},
};

/* The first of the listed privileges ($1 kinds, $2 objects, $3 privileges, in order) that the
 * session user lacks, and whether its object exists (as the user's search_path sees it). */
static const char missing_privilege_sql[] =
    "SELECT o.kind, o.object, o.privilege, o.oid IS NOT NULL"
    "  FROM (SELECT n.*, CASE n.kind WHEN 'function' THEN pg_catalog.to_regproc(n.object)::oid"
    "                    ELSE pg_catalog.to_regclass(n.object)::oid END AS oid"
    "          FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY"
    "               AS n(kind, object, privilege, ord)) o"
    " WHERE o.oid IS NULL OR NOT CASE o.kind"
    "         WHEN 'table' THEN pg_catalog.has_table_privilege(o.oid, o.privilege)"
    "         WHEN 'sequence' THEN pg_catalog.has_sequence_privilege(o.oid, o.privilege)"
    "         ELSE pg_catalog.has_function_privilege(o.oid, o.privilege) END"
    " ORDER BY o.ord LIMIT 1";

/* DDSM_E_PRIVILEGE unless the session user holds every privilege pq->role needs. */
static ddsm_err check_privileges(struct ddsm_pq *pq)
{
    static const char *const group[] = {[DDSM_ROLE_MODULE] = "ddsm_module",
                                        [DDSM_ROLE_ADMIN] = "ddsm_admin",
                                        [DDSM_ROLE_AUDITOR] = "ddsm_auditor"};
    const struct needed *list = NULL;
    size_t n = 0;
    switch (pq->role) {
    case DDSM_ROLE_ANY:
        return DDSM_OK;
    case DDSM_ROLE_MODULE:
        list = module_needs;
        n = sizeof module_needs / sizeof module_needs[0];
        break;
    case DDSM_ROLE_ADMIN:
        list = admin_needs;
        n = sizeof admin_needs / sizeof admin_needs[0];
        break;
    case DDSM_ROLE_AUDITOR:
        list = auditor_needs;
        n = sizeof auditor_needs / sizeof auditor_needs[0];
        break;
    }
    if (list == NULL)
        return ddsm_pq_fail(pq, DDSM_E_ARG, "store: unknown connection role %d", (int)pq->role);
    /* Array literals of our own identifiers (no quoting needed). */
    char arr[3][512];
    size_t len[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++)
        arr[k][len[k]++] = '{';
    for (size_t i = 0; i < n; i++) {
        const char *v[3] = {list[i].kind, list[i].object, list[i].privilege};
        for (int k = 0; k < 3; k++)
            len[k] += (size_t)snprintf(arr[k] + len[k], sizeof arr[k] - len[k], "%s%s",
                                       i > 0 ? "," : "", v[k]);
    }
    for (int k = 0; k < 3; k++)
        snprintf(arr[k] + len[k], sizeof arr[k] - len[k], "}");
    const char *values[] = {arr[0], arr[1], arr[2]};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = "check privileges",
        .sql = missing_privilege_sql,
        .nparams = 3,
        .values = values,
    };
    PGresult *res = NULL;
    ddsm_err err = ddsm_pq_exec(pq, &q, &res, NULL);
    if (err != DDSM_OK)
        goto out;
    if (PQntuples(res) == 0)
        goto out;
    const char *user = PQuser(pq->conn);
    if (strcmp(PQgetvalue(res, 0, 3), "t") == 0)
        err = ddsm_pq_fail(pq, DDSM_E_PRIVILEGE,
                           "store: role \"%s\" lacks %s on %s %s (grant it the role %s; see "
                           "\"Database roles\" in docs/audit.md)",
                           user, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0),
                           PQgetvalue(res, 0, 1), group[pq->role]);
    else
        err = ddsm_pq_fail(pq, DDSM_E_PRIVILEGE,
                           "store: role \"%s\" cannot see %s %s, which it needs %s on (is the "
                           "schema migrated, and does the role have USAGE on it? grant it the "
                           "role %s)",
                           user, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                           PQgetvalue(res, 0, 2), group[pq->role]);
out:
    PQclear(res);
    return err;
}

/* DDSM_E_DURABILITY unless this session's commits wait for their WAL flush (ddsm_store_opts):
 * res's column col holds the session's synchronous_commit as the server reports it. */
static ddsm_err check_durability(struct ddsm_pq *pq, const PGresult *res, int col)
{
    ddsm_err err = DDSM_OK;
    const char *v = PQntuples(res) == 1 && PQnfields(res) > col ? PQgetvalue(res, 0, col) : "?";
    if (strcmp(v, "on") != 0 && strcmp(v, "remote_apply") != 0)
        err = ddsm_pq_fail(pq, DDSM_E_DURABILITY,
                           "store: synchronous_commit is \"%s\" on this session of role \"%s\", "
                           "and audit rows must be durable before a key is used; %s", v,
                           PQuser(pq->conn),
                           pq->pooled ? "behind a transaction pooler set it on the role: "
                                        "ALTER ROLE ... SET synchronous_commit = on"
                                      : "setting it to \"on\" did not take effect");
    return err;
}

static ddsm_err set_session(struct ddsm_pq *pq)
{
    ddsm_err err = DDSM_OK;
    PGresult *res = NULL;
    /* Behind a transaction pooler a session setting would stay on whichever server connection ran
     * it, for whichever client gets that connection next, and our next transaction may run on
     * another: none is made. The client-side bound of ddsm_pq_exec still holds; the server-side
     * statement_timeout and synchronous_commit come from the role or database (ALTER ROLE ...
     * SET), and check_durability refuses a pooled session whose default is weaker than "on". */
    char ms[24];
    snprintf(ms, sizeof ms, "%u", pq->statement_timeout_ms);
    const char *values[] = {ms};
    /* One round trip. set_config answers the value now in force, which is what is checked;
     * "remote_apply" is stronger than "on" (the standby has applied the commit) and is kept. */
    const struct ddsm_pq_query set = {
        .mode = DDSM_PQ_PARAMS,
        .what = "set statement_timeout and synchronous_commit",
        .sql = "SELECT pg_catalog.set_config('statement_timeout', $1, false),"
               " pg_catalog.set_config('synchronous_commit', CASE"
               "   WHEN pg_catalog.current_setting('synchronous_commit') = 'remote_apply'"
               "   THEN 'remote_apply' ELSE 'on' END, false)",
        .nparams = 1,
        .values = values,
    };
    const struct ddsm_pq_query show = {
        .mode = DDSM_PQ_PARAMS,
        .what = "read synchronous_commit",
        .sql = "SELECT NULL, pg_catalog.current_setting('synchronous_commit')",
    };
    err = ddsm_pq_exec(pq, pq->pooled ? &show : &set, &res, NULL);
    if (err == DDSM_OK)
        err = check_durability(pq, res, 1);
    PQclear(res);
    res = NULL;
    if (err == DDSM_OK)
        err = check_privileges(pq);
    if (err != DDSM_OK || pq->pooled || !pq->generic_plans)
        return err;
    /* Planning the group-commit statement costs more than running it, and its plan is the same
     * whatever the arrays hold: a primary-key probe per row (tests/integration/test_perf_batch.c
     * checks it with EXPLAIN). */
    const struct ddsm_pq_query g = {
        .mode = DDSM_PQ_SCRIPT,
        .what = "set plan_cache_mode",
        .sql = "SET plan_cache_mode = force_generic_plan",
    };
    err = ddsm_pq_exec(pq, &g, &res, NULL);
    PQclear(res);
    return err;
}

ddsm_err ddsm_pq_ensure(struct ddsm_pq *pq, bool *fresh)
{
    if (fresh != NULL)
        *fresh = false;
    if (pq->conn != NULL) {
        if (conn_still_usable(pq))
            return DDSM_OK;
        ddsm_log(DDSM_LOG_INFO, "store: connection lost; reconnecting");
        ddsm_pq_reset(pq);
    }

    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", pq->connect_timeout_s);
    /* Entries before "dbname" are defaults the conninfo may override (libpq processes the array
     * in order and the expanded conninfo replaces earlier values): the operator's explicit
     * choice in the conninfo wins. Keepalives detect a dead peer on idle TCP links (LISTEN). */
    const char *const keys[] = {"connect_timeout", "application_name", "keepalives",
                                "keepalives_idle", "keepalives_interval", "keepalives_count",
                                "dbname", NULL};
    const char *const vals[] = {timeout, pq->application_name, "1", "30", "10", "3",
                                pq->conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL)
        return ddsm_pq_fail(pq, DDSM_E_NOMEM, "store: out of memory while connecting");
    if (PQstatus(conn) != CONNECTION_OK) {
        ddsm_pq_fail(pq, DDSM_E_STORE_DOWN, "store unavailable: cannot connect: %s",
                     PQerrorMessage(conn));
        PQfinish(conn);
        return DDSM_E_STORE_DOWN;
    }
    pq->ended = false;
    PQsetNoticeReceiver(conn, notice_received, pq);
    pq->conn = conn;
    ddsm_err err = set_session(pq);
    if (err != DDSM_OK) {
        /* The module's callers see only CKR_DEVICE_ERROR and a detail code: the log is where its
         * operator learns which role lacks which privilege (ddsmctl prints the message itself). */
        if (pq->role == DDSM_ROLE_MODULE && (err == DDSM_E_PRIVILEGE || err == DDSM_E_DURABILITY))
            ddsm_log(DDSM_LOG_ERROR, "%s", pq->errmsg);
        ddsm_pq_reset(pq);
        /* A missing privilege or durability is the configuration's, not a passing failure. */
        return err == DDSM_E_STORE_DOWN || err == DDSM_E_PRIVILEGE || err == DDSM_E_DURABILITY
                   ? err
                   : DDSM_E_STORE;
    }
    if (pq->generation++ > 0)
        g_reconnects++;
    if (fresh != NULL)
        *fresh = true;
    return DDSM_OK;
}

static int send_query(PGconn *conn, const struct ddsm_pq_query *q)
{
    switch (q->mode) {
    case DDSM_PQ_PARAMS:
        return PQsendQueryParams(conn, q->sql, q->nparams, NULL, q->values, NULL, NULL, 0);
    case DDSM_PQ_PREPARED:
        return PQsendQueryPrepared(conn, q->name, q->nparams, q->values, NULL, NULL, 0);
    case DDSM_PQ_PREPARE:
        return PQsendPrepare(conn, q->name, q->sql, q->nparams, NULL);
    case DDSM_PQ_SCRIPT:
        return PQsendQuery(conn, q->sql);
    }
    return 0;
}

ddsm_err ddsm_pq_exec(struct ddsm_pq *pq, const struct ddsm_pq_query *q, PGresult **out,
                      bool *sent)
{
    PGresult *keep = NULL;
    ddsm_err err;

    if (sent != NULL)
        *sent = false;
    if (pq->conn == NULL)
        return ddsm_pq_fail(pq, DDSM_E_STORE_DOWN, "store unavailable: %s: not connected",
                            q->what);
    int timeout_ms = q->timeout_ms > 0 ? q->timeout_ms
                                       : (int)pq->statement_timeout_ms + CLIENT_MARGIN_MS;
    int64_t deadline = ddsm_pq_now_ms() + timeout_ms;
    const unsigned warnings_before = pq->warnings;

    if (!send_query(pq->conn, q)) {
        /* Nothing (complete) reached a live server: a peer that can no longer read cannot
         * execute, and a statement without its Sync message never commits. */
        err = ddsm_pq_error(pq, q->what, NULL);
        goto out;
    }
    if (sent != NULL)
        *sent = true;

    /* Read every result up to ReadyForQuery: only then has an implicit transaction committed.
     * Keep the first error (later ones are consequences) or else the last result. */
    for (;;) {
        while (PQisBusy(pq->conn)) {
            int w = wait_socket(pq->conn, POLLIN, deadline);
            if (w == 0) {
                err = ddsm_pq_fail(pq, DDSM_E_STORE_DOWN,
                                   "store unavailable: %s: no answer within %d ms", q->what,
                                   timeout_ms);
                ddsm_pq_reset(pq);
                goto out;
            }
            if (w < 0 || !PQconsumeInput(pq->conn)) {
                err = ddsm_pq_error(pq, q->what, NULL);
                goto out;
            }
        }
        PGresult *r = PQgetResult(pq->conn);
        if (r == NULL)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* We never use COPY; a script that does would wait for data forever. */
            PQclear(r);
            err = ddsm_pq_fail(pq, DDSM_E_STORE, "store: %s: COPY is not supported here",
                               q->what);
            ddsm_pq_reset(pq);
            goto out;
        }
        bool r_failed = st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
        bool keep_failed = keep != NULL && PQresultStatus(keep) != PGRES_COMMAND_OK &&
                           PQresultStatus(keep) != PGRES_TUPLES_OK;
        if (keep == NULL || (r_failed && !keep_failed) || (!r_failed && !keep_failed)) {
            PQclear(keep);
            keep = r;
        } else {
            PQclear(r);
        }
        if (PQstatus(pq->conn) != CONNECTION_OK)
            break;
    }
    if (PQstatus(pq->conn) != CONNECTION_OK) {
        /* The link died before ReadyForQuery: whatever the results said, the outcome is unknown.
         * A server error that came with it (57P01...) makes the better message. */
        bool server_error = keep != NULL && PQresultStatus(keep) == PGRES_FATAL_ERROR &&
                            PQresultErrorField(keep, PG_DIAG_SQLSTATE) != NULL;
        err = ddsm_pq_error(pq, q->what, server_error ? keep : NULL);
        goto out;
    }
    err = ddsm_pq_error(pq, q->what, keep);
    if (err == DDSM_OK && pq->warnings != warnings_before) {
        /* Allowlist: only a statement that ended without a warning succeeded. The one that
         * matters is PostgreSQL's "canceling wait for synchronous replication" (someone cancelled
         * this backend while its commit waited for the standby): the transaction has committed
         * here but perhaps not on the standby, so a failover could lose it. Its SQLSTATE is the
         * generic 01000 and its text is translated, so any WARNING counts: the outcome is
         * unknown, as when the link dies before ReadyForQuery, and the caller fails closed. */
        err = ddsm_pq_fail(pq, DDSM_E_STORE_DOWN,
                           "store unavailable: %s: the server warned before confirming it (%s): "
                           "outcome unknown",
                           q->what, pq->warning);
        ddsm_pq_reset(pq);
    }
    if (err == DDSM_OK) {
        *out = keep;
        keep = NULL;
    }
out:
    PQclear(keep);
    return err;
}

ddsm_err ddsm_pq_exec_sql(struct ddsm_pq *pq, const char *what, const char *sql, int nparams,
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
    ddsm_err err = ddsm_pq_exec(pq, &q, &r, NULL);
    if (err == DDSM_OK && res != NULL)
        *res = r;
    else
        PQclear(r);
    return err;
}

bool ddsm_pq_get_i64(const PGresult *res, int row, int col, int64_t *out)
{
    const char *s = PQgetvalue(res, row, col);
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

void ddsm_pq_bytea_hex(const uint8_t *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        out[2 + 2 * i] = hex[b[i] >> 4];
        out[3 + 2 * i] = hex[b[i] & 15];
    }
    out[2 + 2 * n] = '\0';
}
