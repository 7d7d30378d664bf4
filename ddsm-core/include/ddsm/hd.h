/* SPDX-License-Identifier: Apache-2.0 */
/* HD signing keys (docs/design.md "Signing keys"): the asset seed seeds a standard tree, BIP-32 for
 * secp256k1 and SLIP-10 for Ed25519 ("ed25519 seed") and NIST P-256 ("Nist256p1 seed"). Also
 * the BIP-32 extended-key serialisation (xprv/xpub, Base58Check) so watch-only wallets can check
 * our public keys.
 *
 * Every function whose name ends in _secret reads or writes private key material. A ddsm_hd_node
 * is a secret as a whole (its chain code plus any non-hardened child key gives the parent key):
 * keep long-lived nodes in ddsm_secure_alloc memory and wipe them with ddsm_hd_node_wipe.
 * Functions that can fail on caller input take `why`: when not NULL, on error it points to a
 * static human-readable reason (never containing key bytes). Out-parameters are set on success
 * only. */
#ifndef DDSM_HD_H
#define DDSM_HD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/err.h"
#include "ddsm/path.h"

typedef enum ddsm_curve { DDSM_CURVE_SECP256K1, DDSM_CURVE_ED25519, DDSM_CURVE_P256 } ddsm_curve;

#define DDSM_HD_KEY_LEN 32 /* private key: big-endian scalar, or the Ed25519 secret */
#define DDSM_HD_CHAIN_LEN 32
#define DDSM_HD_SEED_MIN 16 /* BIP-32 / SLIP-10: a seed of 128 to 512 bits */
#define DDSM_HD_SEED_MAX 64
#define DDSM_HD_PUB_MAX 65 /* the largest public key encoding, 04 || X || Y */
#define DDSM_HD_PUB_COMPRESSED_LEN 33
#define DDSM_HD_PUB_UNCOMPRESSED_LEN 65
#define DDSM_HD_ED25519_PUB_LEN 32
#define DDSM_HD_FINGERPRINT_LEN 4
#define DDSM_HD_MAX_DEPTH 255 /* the serialised depth is one byte */

#define DDSM_HD_VERSION_XPRV 0x0488ADE4u /* mainnet; the only versions we write or accept */
#define DDSM_HD_VERSION_XPUB 0x0488B21Eu
#define DDSM_HD_EXT_LEN 78        /* serialised extended key, before the checksum */
#define DDSM_HD_XKEY_TEXT_MAX 113 /* Base58Check of 82 bytes is at most 112 chars, + NUL */

/* An extended private key (k, c) and its place in the tree. A secret as a whole. */
typedef struct ddsm_hd_node {
    uint8_t secret_key[DDSM_HD_KEY_LEN];
    uint8_t chain_code[DDSM_HD_CHAIN_LEN];
    uint8_t depth;                                       /* 0 for the master */
    uint8_t parent_fingerprint[DDSM_HD_FINGERPRINT_LEN]; /* 0 for the master */
    uint32_t child_number;                               /* with DDSM_HARDENED; 0 for the master */
} ddsm_hd_node;

/* An extended public key (K, c): secp256k1 or P-256 only (Ed25519 has no public derivation).
 * Not a secret, but it and any non-hardened child private key reveal the parent private key. */
typedef struct ddsm_hd_pub_node {
    uint8_t public_key[DDSM_HD_PUB_COMPRESSED_LEN]; /* SEC1 compressed, 02/03 || X */
    uint8_t chain_code[DDSM_HD_CHAIN_LEN];
    uint8_t depth;
    uint8_t parent_fingerprint[DDSM_HD_FINGERPRINT_LEN];
    uint32_t child_number;
} ddsm_hd_pub_node;

/* A parsed BIP-32 extended key (always secp256k1). */
typedef struct ddsm_hd_ext {
    bool is_private;
    ddsm_hd_node node;    /* the private key (a secret) when is_private; zero otherwise */
    ddsm_hd_pub_node pub; /* the public key: the xpub itself, or the neutered xprv */
} ddsm_hd_ext;

/* "secp256k1", "ed25519", "p256"; "unknown" for a value outside the enum. */
const char *ddsm_curve_name(ddsm_curve curve);
/* The inverse of ddsm_curve_name (exact, lower case). DDSM_E_INPUT for another name. */
DDSM_WUR ddsm_err ddsm_curve_parse(const char *name, ddsm_curve *out);

/* The master node from a seed of DDSM_HD_SEED_MIN..MAX bytes (a secret). secp256k1 follows
 * BIP-32 (an I_L of 0 or >= n is an invalid master: DDSM_E_INPUT); P-256 follows SLIP-10 (retry
 * with S := I); Ed25519 uses I_L as is. */
DDSM_WUR ddsm_err ddsm_hd_master_secret(ddsm_curve curve, const uint8_t *seed_secret,
                                        size_t seed_len, ddsm_hd_node *out, const char **why);

/* CKDpriv: the child `index` (DDSM_HARDENED set for a hardened child) of a private parent.
 * Ed25519 refuses a normal index with DDSM_E_PATH. P-256 applies SLIP-10's retry rule. For
 * secp256k1, BIP-32 says an index whose I_L >= n or whose key is 0 has no key and "one should
 * proceed with the next value for i": we never substitute another index behind the caller's back
 * (the path would silently name a different key), we refuse that index with DDSM_E_PATH. */
DDSM_WUR ddsm_err ddsm_hd_child_secret(ddsm_curve curve, const ddsm_hd_node *parent, uint32_t index,
                                       ddsm_hd_node *out, const char **why);

