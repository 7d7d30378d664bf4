/* SPDX-License-Identifier: Apache-2.0 */
/* The host process's OpenSSL configuration, read before the module takes its initialisation lock.
 *
 * A process whose OPENSSL_CONF loads pkcs11-provider pointed at this module with
 * `pkcs11-module-load-behavior = early` reads that configuration at its first use of OpenSSL's
 * default library context. When that first use is the backend's (SoftHSMv2 asks OpenSSL for random
 * bytes in its C_Initialize, inside ours), the provider calls our C_Initialize from within it:
 * the same thread waits for the lock it holds, for ever. Reading the configuration first, outside
 * the lock, lets that nested C_Initialize run to the end (OpenSSL skips a configuration load nested
 * in itself); the outer one then finds the module initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED,
 * which hosts that share a module with a provider accept). The module's own OpenSSL work never
 * uses the default context (ddsm/ossl.h). */
#ifndef DDSM_OSSL_HOST_H
#define DDSM_OSSL_HOST_H

void ddsm_ossl_load_host_config(void);

#endif
