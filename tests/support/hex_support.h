/* SPDX-License-Identifier: Apache-2.0 */
/* Hex text for the C tests: test vectors in, computed bytes out. The decoders fail the running
 * cmocka test on malformed input. Include after <cmocka.h>. */
#ifndef DDSM_HEX_SUPPORT_H
#define DDSM_HEX_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* n bytes as 2n lowercase hex digits and a NUL (out holds 2n + 1). */
void hexs_encode(const uint8_t *b, size_t n, char *out);
/* An even number of hex digits into at most cap bytes; returns how many. */
size_t hexs_decode(const char *hex, uint8_t *out, size_t cap);
/* Exactly len bytes' worth of hex digits into out. */
void hexs_exact(const char *hex, uint8_t *out, size_t len);

#endif
