/* SPDX-License-Identifier: Apache-2.0 */
/* The asset registry: registration, lookup by id or label, the list, and reading a registry row
 * (ASSET_COLS) for every statement that answers with one.
 *
 * Invariants:
 *  - Every input of a registration (label, key type, default path, id) is checked before anything
 *    is sent; a refusal sends nothing and changes nothing.
 *  - A registration is one statement, hence one transaction: the custody_keys row (INITIALIZED,
 *    counter 0) and its REGISTER audit row commit together. With a chain it goes through
 *    ddsm_asset_register (SECURITY DEFINER, sql/006_roles.sql), which moves the chain's
 *    checkpoint in the same transaction, and the chain is settled on every path. It is never
 *    retried once it may have reached the server.
 *  - Lookups and the list are single reads under no lock, retried once on a new connection; the
 *    state they report is the effective one (a ROTATING row whose grace ended reads ACTIVE).
 *  - A row that does not fit a ddsm_asset is DDSM_E_STORE, never truncated. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ddsm/audit.h"
#include "ddsm/path.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "store_audit.h"
#include "store_int.h"
#include "store_pq.h"

static const char register_sql[] =
    "WITH k AS ("
    " INSERT INTO custody_keys (asset_id, label, key_type, default_path, state)"
    " VALUES ($1::uuid, $2, $3, $4, 'INITIALIZED')"
    " RETURNING *"
    "), aud AS ("
    " INSERT INTO custody_audit_log"
    "        (asset_id, derivation_path, counter, state_at_derivation, event, requester)"
    " SELECT asset_id, default_path, derivation_counter, state, 'REGISTER', $5 FROM k"
    ")"
    " SELECT " ASSET_COLS("k") " FROM k";

static const char get_sql[] =
    "SELECT " ASSET_COLS("k") " FROM custody_keys k WHERE k.asset_id = $1::uuid";
static const char find_label_sql[] =
    "SELECT " ASSET_COLS("k") " FROM custody_keys k WHERE k.label = $1";
static const char list_sql[] =
    "SELECT " ASSET_COLS("k") " FROM custody_keys k ORDER BY k.label, k.asset_id";

ddsm_err ddsm_store_require_asset_row(ddsm_store *st, const PGresult *res, const char *shown)
{
    if (PQntuples(res) == 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", shown);
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Rows */

static bool copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

ddsm_err ddsm_store_asset_from_row(ddsm_store *st, const PGresult *res, int row, int col,
                                   ddsm_asset *out)
{
    ddsm_asset a;
    int64_t counter = 0;
    memset(&a, 0, sizeof a);
    const char *id = PQgetvalue(res, row, col);
    if (ddsm_uuid_parse(id, strlen(id), &a.id) != DDSM_OK ||
        !copy_text(a.label, sizeof a.label, PQgetvalue(res, row, col + 1)) ||
        !copy_text(a.key_type, sizeof a.key_type, PQgetvalue(res, row, col + 2)) ||
        !copy_text(a.default_path, sizeof a.default_path, PQgetvalue(res, row, col + 3)) ||
        !ddsm_pq_get_i64(res, row, col + 4, &counter) || counter < 0 ||
        ddsm_state_parse(PQgetvalue(res, row, col + 5), &a.state) != DDSM_OK ||
        !ddsm_pq_get_i64(res, row, col + 6, &a.created_us) ||
        !ddsm_pq_get_i64(res, row, col + 7, &a.updated_us) ||
        !ddsm_pq_get_i64(res, row, col + 8, &a.grace_until_us) ||
        !ddsm_pq_get_i64(res, row, col + 9, &a.grace_left_us) || a.grace_left_us < 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset row %s does not fit (label "
                            "%.40s...): was it written by hand?", id,
                            PQgetvalue(res, row, col + 1));
    a.counter = (uint64_t)counter;
    if (out != NULL)
        *out = a;
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Registry */

/* A label appears in "<label>/<path>" and is looked up where a UUID is also accepted: it must
 * be printable ASCII, without '/', without surrounding spaces, and not readable as a UUID in any
 * of the forms PostgreSQL accepts (hex digits with optional dashes and braces). */
static ddsm_err check_label(ddsm_store *st, const char *label)
{
    if (label == NULL || label[0] == '\0')
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label is empty");
    size_t n = strlen(label);
    if (n > DDSM_ASSET_LABEL_MAX)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label is %zu characters long; the "
                            "limit is %d", n, DDSM_ASSET_LABEL_MAX);
    size_t hex = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];
        if (c < 0x20 || c > 0x7e)
            return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label has a non-printable or "
                                "non-ASCII byte 0x%02x at offset %zu", c, i);
        if (c == '/')
            return ddsm_pq_fail(&st->pq, DDSM_E_INPUT,
                                "asset label may not contain '/' (labels prefix paths)");
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            hex++;
        else if (c != '-' && c != '{' && c != '}')
            other++;
    }
    if (label[0] == ' ' || label[n - 1] == ' ')
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT,
                            "asset label may not begin or end with a space");
    if (hex == 32 && other == 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "asset label \"%s\" looks like a UUID; "
                            "labels and asset ids must not be confusable", label);
    return DDSM_OK;
}

