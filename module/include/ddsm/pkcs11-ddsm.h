/* ddsm-pkcs11 public vendor definitions. Installed for applications; include after pkcs11.h.
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
