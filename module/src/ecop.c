/* SPDX-License-Identifier: Apache-2.0 */
#include "ecop.h"

#include <stdlib.h>

void ddsm_ec_op_free(struct ddsm_ec_op *x)
{
    if (x == NULL)
        return;
    EVP_MD_CTX_free(x->md);
    free(x);
}
