/* SPDX-License-Identifier: Apache-2.0 */
/* The root seed key on the backend HSM: session, lookup, creation, fingerprint. Built on the
 * shared adapter (hsm/include/ddsm/hsm.h) and its function list; nothing here sees the seed except
 * ctl_hsm_import_root_secret, which hands it to C_CreateObject. */
#include <string.h>

#include "ctl.h"
#include "ddsm/rootpin.h"
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
    h->c = c;
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

/* The secret keys labelled like the root, whose CKA_PRIVATE is *priv unless priv is NULL (at most
 * max; *n how many, *more when there were further ones). */
static CK_RV labelled_keys(ctl_hsm *h, const CK_BBOOL *priv, CK_OBJECT_HANDLE *out, size_t max,
                           size_t *n, bool *more)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)h->key_label, strlen(h->key_label)},
        {CKA_PRIVATE, (void *)priv, sizeof(CK_BBOOL)},
    };
    CK_OBJECT_HANDLE extra;
    CK_ULONG got = 0, more_n = 0;
    CK_RV rv = h->fl->C_FindObjectsInit(h->session, t, priv != NULL ? 3 : 2);
    if (rv != CKR_OK)
        return rv;
    rv = h->fl->C_FindObjects(h->session, out, max, &got);
    if (rv == CKR_OK)
        rv = h->fl->C_FindObjects(h->session, &extra, 1, &more_n);
    CK_RV rv2 = h->fl->C_FindObjectsFinal(h->session);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK)
        return rv;
    *n = got;
    *more = more_n > 0;
    return CKR_OK;
}

int ctl_hsm_candidates(ctl_hsm *h, ctl_root_candidate *out, size_t max, size_t *n, size_t *n_public)
{
    CK_OBJECT_HANDLE found[CTL_ROOT_CANDIDATES_MAX];
    size_t got = 0;
    bool more = false;
    const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    if (max > CTL_ROOT_CANDIDATES_MAX)
        max = CTL_ROOT_CANDIDATES_MAX;
    /* Public objects, which anyone can make, are never candidates: only counted, so that a flood
     * of them cannot hide the root. */
    CK_RV rv = labelled_keys(h, &no, found, max, &got, &more);
    if (rv == CKR_OK)
        *n_public = got + (more ? 1 : 0);
    if (rv == CKR_OK)
        rv = labelled_keys(h, &yes, found, max, &got, &more);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot search for the root key", rv);
        return ctl_exit_for_rv(rv);
    }
    if (more) {
        ctl_err(
            "token \"%s\" holds more than %zu secret keys labelled \"%s\": remove the ones that "
            "are not the root",
            h->token_label, max, h->key_label);
        return CTL_EXIT_REFUSED;
    }
    for (size_t i = 0; i < got; i++) {
        ddsm_hsm_prf_ctx pctx;
        ddsm_prf prf;
        CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
        CK_BBOOL priv = CK_FALSE;
        CK_ATTRIBUTE a[] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_PRIVATE, &priv, sizeof(priv)}};
        out[i].handle = found[i];
        /* As the module does: only a private generic secret can be the root (a public object
         * anyone can make is never a candidate), and one that cannot HMAC (an impostor need
         * not) has no fingerprint. */
        out[i].has_fp = h->fl->C_GetAttributeValue(h->session, found[i], a, 2) == CKR_OK &&
                        kt == CKK_GENERIC_SECRET && priv == CK_TRUE;
        ddsm_hsm_prf_init(&pctx, h->hsm, h->session, found[i], &prf);
        out[i].has_fp = out[i].has_fp && ddsm_root_fingerprint(&prf, out[i].fp) == DDSM_OK;
        if (!out[i].has_fp)
            out[i].fp[0] = '\0';
    }
    *n = got;
    return CTL_EXIT_OK;
}

