/* SPDX-License-Identifier: Apache-2.0 */
#ifndef DDSM_UUID_H
#define DDSM_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"

#define DDSM_UUID_TEXT_LEN 36 /* without the terminating NUL */

typedef struct ddsm_uuid {
    uint8_t b[16];
} ddsm_uuid;

/* Parse the canonical 8-4-4-4-12 hex form (either case), exactly len bytes, no braces. */
DDSM_WUR ddsm_err ddsm_uuid_parse(const char *text, size_t len, ddsm_uuid *out);
/* Lower-case canonical form. */
void ddsm_uuid_format(const ddsm_uuid *u, char out[DDSM_UUID_TEXT_LEN + 1]);
/* A random version-4 UUID from the OS CSPRNG. */
DDSM_WUR ddsm_err ddsm_uuid_random(ddsm_uuid *out);
/* The nil UUID names the module's own keys and is never an asset. */
bool ddsm_uuid_is_nil(const ddsm_uuid *u);

#endif
