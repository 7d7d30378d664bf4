/* SPDX-License-Identifier: Apache-2.0 */
/* Virtual derived-key objects: their attributes, the asset records that say whether a handle is
 * still good (kept current by the LISTEN thread, re-validated after cache.staleness_ms when the
 * link is down), the derived-key cache keyed by (asset, path, counter), and materialisation
 * (store round trip with its DERIVE audit row, then HMAC in the HSM).
 *
 * Object attributes (docs/design.md "Objects and handles"): CKO_SECRET_KEY, CKK_GENERIC_SECRET or
 * CKK_AES, CKA_VALUE_LEN 32, CKA_TOKEN/CKA_PRIVATE true, CKA_MODIFIABLE/COPYABLE/DESTROYABLE false,
 * CKA_LABEL "<uuid>/<canonical path>", CKA_ID = uuid bytes || canonical path (ddsm_key_id),
 * CKA_UNIQUE_ID "<uuid>/<path>#<counter>", vendor CKA_DDSM_*. CKA_EXTRACTABLE follows the policy
 * ([policy] extractable, default false). Documented choice: CKA_SENSITIVE is the opposite of
 * CKA_EXTRACTABLE unless C_DeriveKey's template asks otherwise, so that "extractable" keys have a
 * readable CKA_VALUE as the standard requires (a sensitive key's value is never revealed).
 * CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE describe the key, which every handle of it shares:
 * both are false on every handle when the policy makes the key readable through any of them. */
#ifndef DDSM_VKEY_H
#define DDSM_VKEY_H

#include <stdbool.h>
#include <stdint.h>

#include "ddsm/config.h"
#include "ddsm/derive.h"
#include "ddsm/mac.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "handles.h"

/* Variant bits of a virtual object (part of its handle-table identity). */
#define DDSM_VK_AES 0x01u /* CKK_AES, else CKK_GENERIC_SECRET */
#define DDSM_VK_SIGN 0x02u
#define DDSM_VK_VERIFY 0x04u
#define DDSM_VK_ENCRYPT 0x08u
#define DDSM_VK_DECRYPT 0x10u
#define DDSM_VK_EXTRACTABLE 0x20u
#define DDSM_VK_SENSITIVE 0x40u
/* [policy] extractable: the key's value may be read through some handle of it (a found one, if
 * not this one), so no handle of the key claims CKA_ALWAYS_SENSITIVE or CKA_NEVER_EXTRACTABLE.
 * Every handle of the key in a process has it or none has (the policy is fixed per process). */
#define DDSM_VK_KEY_READABLE 0x400u
/* A session object (C_DeriveKey with CKA_TOKEN false): its handle belongs to the session that
 * derived it (handles.h) and is released when that session closes; the key is the token key. */
#define DDSM_VK_SESSION 0x800u

/* The variant of objects found with C_FindObjects, from the asset's key type: "hmac" gives a
 * CKK_GENERIC_SECRET that signs and verifies, "aes" a CKK_AES that encrypts and decrypts. false
 * for key types that are not secret keys (they are not listed). */
bool ddsm_vkey_found_variant(const char *key_type, bool policy_extractable, uint32_t *variant);

/* Large enough for any attribute value of a virtual object except CKA_VALUE. */
#define DDSM_VKEY_ATTR_MAX 256

typedef enum ddsm_use {
    DDSM_USE_SIGN = 0,
    DDSM_USE_VERIFY,
    DDSM_USE_ENCRYPT,
    DDSM_USE_DECRYPT,
    DDSM_USE_OBJECT, /* attribute and object-management calls */
} ddsm_use;

typedef struct ddsm_vkeys ddsm_vkeys;
typedef struct ddsm_asset_rec ddsm_asset_rec;
typedef struct ddsm_kref ddsm_kref;
struct ddsm_call;

/* ---- the per-process state ---- */
/* The LISTEN link as the records see it, filled by their owner (the context: ctx_hooks.c, as
 * ddsm_ctx_listener_catch_up and ddsm_ctx_listener_covers answer): catch_up waits briefly until
 * what the server has already sent on the link has been processed (false: not confirmed); covers
 * says whether a record validated at validated_ms is covered by the link. */
typedef struct ddsm_vkeys_link {
    bool (*catch_up)(void *owner);
    bool (*covers)(void *owner, int64_t validated_ms);
    void *owner;
} ddsm_vkeys_link;
/* link NULL: there is no link, and ddsm_vkeys_asset_fresh always sends its caller to the store. */
CK_RV ddsm_vkeys_new(const ddsm_config *cfg, const ddsm_vkeys_link *link,
                     ddsm_vkeys **out) DDSM_WUR;
void ddsm_vkeys_free(ddsm_vkeys *v); /* wipes every cached key; NULL accepted */
/* In a fork child: wipe every cached key without taking a lock (the parent's threads may have held
 * them), leak the rest. */
