/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the tests of virtual EC signing keys (module/src/ec.h): the assets they register,
 * the keys and public points the module must expose, computed here independently of the module
 * (ddsm-core's KDF with an in-memory OpenSSL PRF for the asset seed, then ddsm-core's BIP-32 /
 * SLIP-10), and signature checks with OpenSSL's EVP (never the module's or ddsm-core's ECDSA).
 * Include after <cmocka.h> and p11_support.h. */
#ifndef DDSM_EC_SUPPORT_H
#define DDSM_EC_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/hd.h"
#include "p11_support.h"

/* Assets ec_setup_store registers and activates (after p11_setup_store), each with a fixed UUID,
 * a label, a key type and a default path. */
#define EC_K1_ID "ec000000-0000-4000-8000-00000000000a"
#define EC_K1_LABEL "ec-k1"
#define EC_K1_PATH "m/44'/0'/0'/0/0"
#define EC_ED_ID "ec000000-0000-4000-8000-00000000000b"
#define EC_ED_LABEL "ec-ed"
#define EC_ED_PATH "m/44'/501'/0'/0'"
#define EC_P2_ID "ec000000-0000-4000-8000-00000000000c"
#define EC_P2_LABEL "ec-p256"
#define EC_P2_PATH "m/1'/2/3"
#define EC_ROT_ID "ec000000-0000-4000-8000-00000000000d" /* secp256k1, rotated by tests */
#define EC_ROT_LABEL "ec-rot"
#define EC_ROT_PATH "m/0"

/* Register (secp256k1, ed25519, p256, and the secp256k1 asset for rotations) and activate. */
void ec_setup_store(void);

/* The asset seed of (asset, counter) under the docs/design.md test root 00..1f: the KDF of the depth-0
 * path, and the HD private key of path under it. */
void ec_expected_seed(const char *uuid_text, uint64_t counter, uint8_t seed[32]);
void ec_expected_key(ddsm_curve curve, const char *uuid_text, const char *path, uint64_t counter,
                     uint8_t priv[32]);
/* CKA_EC_POINT the public key object must have: DER OCTET STRING of 04 || X || Y (Weierstrass)
 * or of the 32-byte Ed25519 key, from ddsm_hd_ec_point. Returns its length. */
size_t ec_expected_point(ddsm_curve curve, const char *uuid_text, const char *path,
                         uint64_t counter, uint8_t out[67]);
/* CKA_EC_PARAMS: the DER OID, written out here byte by byte. Returns its length. */
size_t ec_expected_params(ddsm_curve curve, uint8_t out[16]);

/* The private key (class CKO_PRIVATE_KEY) and the public key found by label; fails the test
 * unless the label finds exactly those two objects. */
void ec_find_pair(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *priv,
                  CK_OBJECT_HANDLE *pub);
/* The public key's CKA_EC_POINT (fails the test on error). Returns its length. */
size_t ec_read_point(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, uint8_t out[67]);

/* Sign data with mechanism m through the module; returns the rv, the signature (64 bytes) in
 * sig. */
CK_RV ec_sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE m, const uint8_t *data,
              size_t len, uint8_t sig[64]);

/* OpenSSL's verdict on a raw signature (r || s, or R || S for Ed25519) by the key whose
 * CKA_EC_POINT is point: for CKM_ECDSA data is the hash as given (OpenSSL truncates a longer one
 * as ECDSA says), for CKM_ECDSA_SHA256 the message (hashed here), for CKM_EDDSA the message. */
bool ec_openssl_verify(ddsm_curve curve, const uint8_t *point, size_t point_len,
                       CK_MECHANISM_TYPE m, const uint8_t *data, size_t len, const uint8_t sig[64]);

/* The DERIVE rows of an asset, and those whose detail names key type t. */
long ec_derive_rows(const char *uuid_text);
long ec_derive_rows_typed(const char *uuid_text, const char *key_type);

#endif
