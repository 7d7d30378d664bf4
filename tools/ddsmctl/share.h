/* SPDX-License-Identifier: Apache-2.0 */
/* One custodian's share of the root seed, and its printable text form (format in share.c). */
#ifndef DDSMCTL_SHARE_H
#define DDSMCTL_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "ddsm/derive.h"
#include "ddsm/err.h"

#define SHARE_SECRET_LEN 32  /* the root seed and each share: 32 bytes */
#define SHARE_CEREMONY_LEN 8 /* random id of one ceremony, 16 hex digits */
#define SHARE_TEXT_MAX 4096  /* a longer file is refused without parsing */
#define SHARE_MAGIC "DDSM-SHARE-V1"

struct share {
    uint8_t ceremony[SHARE_CEREMONY_LEN];
    unsigned threshold; /* K: 1..shares */
    unsigned shares;    /* N: 1..255 */
    unsigned index;     /* this share's x coordinate in GF(256): 1..shares */
    char fingerprint[DDSM_FINGERPRINT_HEX + 1]; /* of the whole seed, lower-case hex */
    uint8_t data[SHARE_SECRET_LEN];             /* secret: the share itself */
};

/* Parse exactly len bytes of text (no NUL needed; a NUL byte is an error). On success *out is
 * filled (it then holds a secret: wipe it with share_wipe) and DDSM_OK is returned. On failure
 * DDSM_E_INPUT, *out untouched and a one-line reason naming the line in why (n > 0). Never reads
 * outside text[0..len). */
DDSM_WUR ddsm_err share_parse(const char *text, size_t len, struct share *out, char *why, size_t n);

/* Format s (a secret) as share text with its checksums into out (cap bytes, NUL-terminated).
 * *out_len gets the text length (without the NUL). DDSM_E_ARG when s is out of range or out is
 * too small (nothing useful is left in out then: it is wiped). */
DDSM_WUR ddsm_err share_format_secret(const struct share *s, char *out, size_t cap,
                                      size_t *out_len);

/* Wipe a share (secret). */
void share_wipe(struct share *s);

#endif
