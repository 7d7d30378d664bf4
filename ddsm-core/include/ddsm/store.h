/* SPDX-License-Identifier: Apache-2.0 */
/* The PostgreSQL store (libpq): asset registry, lifecycle, derivation bookkeeping, audit rows.
 * Every statement is parameterised. A ddsm_store is one connection, used by one thread at a time;
 * it connects lazily and reconnects by itself after the server comes back. */
#ifndef DDSM_STORE_H
#define DDSM_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/path.h"
#include "ddsm/state.h"
#include "ddsm/uuid.h"

#define DDSM_ASSET_LABEL_MAX 128
#define DDSM_KEY_TYPE_MAX 16
/* NOTIFY channel for lifecycle changes; payload "<uuid> <counter> <STATE>". */
#define DDSM_NOTIFY_CHANNEL "ddsm_asset"

struct ddsm_migration {
    const char *name; /* "001_init" */
    const char *sql;
};
extern const struct ddsm_migration ddsm_migrations[];
extern const unsigned ddsm_migrations_count;

typedef struct ddsm_asset {
    ddsm_uuid id;
    char label[DDSM_ASSET_LABEL_MAX + 1];
    char key_type[DDSM_KEY_TYPE_MAX + 1];    /* hmac, aes, secp256k1, ed25519, p256 */
    char default_path[DDSM_PATH_TEXT_MAX];  /* canonical */
    uint64_t counter;
    ddsm_state state;     /* effective: a ROTATING asset whose grace ended reads as ACTIVE */
    int64_t created_us;   /* unix time in microseconds */
    int64_t updated_us;
    int64_t grace_until_us; /* 0 unless ROTATING */
    /* While ROTATING: how long the grace window had left when the server read the row, by the
     * server's own clock (its grace_until against its clock_timestamp()), at least 1; else 0. A
     * client measures the rest on its monotonic clock and never compares its wall clock with
     * the server's. */
    int64_t grace_left_us;
} ddsm_asset;

typedef struct ddsm_store ddsm_store;

/* What a connection is for (sql/006_roles.sql, docs/audit.md "Database roles"). Every new
 * connection with a role other than DDSM_ROLE_ANY checks, before the caller's first statement,
 * that the session user has every privilege that work needs, and fails with DDSM_E_PRIVILEGE
 * naming the user and the first privilege missing. */
typedef enum ddsm_store_role {
    DDSM_ROLE_ANY = 0, /* no check: migrations (the owner), tests, and reads that map errors */
    DDSM_ROLE_MODULE,  /* the PKCS#11 module: ddsm_module */
    DDSM_ROLE_ADMIN,   /* ddsmctl lifecycle commands: ddsm_admin */
    DDSM_ROLE_AUDITOR, /* ddsmctl audit verify, reconcile, status, metrics: ddsm_auditor */
} ddsm_store_role;

typedef struct ddsm_store_opts {
    unsigned connect_timeout_s;    /* 0: default 5 */
    unsigned statement_timeout_ms; /* 0: default 5000 */
    const char *application_name;  /* NULL: "ddsm" */
    ddsm_store_role role;          /* 0: DDSM_ROLE_ANY */
} ddsm_store_opts;

/* Every connection of every store (and listener) runs with synchronous_commit at least "on": at
 * connect the session sets it to "on" unless it is already "remote_apply" (kept: stronger), then
 * reads it back, and the connection fails with DDSM_E_DURABILITY when it is anything else (behind
 * a transaction pooler, where no session setting is made, the role's or database's default must
 * say so). A commit is thus flushed locally, and on the synchronous standbys when
 * synchronous_standby_names names any, before its answer (and the key it stands for) is used. */

/* The conninfo of stores opened from now on in this process goes through a transaction-pooling
 * PgBouncer ([store] transaction_pooler): they send every statement unnamed (PgBouncer 1.18 cannot
 * keep a named prepared statement across transactions in transaction mode) and make no session
 * setting (it would outlive the transaction on a server connection other clients then get).
 * Process-wide, as a process has one configuration; the default is off. LISTEN must not go
 * through such a pooler ([store] listen_conninfo). */
void ddsm_store_set_transaction_pooler(bool on);

/* Does not connect yet. opts may be NULL. */
DDSM_WUR ddsm_err ddsm_store_open(const char *conninfo, const ddsm_store_opts *opts,
                                  ddsm_store **out);
void ddsm_store_close(ddsm_store *st); /* NULL accepted */
/* The last error as one line for humans (never contains a password). */
const char *ddsm_store_errmsg(const ddsm_store *st);

/* Apply the embedded migrations not yet recorded, in order, each in its own transaction. */
DDSM_WUR ddsm_err ddsm_store_migrate(ddsm_store *st, unsigned *applied);

