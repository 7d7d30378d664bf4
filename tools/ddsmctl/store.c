/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl's store: opening it (audited or not), reporting its errors, finding assets in it. */
#include "ctl.h"

int ctl_store_attach_audit(ddsm_store *st, const ddsm_audit_key *key)
{
    char instance[DDSM_AUDIT_INSTANCE_MAX + 1];
    const char *writer = ddsm_audit_key_writer(key);
    ddsm_err e = DDSM_E_ARG;
    if (writer != NULL &&
        snprintf(instance, sizeof(instance), "%s/c0", writer) < (int)sizeof(instance))
        e = ddsm_store_attach_audit(st, key, instance);
    if (e != DDSM_OK) {
        ctl_err("cannot set up the audit chain: %s", ddsm_err_str(e));
        return ctl_exit_for(e);
    }
    return CTL_EXIT_OK;
}

int ctl_list_open(ctl *c, const ctl_help *h, int argc, char **argv, bool *json,
                  ddsm_store **st)
{
    const ctl_opt opts[] = {{"--json", NULL, json, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    *st = NULL;
    int rc = ctl_parse(c, h, argc, argv, opts, 1, pos, 0, 0, &npos);
    return rc == CTL_EXIT_OK ? ctl_store_open(c, false, st) : rc;
}

int ctl_store_open(ctl *c, bool audited, ddsm_store **st)
{
    ddsm_audit_key *key = NULL;
    *st = NULL;
    int rc = ctl_config(c);
    if (rc == CTL_EXIT_OK && audited)
        rc = ctl_audit_key_secret(c, &key);
    if (rc != CTL_EXIT_OK)
        goto out;
    ddsm_store_opts opts = {c->cfg->store.connect_timeout_s, c->cfg->store.statement_timeout_ms,
                            "ddsmctl", audited ? DDSM_ROLE_ADMIN : c->store_role};
    ddsm_err e = ddsm_store_open(c->cfg->store.conninfo, &opts, st);
    if (e != DDSM_OK) {
        ctl_err("store: %s", ddsm_err_str(e));
        *st = NULL;
        rc = ctl_exit_for(e);
        goto out;
    }
    if (audited) {
        rc = ctl_store_attach_audit(*st, key);
        if (rc != CTL_EXIT_OK) {
            ddsm_store_close(*st);
            *st = NULL;
        }
    }
out:
    ddsm_audit_key_free(key);
    return rc;
}

int ctl_store_fail(ddsm_store *st, ddsm_err e, const char *what)
{
    const char *detail = ddsm_store_errmsg(st);
    if (e == DDSM_E_STORE_DOWN)
        ctl_err("%s: PostgreSQL is unavailable: %s", what, detail);
    else if (e == DDSM_E_PRIVILEGE || e == DDSM_E_DURABILITY)
        ctl_err("%s: %s", what, detail);
    else
        ctl_err("%s: %s%s%s", what, ddsm_err_str(e), detail[0] != '\0' ? ": " : "", detail);
    return ctl_exit_for(e);
}

int ctl_asset_find(ddsm_store *st, const char *text, ddsm_asset *out)
{
    ddsm_err e = ddsm_store_asset_find(st, text, out);
    if (e == DDSM_E_NOT_FOUND) {
        ctl_err("no asset with id or label \"%s\"", text);
        return CTL_EXIT_REFUSED;
    }
    if (e != DDSM_OK)
        return ctl_store_fail(st, e, "cannot look up the asset");
    return CTL_EXIT_OK;
}
