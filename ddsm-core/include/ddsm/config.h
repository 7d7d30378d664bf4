/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration (INI via libinih). Precedence: environment ($DDSM_CONF picks the file) > file >
 * built-in defaults; resolved in ddsm_config_load only. Every key is documented in
 * conf/ddsm.conf.example. */
#ifndef DDSM_CONFIG_H
#define DDSM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "ddsm/err.h"
#include "ddsm/log.h"
#include "ddsm/policy.h"

#define DDSM_CONF_DEFAULT "/etc/ddsm/ddsm.conf"
#define DDSM_POLICY_MAX_PATTERNS 16
#define DDSM_POLICY_MAX_MECHANISMS 32
#define DDSM_BACKEND_MAX_EXTRA_MECHANISMS 32

typedef struct ddsm_config {
    char *file; /* the file it was read from */
    struct {
        char *module;             /* required: the real HSM's PKCS#11 library */
        char *token_label;        /* required: which backend token the module fronts */
        char *root_key_label;     /* default "ddsm-root" */
        char *root_token_label;   /* optional separate custody token holding the root */
        char *root_pin_file;      /* required when root_token_label is set */
        /* optional standby token holding the same root (docs/standby.md): derivations fail over
         * to it; its library defaults to module, its PIN file is required */
        char *standby_module;
        char *standby_token_label;
        char *standby_root_pin_file;
        unsigned call_timeout_ms; /* default 5000: bound on one HSM call */
        /* the module's HSM worker threads, and the derivation sessions it keeps open (per
         * token); 0 (unset): [store] pool_size, see ddsm_config_hsm_workers */
        unsigned workers;
        /* mechanisms passed to the backend besides the module's allowlist ("CKM_..." or
         * "0x..."), resolved by the module; default none */
        char *extra_mechanisms[DDSM_BACKEND_MAX_EXTRA_MECHANISMS];
        size_t n_extra_mechanisms;
    } backend;
    struct {
        char *conninfo;                /* required: libpq conninfo or URI */
        char *listen_conninfo;         /* default: conninfo (LISTEN must not go through a pooler) */
        unsigned connect_timeout_s;    /* default 5 */
        unsigned statement_timeout_ms; /* default 5000 */
        unsigned pool_size;            /* default 8: connections per module instance */
        bool transaction_pooler;       /* default false: conninfo goes through PgBouncer (transaction) */
    } store;
    struct {
        /* e.g. BIP-44's m/44'/N'/N'/N/N with N = '*'; none: any path */
        char *path_patterns[DDSM_POLICY_MAX_PATTERNS];
        size_t n_path_patterns;
        bool extractable;  /* default false: CKA_EXTRACTABLE of derived keys */
        char *requester;   /* default NULL: the module uses the program name */
        /* docs/policy.md: limits shared by every process on the database; 0: none (default) */
        ddsm_rate rate_per_requester_asset;
        ddsm_rate rate_per_requester;
        /* mechanisms derived keys may serve ("CKM_SHA256_HMAC" or "0x..."), resolved by the
         * module; none: every mechanism the key type supports */
        char *mechanisms[DDSM_POLICY_MAX_MECHANISMS];
        size_t n_mechanisms;
        /* DENY rows for unknown assets and refused paths, per process: a bucket of deny_burst
         * rows (default 100) refilled at deny_per_minute (default 600); beyond it the refusal
         * stands and only its row is left out (counted in the next row written). */
        unsigned deny_burst;
        unsigned deny_per_minute;
    } policy;
    struct {
        unsigned batch_max;     /* default 64 rows per group-commit statement */
        unsigned batch_wait_us; /* default 200: longest wait for company when others are queued */
        unsigned connections;   /* default 2: connections writing audit rows (group commit) */
    } audit;
    struct {
        unsigned size;         /* default 4096 derived keys */
        unsigned handles;      /* default 1048576: slots of the virtual handle table */
        unsigned ttl_ms;       /* default 300000 */
        unsigned staleness_ms; /* default 1000: re-validate when the LISTEN link is down */
        bool rotation_fence;   /* default false: sign/encrypt wait for a LISTEN round trip */
    } cache;
    struct {
        ddsm_log_level level; /* default warn */
        bool syslog;          /* default false: stderr */
    } log;
    struct {
        char *textfile;       /* default NULL: no file; "%p" is the process id */
        unsigned interval_ms; /* default 10000 */
    } metrics;
} ddsm_config;

/* The file to read: $DDSM_CONF when set and non-empty, else DDSM_CONF_DEFAULT. */
const char *ddsm_config_default_path(void);

/* Load and validate file. On error returns DDSM_E_CONFIG (or DDSM_E_IO / DDSM_E_NOMEM) and writes
 * "file:line: reason" into why. Unknown sections/keys and bad values are errors. The file, and
 * [backend] root_pin_file when set, are refused unless ddsm_config_file_trusted. */
DDSM_WUR ddsm_err ddsm_config_load(const char *file, ddsm_config **out, char *why, size_t why_len);
void ddsm_config_free(ddsm_config *cfg); /* NULL accepted */

/* Whether a file (its fstat/stat) may decide what the module trusts, as OpenSSH's StrictModes
 * decides: a regular file, owned by the effective user or root, writable by neither group nor
 * others. DDSM_E_CONFIG with the problem in why (the caller names the file). */
struct stat;
DDSM_WUR ddsm_err ddsm_config_file_trusted(const struct stat *st, char *why, size_t why_len);

/* Whether a canonical path matches one of the policy patterns ('*' matches one component's
 * number; a trailing ' in the pattern requires hardening). True when there are no patterns. */
bool ddsm_config_path_allowed(const ddsm_config *cfg, const char *canonical_path);

/* [backend] workers, or [store] pool_size when it is unset (what the pool was sized by before
 * the setting existed), or 8. */
static inline unsigned ddsm_config_hsm_workers(const ddsm_config *cfg)
{
    if (cfg->backend.workers != 0)
        return cfg->backend.workers;
    return cfg->store.pool_size != 0 ? cfg->store.pool_size : 8;
}

#endif
