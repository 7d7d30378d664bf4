/* SPDX-License-Identifier: Apache-2.0 */
#include "pg_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

const char *pgs_conninfo(void)
{
    const char *c = getenv("DDSM_TEST_CONNINFO");
    if (c == NULL || *c == '\0')
        fail_msg("DDSM_TEST_CONNINFO is not set: run this test through ctest "
                 "(scripts/lib/run-integration)");
    return c;
}

PGconn *pgs_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to the test database: %s", c ? PQerrorMessage(c) : "no memory");
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

PGresult *pgs_query(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("SQL failed: %s\n  statement: %.300s", msg, sql);
    }
    return r;
}

void pgs_exec(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PQclear(pgs_query(c, sql, nparams, params));
}

const char *pgs_exec_fails(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    static char state[6];
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        fail_msg("SQL unexpectedly succeeded: %.300s", sql);
    }
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(state, sizeof state, "%s", s ? s : "?????");
    PQclear(r);
    return state;
}

char *pgs_text(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = pgs_query(c, sql, nparams, params);
    if (PQntuples(r) != 1 || PQnfields(r) < 1) {
        int n = PQntuples(r);
        PQclear(r);
        fail_msg("expected one row, got %d: %.300s", n, sql);
    }
    char *v = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

long long pgs_int(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    char *v = pgs_text(c, sql, nparams, params);
    if (v == NULL)
        fail_msg("expected an integer, got NULL: %.300s", sql);
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (*end != '\0') {
        free(v);
        fail_msg("expected an integer: %.300s", sql);
    }
    free(v);
    return n;
}

long long pgs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long pgs_now_ms(void)
{
    return pgs_now_ns() / 1000000;
}

char *pgs_fresh_db(PGconn *c, const char *suffix, char *conninfo, size_t cap)
{
    char *cur = pgs_text(c, "SELECT current_database()", 0, NULL);
    char db[128];
    snprintf(db, sizeof db, "%s_%s", cur, suffix);
    free(cur);
    const char *p[] = {db};
    /* An identifier cannot be a parameter: quote it with quote_ident server-side. */
    char *drop = pgs_text(c, "SELECT 'DROP DATABASE IF EXISTS ' || quote_ident($1)", 1, p);
    char *create = pgs_text(c, "SELECT 'CREATE DATABASE ' || quote_ident($1)", 1, p);
    pgs_exec(c, drop, 0, NULL);
    pgs_exec(c, create, 0, NULL);
    free(create);
    snprintf(conninfo, cap, "%s dbname=%s", pgs_conninfo(), db);
    return drop;
}
