/* SPDX-License-Identifier: Apache-2.0 */
/* The policy gate's shared state (docs/policy.md): rate limits enforced across every module
 * instance and host that share the database, and compliance zones. No PKCS#11 types here.
 *
 * Rate limits: each process keeps a local token bucket per (requester, asset) and per requester.
 * A bucket holds only tokens that the database granted to this process for the current window
 * (ddsm_rate_lease, an UNLOGGED counter row per (requester, asset, window)), so the sum of what
 * every process admits in a window never exceeds the limit. A derivation takes its tokens
 * locally, with no round trip; a bucket is refilled ahead of need (ddsm_ratelimit_wanted, from a
 * background thread) and only an empty bucket (the first use in a window, or a burst faster than
 * the refill) makes a derivation wait for a lease. The price is under-admission: tokens a process
 * leased and did not use before its window ended are lost to the others (at most one chunk per
 * process, bucket and window). */
#ifndef DDSM_POLICY_H
#define DDSM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/uuid.h"

typedef struct ddsm_store ddsm_store;

/* ------------------------------------------------------------------------------------------ */
/* Rates */

#define DDSM_RATE_LIMIT_MAX 1000000000ULL
/* Longest requester name a bucket or a lease carries ("<application>/<user>"). */
#define DDSM_REQUESTER_MAX 160

typedef struct ddsm_rate {
    uint64_t limit;    /* tokens per window; 0: no limit */
    unsigned window_s; /* 1 (/s), 60 (/min), 3600 (/h) or 86400 (/d) */
} ddsm_rate;

/* "N/s", "N/sec", "N/min", "N/h", "N/d" (N a decimal in 0..DDSM_RATE_LIMIT_MAX, no sign or
 * leading zero; blanks around '/' allowed) or "0": no limit. DDSM_E_INPUT with a reason in *why
 * (static text) otherwise. */
DDSM_WUR ddsm_err ddsm_rate_parse(const char *text, ddsm_rate *out, const char **why);
/* Tokens one lease asks for: a tenth of the limit, at least 1, at most 1000. */
uint64_t ddsm_rate_chunk(const ddsm_rate *r);

typedef enum ddsm_rate_scope {
    DDSM_RATE_ASSET = 0, /* the requester on one asset */
    DDSM_RATE_REQUESTER, /* the requester over every asset */
    DDSM_RATE__SCOPES
} ddsm_rate_scope;

const char *ddsm_rate_scope_name(ddsm_rate_scope s); /* "requester_asset", "requester" */

/* One lease: up to want tokens of the current window of one bucket. */
typedef struct ddsm_rate_lease_req {
    char requester[DDSM_REQUESTER_MAX + 1];
    ddsm_uuid asset; /* the nil UUID for DDSM_RATE_REQUESTER */
    ddsm_rate_scope scope;
    unsigned window_s;
    uint64_t want;
    uint64_t limit;
} ddsm_rate_lease_req;

typedef struct ddsm_rate_lease_ans {
    uint64_t granted;     /* 0..want */
    int64_t window_at_us; /* the window's start on the server's clock (identifies it) */
    int64_t left_ms;      /* how long the window still runs, >= 1 */
} ddsm_rate_lease_ans;

/* Run the lease in the database (one statement; the server's clock decides the window). */
DDSM_WUR ddsm_err ddsm_rate_lease(ddsm_store *st, const ddsm_rate_lease_req *req,
                                  ddsm_rate_lease_ans *ans);

/* ------------------------------------------------------------------------------------------ */
/* The local buckets (thread-safe) */

typedef struct ddsm_ratelimit ddsm_ratelimit;

typedef enum ddsm_rate_verdict {
    DDSM_RATE_ALLOW = 0, /* one token of every configured scope was taken */
    DDSM_RATE_DENY,      /* *scope's limit is spent for the rest of its window */
    DDSM_RATE_LEASE,     /* *req must be leased by the caller, then ddsm_ratelimit_apply */
} ddsm_rate_verdict;

/* per_asset / per_requester may have limit 0 (no limit of that kind). max_buckets 16..1048576:
 * buckets of ended windows are reused first; beyond that the least recently used one is
 * dropped (its tokens are lost: under-admission, never over-admission). */
DDSM_WUR ddsm_err ddsm_ratelimit_new(const ddsm_rate *per_asset, const ddsm_rate *per_requester,
                                     unsigned max_buckets, ddsm_ratelimit **out);
void ddsm_ratelimit_free(ddsm_ratelimit *rl); /* NULL accepted; no call may be in progress */
/* Whether any limit is configured (when not, take always allows). */
bool ddsm_ratelimit_active(const ddsm_ratelimit *rl);

