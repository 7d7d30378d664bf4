/* The root seed key on the backend HSM: session, lookup, creation, fingerprint. Built on the
 * shared adapter (module/src/hsm.h) and its function list; nothing here sees the seed except
 * ctl_hsm_import_root_secret, which hands it to C_CreateObject. */
#include <string.h>

#include "ctl.h"
#include "ddsm/secmem.h"

static void hsm_fail(const ctl_hsm *h, const char *what, CK_RV rv)
{
    if (rv == CKR_PIN_INCORRECT)
        ctl_err("%s on token \"%s\": the HSM rejected the PIN (%s)", what, h->token_label,
                ddsm_rv_name(rv));
    else if (rv == CKR_PIN_LOCKED)
        ctl_err("%s on token \"%s\": the PIN is locked (%s)", what, h->token_label,
                ddsm_rv_name(rv));
    else
        ctl_err("%s on token \"%s\": %s", what, h->token_label, ddsm_rv_name(rv));
}

int ctl_hsm_open_root(ctl *c, ctl_hsm *h)
{
    char why[512];
    ctl_pin pin = {NULL, 0};
    int rc = ctl_config(c);
    CK_RV rv;

    memset(h, 0, sizeof(*h));
    if (rc != CTL_EXIT_OK)
        return rc;
    const ddsm_config *cfg = c->cfg;
    bool separate = cfg->backend.root_token_label != NULL;
    h->token_label = separate ? cfg->backend.root_token_label : cfg->backend.token_label;
    h->key_label = cfg->backend.root_key_label != NULL ? cfg->backend.root_key_label : "ddsm-root";

    /* The PIN first: a usage error (no PIN) must not wait for the HSM. */
    if (separate) {
        if (cfg->backend.root_pin_file == NULL) {
            ctl_err("configuration: root_token_label is set but root_pin_file is not");
            return CTL_EXIT_USAGE;
        }
        rc = ctl_pin_from_file_secret(cfg->backend.root_pin_file, &pin);
    } else {
        rc = ctl_pin_get_secret(c, h->token_label, &pin);
    }
    if (rc != CTL_EXIT_OK)
        return rc;

    why[0] = '\0';
    rv = ddsm_hsm_load(cfg->backend.module, &h->hsm, why, sizeof(why));
    if (rv != CKR_OK) {
        ctl_err("backend HSM: %s", why[0] != '\0' ? why : ddsm_rv_name(rv));
        h->hsm = NULL;
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    h->fl = ddsm_hsm_functions(h->hsm);
    rv = ddsm_hsm_find_token(h->hsm, h->token_label, &h->slot);
    if (rv == CKR_TOKEN_NOT_PRESENT) {
        ctl_err("backend HSM %s has no token labelled \"%s\"", cfg->backend.module, h->token_label);
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot list slots", rv);
        rc = ctl_exit_for_rv(rv);
        goto out;
    }
    rv =
        h->fl->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->session);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot open a session", rv);
        rc = ctl_exit_for_rv(rv);
        goto out;
    }
    h->have_session = true;
    rv = ddsm_hsm_login_secret(h->hsm, h->session, pin.buf, pin.len);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot log in", rv);
        rc = ctl_exit_for_rv(rv);
        goto out;
    }
    rc = CTL_EXIT_OK;
out:
    ctl_pin_free(&pin);
    if (rc != CTL_EXIT_OK)
        ctl_hsm_close(h);
    return rc;
}

void ctl_hsm_close(ctl_hsm *h)
{
    if (h->have_session) {
        (void)h->fl->C_Logout(h->session);
        (void)h->fl->C_CloseSession(h->session);
        h->have_session = false;
    }
    if (h->hsm != NULL) {
        ddsm_hsm_unload(h->hsm);
        h->hsm = NULL;
    }
}

int ctl_hsm_find_root(ctl_hsm *h, bool *exists, CK_OBJECT_HANDLE *root)
{
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    unsigned count = 0;
    CK_RV rv = ddsm_hsm_find_object(h->hsm, h->session, CKO_SECRET_KEY, h->key_label, &obj, &count);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot search for the root key", rv);
        return ctl_exit_for_rv(rv);
    }
    if (count > 1) {
        ctl_err("token \"%s\" holds more than one secret key labelled \"%s\"", h->token_label,
                h->key_label);
        return CTL_EXIT_REFUSED;
    }
    *exists = count == 1;
    if (count == 1)
        *root = obj;
    return CTL_EXIT_OK;
}

int ctl_hsm_require_no_root(ctl_hsm *h)
{
    bool exists = false;
    CK_OBJECT_HANDLE obj;
    int rc = ctl_hsm_find_root(h, &exists, &obj);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (exists) {
        ctl_err("token \"%s\" already holds a root key labelled \"%s\"; nothing was changed",
                h->token_label, h->key_label);
        return CTL_EXIT_REFUSED;
    }
    return CTL_EXIT_OK;
}

/* The attributes of the root key (DESIGN.md): a non-extractable generic secret that can only
 * HMAC-sign (what the module's KDF asks of it) and derive. */
