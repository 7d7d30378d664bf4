/* SPDX-License-Identifier: Apache-2.0 */
/* Per-operation state of a signature or verification with a virtual EC key (ddsm_vop.ec): the
 * SHA-256 context of CKM_ECDSA_SHA256 and the public key of a verification. Holds no secret.
 * Nothing in module/src below this header, so the session table can free it without depending on
 * the EC mechanisms (ec.h). */
#ifndef DDSM_ECOP_H
#define DDSM_ECOP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "ddsm/hd.h"

struct ddsm_ec_op {
    EVP_MD_CTX *md;               /* CKM_ECDSA_SHA256, created at the first update */
    uint8_t pub[DDSM_HD_PUB_MAX]; /* the public key, computed at the first verification */
    size_t pub_len;
};

void ddsm_ec_op_free(struct ddsm_ec_op *x); /* NULL accepted */

#endif
