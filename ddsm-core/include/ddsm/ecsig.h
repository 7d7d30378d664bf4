/* SPDX-License-Identifier: Apache-2.0 */
/* EC signing primitives for HD signing keys: ECDSA on secp256k1 (libsecp256k1: constant time,
 * RFC 6979 nonces, low-S) and P-256 (OpenSSL EVP), Ed25519 (OpenSSL EVP, pure EdDSA). Signatures
 * use the PKCS#11 raw form: r || s, 32 bytes each, for ECDSA; R || S for Ed25519.
 *
 * Functions ending in _secret read a private key. Verification answers through *valid: a
 * signature that does not verify (or is not even well formed) is *valid = false with DDSM_OK; a
 * public key that is not a point of the curve is DDSM_E_INPUT. */
#ifndef DDSM_ECSIG_H
#define DDSM_ECSIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/hd.h"

#define DDSM_ECDSA_DIGEST_LEN 32
#define DDSM_ECDSA_SIG_LEN 64
#define DDSM_ED25519_SIG_LEN 64
#define DDSM_EC_PRIV_LEN 32

/* ECDSA over a 32-byte digest with curve DDSM_CURVE_SECP256K1 or DDSM_CURVE_P256. secp256k1
 * signatures are deterministic (RFC 6979) and low-S; P-256 ones use OpenSSL's random nonces.
 * A private key outside 1..n-1 is DDSM_E_INPUT. */
DDSM_WUR ddsm_err ddsm_ecdsa_sign_secret(ddsm_curve curve,
                                         const uint8_t priv_secret[DDSM_EC_PRIV_LEN],
                                         const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                                         uint8_t sig[DDSM_ECDSA_SIG_LEN]);

/* Plain ECDSA verification. pub is SEC1, 33 (compressed) or 65 (04 || X || Y) bytes. A high-S
 * secp256k1 signature verifies, as ECDSA defines it (PKCS#11 CKM_ECDSA is plain ECDSA, and
 * P-256 behaves the same): only our own signing promises low-S. */
DDSM_WUR ddsm_err ddsm_ecdsa_verify(ddsm_curve curve, const uint8_t *pub, size_t pub_len,
                                    const uint8_t digest[DDSM_ECDSA_DIGEST_LEN],
                                    const uint8_t sig[DDSM_ECDSA_SIG_LEN], bool *valid);

/* The 32-byte ECDSA input for a hash of any length (CKM_ECDSA takes the caller's hash as is):
 * SEC1 4.1.3 step 5 for a 256-bit group order keeps the leftmost 256 bits of a longer hash, and a
 * shorter one is the same integer left-padded with zeros. len 1..64 (DDSM_E_INPUT otherwise). */
DDSM_WUR ddsm_err ddsm_ecdsa_digest_from_hash(const uint8_t *hash, size_t len,
                                              uint8_t digest[DDSM_ECDSA_DIGEST_LEN]);

/* The public key of a private key: secp256k1 and P-256 in SEC1 form, compressed (33 bytes) or,
 * with uncompressed, 04 || X || Y (65 bytes); Ed25519, the 32-byte RFC 8032 key (uncompressed is
 * ignored). A secp256k1 / P-256 private key outside 1..n-1 is DDSM_E_INPUT. */
DDSM_WUR ddsm_err ddsm_ec_public_from_secret(ddsm_curve curve,
                                             const uint8_t priv_secret[DDSM_EC_PRIV_LEN],
                                             bool uncompressed, uint8_t pub[DDSM_HD_PUB_MAX],
                                             size_t *pub_len);

/* Pure Ed25519 (RFC 8032, no pre-hash). msg may be NULL when len is 0. */
DDSM_WUR ddsm_err ddsm_ed25519_sign_secret(const uint8_t priv_secret[DDSM_EC_PRIV_LEN],
                                           const uint8_t *msg, size_t len,
                                           uint8_t sig[DDSM_ED25519_SIG_LEN]);
DDSM_WUR ddsm_err ddsm_ed25519_verify(const uint8_t pub[DDSM_HD_ED25519_PUB_LEN],
                                      const uint8_t *msg, size_t len,
                                      const uint8_t sig[DDSM_ED25519_SIG_LEN], bool *valid);

/* Before the code is unloaded (C_Finalize of a module that may be dlclose'd): destroy the
 * process-wide libsecp256k1 context. Must not run concurrently with EC calls; a later call makes
 * a new one. */
void ddsm_ec_shutdown(void);

/* Internal to ddsm-core (hd.c and ecsig.c): the process-wide libsecp256k1 context, created on
 * first use and randomised (side-channel blinding); read-only afterwards, so threads share it.
 * NULL if it could not be created. */
struct secp256k1_context_struct;
const struct secp256k1_context_struct *ddsm_secp256k1_context(void);

#endif