void ddsm_vkeys_abandon(ddsm_vkeys *v);
/* Wipe every cached key (logout, last session closed). Keys held by running operations are wiped
 * when those end. */
void ddsm_vkeys_wipe_all(ddsm_vkeys *v);
/* Wipe keys whose TTL has passed. */
void ddsm_vkeys_sweep(ddsm_vkeys *v);
/* Kill every cached key of an asset (its zone was disabled): operations holding one stop. */
void ddsm_vkeys_kill_asset(ddsm_vkeys *v, const ddsm_uuid *asset);
/* Number of keys in the cache (tests, logs). */
unsigned ddsm_vkeys_cached(ddsm_vkeys *v);

/* The record of an asset, created on first sight. Records live until C_Finalize. */
ddsm_asset_rec *ddsm_vkeys_asset(ddsm_vkeys *v, const ddsm_uuid *asset);
/* The record of an asset if this process has one; NULL otherwise (nothing is created, so a name
 * from outside, such as a notification's, cannot grow the table). */
ddsm_asset_rec *ddsm_vkeys_asset_known(ddsm_vkeys *v, const ddsm_uuid *asset);
/* Notifications are hints (anyone who can connect may send one): a hint the LISTEN thread could
 * not answer with a store read at once distrusts the record, and every use then asks the store
 * (ddsm_vkey_check, ddsm_vkeys_asset_fresh) until a read that began after the hint folds in
 * (ddsm_asset_rec_trust_from with the generation read before it). */
uint64_t ddsm_asset_rec_hint_gen(ddsm_asset_rec *r);
void ddsm_asset_rec_distrust(ddsm_asset_rec *r);
void ddsm_asset_rec_trust_from(ddsm_asset_rec *r, uint64_t gen);
/* Fold a fresh store view of the asset into its record (the counter never goes back, RETIRED is
 * final) and kill the cached keys it makes stale. */
void ddsm_asset_rec_update(ddsm_vkeys *v, ddsm_asset_rec *r, const ddsm_asset *a);
/* The asset as the records know it, when they may answer a find without the store: an asset the
 * store described before, whose counter and state are as current as ddsm_vkey_check requires
 * (the LISTEN link covers the record, or it is younger than cache.staleness_ms), and, when
 * need_meta or looked up by label, whose label and default path (which no NOTIFY announces) are
 * younger than cache.staleness_ms. By id, or by id_or_label as ddsm_store_asset_find reads it.
 * false: ask the store. created_us / updated_us are not known (0). */
bool ddsm_vkeys_asset_fresh(ddsm_vkeys *v, const char *id_or_label, const ddsm_uuid *id,
                            bool need_meta, ddsm_asset *out);

/* ---- derived key bytes: reference counted, wiped when the last reference goes ---- */
const uint8_t *ddsm_kref_bytes(const ddsm_kref *k); /* DDSM_KEY_LEN secret bytes */
/* An HMAC key's keyed state (ddsm/mac.h: a secret, in secure memory, wiped with the key), from
 * which every sign restarts instead of re-keying; NULL for EC keys. */
const ddsm_hmac_state *ddsm_kref_hmac(const ddsm_kref *k);
void ddsm_kref_put(ddsm_kref *k);                   /* NULL accepted */
/* Invalidated (rotation, retirement): operations holding it must stop. */
bool ddsm_kref_dead(const ddsm_kref *k);

/* ---- objects ---- */

/* The entry of virtual handle h. CKR_KEY_HANDLE_INVALID (key_ctx) or CKR_OBJECT_HANDLE_INVALID
 * when it is not a live handle. */
CK_RV ddsm_vkey_lookup(struct ddsm_call *c, CK_OBJECT_HANDLE h, bool key_ctx,
                       ddsm_hentry *out) DDSM_WUR;

/* Whether the object may be used for use now: its counter is current (or, for verify/decrypt and
 * attribute calls, the previous one during a grace window), re-validating with the store when the
 * LISTEN link does not cover the record. Crypto uses of a dead handle get CKR_KEY_HANDLE_INVALID,
 * object uses CKR_OBJECT_HANDLE_INVALID; signing/encrypting with a grace-window key
 * CKR_KEY_FUNCTION_NOT_PERMITTED. Store down while re-validation is due: CKR_DEVICE_ERROR. */
CK_RV ddsm_vkey_check(struct ddsm_call *c, const ddsm_hentry *e, ddsm_use use) DDSM_WUR;

/* The key bytes of a checked object: from the cache, or derived now (store round trip with its
 * audit row, then the HSM). Holds a reference the caller releases with ddsm_kref_put. */
CK_RV ddsm_vkey_materialise(struct ddsm_call *c, const ddsm_hentry *e, ddsm_use use,
                            ddsm_kref **out) DDSM_WUR;

