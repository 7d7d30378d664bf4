/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl internals shared by the command families (main.c, cmd_*.c). */
#ifndef DDSMCTL_CTL_H
#define DDSMCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ddsm/audit.h"
#include "ddsm/config.h"
#include "ddsm/err.h"
#include "ddsm/hsm.h"
#include "ddsm/path.h"
#include "ddsm/store.h"

/* Exit codes (documented in `ddsmctl --help`). */
enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_REFUSED = 1,     /* illegal transition, duplicate, root exists, wrong PIN, ... */
    CTL_EXIT_USAGE = 2,       /* usage error or bad input */
    CTL_EXIT_UNAVAILABLE = 3, /* backend HSM or PostgreSQL unavailable or failing */
};
/* ctl_parse's answer when it printed --help: the command returns CTL_EXIT_OK. */
#define CTL_HELP_SHOWN (-1)

typedef struct ctl {
    const char *conf_path; /* --conf; NULL: ddsm_config_default_path() */
    const char *pin_file;  /* --pin-file; NULL: $DDSM_PIN or a prompt */
    ddsm_config *cfg;      /* set by ctl_config */
    /* The role an unaudited ctl_store_open checks for (DDSM_ROLE_ANY unless the command sets it);
     * audited opens are lifecycle commands and check for DDSM_ROLE_ADMIN. */
    ddsm_store_role store_role;
} ctl;

/* Help of one command: printed by --help, and (usage line only) after a usage error. */
typedef struct ctl_help {
    const char *name;    /* "root create" */
    const char *usage;   /* the synopsis lines after "Usage: " */
    const char *about;   /* one paragraph */
    const char *options; /* pre-formatted option lines, or NULL */
} ctl_help;

/* One option of a command. Exactly one of val, flag, multi is set. */
typedef struct ctl_opt {
    const char *name;   /* "--label" */
    const char **val;   /* single value */
    bool *flag;         /* no value */
    const char **multi; /* repeatable: up to multi_cap values, count in *multi_n */
    size_t multi_cap;
    size_t *multi_n;
} ctl_opt;

void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void ctl_help_print(FILE *f, const ctl_help *h);
/* Print "ddsmctl: <msg>", the usage line and a hint; returns CTL_EXIT_USAGE. */
int ctl_usage_error(const ctl_help *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3))) DDSM_WUR;

/* Parse argv[1..argc) (argv[0] is the command's own name) against opts; --conf and --pin-file are
 * accepted everywhere and stored in c. Positional arguments go to pos (min_pos..max_pos of
 * them), their count to *npos. Returns CTL_EXIT_OK, CTL_EXIT_USAGE (message printed) or
 * CTL_HELP_SHOWN. */
DDSM_WUR int ctl_parse(ctl *c, const ctl_help *h, int argc, char **argv, const ctl_opt *opts,
                       size_t nopts, const char **pos, size_t min_pos, size_t max_pos,
                       size_t *npos);

/* Load the configuration once (from c->conf_path or the default). Returns an exit code. */
DDSM_WUR int ctl_config(ctl *c);

/* Exit code for a core error. */
int ctl_exit_for(ddsm_err e);
/* Exit code for a backend answer. */
int ctl_exit_for_rv(CK_RV rv);

/* The requester recorded in audit rows: "ddsmctl:<login user>". */
void ctl_requester(char *out, size_t n);

/* A duration "30s", "5m", "2h", "1d" (positive, at most 366 days) in seconds. false (with a
 * reason in why) when malformed. */
bool ctl_parse_duration(const char *text, int64_t *secs, const char **why);
/* A decimal without sign or leading zeros in lo..hi. */
bool ctl_parse_uint(const char *text, unsigned lo, unsigned hi, unsigned *out);

/* Read a whole file of at most max bytes into secure memory (a secret: free with
 * ddsm_secure_free(*buf, max + 1)); NUL-terminated. Returns an exit code (message printed,
 * naming what). */
DDSM_WUR int ctl_read_file_secret(const char *path, const char *what, size_t max, char **buf,
                                  size_t *len);

/* A growable array of items of item_size bytes each, filled by the store's list callbacks:
 * ctl_vec v = {sizeof(ddsm_asset)}; ... free(v.items). */
typedef struct ctl_vec {
    size_t item_size;
    void *items;
    size_t n, cap;
    bool oom; /* a push failed: the array is incomplete */
} ctl_vec;
/* Append a copy of item; false (and oom set) when out of memory. */
bool ctl_vec_push(ctl_vec *vec, const void *item);

