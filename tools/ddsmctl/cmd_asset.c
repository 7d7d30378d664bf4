/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl asset ...: the asset registry and its lifecycle (docs/design.md "Lifecycle and rotation"). */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ddsm/path.h"
#include "ddsm/policy.h"
#include "ddsm/state.h"
#include "ddsm/uuid.h"
#include "tool.h"

const ctl_help cmd_asset_help = {
    "asset",
    "ddsmctl asset <subcommand> [options]",
    "The asset registry in PostgreSQL. An asset is a UUID and a label; its keys are derived from\n"
    "the root seed, the asset, a path and the asset's counter. Lifecycle:\n"
    "INITIALIZED -> ACTIVE <-> ROTATING -> RETIRED; any other transition is refused (exit 1)\n"
    "and changes nothing. Subcommands:\n"
    "  register   add an INITIALIZED asset with counter 0\n"
    "  activate   INITIALIZED -> ACTIVE\n"
    "  rotate     increment the counter (optionally with a grace window)\n"
    "  retire     ACTIVE or ROTATING -> RETIRED: no key of it is derived again\n"
    "  show       one asset\n"
    "  list       every asset\n"
    "  uri        the PKCS#11 URI of one of an asset's key objects\n"
    "  xpub       the BIP-32 extended public key of a secp256k1 asset's node (audited)\n"
    "An asset is named by its UUID or its label. Audit rows record the requester\n"
    "\"ddsmctl:<login user>\".",
    NULL,
};

static const ctl_help register_help = {
    "asset register",
    "ddsmctl asset register --label LABEL [--id UUID] [--default-path PATH] [--type TYPE]\n"
    "                              [--zone ZONE]",
    "Register a new asset in state INITIALIZED with counter 0. The label is 1..128 printable\n"
    "ASCII characters without '/' and must not look like a UUID; the id is a random UUID unless\n"
    "given (never the nil UUID). The default path (BIP-32 style, e.g. m/44'/0'/0'/0/0, default\n"
    "m/0) is the one the module lists the asset's key under; it must satisfy the [policy] path\n"
    "patterns. The key type (fixed for good) is hmac or aes for secret keys, or secp256k1,\n"
    "ed25519 or p256 for signing keys: BIP-32 / SLIP-10 trees seeded by the asset seed, seen by\n"
    "PKCS#11 applications as private and public EC key objects. An ed25519 default path must be\n"
    "hardened throughout (SLIP-10 has no normal children).\n"
    "Exit 1 when the label or id already exists.",
    "  --label LABEL        unique label\n"
    "  --id UUID            asset id (default: random version 4)\n"
    "  --default-path PATH  default derivation path (default m/0)\n"
    "  --type TYPE          hmac, aes, secp256k1, ed25519 or p256 (default hmac)\n"
    "  --zone ZONE          compliance zone (default \"default\"; created, enabled, when missing;\n"
    "                       docs/policy.md)\n",
};

static const ctl_help activate_help = {
    "asset activate",
    "ddsmctl asset activate ID|LABEL",
    "Move an INITIALIZED asset to ACTIVE: its keys can be derived from now on. Exit 1, with the\n"
    "current state, for an asset in any other state.",
    NULL,
};

static const ctl_help rotate_help = {
    "asset rotate",
    "ddsmctl asset rotate ID|LABEL [--grace DURATION]",
    "Rotate an ACTIVE asset's key: its counter is incremented in one statement, with a rotation\n"
    "record and an audit row, and every module instance drops handles of the old counter. With\n"
    "--grace the asset is ROTATING for DURATION (30s, 5m, 2h, 1d; at most 366d): new\n"
    "derivations use the new counter while keys of the previous one may still verify, never\n"
    "sign; then it is ACTIVE again. Exit 1, with the current state, when not ACTIVE.",
    "  --grace DURATION     keep the previous counter verifying for DURATION\n",
};

static const ctl_help retire_help = {
    "asset retire",
    "ddsmctl asset retire ID|LABEL",
    "Retire an ACTIVE or ROTATING asset for good: no key of it is derived again and handles of\n"
    "it stop working. Exit 1, with the current state, for an asset in any other state.",
    NULL,
};

