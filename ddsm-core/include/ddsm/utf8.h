/* SPDX-License-Identifier: Apache-2.0 */
#ifndef DDSM_UTF8_H
#define DDSM_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence that starts at s, n > 0 bytes being available;
 * 0 when the bytes there are not one: a stray continuation byte, an overlong form, a surrogate,
 * a code point above U+10FFFF, or a sequence cut short. */
size_t ddsm_utf8_seq(const unsigned char *s, size_t n);

#endif
