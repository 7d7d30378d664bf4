/* SPDX-License-Identifier: Apache-2.0 */
/* The mechanism allowlist (mechallow.h). Each entry was checked against PKCS#11 2.40 / 3.0: its
 * parameter is absent, or bytes, lengths, flags and enumerations, never a CK_OBJECT_HANDLE. What
 * is left out on purpose: CKM_CONCATENATE_BASE_AND_KEY (the parameter is a key handle),
 * CKM_ECMQV_DERIVE and CKM_X9_42_MQV_DERIVE (hPrivateData), CKM_X9_42_DH_HYBRID_DERIVE
 * (hPrivateData), the SP 800-108 KDFs (key handle data parameters, and derived-key templates
 * whose handles come back), and every vendor-defined mechanism. */
#include "mechallow.h"

#include "ddsm/log.h"
#include "ddsm/names.h"

static const CK_MECHANISM_TYPE allowed[] = {
    /* digests */
    CKM_MD5,
    CKM_SHA_1,
    CKM_SHA224,
    CKM_SHA256,
    CKM_SHA384,
    CKM_SHA512,
    CKM_SHA512_224,
    CKM_SHA512_256,
    /* MACs: the _GENERAL parameter is an output length */
    CKM_MD5_HMAC,
    CKM_SHA_1_HMAC,
    CKM_SHA224_HMAC,
    CKM_SHA256_HMAC,
    CKM_SHA384_HMAC,
    CKM_SHA512_HMAC,
    CKM_MD5_HMAC_GENERAL,
    CKM_SHA_1_HMAC_GENERAL,
    CKM_SHA224_HMAC_GENERAL,
    CKM_SHA256_HMAC_GENERAL,
    CKM_SHA384_HMAC_GENERAL,
    CKM_SHA512_HMAC_GENERAL,
    CKM_AES_CMAC,
    CKM_AES_CMAC_GENERAL,
    CKM_DES3_CMAC,
    /* RSA: OAEP and PSS parameters are hash, MGF and source bytes */
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_MD5_RSA_PKCS,
    CKM_SHA1_RSA_PKCS,
    CKM_SHA224_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_SHA1_RSA_PKCS_PSS,
    CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    /* DSA and DH: CKM_DH_PKCS_DERIVE's parameter is the other party's public value */
    CKM_DSA_PARAMETER_GEN,
    CKM_DSA_KEY_PAIR_GEN,
    CKM_DSA,
    CKM_DSA_SHA1,
    CKM_DSA_SHA224,
    CKM_DSA_SHA256,
    CKM_DSA_SHA384,
    CKM_DSA_SHA512,
    CKM_DH_PKCS_PARAMETER_GEN,
    CKM_DH_PKCS_KEY_PAIR_GEN,
    CKM_DH_PKCS_DERIVE,
    /* EC: CK_ECDH1_DERIVE_PARAMS is a KDF, shared data and a public point */
    CKM_EC_KEY_PAIR_GEN,
    CKM_ECDSA,
    CKM_ECDSA_SHA1,
    CKM_ECDSA_SHA224,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_ECDH1_DERIVE,
    CKM_ECDH1_COFACTOR_DERIVE,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_EDDSA,
    /* symmetric ciphers and key wrapping: IVs, counters, AAD */
    CKM_GENERIC_SECRET_KEY_GEN,
    CKM_AES_KEY_GEN,
    CKM_AES_ECB,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_CTR,
    CKM_AES_GCM,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKM_DES_KEY_GEN,
    CKM_DES2_KEY_GEN,
    CKM_DES3_KEY_GEN,
    CKM_DES_ECB,
    CKM_DES_CBC,
    CKM_DES_CBC_PAD,
    CKM_DES3_ECB,
    CKM_DES3_CBC,
    CKM_DES3_CBC_PAD,
    /* derivation from one key and data bytes */
    CKM_CONCATENATE_DATA_AND_BASE,
    CKM_CONCATENATE_BASE_AND_DATA,
    CKM_XOR_BASE_AND_DATA,
    CKM_EXTRACT_KEY_FROM_KEY,
    CKM_MD5_KEY_DERIVATION,
    CKM_SHA1_KEY_DERIVATION,
    CKM_SHA224_KEY_DERIVATION,
    CKM_SHA256_KEY_DERIVATION,
    CKM_SHA384_KEY_DERIVATION,
    CKM_SHA512_KEY_DERIVATION,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKM_AES_CBC_ENCRYPT_DATA,
    CKM_DES_ECB_ENCRYPT_DATA,
    CKM_DES_CBC_ENCRYPT_DATA,
    CKM_DES3_ECB_ENCRYPT_DATA,
    CKM_DES3_CBC_ENCRYPT_DATA,
};

bool ddsm_mech_allowed(const ddsm_mechallow *a, CK_MECHANISM_TYPE m)
{
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (allowed[i] == m)
            return true;
    for (size_t i = 0; i < a->n_extra; i++)
        if (a->extra[i] == m)
            return true;
    return false;
}

CK_RV ddsm_mech_extra_load(const ddsm_config *cfg, ddsm_mechallow *a)
{
    size_t k = 0;
    for (size_t i = 0; i < cfg->backend.n_extra_mechanisms; i++) {
        if (!ddsm_mech_from_name(cfg->backend.extra_mechanisms[i], &a->extra[k])) {
            ddsm_log(DDSM_LOG_ERROR,
                     "C_Initialize: %s: [backend] extra_mechanisms: %s is not a mechanism the "
                     "module knows (give its number as 0x...)",
                     cfg->file, cfg->backend.extra_mechanisms[i]);
            return CKR_FUNCTION_FAILED;
        }
        ddsm_log(DDSM_LOG_WARN,
                 "[backend] extra_mechanisms: %s is passed to the backend unchecked: its "
                 "parameters are not guarded",
                 ddsm_mech_name(a->extra[k]));
        k++;
    }
    a->n_extra = k;
    return CKR_OK;
}