/* The key types of sql/003_key_types.sql's CHECK. */
static ddsm_err check_key_type(ddsm_store *st, const char *key_type)
{
    static const char *const known[] = {"hmac", "aes", "secp256k1", "ed25519", "p256"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(key_type, known[i]) == 0)
            return DDSM_OK;
    return ddsm_pq_fail(&st->pq, DDSM_E_INPUT,
                        "unknown key type \"%.32s\" (known: hmac, aes, secp256k1, ed25519, p256)",
                        key_type);
}

/* SLIP-10 Ed25519 has hardened children only: a default path with a normal index would name no
 * key at all. */
static ddsm_err check_path_for_type(ddsm_store *st, const char *key_type, const ddsm_path *path,
                                    const char *path_text)
{
    if (strcmp(key_type, "ed25519") != 0)
        return DDSM_OK;
    for (unsigned i = 0; i < path->depth; i++)
        if ((path->index[i] & DDSM_HARDENED) == 0)
            return ddsm_pq_fail(&st->pq, DDSM_E_PATH,
                                "default path \"%s\": ed25519 keys (SLIP-10) have hardened "
                                "indices only (component %u is not hardened)",
                                path_text, i + 1);
    return DDSM_OK;
}

static ddsm_err register_chained(ddsm_store *st, const char *id_text, const ddsm_uuid *id,
                                 const char *label, const char *key_type, const char *path_text,
                                 const char *requester, PGresult **res);

ddsm_err ddsm_store_asset_register(ddsm_store *st, const ddsm_uuid *id, const char *label,
                                   const char *key_type, const char *default_path,
                                   const char *requester, ddsm_asset *out)
{
    if (st == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_uuid uid;
    ddsm_path path;
    const char *why = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char path_text[DDSM_PATH_TEXT_MAX];
    ddsm_err err;

    if (key_type == NULL)
        key_type = "hmac";
    if (default_path == NULL)
        default_path = "m/0";
    err = check_label(st, label);
    if (err != DDSM_OK)
        goto out;
    err = check_key_type(st, key_type);
    if (err != DDSM_OK)
        goto out;
    err = ddsm_path_parse(default_path, strlen(default_path), &path, &why);
    if (err != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_PATH, "default path \"%.64s\": %s", default_path,
                           why != NULL ? why : "malformed");
        goto out;
    }
    ddsm_path_format(&path, path_text);
    err = check_path_for_type(st, key_type, &path, path_text);
    if (err != DDSM_OK)
        goto out;
    if (id != NULL) {
        if (ddsm_uuid_is_nil(id)) {
            err = ddsm_pq_fail(&st->pq, DDSM_E_UUID,
                               "the nil UUID names the module's own keys, never an asset");
            goto out;
        }
        uid = *id;
    } else {
        err = ddsm_uuid_random(&uid);
        if (err != DDSM_OK) {
            err = ddsm_pq_fail(&st->pq, err, "cannot generate a random asset id");
            goto out;
        }
    }
    ddsm_uuid_format(&uid, id_text);

    const char *values[] = {id_text, label, key_type, path_text, requester};
    if (st->chain != NULL)
        err = register_chained(st, id_text, &uid, label, key_type, path_text, requester, &res);
    else
        err =
            ddsm_store_run_params(st, "register asset", register_sql, 5, values, false, &res, NULL);
    if (err == DDSM_E_EXISTS) {
        if (strcmp(st->pq.constraint, "custody_keys_label_key") == 0)
            ddsm_pq_fail(&st->pq, err, "an asset labelled \"%s\" already exists", label);
        else
            ddsm_pq_fail(&st->pq, err, "an asset with id %s already exists", id_text);
        goto out;
    }
    if (err != DDSM_OK)
        goto out;
    if (PQntuples(res) != 1) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: register asset: no row returned");
        goto out;
    }
    err = ddsm_store_asset_from_row(st, res, 0, 0, out);
out:
    PQclear(res);
    return err;
}

static ddsm_err get_one(ddsm_store *st, const char *sql, const char *key, const char *shown,
                        ddsm_asset *out)
{
    PGresult *res = NULL;
    const char *values[] = {key};
    ddsm_err err = ddsm_store_run_params(st, "look up asset", sql, 1, values, true, &res, NULL);
    if (err == DDSM_OK)
        err = ddsm_store_require_asset_row(st, res, shown);
    if (err != DDSM_OK)
        goto out;
    err = ddsm_store_asset_from_row(st, res, 0, 0, out);
out:
    PQclear(res);
    return err;
}