int ctl_hsm_find_root(ctl_hsm *h, bool *exists, CK_OBJECT_HANDLE *root)
{
    ctl_root_candidate cand[CTL_ROOT_CANDIDATES_MAX];
    size_t n = 0, n_public = 0;
    ddsm_root_pins pins;
    int rc = ctl_hsm_candidates(h, cand, CTL_ROOT_CANDIDATES_MAX, &n, &n_public);
    if (rc != CTL_EXIT_OK)
        return rc;
    ctl_root_pins_read(h->c, &pins, false);
    *exists = false;
    h->found_fp[0] = '\0';
    size_t ignored = n_public;
    for (size_t i = 0; i < n && pins.count > 0; i++) {
        if (cand[i].has_fp && ddsm_root_pins_has(&pins, cand[i].fp)) {
            if (*exists && strcmp(cand[i].fp, h->found_fp) != 0) {
                ctl_err("token \"%s\" holds two different pinned roots (%s and %s)", h->token_label,
                        h->found_fp, cand[i].fp);
                return CTL_EXIT_REFUSED;
            }
            if (!*exists) {
                *root = cand[i].handle;
                memcpy(h->found_fp, cand[i].fp, sizeof(h->found_fp));
            }
            *exists = true;
        } else {
            ignored++;
        }
    }
    if (*exists) {
        if (ignored > 0)
            ctl_warn("ignoring %zu secret key%s labelled \"%s\" on token \"%s\" whose "
                     "fingerprint the store does not pin",
                     ignored, ignored == 1 ? "" : "s", h->key_label, h->token_label);
        return CTL_EXIT_OK;
    }
    /* None pinned (a store from before the pin, none reachable, or an unpinned root): the
     * label alone, as before, which cannot tell an impostor from the root. The module refuses
     * such a root; `root info` says so. */
    if (n_public > 0)
        ctl_warn("ignoring %zu public secret key%s labelled \"%s\" on token \"%s\" (anyone can "
                 "make those; a root is private)",
                 n_public, n_public == 1 ? "" : "s", h->key_label, h->token_label);
    if (n > 1) {
        ctl_err("token \"%s\" holds more than one secret key labelled \"%s\" and the store pins "
                "none of them: see `ddsmctl root pin --help`",
                h->token_label, h->key_label);
        return CTL_EXIT_REFUSED;
    }
    *exists = n == 1;
    if (n == 1)
        *root = cand[0].handle;
    return CTL_EXIT_OK;
}

void ctl_root_pins_read(ctl *c, ddsm_root_pins *pins, bool loud)
{
    ddsm_store *st = NULL;
    memset(pins, 0, sizeof(*pins));
    if (c == NULL || ctl_config(c) != CTL_EXIT_OK)
        return;
    ddsm_store_opts opts = {c->cfg->store.connect_timeout_s, c->cfg->store.statement_timeout_ms,
                            "ddsmctl", DDSM_ROLE_ANY};
    if (ddsm_store_open(c->cfg->store.conninfo, &opts, &st) != DDSM_OK)
        return;
    ddsm_err e = ddsm_store_root_pins(st, pins);
    if (e != DDSM_OK) {
        if (loud)
            ctl_warn("cannot read the root pin from the store: %s", ddsm_store_errmsg(st));
        memset(pins, 0, sizeof(*pins));
    }
    ddsm_store_close(st);
}

int ctl_hsm_require_no_root(ctl_hsm *h)
{
    /* Any key carrying the label, pinned or not: a second one would only make the token harder
     * to read (the module would ignore it, or refuse to choose between two pinned ones). */
    CK_OBJECT_HANDLE found[1];
    size_t n = 0;
    bool more = false;
    CK_RV rv = labelled_keys(h, NULL, found, 1, &n, &more);
    if (rv != CKR_OK) {
        hsm_fail(h, "cannot search for the root key", rv);
        return ctl_exit_for_rv(rv);
    }
    if (n > 0) {
        ctl_err("token \"%s\" already holds a root key labelled \"%s\"%s; nothing was changed",
                h->token_label, h->key_label, more ? " (several keys carry that label)" : "");
        return CTL_EXIT_REFUSED;
    }
    return CTL_EXIT_OK;
}

/* The attributes of a new root key (docs/root.md "HSM-enforced attributes"): a sensitive,
 * never extractable generic secret that can do one thing, CKM_SHA256_HMAC signatures (the KDF of
 * docs/design.md and the fingerprint). No CKA_DERIVE: the module never asks the HSM to derive with it.
 * CKA_DESTROYABLE stays true: nothing reaches the root through the module but CKM_DDSM_DERIVE,
 * and an officer must be able to remove a root (a compromised one, or an impostor's twin) without
 * re-initialising the token. */
#define ROOT_BASE_MAX 20
#define ROOT_OPTIONAL 2

static const CK_MECHANISM_TYPE root_mechanisms[] = {CKM_SHA256_HMAC};
static const CK_BBOOL attr_true = CK_TRUE;
static const CK_BBOOL attr_false = CK_FALSE;

/* The attributes a backend may not know (PKCS#11 2.40 added them): probed, and a root made
 * without them when refused, with a warning naming them. */
static const struct {
    CK_ATTRIBUTE a;
    const char *name;
} root_optional[ROOT_OPTIONAL] = {
    {{CKA_COPYABLE, (void *)&attr_false, sizeof(attr_false)}, "CKA_COPYABLE"},
    {{CKA_ALLOWED_MECHANISMS, (void *)root_mechanisms, sizeof(root_mechanisms)},
     "CKA_ALLOWED_MECHANISMS"},
};