/* Master from the seed, then CKDpriv along the path. Depth 0 (no indices) gives the master. A
 * normal index on Ed25519 is refused (DDSM_E_PATH) before any derivation happens. */
DDSM_WUR ddsm_err ddsm_hd_derive_path_secret(ddsm_curve curve, const uint8_t *seed_secret,
                                             size_t seed_len, const ddsm_path *path,
                                             ddsm_hd_node *out, const char **why);

/* The node's public key (reads the private key): secp256k1 and P-256, 33 bytes SEC1 compressed;
 * Ed25519, the 32-byte RFC 8032 public key. */
DDSM_WUR ddsm_err ddsm_hd_public(ddsm_curve curve, const ddsm_hd_node *node,
                                 uint8_t pub[DDSM_HD_PUB_MAX], size_t *pub_len);

/* The point as PKCS#11 CKA_EC_POINT carries it inside its DER OCTET STRING (reads the private
 * key): 65 bytes 04 || X || Y for secp256k1 and P-256, the 32-byte key for Ed25519. */
DDSM_WUR ddsm_err ddsm_hd_ec_point(ddsm_curve curve, const ddsm_hd_node *node,
                                   uint8_t point[DDSM_HD_PUB_MAX], size_t *point_len);

/* A SEC1 compressed point (33 bytes) of secp256k1 or P-256 as 04 || X || Y. DDSM_E_INPUT when it
 * is not a point of that curve. For public nodes (watch-only) that need CKA_EC_POINT. */
DDSM_WUR ddsm_err ddsm_hd_point_uncompress(ddsm_curve curve,
                                           const uint8_t pub[DDSM_HD_PUB_COMPRESSED_LEN],
                                           uint8_t point[DDSM_HD_PUB_UNCOMPRESSED_LEN]);

/* The node's key identifier's first 4 bytes, HASH160 of the compressed public key (Ed25519:
 * of 0x00 || the 32-byte key, as SLIP-10 does). A child's parent_fingerprint is this of its
 * parent. Reads the private key. */
DDSM_WUR ddsm_err ddsm_hd_fingerprint(ddsm_curve curve, const ddsm_hd_node *node,
                                      uint8_t fp[DDSM_HD_FINGERPRINT_LEN]);

/* N((k, c)) = (K, c): the extended public key of a private node (secp256k1, P-256). Reads the
 * private key; the output holds none. */
DDSM_WUR ddsm_err ddsm_hd_neuter(ddsm_curve curve, const ddsm_hd_node *node, ddsm_hd_pub_node *out);

/* CKDpub: a normal child of a public parent (secp256k1 per BIP-32, P-256 per SLIP-10 with its
 * retry rule), so watch-only wallets can check the keys we derive. A hardened index is refused
 * with DDSM_E_PATH, and so is a secp256k1 index that BIP-32 says has no key (see above). */
DDSM_WUR ddsm_err ddsm_hd_child_public(ddsm_curve curve, const ddsm_hd_pub_node *parent,
                                       uint32_t index, ddsm_hd_pub_node *out, const char **why);

/* BIP-32 serialisation, mainnet versions, Base58Check, NUL-terminated. Defined for secp256k1
 * only: another curve is refused with DDSM_E_INPUT (no standard version bytes exist for it).
 * The xprv text is a secret: wipe it after use. */
DDSM_WUR ddsm_err ddsm_hd_serialize_xprv_secret(ddsm_curve curve, const ddsm_hd_node *node,
                                                char out[DDSM_HD_XKEY_TEXT_MAX]);
DDSM_WUR ddsm_err ddsm_hd_serialize_xpub(ddsm_curve curve, const ddsm_hd_pub_node *node,
                                         char out[DDSM_HD_XKEY_TEXT_MAX]);

/* Parse an xprv or xpub of exactly len bytes (secp256k1, mainnet). Checks everything BIP-32's
 * test vector 5 lists: checksum, version, zero depth with a parent fingerprint or an index, key
 * prefix against the version, private key in 1..n-1, public key on the curve. Any failure is
 * DDSM_E_INPUT with the reason in *why. An xprv's key lands in out->node (a secret: wipe out with
 * ddsm_hd_ext_wipe). */
DDSM_WUR ddsm_err ddsm_hd_parse_ext(const char *text, size_t len, ddsm_hd_ext *out,
                                    const char **why);

void ddsm_hd_node_wipe(ddsm_hd_node *node); /* NULL accepted */
void ddsm_hd_ext_wipe(ddsm_hd_ext *ext);    /* NULL accepted */

/* Base58Check with the Bitcoin alphabet and the 4-byte double-SHA-256 checksum (base58.c).
 * The payload may be a secret (an xprv): temporaries are wiped. Payloads of at most
 * DDSM_BASE58_MAX_PAYLOAD bytes. */
#define DDSM_BASE58_MAX_PAYLOAD 128
/* Writes the NUL-terminated text; DDSM_E_ARG when out_size is too small. */
DDSM_WUR ddsm_err ddsm_base58check_encode(const uint8_t *payload, size_t len, char *out,
                                          size_t out_size);
/* Decodes exactly text_len characters into out (payload only, checksum verified and removed).
 * DDSM_E_INPUT with *why for a character outside the alphabet, an over-long input, a payload
 * larger than out_size, or a wrong checksum ("invalid checksum"). */
DDSM_WUR ddsm_err ddsm_base58check_decode(const char *text, size_t text_len, uint8_t *out,
                                          size_t out_size, size_t *out_len, const char **why);

#endif
