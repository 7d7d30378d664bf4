/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the fuzz targets that build PKCS#11 templates from their input (fuzz_getattr,
 * fuzz_template): the input read front to back, the header and type of each attribute, freeing
 * the values, every variant bit, and the canonical paths the input picks from. */
#ifndef DDSM_FUZZ_ATTR_H
#define DDSM_FUZZ_ATTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/pkcs11-compat.h"
#include "vkey.h"

#define VK_ALL                                                                                     \
    (DDSM_VK_AES | DDSM_VK_SIGN | DDSM_VK_VERIFY | DDSM_VK_ENCRYPT | DDSM_VK_DECRYPT |             \
     DDSM_VK_EXTRACTABLE | DDSM_VK_SENSITIVE | DDSM_VK_KEY_READABLE | DDSM_VK_SESSION)

static const char *const fuzz_paths[8] = {
    "m/0",    "m/44'/0'/0'/0/5",  "m/2147483647'", "m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16",
    "m/7'/0", "m/44'/60'/0'/0/0", "m/0'/1",        "m/3",
};

struct fuzz_input {
    const uint8_t *p;
    size_t left;
};

/* The next n bytes into out; false (nothing read) when fewer are left. */
static inline bool fuzz_take(struct fuzz_input *in, void *out, size_t n)
{
    if (in->left < n)
        return false;
    memcpy(out, in->p, n);
    in->p += n;
    in->left -= n;
    return true;
}

/* The next n bytes, or all that is left when fewer: their address, and their count in *m. */
static inline const uint8_t *fuzz_take_up_to(struct fuzz_input *in, size_t n, size_t *m)
{
    const uint8_t *p = in->p;
    *m = n <= in->left ? n : in->left;
    in->p += *m;
    in->left -= *m;
    return p;
}

/* The header of the next attribute (hdr[1]: how its value is made, hdr[2]: a length) and its
 * type: types[hdr[0] % n_types], or when hdr[0] is 0xff a raw 4-byte type read next. false at
 * the end of the input. */
static inline bool fuzz_take_attr_header(struct fuzz_input *in, const CK_ATTRIBUTE_TYPE *types,
                                         size_t n_types, uint8_t hdr[3], CK_ATTRIBUTE_TYPE *type)
{
    if (!fuzz_take(in, hdr, 3))
        return false;
    *type = types[hdr[0] % n_types];
    if (hdr[0] == 0xff) {
        uint32_t raw = 0;
        if (!fuzz_take(in, &raw, sizeof(raw)))
            return false;
        *type = raw;
    }
    return true;
}

/* Free the values of n attributes (and forget them). */
static inline void fuzz_free_values(CK_ATTRIBUTE *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].pValue);
        t[i].pValue = NULL;
    }
}

#endif
