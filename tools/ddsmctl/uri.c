/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 URIs (RFC 7512) of asset keys, built with libp11-kit's URI functions so that the
 * encoding is the one p11-kit-based tools parse. The module's slot shows the backend's own token
 * info, so a URI names the module by its C_GetInfo (library-manufacturer, library-description):
 * a process that also loads the backend (p11-kit-proxy, a p11tool listing every module) then
 * finds the key through the module, never on the backend's raw token. */
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "ctl.h"
#include "ddsm/pkcs11-ddsm.h"

static void blank_pad(CK_UTF8CHAR *field, size_t len, const char *s)
{
    size_t n = strlen(s);
    memset(field, ' ', len);
    memcpy(field, s, n < len ? n : len);
}

const char *ctl_obj_type_name(ctl_obj_type t)
{
    switch (t) {
    case CTL_OBJ_SECRET:
        return "secret-key";
    case CTL_OBJ_PRIVATE:
        return "private";
    case CTL_OBJ_PUBLIC:
        return "public";
    }
    return "?";
}

size_t ctl_key_objects(const char *key_type, const ddsm_path *path, ctl_obj_type out[2])
{
    if (strcmp(key_type, "hmac") == 0 || strcmp(key_type, "aes") == 0) {
        out[0] = CTL_OBJ_SECRET;
        return 1;
    }
    if (strcmp(key_type, "ed25519") == 0)
        for (unsigned i = 0; i < path->depth; i++)
            if ((path->index[i] & DDSM_HARDENED) == 0)
                return 0; /* SLIP-10 Ed25519 has no normal children: the module lists none */
    out[0] = CTL_OBJ_PRIVATE;
    out[1] = CTL_OBJ_PUBLIC;
    return 2;
}

int ctl_key_uri(const char *token_label, const uint8_t *id, size_t id_len, const char *label,
                ctl_obj_type type, char **out)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    CK_OBJECT_CLASS cls = classes[type];
    char *text = NULL;
    int rc = CTL_EXIT_OK;

    *out = NULL;
    P11KitUri *uri = p11_kit_uri_new();
    if (uri == NULL) {
        ctl_err("out of memory building a PKCS#11 URI");
        return CTL_EXIT_UNAVAILABLE;
    }
    CK_INFO *module = p11_kit_uri_get_module_info(uri);
    blank_pad(module->manufacturerID, sizeof(module->manufacturerID), DDSM_LIBRARY_MANUFACTURER);
    blank_pad(module->libraryDescription, sizeof(module->libraryDescription),
              DDSM_LIBRARY_DESCRIPTION);
    CK_TOKEN_INFO *token = p11_kit_uri_get_token_info(uri);
    blank_pad(token->label, sizeof(token->label), token_label);
    CK_ATTRIBUTE attrs[] = {
        {CKA_ID, (void *)id, id_len},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_CLASS, &cls, sizeof(cls)},
    };
    int r = P11_KIT_URI_OK;
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]) && r == P11_KIT_URI_OK; i++)
        r = p11_kit_uri_set_attribute(uri, &attrs[i]);
    if (r == P11_KIT_URI_OK)
        r = p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN_AND_MODULE, &text);
    if (r != P11_KIT_URI_OK) {
        ctl_err("cannot build a PKCS#11 URI: %s", p11_kit_uri_message(r));
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    *out = text;
    text = NULL;
out:
    free(text);
    p11_kit_uri_free(uri);
    return rc;
}