/* Microseconds since the epoch as ISO 8601 UTC with microseconds. */
void ctl_format_time(int64_t us, char out[40]);

/* PIN handling (pin.c). The PIN is a secret in secure memory. */
#define CTL_PIN_MAX 255
typedef struct ctl_pin {
    char *buf; /* secret, CTL_PIN_MAX + 1 bytes of secure memory */
    size_t len;
} ctl_pin;
/* The HSM user PIN: --pin-file, else $DDSM_PIN (wiped from the environment), else a prompt
 * with echo off when stdin is a terminal. Returns an exit code (message printed). */
DDSM_WUR int ctl_pin_get_secret(const ctl *c, const char *token_label, ctl_pin *out);
/* The first line of file. Warns when group or others may read it. */
DDSM_WUR int ctl_pin_from_file_secret(const char *file, ctl_pin *out);
void ctl_pin_free(ctl_pin *p);

/* The root token, reached through the backend (hsm_root.c). */
typedef struct ctl_hsm {
    ddsm_hsm *hsm;
    CK_FUNCTION_LIST_PTR fl;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE session;
    bool have_session;
    const char *token_label; /* from the configuration */
    const char *key_label;
    ctl *c;                                  /* for the store's root pin */
    char found_fp[DDSM_FINGERPRINT_HEX + 1]; /* the pinned root ctl_hsm_find_root found */
} ctl_hsm;
/* Load the backend, find the root token ([backend] root_token_label with root_pin_file, else
 * token_label with the user PIN), open a read-write session and log in. The PIN (a secret) is
 * wiped before it returns. Returns an exit code. */
DDSM_WUR int ctl_hsm_open_root(ctl *c, ctl_hsm *h);
void ctl_hsm_close(ctl_hsm *h);
/* Whether the root key exists; *root set when it does. With a root pinned in the store, the key
 * labelled [backend] root_key_label whose fingerprint is pinned (others ignored, with a warning);
 * with none (or no store), the only key carrying the label: more than one is then an error. */
DDSM_WUR int ctl_hsm_find_root(ctl_hsm *h, bool *exists, CK_OBJECT_HANDLE *root);
/* The private secret keys labelled [backend] root_key_label and their fingerprints computed by
 * the HSM; *n_public counts the public ones (never candidates: anyone can make them). */
#define CTL_ROOT_CANDIDATES_MAX 64
typedef struct ctl_root_candidate {
    CK_OBJECT_HANDLE handle;
    bool has_fp; /* false: the HSM would not HMAC with it (not a root) */
    char fp[DDSM_FINGERPRINT_HEX + 1];
} ctl_root_candidate;
DDSM_WUR int ctl_hsm_candidates(ctl_hsm *h, ctl_root_candidate *out, size_t max, size_t *n,
                                size_t *n_public);
/* The store's root pin; none (count 0) when the store is unreachable or predates it (a warning
 * when loud). */
struct ddsm_root_pins;
void ctl_root_pins_read(ctl *c, struct ddsm_root_pins *pins, bool loud);
/* Refuse (CTL_EXIT_REFUSED, message printed) when the root key already exists. */
DDSM_WUR int ctl_hsm_require_no_root(ctl_hsm *h);
/* Generate the root seed inside the HSM, or import a 32-byte one (a secret), with the
 * HSM-enforced attributes of docs/root.md; not_enforced gets the names of those the backend
 * refused (comma-separated, "" for none; a warning was printed). */
#define CTL_NOT_ENFORCED_MAX 128
DDSM_WUR int ctl_hsm_generate_root(ctl_hsm *h, CK_OBJECT_HANDLE *out,
                                   char not_enforced[CTL_NOT_ENFORCED_MAX]);
DDSM_WUR int ctl_hsm_import_root_secret(ctl_hsm *h, const uint8_t seed[32], CK_OBJECT_HANDLE *out,
                                        char not_enforced[CTL_NOT_ENFORCED_MAX]);
/* The root fingerprint computed by the HSM (its HMAC under the root key). */
DDSM_WUR int ctl_hsm_fingerprint(ctl_hsm *h, CK_OBJECT_HANDLE root,
                                 char fp[DDSM_FINGERPRINT_HEX + 1]);
