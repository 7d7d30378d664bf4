/* SPDX-License-Identifier: Apache-2.0 */
/* The rotation fence ([cache] rotation_fence): a signing or encrypting operation with a cached key
 * first waits for a round trip on the LISTEN connection that started after the operation did.
 *
 * Why it is exact: PostgreSQL signals the listening backends while the rotating transaction
 * commits, before the rotating client gets its answer, and a backend sends the notifications it
 * was signalled about before the ReadyForQuery of the next statement it runs. So once a
 * statement sent on the LISTEN connection after time t has been answered, every rotation that
 * returned before t has been delivered (and processed by the LISTEN thread, which runs the
 * fence). Without the fence the module acts on a rotation as soon as its NOTIFY reaches the
 * process (ddsm_ctx_listener_catch_up), which is a few milliseconds after the rotation returned
 * on a loaded machine; with it, never later than the rotation's return, at the price of one
 * shared round trip per operation (concurrent operations share one fence).
 *
 * Requests come from any thread; the fences themselves run on the LISTEN thread, which polls
 * ddsm_fence_wakefd() beside its socket. pthread mutex and condition variable. */
#ifndef DDSM_FENCE_H
#define DDSM_FENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/pkcs11-compat.h"

typedef struct ddsm_fence ddsm_fence;

CK_RV ddsm_fence_new(ddsm_fence **out) DDSM_WUR;
void ddsm_fence_free(ddsm_fence *f); /* NULL accepted; no request may be waiting */

/* The descriptor the LISTEN thread polls for POLLIN: readable when a fence is wanted. */
int ddsm_fence_wakefd(const ddsm_fence *f);

/* Any thread: wait until a fence that started after this call has completed. false when it
 * failed (the LISTEN link is down) or took longer than timeout_ms: the caller must then ask the
 * store instead. */
bool ddsm_fence_wait(ddsm_fence *f, unsigned timeout_ms);

/* LISTEN thread: the requests a fence sent now would cover (0: none; clears the wake-up). */
uint64_t ddsm_fence_begin(ddsm_fence *f);
/* LISTEN thread: the fence begun for target completed (ok) or failed. */
void ddsm_fence_end(ddsm_fence *f, uint64_t target, bool ok);

#endif
