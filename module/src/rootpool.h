/* SPDX-License-Identifier: Apache-2.0 */
/* The module's own backend sessions on the token that holds the root (the fronted token, or the
 * custody token of [backend] root_token_label): a pool of logged-in sessions, the root's cached
 * handle there, and the worker pool that bounds the HMACs made through them (hsmcall.h).
 *
 * Invariants:
 * - Never an application session: the pool opens its own, and hands each to one thread at a time
 *   (acquire .. release). n counts the sessions open (handed out or idle), never more than
 *   [backend] workers are kept idle.
 * - A session whose call the worker pool quarantined belongs to that pool from then on: the
 *   holder disowns it (no count, no close here), and the worker closes it when the call returns.
 * - Sessions carry the generation they were opened in; a drain (the application logged out on the
 *   fronted token) bumps it, closes the idle ones, and the busy ones are closed when released, so
 *   none keeps a login alive. Custody sessions hold the module's own login and are never drained.
 * - The custody login is tried by one thread at a time, and a refusal latches (see rootpool.c), so
 *   no retry storm burns the token's PIN retry counter.
 * - The lock is the context's (never held across a backend call). */
#ifndef DDSM_ROOTPOOL_H
#define DDSM_ROOTPOOL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "ddsm/config.h"
#include "ddsm/hsm.h"
#include "hsmcall.h"
#include "lock.h"
#include "rootfind.h"

/* One of the module's own sessions, logged in, and the root's handle on its token. */
typedef struct ddsm_rootsess {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE root;
    unsigned gen;
    bool standby; /* a session on the standby token (standby.h), not of this pool */
} ddsm_rootsess;

/* The module's own sessions on one token, as a pool keeps them (the primary's here, the
 * standby's in standby.c): the idle ones, at most cap, ready for reuse; n_open counts every open
 * one, idle or handed out. A session taken while gen had another value is closed, not kept, when
 * it comes back (a drain moves gen). Fields under lock (the owner's), never held across a backend
 * call. */
typedef struct ddsm_sesslist {
    CK_FUNCTION_LIST_PTR be;
    ddsm_mutex *lock;
    CK_SESSION_HANDLE *idle;
    unsigned cap, n_idle, n_open, gen;
} ddsm_sesslist;

CK_RV ddsm_sesslist_init(ddsm_sesslist *l, CK_FUNCTION_LIST_PTR be, ddsm_mutex *lock,
                         unsigned cap) DDSM_WUR;
/* Close the idle sessions (no backend call while the process is exiting: exiting.h) and free the
 * list. A zeroed list is accepted. */
void ddsm_sesslist_close(ddsm_sesslist *l);
/* A session comes back: kept idle unless broken, taken before the last drain, or the list is
 * full; else closed. Nothing for CK_INVALID_HANDLE (disowned). */
void ddsm_sesslist_release(ddsm_sesslist *l, const ddsm_rootsess *rs, bool broken);
/* The call pool quarantined rs->s: no longer counted here, not closed; rs->s becomes
 * CK_INVALID_HANDLE. */
void ddsm_sesslist_disown(ddsm_sesslist *l, ddsm_rootsess *rs);
/* A fresh session counted in n_open could not be opened. */
void ddsm_sesslist_uncount(ddsm_sesslist *l);
/* Move gen and close the idle sessions: the busy ones are closed when they come back. */
void ddsm_sesslist_drain(ddsm_sesslist *l);

typedef struct ddsm_rootpool ddsm_rootpool;

/* What the pool is made with, all owned by the context and outliving the pool. */
typedef struct ddsm_rootpool_args {
    const ddsm_config *cfg;
    ddsm_hsm *hsm;                 /* the primary backend */
    CK_SLOT_ID slot;               /* the root's token there */
    bool custody;                  /* slot is the custody token: log in with root_pin_file */
    ddsm_mutex *lock;              /* the context's */
    const atomic_bool *can_thread; /* the context's: false when the module may not (or could
                                    * not) create threads; then the calls go direct */
    ddsm_rootfind *find;
} ddsm_rootpool_args;

CK_RV ddsm_rootpool_new(const ddsm_rootpool_args *args, ddsm_rootpool **out) DDSM_WUR;

/* Close the idle sessions (unless the process is exiting: ddsm_sesslist_close). */
void ddsm_rootpool_close(ddsm_rootpool *p);
/* Stop the worker pool and free p. true when the backend may now be finalised and unloaded: no
 * worker is left inside it (hsmcall.h, ddsm_hsmcall_free). NULL accepted (true). */
bool ddsm_rootpool_free(ddsm_rootpool *p) DDSM_WUR;

/* A session (a fresh one is logged in to the custody token first), and the root's handle, looked
 * up through the pin (rootfind.h) when not cached. On failure *detail gets a DDSM_DEVERR_* code. */
CK_RV ddsm_rootpool_acquire(ddsm_rootpool *p, ddsm_rootsess *out, CK_ULONG *detail) DDSM_WUR;
/* broken: the session failed in a way that makes it unfit for reuse. */
void ddsm_rootpool_release(ddsm_rootpool *p, const ddsm_rootsess *rs, bool broken);
/* The worker pool quarantined rs->s: forget it, without closing it (rs->s becomes
 * CK_INVALID_HANDLE, which release then ignores). */
void ddsm_rootpool_disown(ddsm_rootpool *p, ddsm_rootsess *rs);
/* The backend called rs->root invalid: forget the cached handle and look the root up again. */
CK_RV ddsm_rootpool_refresh(ddsm_rootpool *p, ddsm_rootsess *rs, CK_ULONG *detail) DDSM_WUR;
/* Close the idle sessions, mark the busy ones for closing, forget the root's handle (a backend
 * may renumber private objects at the next login). Nothing on a custody token. */
void ddsm_rootpool_drain(ddsm_rootpool *p);

/* The worker pool bounding this token's calls, made at the first call; NULL when the module may
 * not create threads (calls then go direct, unbounded). */
ddsm_hsmcall *ddsm_rootpool_calls(ddsm_rootpool *p);
ddsm_hsm *ddsm_rootpool_hsm(const ddsm_rootpool *p);

#endif
