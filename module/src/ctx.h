/* SPDX-License-Identifier: Apache-2.0 */
/* The process context: the fork generation, the backend, the lazy store pool with its LISTEN
 * thread, the audit batcher, and the parts it owns (the root sessions, the virtual keys, the
 * handle and session tables, the policy gate, the metrics).
 *
 * Invariants:
 * - C_Initialize makes every part before the context is published (ddsm_ctx_get), under the
 *   initialisation lock; C_Finalize unpublishes it and frees the parts, those that run threads
 *   first. A part never sees the context: it gets what it needs of it when it is made (the
 *   context's lock, its thread permission, a store lease: docs/architecture.md).
 * - lock guards the store pool, the LISTEN thread's start and the root-session pool's free list
 *   and custody latch (rootpool.h); it is never held across I/O or a backend call.
 * - In a fork child the parent's state is never used: ddsm_ctx_get answers NULL until
 *   C_Initialize, which abandons the old state (its keys wiped, nothing else touched).
 *
 * Slot numbering (documented choice): the module exposes exactly one slot, numbered 0, mapped to
 * the backend slot whose token carries [backend] token_label. Tools that take "the first slot with
 * a token" find it; the backend's own slot ids never reach the application. */
#ifndef DDSM_CTX_H
#define DDSM_CTX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ddsm/audit.h"
#include "ddsm/batch.h"
#include "ddsm/config.h"
#include "ddsm/hsm.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "clock.h"
#include "lock.h"
#include "mechallow.h"
#include "rootfind.h"
#include "roots.h"
#include "storepool.h"

#define DDSM_SLOT_ID 0UL

typedef struct ddsm_htab ddsm_htab;
typedef struct ddsm_vkeys ddsm_vkeys;
typedef struct ddsm_sesstab ddsm_sesstab;

typedef struct ddsm_ctx {
    unsigned fork_gen; /* the process generation this state belongs to */
    ddsm_config *cfg;
    ddsm_hsm *hsm;
    CK_FUNCTION_LIST_PTR be; /* the backend's function list */
    CK_SLOT_ID slot;         /* backend slot of the fronted token: our slot 0 */
    bool custody;            /* the root lives on a separate custody token */
    CK_SLOT_ID root_slot;    /* slot of the token holding the root (== slot unless custody) */
    atomic_bool can_thread;  /* false under CKF_LIBRARY_CANT_CREATE_OS_THREADS, or once the
                              * LISTEN thread could not be created */
    char instance[DDSM_AUDIT_INSTANCE_MAX + 1]; /* this module instance: its audit chains */
    char requester[64];

    ddsm_mutex *lock; /* guards the pools (the root sessions' too: rootpool.h) and the listener
                       * start below; never held across I/O */

    /* Derivations and denials go through the group-commit batcher, whose connections each write
     * one MAC chain keyed with the audit key (derived through the HSM root: made lazily, at the
     * first derivation). */
    _Atomic(ddsm_batcher *) batcher;
    ddsm_audit_key *audit_key;

    /* the store pool for reads (registry, lifecycle): created lazily, at most
     * cfg->store.pool_size connections */
    ddsm_store **store_free;
    unsigned n_store_free;
    unsigned n_store;

    /* The module's own backend sessions for derivation: the pool on root_slot, and the standby
     * token's when one is configured (roots.h); the root lookups both use (rootfind.h). */
    ddsm_roots roots;
    ddsm_rootfind rootfind;
    _Atomic CK_OBJECT_HANDLE
        app_root; /* the root's handle as seen by the application, 0 = unknown */
    /* [backend] extra_mechanisms, resolved (mechallow.h) */
    ddsm_mechallow mechs;

    /* the LISTEN thread */
    bool listener_started;
    pthread_t listener;
    atomic_bool listener_stop;
    atomic_bool link_up;
    _Atomic int64_t link_up_since_ms; /* when the current LISTEN link was known to be up */

    ddsm_htab *handles;
    ddsm_vkeys *vkeys;
    ddsm_sesstab *sessions;

    /* The LISTEN socket while listening (-1 otherwise), and whether the LISTEN thread is busy
     * with what arrived on it: see ddsm_ctx_listener_catch_up. */
    atomic_int listen_fd;
    atomic_bool listen_busy;
    /* When (ddsm_metrics_now_ns) a look at the socket last found nothing pending. */
    _Atomic int64_t listen_clear_ns;
    /* [cache] rotation_fence: fences run by the LISTEN thread (fence.h); NULL when off. */
    struct ddsm_fence *fence;
    /* Kept reachable, never freed: the LISTEN link (only the listener thread uses it) and the
     * state inherited from a fork parent, which a child must abandon (ctx_abandon). */
    ddsm_listener *link;
    struct ddsm_ctx *inherited;
    /* Notifications are hints (ctx.c, "The LISTEN thread"): the LISTEN thread's own state for
     * answering them with store reads, and what they cost, for the metrics. */
    struct ddsm_hints *hints;
    _Atomic uint64_t hints_heard;    /* well-formed notifications on our channels */
    _Atomic uint64_t hints_ignored;  /* naming an asset this process holds nothing of */
    _Atomic uint64_t hints_reread;   /* assets re-read from the store because of them */
    _Atomic uint64_t hints_deferred; /* read budget spent: the record distrusted instead */

    /* The policy gate (policy.h: requester, rate limits, zones, mechanisms) and the metrics
     * (metrics.h); each may run a thread of its own, started lazily. */
    struct ddsm_mpolicy *policy;
    struct ddsm_metrics *metrics;

    /* The application's login on the fronted token as the module tracks it (login.h); zero is
     * "unknown": ask the backend once. */
    atomic_int login_state;
    atomic_uint login_epoch;
} ddsm_ctx;

