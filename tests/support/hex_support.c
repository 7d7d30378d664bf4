/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hex_support.h"

#include <stdio.h>
#include <string.h>

void hexs_encode(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

size_t hexs_decode(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    assert_true(n % 2 == 0);
    assert_true(n / 2 <= cap);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

void hexs_exact(const char *hex, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(hex), 2 * len);
    hexs_decode(hex, out, len);
}