/* The audit key (a secret): the reserved derivation, computed by the HSM through the root key.
 * Needs the root token's PIN like every other root use. Returns an exit code (message printed). */
DDSM_WUR int ctl_audit_key_secret(ctl *c, ddsm_audit_key **out);
/* Remove a root key just created (when a later check fails). */
void ctl_hsm_destroy(ctl_hsm *h, CK_OBJECT_HANDLE obj);

/* Command families. argv[0] is the family name. */
int cmd_db(ctl *c, int argc, char **argv);
int cmd_root(ctl *c, int argc, char **argv);
int cmd_asset(ctl *c, int argc, char **argv);
extern const ctl_help cmd_db_help, cmd_root_help, cmd_asset_help;
/* `asset xpub` (cmd_xpub.c), a subcommand of cmd_asset. */
int cmd_asset_xpub(ctl *c, int argc, char **argv);
/* The audit log (cmd_audit.c): audit verify, reconcile, db maintain. */
int cmd_audit(ctl *c, int argc, char **argv);
int cmd_reconcile(ctl *c, int argc, char **argv);
int cmd_db_maintain(ctl *c, int argc, char **argv);
extern const ctl_help cmd_audit_help, cmd_reconcile_help;
/* Policy and the operator's view (cmd_zone.c, cmd_status.c, cmd_metrics.c). */
int cmd_zone(ctl *c, int argc, char **argv);
int cmd_status(ctl *c, int argc, char **argv);
int cmd_metrics(ctl *c, int argc, char **argv);
extern const ctl_help cmd_zone_help, cmd_status_help, cmd_metrics_help;
/* A store for this run (store.c); audited: rows chained under the HSM-derived audit key (the
 * HSM and its PIN are asked first). Returns an exit code (message printed). */
DDSM_WUR int ctl_store_open(ctl *c, bool audited, ddsm_store **st);
/* The start of a `... list [--json]` command: its command line (--json into *json), then the
 * store, unaudited. CTL_EXIT_OK with *st open; CTL_HELP_SHOWN after --help; else an exit code
 * (message printed) with *st NULL. */
DDSM_WUR int ctl_list_open(ctl *c, const ctl_help *h, int argc, char **argv, bool *json,
                           ddsm_store **st);
/* Chain st's audit rows under key, as a fresh "ddsmctl/..." writer instance. Returns an exit code
 * (message printed); st is left open either way. */
DDSM_WUR int ctl_store_attach_audit(ddsm_store *st, const ddsm_audit_key *key);
/* Report a store error (message printed); returns its exit code. */
int ctl_store_fail(ddsm_store *st, ddsm_err e, const char *what);
/* The asset named by text (UUID or label). Returns an exit code (message printed): refused when
 * there is no such asset. */
DDSM_WUR int ctl_asset_find(ddsm_store *st, const char *text, ddsm_asset *out);

/* One subcommand of a command family. */
typedef struct ctl_sub {
    const char *name;
    int (*run)(ctl *c, int argc, char **argv);
} ctl_sub;
/* Run the subcommand argv[1] of the family h describes (argv[0] is the family's name), or print
 * h on -h/--help; a usage error (exit 2) when it is missing or unknown. */
int ctl_run_sub(ctl *c, const ctl_help *h, const ctl_sub *subs, size_t nsubs, int argc,
                char **argv);

/* PKCS#11 URIs of asset keys (uri.c). */
typedef enum ctl_obj_type { CTL_OBJ_SECRET, CTL_OBJ_PRIVATE, CTL_OBJ_PUBLIC } ctl_obj_type;
/* The URI's type= value: "secret-key", "private", "public". */
const char *ctl_obj_type_name(ctl_obj_type t);
/* The objects the module shows for a key of this registry key type at this path: a secret key
 * (hmac, aes), a private then a public key (EC types), none (an ed25519 path with a normal
 * index). Returns how many, written to out. */
size_t ctl_key_objects(const char *key_type, const ddsm_path *path, ctl_obj_type out[2]);
/* The RFC 7512 URI of one object: the module (library-manufacturer, library-description as its
 * C_GetInfo reports them), the token label, the object's CKA_ID, CKA_LABEL and class. *out is
 * malloc'd (free it). Returns an exit code (message printed). */
DDSM_WUR int ctl_key_uri(const char *token_label, const uint8_t *id, size_t id_len,
                         const char *label, ctl_obj_type type, char **out);

#endif