#define ROOT_TEMPLATE_COMMON(cls, kt, t, f, label)                                                 \
    {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_TOKEN, &t, sizeof(t)},   \
        {CKA_PRIVATE, &t, sizeof(t)}, {CKA_SENSITIVE, &t, sizeof(t)},                              \
        {CKA_EXTRACTABLE, &f, sizeof(f)}, {CKA_SIGN, &t, sizeof(t)}, {CKA_VERIFY, &f, sizeof(f)},  \
        {CKA_DERIVE, &t, sizeof(t)}, {CKA_ENCRYPT, &f, sizeof(f)}, {CKA_DECRYPT, &f, sizeof(f)},   \
        {CKA_WRAP, &f, sizeof(f)}, {CKA_UNWRAP, &f, sizeof(f)}, {CKA_MODIFIABLE, &f, sizeof(f)},   \
    {                                                                                              \
        CKA_LABEL, (void *)label, strlen(label)                                                    \
    }

int ctl_hsm_generate_root(ctl_hsm *h, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE;
    CK_BBOOL f = CK_FALSE;
    CK_ULONG value_len = 32;
    CK_ATTRIBUTE tmpl[] = {
        ROOT_TEMPLATE_COMMON(cls, kt, t, f, h->key_label),
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
    };
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_RV rv = h->fl->C_GenerateKey(h->session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot generate the root key", rv);
        return ctl_exit_for_rv(rv);
    }
    *out = obj;
    return CTL_EXIT_OK;
}

int ctl_hsm_import_root_secret(ctl_hsm *h, const uint8_t seed[32], CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE;
    CK_BBOOL f = CK_FALSE;
    /* No CKA_VALUE_LEN: PKCS#11 forbids it in C_CreateObject of a generic secret (the length
     * is that of CKA_VALUE). */
    CK_ATTRIBUTE tmpl[] = {
        ROOT_TEMPLATE_COMMON(cls, kt, t, f, h->key_label),
        {CKA_VALUE, (void *)seed, 32},
    };
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_RV rv = h->fl->C_CreateObject(h->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot import the root key", rv);
        return ctl_exit_for_rv(rv);
    }
    *out = obj;
    return CTL_EXIT_OK;
}

int ctl_hsm_fingerprint(ctl_hsm *h, CK_OBJECT_HANDLE root, char fp[DDSM_FINGERPRINT_HEX + 1])
{
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf prf;
    char tmp[DDSM_FINGERPRINT_HEX + 1];
    ddsm_hsm_prf_init(&pctx, h->hsm, h->session, root, &prf);
    ddsm_err e = ddsm_root_fingerprint(&prf, tmp);
    if (e != DDSM_OK) {
        if (pctx.last_rv != CKR_OK) {
            hsm_fail(h, "cannot compute the root fingerprint", pctx.last_rv);
            return ctl_exit_for_rv(pctx.last_rv);
        }
        ctl_err("cannot compute the root fingerprint: %s", ddsm_err_str(e));
        return ctl_exit_for(e);
    }
    memcpy(fp, tmp, sizeof(tmp));
    return CTL_EXIT_OK;
}

void ctl_hsm_destroy(ctl_hsm *h, CK_OBJECT_HANDLE obj)
{
    CK_RV rv = h->fl->C_DestroyObject(h->session, obj);
    if (rv != CKR_OK)
        hsm_fail(h, "cannot remove the root key just created (remove it by hand)", rv);
}

/* The audit key: the reserved derivation, computed by the HSM through the root key. */
int ctl_audit_key_secret(ctl *c, ddsm_audit_key **out)
{
    ctl_hsm h;
    bool exists = false;
    CK_OBJECT_HANDLE root = CK_INVALID_HANDLE;
    int rc = ctl_hsm_open_root(c, &h);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = ctl_hsm_find_root(&h, &exists, &root);
    if (rc == CTL_EXIT_OK && !exists) {
        ctl_err("token \"%s\" holds no root key labelled \"%s\": the audit key derives from it",
                h.token_label, h.key_label);
        rc = CTL_EXIT_REFUSED;
    }
    if (rc == CTL_EXIT_OK) {
        ddsm_hsm_prf_ctx pctx;
        ddsm_prf prf;
        ddsm_hsm_prf_init(&pctx, h.hsm, h.session, root, &prf);
        ddsm_err e = ddsm_audit_key_derive(&prf, out);
        if (e != DDSM_OK) {
            if (pctx.last_rv != CKR_OK) {
                ctl_err("the HSM cannot derive the audit key: %s", ddsm_rv_name(pctx.last_rv));
                rc = ctl_exit_for_rv(pctx.last_rv);
                rc = rc == CTL_EXIT_OK ? CTL_EXIT_UNAVAILABLE : rc;
            } else {
                ctl_err("cannot derive the audit key: %s", ddsm_err_str(e));
                rc = ctl_exit_for(e);
            }
        }
    }
    ctl_hsm_close(&h);
    return rc;
}
