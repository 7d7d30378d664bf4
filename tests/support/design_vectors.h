/* SPDX-License-Identifier: Apache-2.0 */
/* The docs/design.md derivation test vectors (root seed 00 01 .. 1f), for every test that checks a
 * derivation against them: ddsm-core's KDF, the HSM path, the module. */
#ifndef DDSM_DESIGN_VECTORS_H
#define DDSM_DESIGN_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#define VEC_A_ID "6f9619ff-8b86-d011-b42d-00c04fc964ff"
#define VEC_A_PATH "m/44'/0'/0'/0/0"
#define VEC_A_KEY0 "7d2fcaa0c736ca65b7610c465a197a7440b55fd6017280b2d7817a530c28d61c"
#define VEC_A_PATH_ALT "m/44h/0H/0'/0/0"
#define VEC_A_KEY1 "3da86eddfd84f9247fa77145318653e3467c4d3936be3feb4dfa8c04a0818d99"
#define VEC_B_ID "00000000-0000-4000-8000-000000000001"
#define VEC_B_PATH "m/0"
#define VEC_B_KEY0 "b9cdad6de8b43ceecb5682cfe617d2d0bd885ed4d8152c3e8d0375e012c473af"

/* The table: (asset, path as written, counter) -> key in hex. */
struct design_vector {
    const char *asset, *path;
    uint64_t counter;
    const char *key;
};
#define DESIGN_VECTORS_COUNT 3
extern const struct design_vector design_vectors[DESIGN_VECTORS_COUNT];

#endif
