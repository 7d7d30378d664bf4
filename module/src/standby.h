/* SPDX-License-Identifier: Apache-2.0 */
/* A standby token holding the same root seed key ([backend] standby_token_label,
 * standby_root_pin_file, standby_module; docs/standby.md), to which derivations fail over when the
 * active token fails or does not answer within call_timeout_ms.
 *
 * Only the module's own root sessions (derivation HMACs, root lookups, the audit key) ever reach
 * the standby; application sessions and pass-through calls stay on the primary backend's slot.
 * The module logs in to the standby itself with standby_root_pin_file.
 *
 * Pairing: before the first derivation of a process, the primary root (found through the pin,
 * docs/root.md) and the standby root (found the same way on the standby token) are both
 * fingerprinted inside their HSMs and compared. Different fingerprints, or no pinned root on the
 * standby, refuse every derivation (CKR_DEVICE_ERROR, DDSM_DEVERR_STANDBY_MISMATCH) until the
 * module is initialised again, logged once naming both tokens. A standby that cannot be reached
 * then is not a reason to refuse: it is checked when a failover first needs it, and a token whose
 * root differs from the one already serving never serves.
 *
 * Failover and failback: the active token changes only when a call to it fails with a device
 * class error (or times out) and the other token can give a verified session; there is no timed
 * failback. The derivation in progress is retried on the other token under its one audit row (the
 * row names the key, not the HSM). */
#ifndef DDSM_STANDBY_H
#define DDSM_STANDBY_H

#include <stdatomic.h>
#include <stdbool.h>

#include "ddsm/config.h"
#include "hsmcall.h"
#include "rootfind.h"
#include "rootpool.h"

typedef struct ddsm_standby ddsm_standby;

/* What the standby is opened with, all owned by the context and outliving it. */
typedef struct ddsm_standby_args {
    const ddsm_config *cfg;
    bool custody;                  /* the primary's root is on the custody token */
    const atomic_bool *can_thread; /* the context's (rootpool.h) */
    ddsm_rootpool *primary;        /* the primary token's sessions */
    ddsm_rootfind *find;
} ddsm_standby_args;

/* C_Initialize: with a standby configured, load its library (standby_module, default module) and
 * look for its token; *out stays NULL without one. A library that cannot be loaded fails
 * (CKR_FUNCTION_FAILED, logged); a token not present now is only logged and looked for again when
 * needed (a standby that is down must not stop the primary from starting). */
CK_RV ddsm_standby_open(const ddsm_standby_args *args, ddsm_standby **out) DDSM_WUR;
/* C_Finalize, before the primary backend goes: close its sessions, stop its call pool, unload.
 * NULL accepted. */
void ddsm_standby_free(ddsm_standby *sb);
/* Fork child: forget it without calling into it. NULL accepted. */
void ddsm_standby_abandon(ddsm_standby *sb);

/* The standby's backend and the call pool bounding its calls (made at the first call; NULL when
 * the module may not create threads). */
ddsm_hsm *ddsm_standby_hsm(const ddsm_standby *sb);
ddsm_hsmcall *ddsm_standby_calls(ddsm_standby *sb);

/* A root session with a standby: a session on the active token (primary sessions from the
 * primary's pool), the pairing check, and a failover when the active token fails. */
CK_RV ddsm_standby_root_acquire(ddsm_standby *sb, ddsm_rootsess *out, CK_ULONG *detail) DDSM_WUR;
/* ddsm_rootpool_release / _disown / _refresh for a standby session (rs->standby). */
void ddsm_standby_release(ddsm_standby *sb, const ddsm_rootsess *rs, bool broken);
void ddsm_standby_disown(ddsm_standby *sb, ddsm_rootsess *rs);
CK_RV ddsm_standby_root_refresh(ddsm_standby *sb, ddsm_rootsess *rs, CK_ULONG *detail) DDSM_WUR;

/* A derivation HMAC through rs failed after its audit row (backend answer last_rv, or no answer
 * in time when answered is false): when the other token may take over, make it the active one,
 * give up rs (released as broken, unless already disowned) and put a session of the other token
 * in its place. CKR_OK: retry the HMAC through rs. Otherwise nothing changed but rs, which is then
 * CK_INVALID_HANDLE (nothing left to release). NULL sb: CKR_FUNCTION_FAILED at once. */
CK_RV ddsm_standby_fail_over(ddsm_standby *sb, ddsm_rootsess *rs, bool answered, CK_RV last_rv)
    DDSM_WUR;
/* Whether a failure of rs's token with this backend answer may move derivations to the other.
 * NULL sb: false. */
bool ddsm_standby_may_fail_over(ddsm_standby *sb, bool answered, CK_RV last_rv);

#endif