/* Take a token for (requester, asset) at now_ms (monotonic). When a bucket has no token and no
 * lease is in flight for it, the caller becomes its leaser: DDSM_RATE_LEASE with *req filled
 * (nothing was taken; lease, apply, and take again). When another thread is leasing that bucket,
 * waits for it up to wait_ms, then answers as above. On DDSM_RATE_DENY *scope names the limit. */
ddsm_rate_verdict ddsm_ratelimit_take(ddsm_ratelimit *rl, const char *requester,
                                      const ddsm_uuid *asset, int64_t now_ms, int wait_ms,
                                      ddsm_rate_scope *scope, ddsm_rate_lease_req *req);

/* The answer of a lease this caller was given (by take or wanted). */
void ddsm_ratelimit_apply(ddsm_ratelimit *rl, const ddsm_rate_lease_req *req,
                          const ddsm_rate_lease_ans *ans, int64_t now_ms);
/* A lease that failed (store down): the bucket is free to be leased again. */
void ddsm_ratelimit_apply_failed(ddsm_ratelimit *rl, const ddsm_rate_lease_req *req);

/* Buckets used in their current window whose tokens ran below half a chunk and that are not
 * spent nor being leased: up to max lease requests into out (the caller leases each and applies
 * the answer). Returns how many. For the background refill. */
size_t ddsm_ratelimit_wanted(ddsm_ratelimit *rl, int64_t now_ms, ddsm_rate_lease_req *out,
                             size_t max);

typedef struct ddsm_ratelimit_stats {
    uint64_t allowed;
    uint64_t denied[DDSM_RATE__SCOPES];
    uint64_t leases; /* leases applied */
    uint64_t leases_failed;
    uint64_t tokens_granted; /* sum of grants */
    uint64_t lease_waits;    /* takes that waited for another thread's lease */
    uint64_t buckets;        /* buckets in use now */
} ddsm_ratelimit_stats;
void ddsm_ratelimit_stats_get(ddsm_ratelimit *rl, ddsm_ratelimit_stats *out);

/* ------------------------------------------------------------------------------------------ */
/* Compliance zones */

#define DDSM_ZONE_NAME_MAX 63
#define DDSM_ZONE_DEFAULT "default"
/* NOTIFY channel for zone changes; payload "<asset uuid> on|off <zone>", one per asset. */
#define DDSM_ZONE_NOTIFY_CHANNEL "ddsm_zone"

/* 1..63 characters of [A-Za-z0-9._-], starting with a letter or digit. */
bool ddsm_zone_name_valid(const char *zone);

/* Parse a DDSM_ZONE_NOTIFY_CHANNEL payload. */
bool ddsm_zone_notify_parse(const char *payload, ddsm_uuid *asset, bool *enabled,
                            char zone[DDSM_ZONE_NAME_MAX + 1]);

/* Enable (creating the zone when it does not exist) or disable (DDSM_E_NOT_FOUND when it does not
 * exist) a zone, in one statement with its audit row (ZONE_ENABLE / ZONE_DISABLE, chained when
 * the store has a chain) and one NOTIFY per asset of the zone. *notified (may be NULL): how many
 * assets the zone holds. DDSM_E_INPUT for a malformed name. */
DDSM_WUR ddsm_err ddsm_zone_set_enabled(ddsm_store *st, const char *zone, bool enabled,
                                        const char *requester, uint64_t *notified);

/* Move an asset to zone (created, enabled, when it does not exist), with its ZONE_ASSIGN audit
 * row ("zone <old> -> <new>") and a NOTIFY of its new zone's state. old_zone (may be NULL) gets
 * the zone it left. DDSM_E_NOT_FOUND for an unknown asset. */
DDSM_WUR ddsm_err ddsm_zone_assign(ddsm_store *st, const ddsm_uuid *asset, const char *zone,
                                   const char *requester, char old_zone[DDSM_ZONE_NAME_MAX + 1]);

typedef struct ddsm_zone_info {
    char zone[DDSM_ZONE_NAME_MAX + 1];
    bool enabled;
    int64_t updated_us;
    char updated_by[DDSM_REQUESTER_MAX + 1]; /* "" when never changed */
    uint64_t assets;                         /* assets in the zone */
    uint64_t derivable;                      /* of them ACTIVE or ROTATING */
} ddsm_zone_info;
typedef int (*ddsm_zone_cb)(const ddsm_zone_info *z, void *arg);
/* Every zone ordered by name; the callback returns non-zero to stop. */
DDSM_WUR ddsm_err ddsm_zone_list(ddsm_store *st, ddsm_zone_cb cb, void *arg);

/* The zone of an asset and whether it is enabled (re-validation when the LISTEN link is down).
 * DDSM_E_NOT_FOUND for an unknown asset. */
DDSM_WUR ddsm_err ddsm_zone_of_asset(ddsm_store *st, const ddsm_uuid *asset,
                                     char zone[DDSM_ZONE_NAME_MAX + 1], bool *enabled);

#endif
