/* SPDX-License-Identifier: Apache-2.0 */
/* Names of CK_RV, mechanism and attribute values (logs, test messages). Never NULL; unknown
 * values come back as "CKR_0x..." in a thread-local buffer. */
#ifndef DDSM_NAMES_H
#define DDSM_NAMES_H

#include <stdbool.h>

#include "ddsm/pkcs11-compat.h"

const char *ddsm_rv_name(CK_RV rv);
const char *ddsm_mech_name(CK_MECHANISM_TYPE m);
const char *ddsm_attr_name(CK_ATTRIBUTE_TYPE a);
/* The mechanism a name of the table (e.g. "CKM_SHA256_HMAC") or "0x<hex>" stands for. */
bool ddsm_mech_from_name(const char *name, CK_MECHANISM_TYPE *out);

#endif
