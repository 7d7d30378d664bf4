/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the store (the store_*.c files): one libpq connection with lazy (re)connect,
 * bounded waits, and the single translation of libpq/PostgreSQL errors into ddsm_err. */
#ifndef DDSM_STORE_PQ_H
#define DDSM_STORE_PQ_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "ddsm/err.h"
#include "ddsm/store.h"

#define DDSM_PQ_ERRMSG_MAX 512

struct ddsm_pq {
    char *conninfo; /* may hold a password: never logged, never copied into a message */
    unsigned connect_timeout_s;
    unsigned statement_timeout_ms;
    char application_name[64];
    bool generic_plans; /* plan_cache_mode = force_generic_plan (ddsm_store_set_generic_plans) */
    bool pooled;        /* behind a transaction pooler (ddsm_store_set_transaction_pooler) */
    ddsm_store_role role; /* privileges checked at connect (ddsm_store_opts) */
    PGconn *conn;        /* NULL while disconnected */
    bool ended;          /* the server sent this session a FATAL while it was idle */
    unsigned warnings;   /* WARNING notices received on this connection (ddsm_pq_exec) */
    char warning[DDSM_PQ_ERRMSG_MAX]; /* the last one, one line, for the error message */
    uint64_t generation; /* bumped by every successful connect (prepared statements, LISTEN) */
    char errmsg[DDSM_PQ_ERRMSG_MAX];
    char constraint[64]; /* the constraint the last error names, "" if none */
};

enum ddsm_pq_mode {
    DDSM_PQ_PARAMS,   /* one parameterised statement (extended protocol) */
    DDSM_PQ_PREPARED, /* execute the prepared statement `name` */
    DDSM_PQ_PREPARE,  /* prepare `sql` as `name` */
    DDSM_PQ_SCRIPT,   /* a parameterless multi-statement script (migrations only) */
};

struct ddsm_pq_query {
    enum ddsm_pq_mode mode;
    const char *what; /* for messages: "derive", "register asset"... */
    const char *name; /* prepared statement name */
    const char *sql;
    int nparams;
    const char *const *values; /* text format; NULL entries are SQL NULL */
    int timeout_ms;            /* client-side bound; 0: statement timeout + margin */
};

/* Validates the conninfo syntax (DDSM_E_INPUT) and copies it; does not connect. */
DDSM_WUR ddsm_err ddsm_pq_init(struct ddsm_pq *pq, const char *conninfo,
                               const ddsm_store_opts *opts);
void ddsm_pq_fini(struct ddsm_pq *pq);

/* Make sure there is a live connection: drop one the server has closed (checked without a round
 * trip), connect when there is none. *fresh (may be NULL) tells whether this call connected. */
DDSM_WUR ddsm_err ddsm_pq_ensure(struct ddsm_pq *pq, bool *fresh);
void ddsm_pq_reset(struct ddsm_pq *pq);

/* Run one query and wait for its end (ReadyForQuery) within the bound. On DDSM_OK *out holds the
 * result (PQclear it). *sent (may be NULL) is false when the query provably never reached the
 * server, so even a non-idempotent statement may be retried on a new connection. */
DDSM_WUR ddsm_err ddsm_pq_exec(struct ddsm_pq *pq, const struct ddsm_pq_query *q, PGresult **out,
                               bool *sent);

/* The one translation of a failed result (or NULL result) into ddsm_err; fills errmsg and drops
 * the connection when the error means it is gone. */
DDSM_WUR ddsm_err ddsm_pq_error(struct ddsm_pq *pq, const char *what, const PGresult *res);

/* Run one statement on the current connection, without the store's reconnect-once rule (inside
 * a transaction, a lost connection must end it): parameterised when nparams > 0, else a script.
 * timeout_ms as in ddsm_pq_query. On DDSM_OK *res (may be NULL: the result is dropped) holds
 * the result (PQclear it). */
DDSM_WUR ddsm_err ddsm_pq_exec_sql(struct ddsm_pq *pq, const char *what, const char *sql,
                                   int nparams, const char *const *values, int timeout_ms,
                                   PGresult **res);

/* The bigint in column col of row: false when it is NULL, empty, out of range or not a plain
 * decimal integer (out untouched). */
bool ddsm_pq_get_i64(const PGresult *res, int row, int col, int64_t *out);

/* n bytes as a bytea parameter in hex format ("\x" and 2n lowercase hex digits); out holds
 * 2 + 2n + 1 characters. */
void ddsm_pq_bytea_hex(const uint8_t *b, size_t n, char *out);

/* Set errmsg (one line) and return err. */
ddsm_err ddsm_pq_fail(struct ddsm_pq *pq, ddsm_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t ddsm_pq_now_ms(void);

#endif
