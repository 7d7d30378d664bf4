/* SPDX-License-Identifier: Apache-2.0 */
#include "derive_param.h"

#include <stdint.h>
#include <string.h>

#include "ddsm/pkcs11-ddsm.h"

#define UUID_LEN 16

static CK_RV refuse(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return CKR_MECHANISM_PARAM_INVALID;
}

CK_RV ddsm_derive_param_parse(const void *param, CK_ULONG len, ddsm_uuid *asset, ddsm_path *path,
                              char canon[DDSM_PATH_TEXT_MAX], const char **why)
{
    ddsm_uuid a;
    ddsm_path p;
    const char *path_why = NULL;

    if (param == NULL)
        return refuse(why, "no parameter");
    if (len <= UUID_LEN)
        return refuse(why, "shorter than a UUID and a path");
    if (len > DDSM_DERIVE_PARAM_MAX)
        return refuse(why, "longer than DDSM_DERIVE_PARAM_MAX");
    const uint8_t *b = param;
    memcpy(a.b, b, UUID_LEN);
    if (ddsm_uuid_is_nil(&a))
        return refuse(why, "the nil UUID names the module's own keys");
    if (ddsm_path_parse((const char *)b + UUID_LEN, len - UUID_LEN, &p, &path_why) != DDSM_OK)
        return refuse(why, path_why != NULL ? path_why : "malformed path");
    *asset = a;
    *path = p;
    ddsm_path_format(&p, canon);
    return CKR_OK;
}