static const ctl_help show_help = {
    "asset show",
    "ddsmctl asset show ID|LABEL [--path P] [--json]",
    "Show one asset: id, label, key type, state, counter, default path and timestamps (UTC),\n"
    "and how PKCS#11 applications name its key at path P (default: the default path): the\n"
    "object label \"<asset uuid>/<canonical path>\", CKA_ID (hex: the 16 UUID bytes then the\n"
    "canonical path), which stay the same across rotations, and the RFC 7512 PKCS#11 URI of\n"
    "each of its objects (a secret key, or an EC private and public key; none for an ed25519\n"
    "path with a normal index). Exit 1 when there is no such asset.",
    "  --path P             the derivation path whose key to describe\n"
    "  --json               one JSON object instead of text\n",
};

static const ctl_help uri_help = {
    "asset uri",
    "ddsmctl asset uri ID|LABEL [--path P] [--type private|public|secret-key]",
    "Print the RFC 7512 PKCS#11 URI of one object of the asset's key at path P (default: the\n"
    "default path), for p11tool, OpenSSL and other PKCS#11 URI users. It names the module by\n"
    "its library-manufacturer and library-description (the module's slot shows the backend's\n"
    "token, so these keep it apart from the backend's own), the token label, and the object's\n"
    "CKA_ID, label and class. The type defaults to secret-key for hmac and aes assets and to\n"
    "private for EC assets. Exit 1 when there is no such asset, 2 when the key has no object of\n"
    "that type.",
    "  --path P             the derivation path of the key\n"
    "  --type T             private, public or secret-key\n",
};

static const ctl_help list_help = {
    "asset list",
    "ddsmctl asset list [--json]",
    "List every asset ordered by label, as an aligned table (its last column the PKCS#11 URI of\n"
    "the key at the default path: the private key of EC assets) or a JSON array of the objects\n"
    "`asset show --json` prints for the default path.",
    "  --json               a JSON array instead of a table\n",
};

static bool looks_like_uuid(const char *s)
{
    ddsm_uuid u;
    return ddsm_uuid_parse(s, strlen(s), &u) == DDSM_OK;
}

static int check_label(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n > DDSM_ASSET_LABEL_MAX)
        return ctl_usage_error(&register_help, "--label must be 1..%d bytes long",
                               DDSM_ASSET_LABEL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)label[i];
        if (ch < 0x20 || ch >= 0x7f)
            return ctl_usage_error(
                &register_help, "--label must be printable ASCII (byte %zu is 0x%02x)", i + 1, ch);
        if (ch == '/')
            return ctl_usage_error(&register_help,
                                   "--label must not hold '/' (keys are named <label>/<path>)");
    }
    if (looks_like_uuid(label))
        return ctl_usage_error(&register_help,
                               "--label must not look like a UUID (assets are named by either)");
    return CTL_EXIT_OK;
}

static void print_asset_line(const char *verb, const ddsm_asset *a)
{
    char id[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&a->id, id);
    printf("%s asset %s (%s): state %s, counter %llu\n", verb, a->label, id,
           ddsm_state_name(a->state), (unsigned long long)a->counter);
}

