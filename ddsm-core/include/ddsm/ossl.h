/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenSSL library context all of ddsm-core's and the module's own OpenSSL work runs in: a
 * private OSSL_LIB_CTX with only OpenSSL's default provider, never the process's default context.
 *
 * The module is loaded into processes whose OpenSSL configuration (OPENSSL_CONF) may load other
 * providers, pkcs11-provider pointed at this very module among them. Work done in the default
 * context could then be handed to that provider (a digest, random bytes, a key), i.e. back into
 * the module, from inside one of its own calls. The private context reads no configuration file
 * and holds the default provider alone, so whatever the host configures, the module's HMACs, HD
 * derivations, signatures and AES-GCM run in OpenSSL's own code. */
#ifndef DDSM_OSSL_H
#define DDSM_OSSL_H

#include <stdbool.h>

#include <openssl/evp.h>
#include <openssl/types.h>

/* The private context, created at first use (thread-safe) and kept for the life of the process.
 * NULL only when OpenSSL could not create it, load the default provider or fetch SHA-256 and
 * AES-256-GCM from it (out of memory); OpenSSL's *_ex functions would then fall back to the
 * default context, so the module's C_Initialize and ddsmctl refuse to start unless
 * ddsm_ossl_ready() (fail closed): nothing runs with a NULL context. */
bool ddsm_ossl_ready(void);
OSSL_LIB_CTX *ddsm_ossl_ctx(void);
/* SHA-256, SHA-512 and AES-256-GCM fetched once from that context (NULL as above). */
const EVP_MD *ddsm_ossl_sha256(void);
const EVP_CIPHER *ddsm_ossl_aes_256_gcm(void);

#endif
