/* Guarding the root seed key: it is usable through the module only by CKM_DDSM_DERIVE. Every
 * other use of its handle is refused: key-using calls with CKR_KEY_FUNCTION_NOT_PERMITTED, object
 * management with CKR_ACTION_PROHIBITED, reading CKA_VALUE with CKR_ATTRIBUTE_SENSITIVE.
 * Otherwise a plain C_Sign(CKM_SHA256_HMAC) on the root would hand any caller every asset key
 * with no audit.
 *
 * The root is identified robustly: a secret key whose CKA_LABEL is [backend] root_key_label, asked
 * of the backend whenever a handle is not known yet, with the answer cached per process. Any such
 * key on the fronted token counts as the root, even when the configured root lives on a separate
 * custody token (a copy in the wrong place must not become a bypass). CK_DDSM_ROOT_HANDLE names the
 * root too. */
#ifndef DDSM_GUARD_H
#define DDSM_GUARD_H

#include <stdbool.h>

#include "ladder.h"

/* Whether h, as seen from the application's session c->sess, is the root seed key. A handle the
 * backend cannot describe (invalid, private while logged out) is not the root: the backend refuses
 * it on its own. */
bool ddsm_guard_is_root(ddsm_call *c, CK_OBJECT_HANDLE h);

/* The base key of CKM_DDSM_DERIVE: CKR_OK for the root (or CK_DDSM_ROOT_HANDLE),
 * CKR_KEY_HANDLE_INVALID for a handle nobody knows, CKR_KEY_TYPE_INCONSISTENT for a virtual key or
 * any other backend key (not the key this mechanism takes; the 2.40 return values of C_DeriveKey
 * do not include CKR_KEY_FUNCTION_NOT_PERMITTED). */
CK_RV ddsm_guard_root_base(ddsm_call *c, CK_OBJECT_HANDLE h) DDSM_WUR;

/* The check before forwarding a key-using call on key handle h to the backend:
 *  - a live virtual handle: virt_rv (the function's refusal for virtual keys);
 *  - a dead (counter rotated away or retired), forged or over-wide handle: CKR_KEY_HANDLE_INVALID
 *    (the store may be asked: CKR_DEVICE_ERROR when it is down and re-validation is due);
 *  - the root: CKR_KEY_FUNCTION_NOT_PERMITTED;
 *  - else CKR_OK (forward). */
CK_RV ddsm_guard_key(ddsm_call *c, CK_OBJECT_HANDLE h, CK_RV virt_rv) DDSM_WUR;
/* The same with the root's refusal chosen by the caller: for functions whose return values in
 * PKCS#11 2.40 do not include CKR_KEY_FUNCTION_NOT_PERMITTED (C_DigestKey, C_DeriveKey,
 * C_WrapKey, C_UnwrapKey, C_SetOperationState). */
CK_RV ddsm_guard_key_as(ddsm_call *c, CK_OBJECT_HANDLE h, CK_RV virt_rv, CK_RV root_rv) DDSM_WUR;

/* A backend's answer to a call that took key handle(s): backends (SoftHSM 2.6) answer
 * CKR_OBJECT_HANDLE_INVALID for an unknown key where the function's 2.40 return values name
 * key_invalid_rv (CKR_KEY_HANDLE_INVALID, CKR_UNWRAPPING_KEY_HANDLE_INVALID, ...). */
CK_RV ddsm_guard_key_rv(CK_RV backend_rv, CK_RV key_invalid_rv);

/* The same for object-management calls: live virtual objects and the root CKR_ACTION_PROHIBITED,
 * bad and dead handles CKR_OBJECT_HANDLE_INVALID. */
CK_RV ddsm_guard_object(ddsm_call *c, CK_OBJECT_HANDLE h) DDSM_WUR;

/* After the backend created objects (a or b may be NULL): a handle with the top bit set cannot be
 * passed on (it would be misread as a virtual object). Such objects are destroyed again and the
 * call fails with CKR_DEVICE_ERROR (detail DDSM_DEVERR_HSM_FAILED); else CKR_OK. */
CK_RV ddsm_guard_new_handles(ddsm_call *c, CK_OBJECT_HANDLE_PTR a, CK_OBJECT_HANDLE_PTR b) DDSM_WUR;

#endif
