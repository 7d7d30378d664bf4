/* SPDX-License-Identifier: Apache-2.0 */
/* Key derivation, wrapping and unwrapping.
 *
 * C_DeriveKey(CKM_DDSM_DERIVE) on the root seed key (its handle, or CK_DDSM_ROOT_HANDLE): the
 * parameter is flat bytes, the 16-byte asset UUID then the path in UTF-8 (pkcs11-ddsm.h). Checks,
 * in the ladder's order:
 *   login (CKR_USER_NOT_LOGGED_IN) -> base key (vkey/guard: CKR_KEY_HANDLE_INVALID,
 *   CKR_KEY_TYPE_INCONSISTENT for any key but the root) -> parameter (NULL, shorter than
 *   17 bytes, longer than DDSM_DERIVE_PARAM_MAX, nil UUID, malformed path:
 *   CKR_MECHANISM_PARAM_INVALID) -> template (vkey.h).
 * The asset's key type (read once per asset from the registry) decides the template: an EC
 * asset (ec.h) derives its private key object (CKO_PRIVATE_KEY, the default) or its public one;
 * an Ed25519 asset with a normal index in the path is CKR_MECHANISM_PARAM_INVALID (SLIP-10 has no
 * such key). Malformed input and a session that is not logged in write nothing anywhere. Then the
 * policy path
 * patterns: a refusal is CKR_FUNCTION_REJECTED and is recorded as a DENY audit row (docs/audit.md:
 * refusals are rows of the chain like any other). Then the store round trip (state, counter,
 * chained DERIVE row): unknown asset CKR_MECHANISM_PARAM_INVALID, asset not derivable
 * (INITIALIZED, RETIRED) CKR_KEY_FUNCTION_NOT_PERMITTED, both recorded by the store as DENY rows;
 * store down CKR_DEVICE_ERROR (rv.c), nothing written. Then the HSM HMAC.
 *
 * Every other mechanism is forwarded when it is on the allowlist (mechallow.h: no object handle
 * in its parameter; else CKR_MECHANISM_INVALID before anything reaches the backend), its template
 * carries no CKA_LABEL equal to the root's (CKR_ATTRIBUTE_VALUE_INVALID, guard.h), and its keys
 * are neither the root nor a virtual key nor a handle the backend cannot describe (fail closed,
 * guard.h). The same holds for C_WrapKey and C_UnwrapKey. The 2.40 return values
 * of C_DeriveKey, C_WrapKey and C_UnwrapKey do not include CKR_KEY_FUNCTION_NOT_PERMITTED, so a
 * mechanism outside the key's CKA_ALLOWED_MECHANISMS (the root's: CKM_DDSM_DERIVE only; a virtual
 * key's: its HMAC or GCM mechanisms) is CKR_MECHANISM_INVALID, as SoftHSM answers for
 * CKA_ALLOWED_MECHANISMS. So: C_DeriveKey with another mechanism on the root or a virtual key,
 * C_WrapKey with either as wrapping key and C_UnwrapKey with either as unwrapping key:
 * CKR_MECHANISM_INVALID. C_WrapKey of the root: CKR_KEY_UNEXTRACTABLE; of a virtual key:
 * CKR_KEY_UNEXTRACTABLE, or CKR_KEY_NOT_WRAPPABLE when policy makes it extractable (the backend
 * cannot wrap a key it does not hold). */
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "derive_param.h"
#include "ec.h"
#include "entry.h"
#include "guard.h"
#include "handles.h"
#include "ladder.h"
#include "policy.h"
#include "vkey.h"

