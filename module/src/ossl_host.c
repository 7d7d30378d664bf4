/* SPDX-License-Identifier: Apache-2.0 */
#include "ossl_host.h"

#include <openssl/crypto.h>

void ddsm_ossl_load_host_config(void)
{
    /* A failure here is the host's configuration's (OpenSSL reports it to the host the same way
     * at its own first use); the module goes on either way. */
    (void)OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
}
