/* SPDX-License-Identifier: Apache-2.0 */
/* The asset lifecycle as a pure (state, event) -> next-state table. */
#ifndef DDSM_STATE_H
#define DDSM_STATE_H

#include <stdbool.h>

#include "ddsm/err.h"

typedef enum ddsm_state {
    DDSM_STATE_INITIALIZED = 0,
    DDSM_STATE_ACTIVE,
    DDSM_STATE_ROTATING,
    DDSM_STATE_RETIRED,
    DDSM_STATE__COUNT
} ddsm_state;

typedef enum ddsm_event {
    DDSM_EV_ACTIVATE = 0, /* INITIALIZED -> ACTIVE */
    DDSM_EV_ROTATE,       /* ACTIVE -> ACTIVE, counter + 1, no grace */
    DDSM_EV_ROTATE_GRACE, /* ACTIVE -> ROTATING, counter + 1, old counter verifies during grace */
    DDSM_EV_GRACE_END,    /* ROTATING -> ACTIVE */
    DDSM_EV_RETIRE,       /* ACTIVE | ROTATING -> RETIRED */
    DDSM_EV__COUNT
} ddsm_event;

/* DDSM_OK and *next set when the transition is allowed; DDSM_E_STATE otherwise (*next untouched). */
DDSM_WUR ddsm_err ddsm_state_next(ddsm_state s, ddsm_event e, ddsm_state *next);

/* Whether keys of this state's current counter may be derived (ACTIVE, ROTATING). */
bool ddsm_state_derivable(ddsm_state s);

const char *ddsm_state_name(ddsm_state s); /* "ACTIVE"...; "?" when out of range */
const char *ddsm_event_name(ddsm_event e); /* "ACTIVATE"... */
DDSM_WUR ddsm_err ddsm_state_parse(const char *name, ddsm_state *out);

#endif
