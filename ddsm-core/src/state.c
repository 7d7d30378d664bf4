/* SPDX-License-Identifier: Apache-2.0 */
/* The asset lifecycle: INITIALIZED -> ACTIVE <-> ROTATING -> RETIRED, as one table. A cell holding
 * NO_TRANSITION is a refused (state, event) pair. */
#include "ddsm/state.h"

#include <stddef.h>
#include <strings.h>

#define NO_TRANSITION DDSM_STATE__COUNT

static const ddsm_state transitions[DDSM_STATE__COUNT][DDSM_EV__COUNT] = {
    [DDSM_STATE_INITIALIZED] = {
        [DDSM_EV_ACTIVATE] = DDSM_STATE_ACTIVE,
        [DDSM_EV_ROTATE] = NO_TRANSITION,
        [DDSM_EV_ROTATE_GRACE] = NO_TRANSITION,
        [DDSM_EV_GRACE_END] = NO_TRANSITION,
        [DDSM_EV_RETIRE] = NO_TRANSITION,
    },
    [DDSM_STATE_ACTIVE] = {
        [DDSM_EV_ACTIVATE] = NO_TRANSITION,
        [DDSM_EV_ROTATE] = DDSM_STATE_ACTIVE,
        [DDSM_EV_ROTATE_GRACE] = DDSM_STATE_ROTATING,
        [DDSM_EV_GRACE_END] = NO_TRANSITION,
        [DDSM_EV_RETIRE] = DDSM_STATE_RETIRED,
    },
    [DDSM_STATE_ROTATING] = {
        [DDSM_EV_ACTIVATE] = NO_TRANSITION,
        [DDSM_EV_ROTATE] = NO_TRANSITION,
        [DDSM_EV_ROTATE_GRACE] = NO_TRANSITION,
        [DDSM_EV_GRACE_END] = DDSM_STATE_ACTIVE,
        [DDSM_EV_RETIRE] = DDSM_STATE_RETIRED,
    },
    [DDSM_STATE_RETIRED] = {
        [DDSM_EV_ACTIVATE] = NO_TRANSITION,
        [DDSM_EV_ROTATE] = NO_TRANSITION,
        [DDSM_EV_ROTATE_GRACE] = NO_TRANSITION,
        [DDSM_EV_GRACE_END] = NO_TRANSITION,
        [DDSM_EV_RETIRE] = NO_TRANSITION,
    },
};

static const char *const state_names[DDSM_STATE__COUNT] = {
    [DDSM_STATE_INITIALIZED] = "INITIALIZED",
    [DDSM_STATE_ACTIVE] = "ACTIVE",
    [DDSM_STATE_ROTATING] = "ROTATING",
    [DDSM_STATE_RETIRED] = "RETIRED",
};

static const char *const event_names[DDSM_EV__COUNT] = {
    [DDSM_EV_ACTIVATE] = "ACTIVATE",
    [DDSM_EV_ROTATE] = "ROTATE",
    [DDSM_EV_ROTATE_GRACE] = "ROTATE_GRACE",
    [DDSM_EV_GRACE_END] = "GRACE_END",
    [DDSM_EV_RETIRE] = "RETIRE",
};

ddsm_err ddsm_state_next(ddsm_state s, ddsm_event e, ddsm_state *next)
{
    if (next == NULL)
        return DDSM_E_ARG;
    if ((unsigned)s >= DDSM_STATE__COUNT || (unsigned)e >= DDSM_EV__COUNT)
        return DDSM_E_STATE;
    ddsm_state to = transitions[s][e];
    if (to == NO_TRANSITION)
        return DDSM_E_STATE;
    *next = to;
    return DDSM_OK;
}

bool ddsm_state_derivable(ddsm_state s)
{
    return s == DDSM_STATE_ACTIVE || s == DDSM_STATE_ROTATING;
}

const char *ddsm_state_name(ddsm_state s)
{
    return (unsigned)s < DDSM_STATE__COUNT ? state_names[s] : "?";
}

const char *ddsm_event_name(ddsm_event e)
{
    return (unsigned)e < DDSM_EV__COUNT ? event_names[e] : "?";
}

/* Names as stored in the database; either case is accepted (operators type them). */
ddsm_err ddsm_state_parse(const char *name, ddsm_state *out)
{
    if (name == NULL || out == NULL)
        return DDSM_E_ARG;
    for (unsigned s = 0; s < DDSM_STATE__COUNT; s++) {
        if (strcasecmp(name, state_names[s]) == 0) {
            *out = (ddsm_state)s;
            return DDSM_OK;
        }
    }
    return DDSM_E_INPUT;
}
