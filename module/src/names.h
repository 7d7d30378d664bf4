/* Names of CK_RV, mechanism and attribute values (logs, test messages). Never NULL; unknown
 * values come back as "CKR_0x..." in a thread-local buffer. */
#ifndef DDSM_NAMES_H
#define DDSM_NAMES_H

#include "ddsm/pkcs11-compat.h"

const char *ddsm_rv_name(CK_RV rv);
const char *ddsm_mech_name(CK_MECHANISM_TYPE m);
const char *ddsm_attr_name(CK_ATTRIBUTE_TYPE a);

#endif
