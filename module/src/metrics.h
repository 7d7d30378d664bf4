/* SPDX-License-Identifier: Apache-2.0 */
/* The module's metrics (docs/policy.md "Metrics"): counters and histograms kept with atomics on
 * the hot path, rendered as Prometheus text exposition, and written to a node_exporter
 * textfile-collector file ([metrics] textfile) every [metrics] interval_ms by a thread started
 * lazily, at the first session. A module lives inside someone else's process: it serves no port.
 *
 * The file is written to "<path>.tmp" and renamed over <path>, so a scrape never reads half a
 * file; every series carries ddsm_instance="<host>/<pid>/<random>" so that the files of several
 * processes on one host (textfile = /var/lib/node_exporter/ddsm-%p.prom) never collide. The file
 * is removed at C_Finalize. */
#ifndef DDSM_METRICS_H
#define DDSM_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/batch.h"
#include "ddsm/config.h"
#include "ddsm/policy.h"
#include "ddsm/state.h"
#include "ddsm/pkcs11-compat.h"

/* Why a derivation or a key use was refused: the "reason" label of ddsm_denials_total. */
typedef enum ddsm_deny_reason {
    DDSM_DENY_PATH = 0,       /* path shape outside [policy] path_pattern */
    DDSM_DENY_RATE_ASSET,     /* rate_per_requester_asset spent */
    DDSM_DENY_RATE_REQUESTER, /* rate_per_requester spent */
    DDSM_DENY_ZONE,           /* the asset's zone is disabled */
    DDSM_DENY_MECHANISM,      /* mechanism outside [policy] mechanism */
    DDSM_DENY_STATE,          /* the asset is INITIALIZED or RETIRED */
    DDSM_DENY_UNKNOWN_ASSET,  /* no such asset */
    DDSM_DENY__COUNT
} ddsm_deny_reason;

const char *ddsm_deny_reason_name(ddsm_deny_reason r); /* "path", "rate_requester_asset", ... */

typedef enum ddsm_phase {
    DDSM_PHASE_STORE = 0, /* the audit statement: queueing for a batch and its round trip */
    DDSM_PHASE_HSM,       /* the HMAC in the HSM */
    DDSM_PHASE_TOTAL,     /* the whole derivation, policy included */
    DDSM_PHASE__COUNT
} ddsm_phase;

typedef struct ddsm_metrics ddsm_metrics;

/* What the exposition shows of the rest of the module, read at every render through the function
 * its owner (the context) hands to ddsm_metrics_new. */
typedef struct ddsm_metrics_view {
    ddsm_batch_stats batch;     /* the group-commit batcher's (zero while there is none) */
    ddsm_ratelimit_stats rate;  /* the policy gate's rate-limit leases */
    bool listen_up;             /* the LISTEN link */
    uint64_t hints_heard, hints_ignored, hints_reread, hints_deferred; /* notifications */
    unsigned keys_cached;       /* derived keys held now */
} ddsm_metrics_view;
typedef void (*ddsm_metrics_view_fn)(void *arg, ddsm_metrics_view *out);

/* instance: this module instance's id (copied), a label of every series. can_thread: whether the
 * application lets the module create threads (the writer is one). view(view_arg, ...) fills what
 * the metrics read of the rest of the module; it is called from the writer thread too, until
 * ddsm_metrics_free. */
CK_RV ddsm_metrics_new(const ddsm_config *cfg, const char *instance, bool can_thread,
                       ddsm_metrics_view_fn view, void *view_arg, ddsm_metrics **out) DDSM_WUR;
/* Stops the writer thread and removes the file. NULL accepted. */
void ddsm_metrics_free(ddsm_metrics *m);

/* Start the writer thread when a textfile is configured and threads are allowed (once; the first
 * file is written at once). NULL accepted. */
void ddsm_metrics_start(ddsm_metrics *m);

/* Hot-path observations (lock-free). ns < 0: the phase did not happen. */
void ddsm_metrics_derived(ddsm_metrics *m, ddsm_state state, int64_t store_ns, int64_t hsm_ns,
                          int64_t total_ns);
/* state: the asset's state when the refusal knew it, DDSM_STATE__COUNT when not ("unknown"). */
void ddsm_metrics_denied(ddsm_metrics *m, ddsm_deny_reason why, ddsm_state state);
void ddsm_metrics_cache(ddsm_metrics *m, bool hit);

/* The whole exposition (malloc'ed, NUL-terminated; free it). NULL when out of memory. */
char *ddsm_metrics_render(ddsm_metrics *m);
/* Write the textfile now (atomically). DDSM_OK, or the error (logged). */
ddsm_err ddsm_metrics_write(ddsm_metrics *m);

/* Monotonic nanoseconds, for the observations above. */
int64_t ddsm_metrics_now_ns(void);

#endif