static size_t root_base(CK_ATTRIBUTE *t, const CK_OBJECT_CLASS *cls, const CK_KEY_TYPE *kt,
                        const CK_BBOOL *token, const char *label)
{
    size_t n = 0;
    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, (void *)cls, sizeof(*cls)};
    t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, (void *)kt, sizeof(*kt)};
    t[n++] = (CK_ATTRIBUTE){CKA_TOKEN, (void *)token, sizeof(*token)};
    t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, (void *)&attr_true, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, (void *)&attr_true, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_SIGN, (void *)&attr_true, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_VERIFY, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_DERIVE, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_ENCRYPT, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_DECRYPT, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_WRAP, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_UNWRAP, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_MODIFIABLE, (void *)&attr_false, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_DESTROYABLE, (void *)&attr_true, sizeof(CK_BBOOL)};
    t[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    return n;
}

/* The backend's answers that mean "this template names something I do not support". */
static bool template_refused(CK_RV rv)
{
    return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
           rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_READ_ONLY;
}

/* Whether the backend accepts optional attribute i on a throwaway session key. */
static bool probe_optional(ctl_hsm *h, size_t i)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG value_len = 32;
    CK_ATTRIBUTE t[ROOT_BASE_MAX + 2];
    size_t n = root_base(t, &cls, &kt, &attr_false, "ddsm-root-probe");
    t[n++] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &value_len, sizeof(value_len)};
    t[n++] = root_optional[i].a;
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_RV rv = h->fl->C_GenerateKey(h->session, &mech, t, (CK_ULONG)n, &obj);
    if (rv == CKR_OK)
        (void)h->fl->C_DestroyObject(h->session, obj);
    return rv == CKR_OK;
}

/* Make the root: generated by the HSM (seed NULL) or imported. not_enforced receives the names of
 * the attributes the backend refused, comma-separated ("" when none). */
static int root_make(ctl_hsm *h, const uint8_t *seed, CK_OBJECT_HANDLE *out,
                     char not_enforced[CTL_NOT_ENFORCED_MAX])
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG value_len = 32;
    bool use[ROOT_OPTIONAL];
    CK_RV rv = CKR_OK;
    not_enforced[0] = '\0';
    for (size_t i = 0; i < ROOT_OPTIONAL; i++)
        use[i] = true;
    for (int attempt = 0; attempt < 2; attempt++) {
        CK_ATTRIBUTE t[ROOT_BASE_MAX + ROOT_OPTIONAL + 1];
        size_t n = root_base(t, &cls, &kt, &attr_true, h->key_label);
        for (size_t i = 0; i < ROOT_OPTIONAL; i++)
            if (use[i])
                t[n++] = root_optional[i].a;
        CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
        if (seed == NULL) {
            t[n++] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &value_len, sizeof(value_len)};
            CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
            rv = h->fl->C_GenerateKey(h->session, &mech, t, (CK_ULONG)n, &obj);
        } else {
            /* No CKA_VALUE_LEN: PKCS#11 forbids it in C_CreateObject of a generic secret (the
             * length is that of CKA_VALUE). */
            t[n++] = (CK_ATTRIBUTE){CKA_VALUE, (void *)seed, 32};
            rv = h->fl->C_CreateObject(h->session, t, (CK_ULONG)n, &obj);
        }
        if (rv == CKR_OK) {
            *out = obj;
            return CTL_EXIT_OK;
        }
        if (attempt > 0 || !template_refused(rv))
            break;
        bool dropped = false;
        for (size_t i = 0; i < ROOT_OPTIONAL; i++) {
            if (probe_optional(h, i))
                continue;
            use[i] = false;
            dropped = true;
            size_t len = strlen(not_enforced);
            snprintf(not_enforced + len, CTL_NOT_ENFORCED_MAX - len, "%s%s", len ? "," : "",
                     root_optional[i].name);
        }
        if (!dropped)
            break;
        ctl_warn("the backend does not accept %s: the root key is made without %s", not_enforced,
                 strchr(not_enforced, ',') != NULL ? "them" : "it");
    }
    hsm_fail(h, seed == NULL ? "cannot generate the root key" : "cannot import the root key", rv);
    return ctl_exit_for_rv(rv);
}

int ctl_hsm_generate_root(ctl_hsm *h, CK_OBJECT_HANDLE *out,
                          char not_enforced[CTL_NOT_ENFORCED_MAX])
{
    return root_make(h, NULL, out, not_enforced);
}

int ctl_hsm_import_root_secret(ctl_hsm *h, const uint8_t seed[32], CK_OBJECT_HANDLE *out,
                               char not_enforced[CTL_NOT_ENFORCED_MAX])
{
    return root_make(h, seed, out, not_enforced);
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
