/* SPDX-License-Identifier: Apache-2.0 */
/* Read-only views for operators (ddsm/opsview.h). */
#include "ddsm/opsview.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_audit.h"
#include "store_pq.h"

static const char schema_sql[] = "SELECT to_regclass('ddsm_schema_migrations') IS NOT NULL,"
                                 "       to_regclass('custody_zones') IS NOT NULL";

static const char overview_sql[] =
    "WITH k AS ("
    " SELECT ddsm_effective_state(state, grace_until) AS s, zone FROM custody_keys"
    "), rot AS ("
    " SELECT (extract(epoch FROM r.rotated_at) * 1000000)::bigint AS at, k.label,"
    "        r.from_counter, r.to_counter"
    "   FROM custody_rotations r JOIN custody_keys k ON k.asset_id = r.asset_id"
    "  ORDER BY r.rotated_at DESC, r.id DESC LIMIT 1"
    "), parts AS ("
    " SELECT to_date(substr(c.relname, 19), 'YYYY_MM') AS m"
    "   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    "  WHERE i.inhparent = 'custody_audit_log'::regclass"
    "    AND c.relname ~ '^custody_audit_log_[0-9]{4}_[0-9]{2}$'"
    "), cur AS ("
    " SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS m"
    ")"
    " SELECT current_setting('server_version'),"
    "        coalesce((SELECT name FROM ddsm_schema_migrations ORDER BY name DESC LIMIT 1), ''),"
    "        (SELECT count(*) FROM ddsm_schema_migrations),"
    "        (SELECT count(*) FROM k WHERE s = 'INITIALIZED'),"
    "        (SELECT count(*) FROM k WHERE s = 'ACTIVE'),"
    "        (SELECT count(*) FROM k WHERE s = 'ROTATING'),"
    "        (SELECT count(*) FROM k WHERE s = 'RETIRED'),"
    "        (SELECT count(*) FROM custody_zones),"
    "        (SELECT count(*) FROM custody_zones WHERE NOT enabled),"
    "        (SELECT count(*) FROM k JOIN custody_zones z ON z.zone = k.zone WHERE NOT z.enabled),"
    "        (SELECT count(*) FROM custody_rotations),"
    "        rot.at, rot.label, rot.from_counter, rot.to_counter,"
    "        (SELECT count(*) FROM custody_audit_chain_heads),"
    "        (SELECT coalesce(max(seq), 0) FROM custody_audit_chain_heads),"
    "        (SELECT coalesce((extract(epoch FROM max(updated_at)) * 1000000)::bigint, 0)"
    "           FROM custody_audit_chain_heads),"
    "        (SELECT coalesce((extract(epoch FROM min(updated_at)) * 1000000)::bigint, 0)"
    "           FROM custody_audit_chain_heads),"
    "        (SELECT count(*) FROM custody_audit_log_default),"
    "        EXISTS (SELECT 1 FROM parts, cur WHERE parts.m = cur.m),"
    "        (SELECT count(*) FROM parts, cur WHERE parts.m > cur.m),"
    "        (extract(epoch FROM now()) * 1000000)::bigint"
    "   FROM (SELECT 1) one LEFT JOIN rot ON true";

ddsm_err ddsm_overview_get(ddsm_store *st, ddsm_overview *out)
{
    if (st == NULL || out == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_overview o;
    memset(&o, 0, sizeof o);
    ddsm_err err = ddsm_store_run_params(st, "schema check", schema_sql, 0, NULL, true, &res, NULL);
    if (err != DDSM_OK)
        return err;
    bool migrated = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0 &&
                    strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    if (!migrated)
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STATE,
                            "the database is not migrated (run `ddsmctl db migrate`)");
    err = ddsm_store_run_params(st, "overview", overview_sql, 0, NULL, true, &res, NULL);
    if (err != DDSM_OK)
        return err;
    int64_t v[23];
    bool ok = PQntuples(res) == 1 && PQnfields(res) == 23;
    for (int i = 2; ok && i < 23; i++) {
        if (i == 12 || i == 20)
            continue; /* text and boolean columns */
        if (PQgetisnull(res, 0, i) && i >= 11 && i <= 14) {
            v[i] = 0;
            continue;
        }
        ok = ddsm_pq_get_i64(res, 0, i, &v[i]);
    }
    if (!ok) {
        PQclear(res);
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE, "store: overview: unexpected answer");
    }
    snprintf(o.server_version, sizeof o.server_version, "%s", PQgetvalue(res, 0, 0));
    snprintf(o.last_migration, sizeof o.last_migration, "%s", PQgetvalue(res, 0, 1));
    o.migrations_applied = (unsigned)v[2];
    for (int s = 0; s < DDSM_STATE__COUNT; s++)
        o.assets[s] = (uint64_t)v[3 + s];
    o.zones = (uint64_t)v[7];
    o.zones_disabled = (uint64_t)v[8];
    o.assets_in_disabled_zones = (uint64_t)v[9];
    o.rotations = (uint64_t)v[10];
    o.has_rotation = !PQgetisnull(res, 0, 11);
    if (o.has_rotation) {
        o.last_rotation_us = v[11];
        snprintf(o.last_rotation_label, sizeof o.last_rotation_label, "%s", PQgetvalue(res, 0, 12));
        o.last_rotation_from = v[13];
        o.last_rotation_to = v[14];
    }
    o.chains = (uint64_t)v[15];
    o.chain_seq_max = v[16];
    o.chain_newest_us = v[17];
    o.chain_oldest_us = v[18];
    o.default_partition_rows = v[19];
    o.current_partition = strcmp(PQgetvalue(res, 0, 20), "t") == 0;
    o.future_partitions = (unsigned)v[21];
    o.now_us = v[22];
    PQclear(res);
    *out = o;
    return DDSM_OK;
}

