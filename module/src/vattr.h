/* SPDX-License-Identifier: Apache-2.0 */
/* Templates against virtual objects, without side effects (no store, no HSM, no lock): the
 * attribute side of C_GetAttributeValue (section 5.7) and the filter of C_FindObjectsInit, so that
 * both can be fuzzed on their own (tests/fuzz/fuzz_getattr.c). The object's attribute values come
 * from ddsm_vkey_attr (vkey.h). */
#ifndef DDSM_VATTR_H
#define DDSM_VATTR_H

#include <stdbool.h>
#include <stdint.h>

#include "handles.h"

/* Whether C_GetAttributeValue of template t would copy CKA_VALUE of e out (a readable key and a
 * buffer large enough): only then must the caller materialise the key bytes, with their audit
 * row. A length query or too small a buffer needs no key. */
bool ddsm_vattr_needs_value(const ddsm_hentry *e, const CK_ATTRIBUTE *t, CK_ULONG n);

/* Fill every entry of t per section 5.7: a NULL pValue gets the length; too small a buffer, a
 * sensitive value or an attribute these objects do not have get CK_UNAVAILABLE_INFORMATION in
 * ulValueLen; nothing is written past ulValueLen bytes of pValue. The result is
 * CKR_ATTRIBUTE_SENSITIVE, else CKR_ATTRIBUTE_TYPE_INVALID, else CKR_BUFFER_TOO_SMALL when any
 * entry had that outcome, else CKR_OK. value_secret: the DDSM_KEY_LEN key bytes when
 * ddsm_vattr_needs_value said so; NULL makes a readable CKA_VALUE answer as sensitive (fail
 * closed). n > 0 needs t != NULL (the entry ladder checks it). */
CK_RV ddsm_vattr_get(const ddsm_hentry *e, CK_ATTRIBUTE *t, CK_ULONG n,
                     const uint8_t *value_secret) DDSM_WUR;

/* Copy one value (len bytes at val) out into a per section 5.7: a NULL pValue gets the length,
 * too small a buffer CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL. The entry's outcome. */
CK_RV ddsm_vattr_give(CK_ATTRIBUTE *a, const void *val, CK_ULONG len);

/* Of two attribute outcomes, the one C_GetAttributeValue reports (the ranking of
 * ddsm_vattr_get). */
CK_RV ddsm_vattr_worse(CK_RV worst, CK_RV r);

/* The C_FindObjectsInit filter: whether every attribute of t has this value on e. skip_label:
 * CKA_LABEL was the lookup key and is not compared again. CKA_DDSM_PATH and the path inside
 * CKA_ID compare canonical forms (any hardening spelling names the same path); an attribute the
 * objects do not have, a NULL pValue with a non-zero length, and a sensitive or secret value
 * (CKA_VALUE) never match. */
bool ddsm_vattr_match(const ddsm_hentry *e, const CK_ATTRIBUTE *t, CK_ULONG n, bool skip_label);

#endif
