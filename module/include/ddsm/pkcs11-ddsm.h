/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm-pkcs11 public vendor definitions. Installed for applications (pkg-config ddsm-pkcs11). It
 * needs only the C library: use it with any pkcs11.h, included before or after it.
 *
 * CKM_DDSM_DERIVE: C_DeriveKey on the root seed key's handle. The mechanism parameter is flat
 * bytes so that bindings which can only pass bytes (PyKCS11, pkcs11js, SunPKCS11) can call it:
 *     16 bytes  the asset UUID in binary (RFC 4122 byte order)
 *     N bytes   the derivation path in UTF-8, e.g. "m/44'/0'/0'/0/5", no terminator
 *     ulParameterLen = 16 + N
 * The result is a virtual secret key object (CKK_GENERIC_SECRET, or CKK_AES when the template
 * asks), 32 bytes, derived by the SP 800-108 KDF in the HSM and audited before it is returned. */
#ifndef DDSM_PKCS11_DDSM_H
#define DDSM_PKCS11_DDSM_H

#include <stddef.h>
#include <string.h>

/* 'D' 'S' in the vendor range. */
#define CKM_DDSM_DERIVE (0x80000000UL | 0x44530001UL)

/* Vendor attributes of virtual derived keys (read-only). */
#define CKA_DDSM_ASSET_ID (0x80000000UL | 0x44530101UL) /* 16 bytes, binary UUID */
#define CKA_DDSM_PATH     (0x80000000UL | 0x44530102UL) /* UTF-8 canonical path */
#define CKA_DDSM_COUNTER  (0x80000000UL | 0x44530103UL) /* CK_ULONG derivation counter */
#define CKA_DDSM_STATE    (0x80000000UL | 0x44530104UL) /* CK_ULONG, one of CK_DDSM_STATE_* */

#define CK_DDSM_STATE_INITIALIZED 0UL
#define CK_DDSM_STATE_ACTIVE      1UL
#define CK_DDSM_STATE_ROTATING    2UL
#define CK_DDSM_STATE_RETIRED     3UL

#define DDSM_DERIVE_PARAM_MAX (16 + 256)

/* What C_GetInfo reports (blank-padded to 32 bytes each): the module's slot shows the backend's
 * own token info, so a PKCS#11 URI tells the module from the backend by these
 * (library-manufacturer=, library-description=). At most 32 characters each. */
#define DDSM_LIBRARY_MANUFACTURER "ddsm-pkcs11"
#define DDSM_LIBRARY_DESCRIPTION "DDSM derived keys over an HSM"

/* The base key of CKM_DDSM_DERIVE may be given as this handle instead of the root seed key's own
 * backend handle. It is the only way to name the root when it lives on a separate custody token
 * ([backend] root_token_label), which the module does not expose as a slot. Never a real object:
 * every other function refuses it. */
#define CK_DDSM_ROOT_HANDLE 0xFFFFFFFFUL

/* Detail codes in CK_SESSION_INFO.ulDeviceError (C_GetSessionInfo) after a call on that session
 * failed with a coarse CK_RV (mostly CKR_DEVICE_ERROR). The value stays until the next failure
 * with a detail, or until a derivation on that session succeeds (then 0). */
#define DDSM_DEVERR_NONE           0UL
#define DDSM_DEVERR_BASE           0x44530000UL
#define DDSM_DEVERR_STORE_DOWN     (DDSM_DEVERR_BASE | 0x01UL) /* PostgreSQL unreachable */
#define DDSM_DEVERR_STORE_FAILED   (DDSM_DEVERR_BASE | 0x02UL) /* PostgreSQL refused a statement */
#define DDSM_DEVERR_HSM_FAILED     (DDSM_DEVERR_BASE | 0x03UL) /* the backend HSM failed */
#define DDSM_DEVERR_ROOT_MISSING   (DDSM_DEVERR_BASE | 0x04UL) /* no root seed key on the token */
#define DDSM_DEVERR_ROOT_AMBIGUOUS (DDSM_DEVERR_BASE | 0x05UL) /* two different pinned roots */
#define DDSM_DEVERR_CUSTODY_LOGIN  (DDSM_DEVERR_BASE | 0x06UL) /* custody token PIN refused/unreadable */
#define DDSM_DEVERR_TIMEOUT        (DDSM_DEVERR_BASE | 0x07UL) /* a bounded wait expired */
#define DDSM_DEVERR_CRYPTO         (DDSM_DEVERR_BASE | 0x08UL) /* an in-process OpenSSL call failed */
#define DDSM_DEVERR_INTERNAL       (DDSM_DEVERR_BASE | 0x09UL) /* a bug: see the log */
/* The database role lacks a privilege the module needs (the log names the role and privilege). */
#define DDSM_DEVERR_STORE_PRIVILEGE  (DDSM_DEVERR_BASE | 0x0AUL)
/* synchronous_commit could not be made at least "on" on the module's session: no key is released. */
#define DDSM_DEVERR_STORE_DURABILITY (DDSM_DEVERR_BASE | 0x0BUL)
/* The root pin (docs/root.md): the store records the fingerprints of the roots it accepts. */
#define DDSM_DEVERR_ROOT_UNPINNED  (DDSM_DEVERR_BASE | 0x20UL) /* none pinned: `ddsmctl root pin` */
#define DDSM_DEVERR_ROOT_MISMATCH  (DDSM_DEVERR_BASE | 0x21UL) /* no labelled key has a pinned one */
/* [backend] standby_token_label (docs/standby.md): the standby token's root is not the primary's
 * (different fingerprints, or no pinned root there). Every derivation is refused until restart. */
#define DDSM_DEVERR_STANDBY_MISMATCH (DDSM_DEVERR_BASE | 0x22UL)

/* Refusals by the configured policy (docs/policy.md): the call returns CKR_FUNCTION_REJECTED,
 * changes nothing, and is recorded as a DENY audit row whose detail gives the reason. */
#define DDSM_DEVERR_POLICY_PATH           (DDSM_DEVERR_BASE | 0x40UL) /* path shape not allowed */
#define DDSM_DEVERR_POLICY_RATE_ASSET     (DDSM_DEVERR_BASE | 0x41UL) /* requester's rate on the asset */
#define DDSM_DEVERR_POLICY_RATE_REQUESTER (DDSM_DEVERR_BASE | 0x42UL) /* requester's total rate */
#define DDSM_DEVERR_POLICY_ZONE           (DDSM_DEVERR_BASE | 0x43UL) /* the asset's zone is disabled */
#define DDSM_DEVERR_POLICY_MECHANISM      (DDSM_DEVERR_BASE | 0x44UL) /* mechanism not allowed */

/* Build the CKM_DDSM_DERIVE parameter into buf. Returns its length, or 0 when buf is too small. */
static inline size_t ddsm_derive_param(unsigned char *buf, size_t buf_len,
                                       const unsigned char asset_uuid[16], const char *path)
{
    size_t n = strlen(path);
    if (buf_len < 16 + n)
        return 0;
    memcpy(buf, asset_uuid, 16);
    memcpy(buf + 16, path, n);
    return 16 + n;
}

#endif
