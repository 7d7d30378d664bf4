/* SPDX-License-Identifier: Apache-2.0 */
/* The parameter of CKM_DDSM_DERIVE (pkcs11-ddsm.h), parsed by one pure function so that it can be
 * fuzzed on its own (tests/fuzz/fuzz_derive_param.c): flat bytes, the 16-byte asset UUID then the
 * path in UTF-8, no terminator. */
#ifndef DDSM_DERIVE_PARAM_H
#define DDSM_DERIVE_PARAM_H

#include "ddsm/path.h"
#include "ddsm/pkcs11-compat.h"
#include "ddsm/uuid.h"

/* Parse len bytes at param. CKR_OK with the asset, the parsed path and its canonical text; else
 * CKR_MECHANISM_PARAM_INVALID (param NULL, fewer than 17 or more than DDSM_DERIVE_PARAM_MAX bytes,
 * the nil UUID, a malformed path) with *why (may be NULL) pointing to a static reason. The
 * outputs are written only on success. Reads exactly len bytes; touches no global state. */
CK_RV ddsm_derive_param_parse(const void *param, CK_ULONG len, ddsm_uuid *asset, ddsm_path *path,
                              char canon[DDSM_PATH_TEXT_MAX], const char **why) DDSM_WUR;

#endif