/* The live state, or NULL when the module is not initialised in this process generation (never
 * initialised, finalised, or inherited through fork()). Lock-free. */
ddsm_ctx *ddsm_ctx_get(void);

/* C_Initialize / C_Finalize bodies (general.c runs the argument checks). */
CK_RV ddsm_ctx_initialize(const CK_C_INITIALIZE_ARGS *args) DDSM_WUR;
CK_RV ddsm_ctx_finalize(void) DDSM_WUR;

/* A store connection for this thread's exclusive use (opened lazily; the first use also starts the
 * listener). DDSM_E_TIMEOUT when every pooled connection stays busy. */
ddsm_err ddsm_ctx_store_acquire(ddsm_ctx *ctx, ddsm_store **out) DDSM_WUR;
void ddsm_ctx_store_release(ddsm_ctx *ctx, ddsm_store *st);

/* The batcher, created at the first call (the audit key is derived through rs, a secret kept in
 * secure memory). On failure *detail gets a DDSM_DEVERR_* code. */
CK_RV ddsm_ctx_batcher(ddsm_ctx *ctx, ddsm_rootsess *rs, ddsm_batcher **out,
                       CK_ULONG *detail) DDSM_WUR;

/* Close the idle derivation sessions and mark busy ones for closing (the application logged out or
 * closed its last session: ours must not keep its login alive), and forget the object handles
 * learnt under that login. Sessions on a custody token stay. */
void ddsm_ctx_drain_sessions(ddsm_ctx *ctx);

/* What is known of an asset's zone (a NOTIFY, a re-validation, a refusal by the derivation
 * statement): into the policy gate's table; disabling kills the asset's cached keys; the
 * batcher's expectation is dropped. */
void ddsm_ctx_zone_note(ddsm_ctx *ctx, const ddsm_uuid *asset, bool enabled, const char *zone);
/* Ask the store for an asset's zone and note it (re-validation while the LISTEN link does not
 * cover it, and the LISTEN thread's read after a notification named the asset). */
ddsm_err ddsm_ctx_zone_revalidate(ddsm_ctx *ctx, ddsm_store *st, const ddsm_uuid *asset) DDSM_WUR;

/* Whether an asset record validated at validated_ms is covered by the LISTEN link (the link is up
 * and was already up then), so that no re-validation is needed whatever its age. */
bool ddsm_ctx_listener_covers(ddsm_ctx *ctx, int64_t validated_ms);

/* Before trusting an asset record that the LISTEN link covers: wait, briefly, until whatever the
 * server has already sent on the link has been processed, so that a rotation whose NOTIFY has
 * reached this process counts for every operation that starts afterwards (from 50 us after it
 * arrived: one look at the socket answers for that long), even before the LISTEN thread got the
 * CPU. false when that could not be confirmed within a few milliseconds (the
 * caller then re-validates with the store). */
bool ddsm_ctx_listener_catch_up(ddsm_ctx *ctx);

/* With [cache] rotation_fence: wait for a round trip on the LISTEN connection that began after
 * this call (fence.h), so that every rotation that returned before the call has been processed.
 * false when the link is down or the fence failed or took too long: re-validate with the store. */
bool ddsm_ctx_rotation_fence(ddsm_ctx *ctx);

/* Between ctx.c and ctx_listen.c: the options of every store connection the module opens, and
 * the LISTEN thread's body (started by the first ddsm_ctx_store_acquire). */
void ddsm_ctx_store_opts(const ddsm_ctx *ctx, ddsm_store_opts *o);
void *ddsm_ctx_listener_main(void *arg);

/* What the context hands to its parts at C_Initialize instead of itself (ctx_hooks.c), so that
 * none of them includes this header: the metrics' view of the module (ctx is the ddsm_ctx), the
 * store pool as the policy gate's leases and the root lookups take it, and the LISTEN link as the
 * virtual keys' records take it. */
struct ddsm_metrics_view;
void ddsm_ctx_metrics_view(void *ctx, struct ddsm_metrics_view *out);
void ddsm_ctx_store_pool(ddsm_ctx *ctx, ddsm_storepool *out);
/* The LISTEN link as the virtual keys' records take it (vkey.h). */
struct ddsm_vkeys_link;
void ddsm_ctx_vkeys_link(ddsm_ctx *ctx, struct ddsm_vkeys_link *out);

#endif
