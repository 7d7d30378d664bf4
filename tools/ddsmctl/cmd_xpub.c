/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl asset xpub: the BIP-32 extended public key of a secp256k1 asset's node (docs/design.md
 * "Signing keys"), so that a watch-only wallet derives the same public keys (normal children)
 * without the module.
 *
 * The node needs the asset seed, which only the HSM computes (it is the reserved depth-0
 * derivation of the asset at its current counter): so this is a derivation like the module's,
 * audited the same way. Order: usage and the registry (no PIN needed to be told the asset is not
 * secp256k1), then the HSM (PIN) and the audit key, then the DERIVE row (chained; detail
 * "key type secp256k1"), then the HSM derivation. Nothing is written when the HSM or the PIN is
 * unavailable. The asset seed and every private node live in secure memory and are wiped. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "ddsm/derive.h"
#include "ddsm/hd.h"
#include "ddsm/path.h"
#include "ddsm/secmem.h"
#include "ddsm/uuid.h"
#include "tool.h"

static const ctl_help xpub_help = {
    "asset xpub",
    "ddsmctl asset xpub ID|LABEL [--path P] [--json]",
    "Print the Base58Check extended public key (xpub, BIP-32 mainnet version) of the node at path\n"
    "P (default: the asset's default path) of a secp256k1 asset, at its current counter. A\n"
    "watch-only wallet derives from it the public keys of the node's normal children, the same\n"
    "ones the module exposes (CKA_EC_POINT) for P/0, P/1, ... Computing it needs the asset seed\n"
    "from the HSM (PIN, like every derivation) and writes a DERIVE audit row; a rotation changes\n"
    "it. Exit 2 for an asset of another key type (xpub is defined for secp256k1 only), 1 when\n"
    "the asset does not exist or is not ACTIVE or ROTATING, or the policy refuses the path.",
    "  --path P             the node's path (1 to 16 components)\n"
    "  --json               {\"asset\", \"label\", \"path\", \"counter\", \"xpub\"} instead of the "
    "xpub\n",
};

/* The registry answer for the asset named by text, or an exit code. */
static int lookup(ddsm_store *st, const char *text, ddsm_asset *a)
{
    ddsm_err e = ddsm_store_asset_find(st, text, a);
    if (e == DDSM_E_NOT_FOUND) {
        ctl_err("no asset with id or label \"%s\"", text);
        return CTL_EXIT_REFUSED;
    }
    if (e != DDSM_OK) {
        ctl_err("cannot look up the asset: %s: %s", ddsm_err_str(e), ddsm_store_errmsg(st));
        return ctl_exit_for(e);
    }
    return CTL_EXIT_OK;
}

/* The HSM's PRF over the root: the audit key, then (after the row) the asset seed. */
typedef struct xpub_hsm {
    ctl_hsm h;
    CK_OBJECT_HANDLE root;
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf prf;
} xpub_hsm;

static int hsm_open(ctl *c, xpub_hsm *x)
{
    bool exists = false;
    int rc = ctl_hsm_open_root(c, &x->h);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = ctl_hsm_find_root(&x->h, &exists, &x->root);
    if (rc == CTL_EXIT_OK && !exists) {
        ctl_err("token \"%s\" holds no root key labelled \"%s\"", x->h.token_label, x->h.key_label);
        rc = CTL_EXIT_REFUSED;
    }
    if (rc == CTL_EXIT_OK)
        ddsm_hsm_prf_init(&x->pctx, x->h.hsm, x->h.session, x->root, &x->prf);
    return rc;
}

static int hsm_fail(const xpub_hsm *x, const char *what, ddsm_err e)
{
    if (x->pctx.last_rv != CKR_OK) {
        ctl_err("the HSM cannot compute %s: %s", what, ddsm_rv_name(x->pctx.last_rv));
        int rc = ctl_exit_for_rv(x->pctx.last_rv);
        return rc == CTL_EXIT_OK ? CTL_EXIT_UNAVAILABLE : rc;
    }
    ctl_err("cannot compute %s: %s", what, ddsm_err_str(e));
    return ctl_exit_for(e);
}

/* The xpub of path under the asset seed of (asset, counter): HSM, then BIP-32 in memory. */
static int compute_xpub(xpub_hsm *x, const ddsm_uuid *asset, uint64_t counter,
                        const ddsm_path *path, char out[DDSM_HD_XKEY_TEXT_MAX])
{
    const ddsm_path seed_path = {.depth = 0}; /* docs/design.md "Reserved derivations" */
    const char *why = NULL;
    ddsm_hd_pub_node pub;
    int rc = CTL_EXIT_OK;
    uint8_t *seed = ddsm_secure_alloc(DDSM_KEY_LEN);
    ddsm_hd_node *node = ddsm_secure_alloc(sizeof(*node));
    if (seed == NULL || node == NULL) {
        ctl_err("cannot allocate secure memory");
        rc = ctl_exit_for(DDSM_E_NOMEM);
        goto out;
    }
    ddsm_err e = ddsm_derive_secret(&x->prf, asset, &seed_path, counter, seed);
    if (e != DDSM_OK) {
        rc = hsm_fail(x, "the asset seed", e);
        goto out;
    }
    e = ddsm_hd_derive_path_secret(DDSM_CURVE_SECP256K1, seed, DDSM_KEY_LEN, path, node, &why);
    if (e == DDSM_OK)
        e = ddsm_hd_neuter(DDSM_CURVE_SECP256K1, node, &pub);
    if (e == DDSM_OK)
        e = ddsm_hd_serialize_xpub(DDSM_CURVE_SECP256K1, &pub, out);
    if (e != DDSM_OK) {
        /* BIP-32 gives no key for about one index in 2^127: the path names nothing. */
        ctl_err("no BIP-32 node at this path: %s", why != NULL ? why : ddsm_err_str(e));
        rc = ctl_exit_for(e);
    }
out:
    ddsm_secure_free(node, sizeof(*node));
    ddsm_secure_free(seed, DDSM_KEY_LEN);
    return rc;
}

