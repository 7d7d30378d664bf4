/* SPDX-License-Identifier: Apache-2.0 */
/* Guarding the root seed key: it is usable through the module only by CKM_DDSM_DERIVE. Every
 * other use of its handle is refused: key-using calls with CKR_KEY_FUNCTION_NOT_PERMITTED, object
 * management with CKR_ACTION_PROHIBITED, reading CKA_VALUE with CKR_ATTRIBUTE_SENSITIVE.
 * Otherwise a plain C_Sign(CKM_SHA256_HMAC) on the root would hand any caller every asset key
 * with no audit. Handles inside mechanism parameters never reach the backend: only mechanisms of
 * the allowlist are forwarded (mechallow.h).
 *
 * The root is identified by label, failing closed: an object whose CKA_LABEL is [backend]
 * root_key_label (any class), asked of the backend through the application's session whenever a
 * handle is not known to be the root yet; a positive answer is cached per process. A handle the
 * backend cannot describe is refused, never forwarded (guard.c classify). Any object with that
 * label on the fronted token counts as the root, even when the configured root lives on a
 * separate custody token (a copy in the wrong place must not become a bypass), and no template
 * the module forwards may carry that label (ddsm_guard_template). CK_DDSM_ROOT_HANDLE names the
 * root too. */
#ifndef DDSM_GUARD_H
#define DDSM_GUARD_H

#include <stdbool.h>

#include "ladder.h"

/* Whether h, as seen from the application's session c->sess, may be the root seed key: true for
 * the root and for a handle the backend cannot describe (fail closed). */
bool ddsm_guard_is_root(ddsm_call *c, CK_OBJECT_HANDLE h);

/* The base key of CKM_DDSM_DERIVE: CKR_OK for the root (or CK_DDSM_ROOT_HANDLE),
 * CKR_KEY_HANDLE_INVALID for a handle the backend does not know in this session (the backend's
 * error, translated, when it cannot answer), CKR_KEY_TYPE_INCONSISTENT for a virtual key or
 * any other backend key (not the key this mechanism takes; the 2.40 return values of C_DeriveKey
 * do not include CKR_KEY_FUNCTION_NOT_PERMITTED). */
CK_RV ddsm_guard_root_base(ddsm_call *c, CK_OBJECT_HANDLE h) DDSM_WUR;

/* The check before forwarding a key-using call on key handle h to the backend:
 *  - a live virtual handle: virt_rv (the function's refusal for virtual keys);
 *  - a dead (counter rotated away or retired), forged or over-wide handle: CKR_KEY_HANDLE_INVALID
 *    (the store may be asked: CKR_DEVICE_ERROR when it is down and re-validation is due);
 *  - the root: CKR_KEY_FUNCTION_NOT_PERMITTED;
 *  - a backend handle the backend cannot describe in this session: CKR_KEY_HANDLE_INVALID, or
 *    the backend's error when it fails (never forwarded: it might be the root);
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
 * bad and dead handles (and backend handles the backend cannot describe)
 * CKR_OBJECT_HANDLE_INVALID. */
CK_RV ddsm_guard_object(ddsm_call *c, CK_OBJECT_HANDLE h) DDSM_WUR;

/* A template of a call that creates or changes an object (C_CreateObject, C_CopyObject,
 * C_SetAttributeValue, C_GenerateKey, C_GenerateKeyPair, C_UnwrapKey, C_DeriveKey): a CKA_LABEL
 * equal to [backend] root_key_label is CKR_ATTRIBUTE_VALUE_INVALID (the value of that attribute
 * is what is refused, and 2.40 lists that code for each of these functions, where
 * CKR_ACTION_PROHIBITED exists only for three of them), as is a CKA_LABEL with a NULL value and a
 * non-zero length; else CKR_OK. Whoever asks, logged in or not: another object with the root's
 * label would make the root ambiguous. */
CK_RV ddsm_guard_template(ddsm_call *c, const CK_ATTRIBUTE *t, CK_ULONG n) DDSM_WUR;
/* Both templates of C_GenerateKeyPair. */
CK_RV ddsm_guard_templates(ddsm_call *c, const CK_ATTRIBUTE *a, CK_ULONG na, const CK_ATTRIBUTE *b,
                           CK_ULONG nb) DDSM_WUR;

/* After the backend created objects (a or b may be NULL): a handle with the top bit set cannot be
 * passed on (it would be misread as a virtual object). Such objects are destroyed again and the
 * call fails with CKR_DEVICE_ERROR (detail DDSM_DEVERR_HSM_FAILED); else CKR_OK. */
CK_RV ddsm_guard_new_handles(ddsm_call *c, CK_OBJECT_HANDLE_PTR a, CK_OBJECT_HANDLE_PTR b) DDSM_WUR;

#endif
