/* SPDX-License-Identifier: Apache-2.0 */
/* BIP-32 style derivation paths (docs/design.md "Derivation, version 1"). */
#ifndef DDSM_PATH_H
#define DDSM_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"

#define DDSM_PATH_MAX_DEPTH 16
#define DDSM_HARDENED 0x80000000u
/* "m" + 16 * ("/" + 10 digits + "'") + NUL */
#define DDSM_PATH_TEXT_MAX (1 + DDSM_PATH_MAX_DEPTH * 12 + 1)

typedef struct ddsm_path {
    uint8_t depth;                         /* 1..16 for asset keys; 0 only for reserved uses */
    uint32_t index[DDSM_PATH_MAX_DEPTH];   /* hardened components carry DDSM_HARDENED */
} ddsm_path;

/* Parse a user path of exactly len bytes (not NUL-terminated necessarily): "m/44'/0h/0H/0/5".
 * Components: decimal below 2^31, no leading zeros, optional hardening mark ', h or H.
 * Depth 1..16. On error *why (if why != NULL) points to a static human-readable reason. */
DDSM_WUR ddsm_err ddsm_path_parse(const char *text, size_t len, ddsm_path *out, const char **why);

/* Canonical text form (hardened written as '). Depth 0 formats as "m". */
void ddsm_path_format(const ddsm_path *p, char out[DDSM_PATH_TEXT_MAX]);

/* A policy path shape ([policy] path_pattern): a path whose components may also be '*' (any
 * index), with or without a hardening mark. A path matches when the depth is the same, every
 * component's hardening is the same, and every non-'*' index is equal. */
typedef struct ddsm_path_pattern {
    uint8_t depth;                       /* 1..16 */
    uint32_t index[DDSM_PATH_MAX_DEPTH]; /* DDSM_HARDENED set when hardened; 0 for '*' */
    uint16_t wildcard;                   /* bit i set: component i is '*' */
} ddsm_path_pattern;

/* Same grammar and reasons as ddsm_path_parse, plus '*' as a whole component's number. */
DDSM_WUR ddsm_err ddsm_path_pattern_parse(const char *text, size_t len, ddsm_path_pattern *out,
                                          const char **why);
bool ddsm_path_pattern_match(const ddsm_path_pattern *pat, const ddsm_path *p);

#endif