/* The registry's key type of an asset ("hmac", "aes", "secp256k1", "ed25519", "p256"): the asset
 * record's when it knows it (types never change), else read from the store (once per asset and
 * process). *out NULL when there is no such asset. Store failures: CKR_DEVICE_ERROR with the
 * call's detail set. */
CK_RV ddsm_vkey_asset_key_type(struct ddsm_call *c, const ddsm_uuid *asset,
                               const char **out) DDSM_WUR;

/* C_DeriveKey's work after validation: derive the key of (asset, path) at the asset's current
 * counter (audited), cache it, and return the handle of the object in this variant (an EC variant
 * derives the asset's HD key: ec.h). */
CK_RV ddsm_vkey_derive_new(struct ddsm_call *c, const ddsm_uuid *asset, const ddsm_path *path,
                           uint32_t variant, CK_OBJECT_HANDLE *out) DDSM_WUR;

/* Write a DENY audit row for a derivation refused before the store was asked (policy). A failure
 * to write it is logged: the call is refused either way. */
void ddsm_vkey_record_denial(struct ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                             const char *reason);
/* The same for refusals any caller can provoke at will (an unknown asset, a refused path): the row
 * is written only as ddsm_mpolicy_deny_row allows, and then names how many were left out. */
void ddsm_vkey_record_denial_bounded(struct ddsm_call *c, const ddsm_uuid *asset,
                                     const char *canon_path, const char *reason);

/* The handle of (asset, path, counter, variant), for objects found with C_FindObjects. */
CK_RV ddsm_vkey_intern(struct ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                       uint64_t counter, uint32_t variant, CK_OBJECT_HANDLE *out) DDSM_WUR;

/* The value of attribute t of the object into buf (up to DDSM_VKEY_ATTR_MAX bytes), its length into
 * *len. CKR_ATTRIBUTE_TYPE_INVALID for attributes these objects do not have,
 * CKR_ATTRIBUTE_SENSITIVE for CKA_VALUE of a sensitive key, and CKR_KEY_NEEDED for CKA_VALUE of a
 * readable one (the caller materialises it). EC objects answer as ec.h says (CKR_KEY_NEEDED for
 * CKA_EC_POINT of a public key: see ddsm_ec_get_attributes). */
CK_RV ddsm_vkey_attr(const ddsm_hentry *e, CK_ATTRIBUTE_TYPE t, uint8_t buf[DDSM_VKEY_ATTR_MAX],
                     CK_ULONG *len) DDSM_WUR;

/* CKA_ID: the uuid bytes then the canonical path (ddsm_key_id). Returns its length. */
size_t ddsm_vkey_id(const ddsm_uuid *asset, const char *canon_path, uint8_t out[DDSM_KEY_ID_MAX]);
/* Whether len bytes at id (NULL: no) are an id of (asset, canonical path), in any hardening
 * spelling of the path. */
bool ddsm_vkey_id_names(const void *id, CK_ULONG len, const ddsm_uuid *asset,
                        const char *canon_path);
/* CKA_LABEL: "<uuid>/<canonical path>". */
void ddsm_vkey_label(const ddsm_uuid *asset, const char *canon_path,
                     char out[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX]);

/* Validate C_DeriveKey's template for CKM_DDSM_DERIVE of (asset, canonical path) and give the
 * variant it asks for. CKR_ATTRIBUTE_TYPE_INVALID for attributes a derived key cannot have,
 * CKR_ATTRIBUTE_READ_ONLY for attributes only the module sets, CKR_ATTRIBUTE_VALUE_INVALID for
 * malformed or unsupported values (a key type other than generic secret / AES, a length other than
 * 32, a boolean that is not one byte of 0 or 1), CKR_TEMPLATE_INCONSISTENT for anything
 * contradictory (a class other than CKO_SECRET_KEY, a label or id that is not the key's, usage
 * flags the key type cannot have, extractable against the policy, a session object, the same
 * attribute twice with different values). */
CK_RV ddsm_vkey_template_parse(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                               const char *canon_path, bool policy_extractable,
                               uint32_t *variant) DDSM_WUR;
/* The same for an asset of the registry's secret key_type ("hmac" or "aes"): the key type decides
 * the object's, so that the same key bytes never serve as an HMAC key and as an AES key. Without
 * CKA_KEY_TYPE an aes asset gives a CKK_AES object; a template asking the other type (or usage
 * flags of the other type) is CKR_TEMPLATE_INCONSISTENT. */
CK_RV ddsm_vkey_template_parse_typed(const CK_ATTRIBUTE *tmpl, CK_ULONG n, const ddsm_uuid *asset,
                                     const char *canon_path, const char *key_type,
                                     bool policy_extractable, uint32_t *variant) DDSM_WUR;

#endif
