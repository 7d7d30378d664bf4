/* SPDX-License-Identifier: Apache-2.0 */
/* Secret memory: every buffer that holds key bytes comes from here or is wiped with ddsm_wipe. */
#ifndef DDSM_SECMEM_H
#define DDSM_SECMEM_H

#include <stdbool.h>
#include <stddef.h>

/* Wipe with OPENSSL_cleanse: never optimised away. */
void ddsm_wipe(void *p, size_t n);

/* Allocate n zeroed bytes of secret memory: mlock'ed where the limit allows, excluded from core
 * dumps (MADV_DONTDUMP). NULL on failure. Free only with ddsm_secure_free. */
void *ddsm_secure_alloc(size_t n);
/* The same, and zeros in a fork child (MADV_WIPEONFORK, where the kernel offers it): for keys a
 * fork child must never use (the module's derived-key cache). */
void *ddsm_secure_alloc_fork_wiped(size_t n);
/* Wipe, unlock and free. NULL is accepted. */
void ddsm_secure_free(void *p, size_t n);

/* Constant-time equality of two n-byte buffers (MACs, fingerprints, PINs). */
bool ddsm_ct_equal(const void *a, const void *b, size_t n);

#endif