ddsm_err ddsm_store_asset_get(ddsm_store *st, const ddsm_uuid *id, ddsm_asset *out)
{
    if (st == NULL || id == NULL)
        return DDSM_E_ARG;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(id, id_text);
    return get_one(st, get_sql, id_text, id_text, out);
}

ddsm_err ddsm_store_asset_find(ddsm_store *st, const char *id_or_label, ddsm_asset *out)
{
    if (st == NULL || id_or_label == NULL)
        return DDSM_E_ARG;
    if (id_or_label[0] == '\0')
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "empty asset id or label");
    size_t n = strlen(id_or_label);
    ddsm_uuid id;
    if (n == DDSM_UUID_TEXT_LEN && ddsm_uuid_parse(id_or_label, n, &id) == DDSM_OK)
        return ddsm_store_asset_get(st, &id, out);
    if (n > DDSM_ASSET_LABEL_MAX)
        return ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset labelled \"%.40s...\"",
                            id_or_label);
    char shown[DDSM_ASSET_LABEL_MAX + 16];
    snprintf(shown, sizeof shown, "labelled \"%s\"", id_or_label);
    return get_one(st, find_label_sql, id_or_label, shown, out);
}

ddsm_err ddsm_store_asset_list(ddsm_store *st, ddsm_asset_cb cb, void *arg)
{
    if (st == NULL || cb == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_err err = ddsm_store_run_params(st, "list assets", list_sql, 0, NULL, true, &res, NULL);
    if (err != DDSM_OK)
        goto out;
    for (int i = 0; i < PQntuples(res); i++) {
        ddsm_asset a;
        err = ddsm_store_asset_from_row(st, res, i, 0, &a);
        if (err != DDSM_OK)
            goto out;
        if (cb(&a, arg) != 0)
            break;
    }
out:
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Chained registration */

/* Through the SECURITY DEFINER function of sql/006_roles.sql, which ddsm_admin may call. */
static const char register_chained_sql[] =
    "SELECT (r.o_asset).*, r.o_audit, r.o_head"
    "  FROM ddsm_asset_register($1::uuid, $2, $3, $4, $5, $6::timestamptz, $7::text, $8::bigint,"
    "                           $9::bytea) r";

static ddsm_err register_chained(ddsm_store *st, const char *id_text, const ddsm_uuid *id,
                                 const char *label, const char *key_type, const char *path_text,
                                 const char *requester, PGresult **res)
{
    ddsm_audit_row row;
    uint8_t mac[1][DDSM_AUDIT_MAC_LEN];
    char ts_text[40], seq[24], mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    bool sent = false;
    int64_t aud = 0, head = 0;

    memset(&row, 0, sizeof row);
    row.event = "REGISTER";
    row.has_asset = true;
    row.asset = *id;
    row.path = path_text;
    row.has_counter = true;
    row.counter = 0;
    row.state = "INITIALIZED";
    row.ts_us = ddsm_audit_now_us();
    row.requester = requester;
    ddsm_err err = ddsm_audit_chain_seal(st->chain, &row, 1, mac);
    if (err != DDSM_OK)
        return ddsm_pq_fail(&st->pq, err, "audit: cannot seal the REGISTER row");
    ddsm_audit_format_ts(row.ts_us, ts_text);
    snprintf(seq, sizeof seq, "%" PRId64, row.seq);
    ddsm_pq_bytea_hex(mac[0], DDSM_AUDIT_MAC_LEN, mac_text);
    const char *values[] = {id_text, label, key_type, path_text, requester, ts_text,
                            row.instance, seq, mac_text};
    err = ddsm_store_run_params(st, "register asset", register_chained_sql, 9, values, false, res,
                                &sent);
    if (err != DDSM_OK) {
        ddsm_audit_chain_settle(st->chain, 1, mac[0], ddsm_chain_failed_outcome(err, sent));
        return err;
    }
    if (PQntuples(*res) != 1 || !ddsm_pq_get_i64(*res, 0, ASSET_NCOLS, &aud) ||
        !ddsm_pq_get_i64(*res, 0, ASSET_NCOLS + 1, &head) || aud != 1 || head != 1) {
        ddsm_audit_chain_settle(st->chain, 1, mac[0], DDSM_CHAIN_UNKNOWN);
        PQclear(*res);
        *res = NULL;
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: register asset: unexpected answer");
    }
    ddsm_audit_chain_settle(st->chain, 1, mac[0], DDSM_CHAIN_COMMITTED);
    return DDSM_OK;
}
