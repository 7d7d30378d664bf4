/* SPDX-License-Identifier: Apache-2.0 */
/* The root pin (docs/root.md): the fingerprints of the root seed keys this store accepts,
 * computed inside the HSM and recorded by ddsmctl (sql/005_root_pin.sql). */
#ifndef DDSM_ROOTPIN_H
#define DDSM_ROOTPIN_H

#include <stdbool.h>
#include <stddef.h>

#include "ddsm/derive.h"
#include "ddsm/err.h"
#include "ddsm/store.h"

/* More distinct roots than this in one store is not a deployment we support: the module refuses
 * (a store is one root; a few appear when tokens are replaced or tests share a database). */
#define DDSM_ROOT_PINS_MAX 16

typedef enum ddsm_pin_event {
    DDSM_PIN_CREATE,  /* ddsmctl root create */
    DDSM_PIN_IMPORT,  /* ddsmctl root import */
    DDSM_PIN_RECOVER, /* ddsmctl root recover */
    DDSM_PIN_PIN,     /* ddsmctl root pin: a root made before the pin existed */
} ddsm_pin_event;

typedef struct ddsm_root_pin {
    ddsm_pin_event event;
    char fingerprint[DDSM_FINGERPRINT_HEX + 1]; /* lower-case hex */
    const char *token_label;
    const char *key_label;
    const char *unique_id;    /* CKA_UNIQUE_ID as given by the backend, or NULL */
    const char *check_value;  /* CKA_CHECK_VALUE in lower-case hex, or NULL */
    const char *not_enforced; /* attributes the backend refused, "" for none, NULL: unknown */
} ddsm_root_pin;

typedef struct ddsm_root_pins {
    bool table;   /* false: the store predates the pin (run `ddsmctl db migrate`) */
    size_t count; /* distinct fingerprints, oldest pin first */
    char fingerprint[DDSM_ROOT_PINS_MAX][DDSM_FINGERPRINT_HEX + 1];
} ddsm_root_pins;

/* Read the distinct pinned fingerprints. A store without the table is not an error (out->table
 * false, count 0): the caller decides; more than DDSM_ROOT_PINS_MAX distinct ones is
 * DDSM_E_STATE. */
DDSM_WUR ddsm_err ddsm_store_root_pins(ddsm_store *st, ddsm_root_pins *out);

/* Append one pinning event. DDSM_E_STATE with a message naming `ddsmctl db migrate` when the
 * table is missing; DDSM_E_INPUT for a malformed fingerprint. */
DDSM_WUR ddsm_err ddsm_store_root_pin_record(ddsm_store *st, const ddsm_root_pin *pin);

/* Is fp (32 lower-case hex digits) one of pins? Constant time in the fingerprint bytes. */
bool ddsm_root_pins_has(const ddsm_root_pins *pins, const char *fp);

const char *ddsm_pin_event_name(ddsm_pin_event ev);

#endif