static CK_RV ddsm_derive(ddsm_call *c, const CK_MECHANISM *m, CK_OBJECT_HANDLE base,
                         const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    ddsm_uuid asset;
    ddsm_path path;
    char canon[DDSM_PATH_TEXT_MAX];
    uint32_t variant = 0;
    const char *why = NULL;
    CK_RV rv;

    if ((rv = ddsm_require_user(c)) != CKR_OK)
        return rv;
    if ((rv = ddsm_guard_root_base(c, base)) != CKR_OK)
        return rv;
    rv = ddsm_derive_param_parse(m->pParameter, m->ulParameterLen, &asset, &path, canon, &why);
    if (rv != CKR_OK) {
        ddsm_log(DDSM_LOG_INFO, "C_DeriveKey: bad parameter: %s", why != NULL ? why : "?");
        return rv;
    }
    const char *key_type = NULL;
    ddsm_curve curve;
    if ((rv = ddsm_vkey_asset_key_type(c, &asset, &key_type)) != CKR_OK)
        return rv;
    if (key_type == NULL) {
        /* No such asset: the same DENY row the derivation statement writes for one, without
         * guessing a key type for an asset that might be registered a moment later. */
        ddsm_vkey_record_denial_bounded(c, &asset, canon, "no such asset");
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (ddsm_ec_key_type(key_type, &curve)) {
        if (!ddsm_ec_path_ok(curve, &path)) {
            ddsm_log(DDSM_LOG_INFO, "C_DeriveKey: %s: %s keys have hardened indices only (SLIP-10)",
                     canon, key_type);
            return CKR_MECHANISM_PARAM_INVALID;
        }
        rv = ddsm_ec_template_parse(t, n, &asset, canon, curve, &variant);
    } else {
        rv = ddsm_vkey_template_parse_typed(t, n, &asset, canon, key_type,
                                            c->ctx->cfg->policy.extractable, &variant);
    }
    if (rv != CKR_OK)
        return rv;
    if (!ddsm_config_path_allowed(c->ctx->cfg, canon))
        return ddsm_mpolicy_refuse(c, &asset, canon, DDSM_DENY_PATH,
                                   "path refused by policy: it matches no [policy] path_pattern");
    return ddsm_vkey_derive_new(c, &asset, &path, variant, out);
}

CK_RV ddsm_C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                       CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate,
                       CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    DDSM_CALL(c, "C_DeriveKey");
    DDSM_LADDER_SESSION(c, hSession,
                        pMechanism != NULL && phKey != NULL &&
                            (pTemplate != NULL || ulAttributeCount == 0));
    if (pMechanism->mechanism == CKM_DDSM_DERIVE) {
        rv = ddsm_derive(&c, pMechanism, hBaseKey, pTemplate, ulAttributeCount, &h);
        if (rv == CKR_OK)
            *phKey = h;
        goto out;
    }
    if ((rv = ddsm_mech_check(&c, pMechanism)) != CKR_OK ||
        (rv = ddsm_guard_template(&c, pTemplate, ulAttributeCount)) != CKR_OK)
        goto out;
    if ((rv = ddsm_guard_key_as(&c, hBaseKey, CKR_MECHANISM_INVALID, CKR_MECHANISM_INVALID)) !=
        CKR_OK)
        goto out;
    rv = c.ctx->be->C_DeriveKey(hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey);
    rv = ddsm_guard_key_rv(rv, CKR_KEY_HANDLE_INVALID);
    if (rv == CKR_OK)
        rv = ddsm_guard_new_handles(&c, phKey, NULL);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                     CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey,
                     CK_ULONG_PTR pulWrappedKeyLen)
{
    DDSM_CALL(c, "C_WrapKey");
    DDSM_LADDER_SESSION(c, hSession, pMechanism != NULL && pulWrappedKeyLen != NULL);
    if ((rv = ddsm_mech_check(&c, pMechanism)) != CKR_OK)
        goto out;
    rv = ddsm_guard_key_as(&c, hWrappingKey, CKR_MECHANISM_INVALID, CKR_MECHANISM_INVALID);
    if (rv == CKR_KEY_HANDLE_INVALID)
        rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        goto out;
    rv = ddsm_guard_key_as(
        &c, hKey, c.ctx->cfg->policy.extractable ? CKR_KEY_NOT_WRAPPABLE : CKR_KEY_UNEXTRACTABLE,
        CKR_KEY_UNEXTRACTABLE);
    if (rv != CKR_OK)
        goto out;
    rv = c.ctx->be->C_WrapKey(hSession, pMechanism, hWrappingKey, hKey, pWrappedKey,
                              pulWrappedKeyLen);
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                       CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey,
                       CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate,
                       CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
    DDSM_CALL(c, "C_UnwrapKey");
    DDSM_LADDER_SESSION(c, hSession,
                        pMechanism != NULL && phKey != NULL &&
                            (pWrappedKey != NULL || ulWrappedKeyLen == 0) &&
                            (pTemplate != NULL || ulAttributeCount == 0));
    if ((rv = ddsm_mech_check(&c, pMechanism)) != CKR_OK ||
        (rv = ddsm_guard_template(&c, pTemplate, ulAttributeCount)) != CKR_OK)
        goto out;
    rv = ddsm_guard_key_as(&c, hUnwrappingKey, CKR_MECHANISM_INVALID, CKR_MECHANISM_INVALID);
    if (rv == CKR_KEY_HANDLE_INVALID)
        rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        goto out;
    rv = c.ctx->be->C_UnwrapKey(hSession, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen,
                                pTemplate, ulAttributeCount, phKey);
    rv = ddsm_guard_key_rv(rv, CKR_UNWRAPPING_KEY_HANDLE_INVALID);
    if (rv == CKR_OK)
        rv = ddsm_guard_new_handles(&c, phKey, NULL);
out:
    return ddsm_call_end(&c, rv);
}
