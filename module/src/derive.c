/* Key derivation, wrapping and unwrapping.
 *
 * C_DeriveKey(CKM_DDSM_DERIVE) on the root seed key (its handle, or CK_DDSM_ROOT_HANDLE): the
 * parameter is flat bytes, the 16-byte asset UUID then the path in UTF-8 (pkcs11-ddsm.h). Checks,
 * in the ladder's order:
 *   login (CKR_USER_NOT_LOGGED_IN) -> base key (vkey/guard: CKR_KEY_HANDLE_INVALID,
 *   CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_FUNCTION_NOT_PERMITTED) -> parameter (NULL, shorter than
 *   17 bytes, longer than DDSM_DERIVE_PARAM_MAX, nil UUID, malformed path:
 *   CKR_MECHANISM_PARAM_INVALID) -> template (vkey.h).
 * Malformed input and a session that is not logged in write nothing anywhere. Then the policy path
 * patterns: a refusal is CKR_FUNCTION_REJECTED and is recorded as a DENY audit row (docs/audit.md:
 * refusals are rows of the chain like any other). Then the store round trip (state, counter,
 * chained DERIVE row): unknown asset CKR_MECHANISM_PARAM_INVALID, asset not derivable
 * (INITIALIZED, RETIRED) CKR_KEY_FUNCTION_NOT_PERMITTED, both recorded by the store as DENY rows;
 * store down CKR_DEVICE_ERROR (rv.c), nothing written. Then the HSM HMAC.
 *
 * Every other mechanism is forwarded, except on the root or a virtual key
 * (CKR_KEY_FUNCTION_NOT_PERMITTED: virtual keys have CKA_DERIVE false). C_WrapKey refuses the root
 * as wrapping or wrapped key (CKR_KEY_FUNCTION_NOT_PERMITTED), a virtual wrapping key
 * (CKR_KEY_FUNCTION_NOT_PERMITTED: CKA_WRAP false) and a virtual key to wrap
 * (CKR_KEY_UNEXTRACTABLE, or CKR_KEY_NOT_WRAPPABLE when policy makes it extractable: the backend
 * cannot wrap a key it does not hold). C_UnwrapKey refuses the root and virtual keys as unwrapping
 * key. */
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "entry.h"
#include "guard.h"
#include "handles.h"
#include "ladder.h"
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
    if (m->pParameter == NULL || m->ulParameterLen < 17 ||
        m->ulParameterLen > DDSM_DERIVE_PARAM_MAX)
        return CKR_MECHANISM_PARAM_INVALID;
    const uint8_t *p = m->pParameter;
    memcpy(asset.b, p, 16);
    if (ddsm_uuid_is_nil(&asset))
        return CKR_MECHANISM_PARAM_INVALID; /* the nil UUID names the module's own keys */
    if (ddsm_path_parse((const char *)p + 16, m->ulParameterLen - 16, &path, &why) != DDSM_OK) {
        ddsm_log(DDSM_LOG_INFO, "C_DeriveKey: bad path: %s", why != NULL ? why : "?");
        return CKR_MECHANISM_PARAM_INVALID;
    }
    ddsm_path_format(&path, canon);
    rv = ddsm_vkey_template_parse(t, n, &asset, canon, c->ctx->cfg->policy.extractable, &variant);
    if (rv != CKR_OK)
        return rv;
    if (!ddsm_config_path_allowed(c->ctx->cfg, canon)) {
        ddsm_log(DDSM_LOG_INFO, "C_DeriveKey: path %s refused by policy", canon);
        ddsm_vkey_record_denial(c, &asset, canon, "path refused by policy");
        return CKR_FUNCTION_REJECTED;
    }
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
    if ((rv = ddsm_guard_key(&c, hBaseKey, CKR_KEY_FUNCTION_NOT_PERMITTED)) != CKR_OK)
        goto out;
    rv = c.ctx->be->C_DeriveKey(hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey);
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
    rv = ddsm_guard_key(&c, hWrappingKey, CKR_KEY_FUNCTION_NOT_PERMITTED);
    if (rv == CKR_KEY_HANDLE_INVALID)
        rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        goto out;
    rv = ddsm_guard_key(
        &c, hKey, c.ctx->cfg->policy.extractable ? CKR_KEY_NOT_WRAPPABLE : CKR_KEY_UNEXTRACTABLE);
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
    rv = ddsm_guard_key(&c, hUnwrappingKey, CKR_KEY_FUNCTION_NOT_PERMITTED);
    if (rv == CKR_KEY_HANDLE_INVALID)
        rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        goto out;
    rv = c.ctx->be->C_UnwrapKey(hSession, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen,
                                pTemplate, ulAttributeCount, phKey);
    if (rv == CKR_OK)
        rv = ddsm_guard_new_handles(&c, phKey, NULL);
out:
    return ddsm_call_end(&c, rv);
}
