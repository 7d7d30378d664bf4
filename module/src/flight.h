/* SPDX-License-Identifier: Apache-2.0 */
/* Single flight: concurrent callers that need the same materialisation (the key of one
 * (asset, path, counter)) share one store round trip and one HSM call. The first caller leads the
 * flight and does the work; the others wait for it to land and share its outcome: its CK_RV and
 * detail code, and on success a reference of their own to its result. So N threads finding and
 * signing with a key nobody derived yet cost one audit row and one HSM call, not N.
 *
 * A flight leaves the table when it lands: later callers find the result in the key cache (or
 * start a new flight). The wait has no timeout of its own: the leader's work is bounded by the
 * store's timeouts and [backend] call_timeout_ms, and it always lands.
 *
 * pthread mutex and condition variables (condition variables cannot use the application's mutex
 * callbacks). */
#ifndef DDSM_FLIGHT_H
#define DDSM_FLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#include "ddsm/err.h"
#include "ddsm/pkcs11-compat.h"

typedef struct ddsm_flights ddsm_flights;
typedef struct ddsm_flight ddsm_flight;

/* ref/unref take and drop one reference to a result. */
typedef void (*ddsm_flight_ref_fn)(void *result);

CK_RV ddsm_flights_new(ddsm_flight_ref_fn ref, ddsm_flight_ref_fn unref,
                       ddsm_flights **out) DDSM_WUR;
/* No flight may be in progress. NULL accepted. */
void ddsm_flights_free(ddsm_flights *f);

/* Join the flight of key (key_len bytes, at most DDSM_FLIGHT_KEY_MAX).
 * true: the caller leads; it does the work and must call ddsm_flight_land(f, *lead, ...) (*lead
 *       may be NULL when no flight could be made: then the caller simply works alone).
 * false: another caller led; its outcome is in *rv and *detail, and when *rv is CKR_OK *result
 *       holds a reference of the caller's own, dropped as the caller drops any result. */
#define DDSM_FLIGHT_KEY_MAX 320
bool ddsm_flight_join(ddsm_flights *f, const void *key, size_t key_len, ddsm_flight **lead,
                      CK_RV *rv, CK_ULONG *detail, void **result);

/* The leader's outcome: wakes the followers. result (with rv CKR_OK) stays the leader's; the
 * flight takes references of its own for the followers. NULL fl accepted. */
void ddsm_flight_land(ddsm_flights *f, ddsm_flight *fl, CK_RV rv, CK_ULONG detail, void *result);

/* Counters for tests: flights led, and callers that followed one. */
void ddsm_flights_stats(ddsm_flights *f, unsigned long *led, unsigned long *followed);

#endif
