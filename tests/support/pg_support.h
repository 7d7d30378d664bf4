/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers for raw SQL against the test's own database (DDSM_TEST_CONNINFO): setting up
 * fixtures the API cannot (illegal rows, plans) and checking what the store wrote. Every helper
 * fails the current cmocka test on an unexpected result. */
#ifndef DDSM_PG_SUPPORT_H
#define DDSM_PG_SUPPORT_H

#include <libpq-fe.h>

/* $DDSM_TEST_CONNINFO; fails the test when unset (run through scripts/lib/run-integration). */
const char *pgs_conninfo(void);
PGconn *pgs_connect(const char *conninfo);
/* Run a statement that must succeed; the result is discarded. */
void pgs_exec(PGconn *c, const char *sql, int nparams, const char *const *params);
/* Run a statement that must fail; returns its SQLSTATE (static storage, overwritten next call). */
const char *pgs_exec_fails(PGconn *c, const char *sql, int nparams, const char *const *params);
/* The first column of the only row, as an integer. */
long long pgs_int(PGconn *c, const char *sql, int nparams, const char *const *params);
/* The first column of the only row, as text (malloc'ed; free it). NULL for SQL NULL. */
char *pgs_text(PGconn *c, const char *sql, int nparams, const char *const *params);
/* A whole query that must succeed (PQclear it). */
PGresult *pgs_query(PGconn *c, const char *sql, int nparams, const char *const *params);

/* (Re)create the empty database "<current database>_<suffix>" through c, and give its conninfo
 * ($DDSM_TEST_CONNINFO with dbname). Returns the statement that drops it (malloc'ed: run it with
 * pgs_exec when done, then free it). */
char *pgs_fresh_db(PGconn *c, const char *suffix, char *conninfo, size_t cap);

/* Milliseconds / nanoseconds on CLOCK_MONOTONIC. */
long long pgs_now_ms(void);
long long pgs_now_ns(void);

#endif