/* One privilege held by ddsm_module, ddsm_admin or ddsm_auditor in this database: kind is
 * "database", "schema", "table", "sequence" or "function". Nonzero from the callback stops. */
typedef int (*ddsm_grant_cb)(const char *role, const char *privilege, const char *kind,
                             const char *object, void *arg);
/* Every such privilege, read from the catalog (what the migrations granted, and anything granted
 * by hand since), ordered by role, kind, object and privilege. */
DDSM_WUR ddsm_err ddsm_store_role_grants(ddsm_store *st, ddsm_grant_cb cb, void *arg);

/* Register an INITIALIZED asset with counter 0. id NULL: random v4. default_path NULL: "m/0".
 * label must be 1..128 printable characters, no '/' (labels appear in "<label>/<path>").
 * key_type NULL: "hmac"; else one of hmac, aes, secp256k1, ed25519, p256 (DDSM_E_INPUT). An
 * ed25519 asset's default path must be hardened throughout (SLIP-10; DDSM_E_PATH). */
DDSM_WUR ddsm_err ddsm_store_asset_register(ddsm_store *st, const ddsm_uuid *id, const char *label,
                                            const char *key_type, const char *default_path,
                                            const char *requester, ddsm_asset *out);
/* Look up by UUID text or by label. DDSM_E_NOT_FOUND when neither matches. */
DDSM_WUR ddsm_err ddsm_store_asset_find(ddsm_store *st, const char *id_or_label, ddsm_asset *out);
DDSM_WUR ddsm_err ddsm_store_asset_get(ddsm_store *st, const ddsm_uuid *id, ddsm_asset *out);

/* Apply a lifecycle event in one statement, with its audit row and (for rotations) a row in
 * custody_rotations, then NOTIFY. grace_s is used by DDSM_EV_ROTATE_GRACE only.
 * DDSM_E_STATE when the state machine refuses (nothing changes). */
DDSM_WUR ddsm_err ddsm_store_asset_transition(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                              int64_t grace_s, const char *requester,
                                              ddsm_asset *out);

/* How many times, in this process, a store or listener connection was established again after
 * it had been lost or dropped (metrics). */
uint64_t ddsm_store_reconnects(void);

/* Every asset, ordered by label; the callback returns non-zero to stop. */
typedef int (*ddsm_asset_cb)(const ddsm_asset *a, void *arg);
DDSM_WUR ddsm_err ddsm_store_asset_list(ddsm_store *st, ddsm_asset_cb cb, void *arg);

/* Derivation bookkeeping, one round trip: check the asset is ACTIVE or ROTATING, read its counter
 * and insert the DERIVE audit row, RETURNING the counter. No lock, no SERIALIZABLE. The caller may
 * use the key only after this returned DDSM_OK (the row is committed). DDSM_E_NOT_FOUND for an
 * unknown asset, DDSM_E_STATE when it is not derivable (out_state tells which state). */
typedef struct ddsm_derive_req {
    ddsm_uuid asset;
    const char *path;      /* canonical */
    const char *requester; /* may be NULL */
    const char *instance;  /* module instance id, may be NULL */
    /* The DERIVE row's detail (in its MAC), e.g. "key type secp256k1"; may be NULL. Written by
     * the chained statement only (ddsm_store_derive with a chain, the batcher). */
    const char *detail;
} ddsm_derive_req;
DDSM_WUR ddsm_err ddsm_store_derive(ddsm_store *st, const ddsm_derive_req *req, uint64_t *counter,
                                    ddsm_state *state);

/* A dedicated LISTEN connection on DDSM_NOTIFY_CHANNEL. */
typedef struct ddsm_listener ddsm_listener;
typedef void (*ddsm_notify_cb)(const ddsm_uuid *asset, uint64_t counter, ddsm_state state,
                               void *arg);
DDSM_WUR ddsm_err ddsm_listener_open(const char *conninfo, const ddsm_store_opts *opts,
                                     ddsm_listener **out);
/* Wait up to timeout_ms for notifications, calling cb for each. DDSM_E_STORE_DOWN when the link is
 * down (the next call tries to reconnect); DDSM_OK otherwise (also on timeout). */
DDSM_WUR ddsm_err ddsm_listener_wait(ddsm_listener *l, int timeout_ms, ddsm_notify_cb cb,
                                     void *arg);
void ddsm_listener_close(ddsm_listener *l);
/* The listener also LISTENs on the zone channel (DDSM_ZONE_NOTIFY_CHANNEL, ddsm/policy.h): cb gets
 * each zone notification ("<asset> on|off <zone>") from ddsm_listener_wait. Set it before the
 * first wait; cb NULL ignores them. */