/* The DERIVE row (or, refused, a DENY row), chained under the audit key. */
static int audit_row(ctl *c, ddsm_store *st, const ddsm_asset *a, const char *canon,
                     uint64_t *counter)
{
    char requester[300];
    ddsm_state state = DDSM_STATE_INITIALIZED;
    char id[DDSM_UUID_TEXT_LEN + 1];
    ctl_requester(requester, sizeof(requester));
    ddsm_uuid_format(&a->id, id);
    ddsm_derive_req req = {
        .asset = a->id,
        .path = canon,
        .requester = requester,
        .instance = NULL,
        .detail = "key type secp256k1",
    };
    if (!ddsm_config_path_allowed(c->cfg, canon)) {
        ddsm_err e = ddsm_store_deny(st, &req, "path refused by policy");
        if (e != DDSM_OK)
            ctl_warn("could not record the refusal: %s", ddsm_store_errmsg(st));
        ctl_err("path %s is not allowed by the [policy] path patterns of %s", canon, c->cfg->file);
        return CTL_EXIT_REFUSED;
    }
    ddsm_err e = ddsm_store_derive(st, &req, counter, &state);
    if (e == DDSM_E_STATE) {
        ctl_err("asset %s (%s) is %s; nothing is derived from it", a->label, id,
                ddsm_state_name(state));
        return CTL_EXIT_REFUSED;
    }
    if (e == DDSM_E_NOT_FOUND) {
        ctl_err("asset %s vanished from the registry", id);
        return CTL_EXIT_REFUSED;
    }
    if (e != DDSM_OK) {
        ctl_err("cannot record the derivation: %s: %s", ddsm_err_str(e), ddsm_store_errmsg(st));
        return ctl_exit_for(e);
    }
    return CTL_EXIT_OK;
}

int cmd_asset_xpub(ctl *c, int argc, char **argv)
{
    bool json = false;
    const char *path_text = NULL;
    const ctl_opt opts[] = {{"--path", &path_text, NULL, NULL, 0, NULL},
                            {"--json", NULL, &json, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_audit_key *key = NULL;
    xpub_hsm x;
    bool have_hsm = false;
    ddsm_asset a;
    ddsm_path path;
    char canon[DDSM_PATH_TEXT_MAX];
    char xpub[DDSM_HD_XKEY_TEXT_MAX];
    const char *why = NULL;
    uint64_t counter = 0;

    int rc = ctl_parse(c, &xpub_help, argc, argv, opts, 2, pos, 1, 1, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (pos[0][0] == '\0')
        return ctl_usage_error(&xpub_help, "empty asset id or label");
    if (path_text != NULL && ddsm_path_parse(path_text, strlen(path_text), &path, &why) != DDSM_OK)
        return ctl_usage_error(&xpub_help, "--path '%s': %s", path_text,
                               why != NULL ? why : "malformed path");
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = lookup(st, pos[0], &a);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (strcmp(a.key_type, "secp256k1") != 0) {
        ctl_err("asset %s is of key type %s: an xpub is defined for secp256k1 (BIP-32) only",
                a.label, a.key_type);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    if (path_text == NULL &&
        ddsm_path_parse(a.default_path, strlen(a.default_path), &path, &why) != DDSM_OK) {
        ctl_err("asset %s: default path \"%s\": %s", a.label, a.default_path,
                why != NULL ? why : "malformed");
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    ddsm_path_format(&path, canon);

    /* The HSM before any write: the audit key chains the row, the root gives the seed. */
    rc = hsm_open(c, &x);
    have_hsm = true;
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = ctl_writer_key_prf(&x.prf, &x.pctx, &key);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = ctl_store_attach_audit(st, key);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = audit_row(c, st, &a, canon, &counter);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = compute_xpub(&x, &a.id, counter, &path, xpub);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (json) {
        char id[DDSM_UUID_TEXT_LEN + 1];
        ddsm_uuid_format(&a.id, id);
        printf("{\"asset\": \"%s\", \"label\": ", id);
        tool_json_str(stdout, a.label);
        printf(", \"path\": \"%s\", \"counter\": %" PRIu64 ", \"xpub\": \"%s\"}\n", canon, counter,
               xpub);
    } else {
        printf("%s\n", xpub);
    }
out:
    ddsm_store_close(st);
    ddsm_audit_key_free(key);
    if (have_hsm)
        ctl_hsm_close(&x.h);
    return rc;
}