static int asset_register(ctl *c, int argc, char **argv)
{
    const char *label = NULL;
    const char *id_text = NULL;
    const char *path_text = NULL;
    const char *type = NULL;
    const char *zone = NULL;
    const ctl_opt opts[] = {
        {"--label", &label, NULL, NULL, 0, NULL},
        {"--id", &id_text, NULL, NULL, 0, NULL},
        {"--default-path", &path_text, NULL, NULL, 0, NULL},
        {"--type", &type, NULL, NULL, 0, NULL},
        {"--zone", &zone, NULL, NULL, 0, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    ddsm_uuid id;
    ddsm_path path;
    char canon[DDSM_PATH_TEXT_MAX];
    char requester[300];
    ddsm_store *st = NULL;
    ddsm_asset a;

    int rc = ctl_parse(c, &register_help, argc, argv, opts, sizeof(opts) / sizeof(opts[0]), pos, 0,
                       0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (label == NULL)
        return ctl_usage_error(&register_help, "--label is required");
    if (zone != NULL && !ddsm_zone_name_valid(zone))
        return ctl_usage_error(&register_help, "--zone '%s' is malformed: 1..%d characters of "
                               "A-Z a-z 0-9 . _ -, starting with a letter or digit", zone,
                               DDSM_ZONE_NAME_MAX);
    rc = check_label(label);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (id_text != NULL) {
        if (ddsm_uuid_parse(id_text, strlen(id_text), &id) != DDSM_OK)
            return ctl_usage_error(&register_help,
                                   "--id '%s' is not a UUID (8-4-4-4-12 hex digits)", id_text);
        if (ddsm_uuid_is_nil(&id))
            return ctl_usage_error(&register_help,
                                   "--id: the nil UUID is reserved for the module's own keys");
    }
    if (path_text != NULL) {
        const char *why = NULL;
        if (ddsm_path_parse(path_text, strlen(path_text), &path, &why) != DDSM_OK)
            return ctl_usage_error(&register_help, "--default-path '%s': %s", path_text,
                                   why != NULL ? why : "malformed path");
        ddsm_path_format(&path, canon);
    }
    if (type == NULL)
        type = "hmac";
    if (strcmp(type, "hmac") != 0 && strcmp(type, "aes") != 0 && strcmp(type, "secp256k1") != 0 &&
        strcmp(type, "ed25519") != 0 && strcmp(type, "p256") != 0)
        return ctl_usage_error(&register_help,
                               "--type must be hmac, aes, secp256k1, ed25519 or p256, not '%s'",
                               type);
    if (strcmp(type, "ed25519") == 0) {
        if (path_text == NULL)
            return ctl_usage_error(&register_help, "--type ed25519 needs a hardened "
                                   "--default-path (the default m/0 names no SLIP-10 key)");
        for (unsigned i = 0; i < path.depth; i++)
            if ((path.index[i] & DDSM_HARDENED) == 0)
                return ctl_usage_error(&register_help,
                                       "--default-path %s: ed25519 keys (SLIP-10) have hardened "
                                       "indices only (component %u is not)",
                                       canon, i + 1);
    }
    rc = ctl_config(c);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (path_text != NULL && !ddsm_config_path_allowed(c->cfg, canon)) {
        ctl_err("default path %s is not allowed by the [policy] path patterns of %s", canon,
                c->cfg->file);
        return CTL_EXIT_REFUSED;
    }
    rc = ctl_store_open(c, true, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    ctl_requester(requester, sizeof(requester));
    ddsm_err e = ddsm_store_asset_register(st, id_text != NULL ? &id : NULL, label, type,
                                           path_text != NULL ? canon : NULL, requester, &a);
    if (e == DDSM_E_EXISTS) {
        ctl_err("an asset with label \"%s\"%s%s already exists", label,
                id_text != NULL ? " or id " : "", id_text != NULL ? id_text : "");
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, "cannot register the asset");
        goto out;
    }
    print_asset_line("registered", &a);
    if (zone != NULL && strcmp(zone, DDSM_ZONE_DEFAULT) != 0) {
        /* A second statement: the asset is INITIALIZED (it derives nothing) until it is moved. */
        e = ddsm_zone_assign(st, &a.id, zone, requester, NULL);
        if (e != DDSM_OK) {
            rc = ctl_store_fail(st, e, "registered, but cannot move the asset to its zone (retry "
                                   "with `ddsmctl zone assign`)");
            goto out;
        }
        printf("zone %s\n", zone);
    }
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}

enum transition { TR_ACTIVATE, TR_ROTATE, TR_RETIRE };

static int asset_transition(ctl *c, int argc, char **argv, const ctl_help *help, enum transition tr)
{
    const char *grace_text = NULL;
    const ctl_opt opts[] = {{"--grace", &grace_text, NULL, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    int64_t grace_s = 0;
    ddsm_store *st = NULL;
    ddsm_asset before;
    ddsm_asset after;
    char requester[300];
    char id[DDSM_UUID_TEXT_LEN + 1];
    static const char *const verbs[] = {"activate", "rotate", "retire"};

    int rc = ctl_parse(c, help, argc, argv, opts, tr == TR_ROTATE ? 1 : 0, pos, 1, 1, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (pos[0][0] == '\0')
        return ctl_usage_error(help, "empty asset id or label");
    if (grace_text != NULL) {
        const char *why = NULL;
        if (!ctl_parse_duration(grace_text, &grace_s, &why))
            return ctl_usage_error(help, "--grace '%s': %s", grace_text, why);
    }
    ddsm_event ev = tr == TR_ACTIVATE    ? DDSM_EV_ACTIVATE
                    : tr == TR_RETIRE    ? DDSM_EV_RETIRE
                    : grace_text != NULL ? DDSM_EV_ROTATE_GRACE
                                         : DDSM_EV_ROTATE;
    rc = ctl_store_open(c, true, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = ctl_asset_find(st, pos[0], &before);
    if (rc != CTL_EXIT_OK)
        goto out;
    ddsm_uuid_format(&before.id, id);
    ctl_requester(requester, sizeof(requester));
    ddsm_err e = ddsm_store_asset_transition(st, &before.id, ev, grace_s, requester, &after);
    if (e == DDSM_E_STATE) {
        /* Name the state the store refused from, which may have changed since we looked. */
        ddsm_asset now;
        if (ddsm_store_asset_get(st, &before.id, &now) == DDSM_OK)
            before = now;
        ctl_err("cannot %s asset %s (%s): it is %s; nothing changed", verbs[tr], before.label, id,
                ddsm_state_name(before.state));
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    if (e == DDSM_E_NOT_FOUND) {
        ctl_err("asset %s (%s) disappeared", before.label, id);
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    if (e != DDSM_OK) {
        char what[64];
        snprintf(what, sizeof(what), "cannot %s the asset", verbs[tr]);
        rc = ctl_store_fail(st, e, what);
        goto out;
    }
    printf("asset %s (%s): %s -> %s, counter %llu -> %llu\n", after.label, id,
           ddsm_state_name(before.state), ddsm_state_name(after.state),
           (unsigned long long)before.counter, (unsigned long long)after.counter);
    if (ev == DDSM_EV_ROTATE_GRACE && after.grace_until_us != 0) {
        char t[40];
        ctl_format_time(after.grace_until_us, t);
        printf("grace until %s: keys of counter %llu may verify, not sign\n", t,
               (unsigned long long)before.counter);
    }
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}

static int asset_activate(ctl *c, int argc, char **argv)
{
    return asset_transition(c, argc, argv, &activate_help, TR_ACTIVATE);
}

static int asset_rotate(ctl *c, int argc, char **argv)
{
    return asset_transition(c, argc, argv, &rotate_help, TR_ROTATE);
}

static int asset_retire(ctl *c, int argc, char **argv)
{
    return asset_transition(c, argc, argv, &retire_help, TR_RETIRE);
}

/* How PKCS#11 applications name an asset key: its object label, CKA_ID and the URIs of its
 * objects. */
struct key_names {
    char path[DDSM_PATH_TEXT_MAX];
    char label[DDSM_UUID_TEXT_LEN + 1 + DDSM_PATH_TEXT_MAX];
    uint8_t id[DDSM_KEY_ID_MAX];
    size_t id_len;
    char id_hex[2 * DDSM_KEY_ID_MAX + 1];
    size_t n_objs;
    ctl_obj_type obj[2];
    char *uri[2]; /* malloc'd */
};

static void key_names_free(struct key_names *k)
{
    for (size_t i = 0; i < k->n_objs; i++) {
        free(k->uri[i]);
        k->uri[i] = NULL;
    }
    k->n_objs = 0;
}

/* Usage errors (exit 2) name --path: only a user-given path can be malformed. */
static int key_names_of(const ctl *c, const ddsm_asset *a, const char *path_text,
                        struct key_names *k)
{
    ddsm_path path;
    const char *why = NULL;
    char uuid[DDSM_UUID_TEXT_LEN + 1];
    int rc = CTL_EXIT_OK;

    memset(k, 0, sizeof(*k));
    if (ddsm_path_parse(path_text, strlen(path_text), &path, &why) != DDSM_OK) {
        ctl_err("--path '%s': %s", path_text, why != NULL ? why : "malformed path");
        return CTL_EXIT_USAGE;
    }
    ddsm_path_format(&path, k->path);
    ddsm_err e = ddsm_key_id(&a->id, k->path, k->id, &k->id_len);
    if (e != DDSM_OK) {
        ctl_err("cannot compute the key id: %s", ddsm_err_str(e));
        return ctl_exit_for(e);
    }
    ddsm_uuid_format(&a->id, uuid);
    snprintf(k->label, sizeof(k->label), "%s/%s", uuid, k->path);
    for (size_t i = 0; i < k->id_len; i++)
        snprintf(k->id_hex + 2 * i, 3, "%02x", k->id[i]);
    size_t n = ctl_key_objects(a->key_type, &path, k->obj);
    for (size_t i = 0; i < n && rc == CTL_EXIT_OK; i++) {
        rc = ctl_key_uri(c->cfg->backend.token_label, k->id, k->id_len, k->label, k->obj[i],
                         &k->uri[i]);
        if (rc == CTL_EXIT_OK)
            k->n_objs++;
    }
    if (rc != CTL_EXIT_OK)
        key_names_free(k);
    return rc;
}

/* key: the key names to include, or NULL (none could be computed). */
/* --path P, when given, must be a path: a usage error of the command (help h) otherwise. */
static int check_path_opt(const ctl_help *h, const char *path_text)
{
    if (path_text == NULL)
        return CTL_EXIT_OK;
    ddsm_path p;
    const char *why = NULL;
    if (ddsm_path_parse(path_text, strlen(path_text), &p, &why) != DDSM_OK)
        return ctl_usage_error(h, "--path '%s': %s", path_text,
                               why != NULL ? why : "malformed path");
    return CTL_EXIT_OK;
}

/* Open the store, find the asset id_or_label names and the names of its key at path_text (its
 * default path when NULL). *st is set as soon as the store is open: the caller closes it. */
static int asset_key_open(ctl *c, const char *id_or_label, const char *path_text,
                          ddsm_store **st, ddsm_asset *a, struct key_names *key)
{
    int rc = ctl_store_open(c, false, st);
    if (rc == CTL_EXIT_OK)
        rc = ctl_asset_find(*st, id_or_label, a);
    if (rc == CTL_EXIT_OK)
        rc = key_names_of(c, a, path_text != NULL ? path_text : a->default_path, key);
    return rc;
}

static void json_asset(const ddsm_asset *a, const struct key_names *key, const char *indent)
{
    char id[DDSM_UUID_TEXT_LEN + 1];
    char created[40];
    char updated[40];
    char grace[40];
    ddsm_uuid_format(&a->id, id);
    ctl_format_time(a->created_us, created);
    ctl_format_time(a->updated_us, updated);
    printf("%s{\"id\": \"%s\", \"label\": ", indent, id);
    tool_json_str(stdout, a->label);
    printf(", \"key_type\": ");
    tool_json_str(stdout, a->key_type);
    printf(", \"state\": \"%s\", \"counter\": %llu, \"default_path\": ", ddsm_state_name(a->state),
           (unsigned long long)a->counter);
    tool_json_str(stdout, a->default_path);
    printf(", \"created\": \"%s\", \"updated\": \"%s\", \"grace_until\": ", created, updated);
    if (a->grace_until_us != 0) {
        ctl_format_time(a->grace_until_us, grace);
        printf("\"%s\"", grace);
    } else {
        printf("null");
    }
    if (key != NULL) {
        printf(", \"key\": {\"path\": ");
        tool_json_str(stdout, key->path);
        printf(", \"label\": ");
        tool_json_str(stdout, key->label);
        printf(", \"id\": \"%s\", \"uris\": {", key->id_hex);
        for (size_t i = 0; i < key->n_objs; i++) {
            printf("%s\"%s\": ", i == 0 ? "" : ", ", ctl_obj_type_name(key->obj[i]));
            tool_json_str(stdout, key->uri[i]);
        }
        printf("}}");
    }
    printf("}");
}

static int asset_show(ctl *c, int argc, char **argv)
{
    bool json = false;
    const char *path_text = NULL;
    const ctl_opt opts[] = {{"--json", NULL, &json, NULL, 0, NULL},
                            {"--path", &path_text, NULL, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_asset a;
    struct key_names key;
    bool have_key = false;

    int rc = ctl_parse(c, &show_help, argc, argv, opts, 2, pos, 1, 1, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (pos[0][0] == '\0')
        return ctl_usage_error(&show_help, "empty asset id or label");
    rc = check_path_opt(&show_help, path_text);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = asset_key_open(c, pos[0], path_text, &st, &a, &key);
    if (rc != CTL_EXIT_OK)
        goto out;
    have_key = true;
    if (json) {
        json_asset(&a, &key, "");
        putchar('\n');
    } else {
        char id[DDSM_UUID_TEXT_LEN + 1];
        char t[40];
        ddsm_uuid_format(&a.id, id);
        printf("id:           %s\n", id);
        printf("label:        %s\n", a.label);
        printf("type:         %s\n", a.key_type);
        printf("state:        %s\n", ddsm_state_name(a.state));
        printf("counter:      %llu\n", (unsigned long long)a.counter);
        printf("default path: %s\n", a.default_path);
        ctl_format_time(a.created_us, t);
        printf("created:      %s\n", t);
        ctl_format_time(a.updated_us, t);
        printf("updated:      %s\n", t);
        if (a.grace_until_us != 0) {
            ctl_format_time(a.grace_until_us, t);
            printf("grace until:  %s\n", t);
        }
        printf("key path:     %s\n", key.path);
        printf("key label:    %s\n", key.label);
        printf("key id:       %s\n", key.id_hex);
        for (size_t i = 0; i < key.n_objs; i++)
            printf("%-14s%s\n",
                   key.obj[i] == CTL_OBJ_PRIVATE  ? "private uri:"
                   : key.obj[i] == CTL_OBJ_PUBLIC ? "public uri:"
                                                  : "key uri:",
                   key.uri[i]);
    }
    rc = CTL_EXIT_OK;
out:
    if (have_key)
        key_names_free(&key);
    ddsm_store_close(st);
    return rc;
}

/* Display width of UTF-8 text: code points (good enough for labels). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

static void print_cell(const char *s, size_t width, bool last)
{
    fputs(s, stdout);
    if (last)
        return;
    for (size_t w = text_width(s); w < width + 2; w++)
        putchar(' ');
}

static int collect_asset(const ddsm_asset *a, void *vec)
{
    return ctl_vec_push(vec, a) ? 0 : 1;
}

static int asset_list(ctl *c, int argc, char **argv)
{
    bool json = false;
    ddsm_store *st = NULL;
    ctl_vec vec = {sizeof(ddsm_asset), NULL, 0, 0, false};
    struct key_names *keys = NULL;
    bool *have = NULL;

    int rc = ctl_list_open(c, &list_help, argc, argv, &json, &st);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    ddsm_err e = ddsm_store_asset_list(st, collect_asset, &vec);
    const ddsm_asset *assets = vec.items;
    if (e == DDSM_OK && vec.oom)
        e = DDSM_E_NOMEM;
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, "cannot list assets");
        goto out;
    }
    /* Each asset's key at its default path (a default path the store holds is well formed; one
     * edited in SQL into something else is reported and listed without its key). */
    keys = calloc(vec.n + 1, sizeof(*keys));
    have = calloc(vec.n + 1, sizeof(*have));
    if (keys == NULL || have == NULL) {
        ctl_err("out of memory");
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    for (size_t i = 0; i < vec.n; i++)
        have[i] = key_names_of(c, &assets[i], assets[i].default_path, &keys[i]) == CTL_EXIT_OK;
    if (json) {
        printf("[");
        for (size_t i = 0; i < vec.n; i++) {
            printf(i == 0 ? "\n" : ",\n");
            json_asset(&assets[i], have[i] ? &keys[i] : NULL, "  ");
        }
        printf(vec.n == 0 ? "]\n" : "\n]\n");
    } else {
        /* The last column: the URI of the key's first object (the private key of EC assets). */
        static const char *const head[] = {"ID",      "LABEL",        "TYPE", "STATE",
                                           "COUNTER", "DEFAULT PATH", "URI"};
        size_t w[7];
        for (size_t k = 0; k < 7; k++)
            w[k] = strlen(head[k]);
        w[0] = DDSM_UUID_TEXT_LEN;
        for (size_t i = 0; i < vec.n; i++) {
            char num[24];
            const ddsm_asset *a = &assets[i];
            size_t lw = text_width(a->label);
            size_t tw = text_width(a->key_type);
            size_t sw = strlen(ddsm_state_name(a->state));
            size_t cw = (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)a->counter);
            w[1] = lw > w[1] ? lw : w[1];
            w[2] = tw > w[2] ? tw : w[2];
            w[3] = sw > w[3] ? sw : w[3];
            w[4] = cw > w[4] ? cw : w[4];
            size_t pw = text_width(a->default_path);
            w[5] = pw > w[5] ? pw : w[5];
        }
        for (size_t k = 0; k < 7; k++)
            print_cell(head[k], w[k], k == 6);
        putchar('\n');
        for (size_t i = 0; i < vec.n; i++) {
            const ddsm_asset *a = &assets[i];
            char id[DDSM_UUID_TEXT_LEN + 1];
            char num[24];
            ddsm_uuid_format(&a->id, id);
            snprintf(num, sizeof(num), "%llu", (unsigned long long)a->counter);
            print_cell(id, w[0], false);
            print_cell(a->label, w[1], false);
            print_cell(a->key_type, w[2], false);
            print_cell(ddsm_state_name(a->state), w[3], false);
            print_cell(num, w[4], false);
            print_cell(a->default_path, w[5], false);
            print_cell(have[i] && keys[i].n_objs > 0 ? keys[i].uri[0] : "-", w[6], true);
            putchar('\n');
        }
    }
    rc = CTL_EXIT_OK;
out:
    for (size_t i = 0; have != NULL && keys != NULL && i < vec.n; i++)
        if (have[i])
            key_names_free(&keys[i]);
    free(have);
    free(keys);
    free(vec.items);
    ddsm_store_close(st);
    return rc;
}

static int asset_uri(ctl *c, int argc, char **argv)
{
    const char *path_text = NULL, *type_text = NULL;
    const ctl_opt opts[] = {{"--path", &path_text, NULL, NULL, 0, NULL},
                            {"--type", &type_text, NULL, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_asset a;
    struct key_names key;
    bool have_key = false;
    ctl_obj_type want = CTL_OBJ_SECRET;
    bool typed = false;

    int rc = ctl_parse(c, &uri_help, argc, argv, opts, 2, pos, 1, 1, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (pos[0][0] == '\0')
        return ctl_usage_error(&uri_help, "empty asset id or label");
    if (type_text != NULL) {
        static const ctl_obj_type all[] = {CTL_OBJ_SECRET, CTL_OBJ_PRIVATE, CTL_OBJ_PUBLIC};
        for (size_t i = 0; i < 3 && !typed; i++) {
            if (strcmp(type_text, ctl_obj_type_name(all[i])) == 0) {
                want = all[i];
                typed = true;
            }
        }
        if (!typed)
            return ctl_usage_error(&uri_help, "--type '%s': expected private, public or secret-key",
                                   type_text);
    }
    rc = check_path_opt(&uri_help, path_text);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = asset_key_open(c, pos[0], path_text, &st, &a, &key);
    if (rc != CTL_EXIT_OK)
        goto out;
    have_key = true;
    if (key.n_objs == 0) {
        ctl_err("the %s key at %s has no PKCS#11 object (SLIP-10 ed25519 paths are hardened "
                "throughout)",
                a.key_type, key.path);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    size_t pick = 0;
    if (typed) {
        for (pick = 0; pick < key.n_objs && key.obj[pick] != want; pick++)
            ;
        if (pick == key.n_objs) {
            ctl_err("a %s asset's key has no %s object", a.key_type, ctl_obj_type_name(want));
            rc = CTL_EXIT_USAGE;
            goto out;
        }
    }
    printf("%s\n", key.uri[pick]);
    rc = CTL_EXIT_OK;
out:
    if (have_key)
        key_names_free(&key);
    ddsm_store_close(st);
    return rc;
}

int cmd_asset(ctl *c, int argc, char **argv)
{
    static const ctl_sub subs[] = {{"register", asset_register}, {"activate", asset_activate},
                                   {"rotate", asset_rotate},     {"retire", asset_retire},
                                   {"show", asset_show},         {"list", asset_list},
                                   {"uri", asset_uri},           {"xpub", cmd_asset_xpub}};
    return ctl_run_sub(c, &cmd_asset_help, subs, sizeof(subs) / sizeof(subs[0]), argc, argv);
}
