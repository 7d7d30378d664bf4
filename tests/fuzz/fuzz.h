/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the libFuzzer targets: the entry point's prototype and the invariant check. A failed
 * check prints what broke and aborts, which libFuzzer records as a crash with its input. */
#ifndef DDSM_FUZZ_H
#define DDSM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whether all n bytes at p equal b (an out-parameter left untouched on failure). */
static inline int fuzz_all_bytes(const void *p, size_t n, uint8_t b)
{
    const uint8_t *q = p;
    for (size_t i = 0; i < n; i++) {
        if (q[i] != b)
            return 0;
    }
    return 1;
}

#endif