static const char heads_sql[] =
    "SELECT instance_id, seq, (extract(epoch FROM updated_at) * 1000000)::bigint"
    "  FROM custody_audit_chain_heads ORDER BY updated_at DESC, instance_id LIMIT $1::integer";

ddsm_err ddsm_overview_chain_heads(ddsm_store *st, unsigned limit, ddsm_chain_head_cb cb, void *arg)
{
    if (st == NULL || cb == NULL)
        return DDSM_E_ARG;
    char lim[16];
    PGresult *res = NULL;
    snprintf(lim, sizeof lim, "%u", limit);
    const char *values[] = {lim};
    ddsm_err err = ddsm_store_run_params(st, "chain heads", heads_sql, 1, values, true, &res, NULL);
    if (err != DDSM_OK)
        return err;
    for (int i = 0; i < PQntuples(res); i++) {
        ddsm_chain_head h = {PQgetvalue(res, i, 0), 0, 0};
        if (!ddsm_pq_get_i64(res, i, 1, &h.seq) || !ddsm_pq_get_i64(res, i, 2, &h.updated_us)) {
            PQclear(res);
            return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE, "store: chain heads: bad row");
        }
        if (cb(&h, arg) != 0)
            break;
    }
    PQclear(res);
    return DDSM_OK;
}

const char *ddsm_activity_reason_name(unsigned i)
{
    static const char *const names[DDSM_ACTIVITY_REASONS] = {
        "path",  "rate_requester_asset", "rate_requester", "zone", "mechanism",
        "state", "unknown_asset",        "other"};
    return i < DDSM_ACTIVITY_REASONS ? names[i] : "?";
}

/* The classes of DENY details, in ddsm_activity_reason_name's order (the texts the module and
 * the store write: module/src/policy.c, policy_call.c; store_derive.c). */
static const char activity_sql[] =
    "WITH a AS ("
    " SELECT event, state_at_derivation AS s, detail, instance_id FROM custody_audit_log"
    "  WHERE ts >= now() - make_interval(secs => $1::integer)"
    "), d AS ("
    " SELECT CASE"
    "          WHEN detail LIKE 'path refused%' THEN 0"
    "          WHEN detail LIKE 'rate limit % per requester and asset%' THEN 1"
    "          WHEN detail LIKE 'rate limit%' THEN 2"
    "          WHEN detail LIKE 'zone %' THEN 3"
    "          WHEN detail LIKE 'mechanism %' THEN 4"
    "          WHEN detail LIKE 'asset is %' THEN 5"
    "          WHEN detail = 'no such asset' THEN 6"
    "          ELSE 7 END AS r"
    "   FROM a WHERE event = 'DENY'"
    ")"
    " SELECT (SELECT count(*) FROM a WHERE event = 'DERIVE' AND s = 'INITIALIZED'),"
    "        (SELECT count(*) FROM a WHERE event = 'DERIVE' AND s = 'ACTIVE'),"
    "        (SELECT count(*) FROM a WHERE event = 'DERIVE' AND s = 'ROTATING'),"
    "        (SELECT count(*) FROM a WHERE event = 'DERIVE' AND s = 'RETIRED'),"
    "        (SELECT count(*) FROM d WHERE r = 0), (SELECT count(*) FROM d WHERE r = 1),"
    "        (SELECT count(*) FROM d WHERE r = 2), (SELECT count(*) FROM d WHERE r = 3),"
    "        (SELECT count(*) FROM d WHERE r = 4), (SELECT count(*) FROM d WHERE r = 5),"
    "        (SELECT count(*) FROM d WHERE r = 6), (SELECT count(*) FROM d WHERE r = 7),"
    "        (SELECT count(*) FROM a WHERE event NOT IN ('DERIVE', 'DENY')),"
    "        (SELECT count(DISTINCT instance_id) FROM a)";

ddsm_err ddsm_overview_activity(ddsm_store *st, unsigned window_s, ddsm_activity *out)
{
    if (st == NULL || out == NULL || window_s == 0)
        return DDSM_E_ARG;
    char win[16];
    PGresult *res = NULL;
    snprintf(win, sizeof win, "%u", window_s);
    const char *values[] = {win};
    ddsm_err err = ddsm_store_run_params(st, "activity", activity_sql, 1, values, true, &res, NULL);
    if (err != DDSM_OK)
        return err;
    int64_t v[14];
    bool ok = PQntuples(res) == 1 && PQnfields(res) == 14;
    for (int i = 0; ok && i < 14; i++)
        ok = ddsm_pq_get_i64(res, 0, i, &v[i]) && v[i] >= 0;
    PQclear(res);
    if (!ok)
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE, "store: activity: unexpected answer");
    memset(out, 0, sizeof *out);
    out->window_s = window_s;
    for (int s = 0; s < DDSM_STATE__COUNT; s++)
        out->derivations[s] = (uint64_t)v[s];
    for (int r = 0; r < DDSM_ACTIVITY_REASONS; r++)
        out->denials[r] = (uint64_t)v[4 + r];
    out->lifecycle = (uint64_t)v[12];
    out->writers = (uint64_t)v[13];
    return DDSM_OK;
}