typedef void (*ddsm_zone_notify_cb)(const ddsm_uuid *asset, bool enabled, const char *zone,
                                    void *arg);
void ddsm_listener_on_zone(ddsm_listener *l, ddsm_zone_notify_cb cb, void *arg);
/* How many times LISTEN has been (re-)established. Notifications sent while the link was down are
 * lost, so when this changes the caller must re-validate whatever it cached. */
uint64_t ddsm_listener_generation(const ddsm_listener *l);
/* The socket of the LISTEN connection while it is listening, else -1: for a caller that waits on
 * it with poll() itself and then calls ddsm_listener_wait (from the same thread as every other
 * call on l). */
int ddsm_listener_socket(const ddsm_listener *l);
/* A round trip on the LISTEN connection: PostgreSQL sends the notifications it was signalled
 * about before the ReadyForQuery of the next statement, so every notification of a transaction
 * whose client got its answer before this call began is handed to cb before it returns.
 * DDSM_E_STORE_DOWN when the link is down (the next wait reconnects). Same thread as every other
 * call on l. */
DDSM_WUR ddsm_err ddsm_listener_fence(ddsm_listener *l, ddsm_notify_cb cb, void *arg);
/* The listener's last error as one line (never contains a password). */
const char *ddsm_listener_errmsg(const ddsm_listener *l);

/* The text of the derivation statement (parameters: asset uuid, canonical path, requester,
 * instance), for EXPLAIN by tests and operators: its plan must probe custody_keys' primary key. */
extern const char ddsm_store_derive_sql[];

/* ------------------------------------------------------------------------------------------ */
/* The audit chain (docs/audit.md, ddsm/audit.h)
 *
 * With a chain attached, every audit row this store writes (REGISTER, ACTIVATE, ROTATE,
 * GRACE_END, RETIRE, DERIVE, DENY) carries the chain's instance id, its next sequence number and
 * its MAC, and the same statement moves the chain's checkpoint. The results of every function
 * stay as documented above, with three additions:
 *  - ddsm_store_derive sends the counter and state it expects (learnt from earlier answers) and
 *    the statement writes only when they hold; a stale expectation costs one more round trip.
 *    req->instance is ignored (the chain's instance id is recorded).
 *  - a derivation refused because the asset is unknown or not derivable is recorded as a DENY
 *    row (with the reason in detail), in the same single round trip;
 *  - a lifecycle event the state machine refuses is recorded as a DENY row; lifecycle events read
 *    the asset first (one more round trip: they are rare).
 * Without a chain, rows are written as before, with a NULL mac: `ddsmctl audit verify` reports
 * them as unauthenticated. */
typedef struct ddsm_audit_chain ddsm_audit_chain;
typedef struct ddsm_audit_key ddsm_audit_key;

/* Attach chain (borrowed: it must outlive the store, or be detached with NULL first). A chain
 * serves one store at a time. */
void ddsm_store_set_audit(ddsm_store *st, ddsm_audit_chain *chain);
/* The one-call form: a chain owned by the store (freed with it), keyed with key (copied) and
 * named instance, which must be unique to this connection (e.g. ddsm_audit_instance_id() plus
 * "/c<n>" for the n-th pooled connection). Replaces any chain attached before. */
DDSM_WUR ddsm_err ddsm_store_attach_audit(ddsm_store *st, const ddsm_audit_key *key,
                                          const char *instance);

/* Record a request refused by policy as a DENY row with reason (1..500 characters) in detail.
 * req->path may be NULL (refused before it was parsed); otherwise it must be canonical. */
DDSM_WUR ddsm_err ddsm_store_deny(ddsm_store *st, const ddsm_derive_req *req, const char *reason);

/* The text of the chained multi-row derivation statement (group commit; parameters in
 * ddsm-core/src/store_derive.c), for EXPLAIN: it must probe custody_keys' primary key once per
 * row. */
extern const char ddsm_store_derive_batch_sql[];

/* Plan this connection's prepared statements once (plan_cache_mode = force_generic_plan for the
 * session) instead of re-planning every execution, from the next connect on (stores connect
 * lazily: call it before the first statement). For connections whose statements probe by
 * primary key whatever their parameters, such as the group-commit batcher's. */
void ddsm_store_set_generic_plans(ddsm_store *st, bool on);
/* How often this session planned its prepared statements generically and custom (PostgreSQL's
 * pg_prepared_statements, summed): for tests and diagnostics. */
DDSM_WUR ddsm_err ddsm_store_plan_counts(ddsm_store *st, uint64_t *generic, uint64_t *custom);

#endif
