/* SPDX-License-Identifier: Apache-2.0 */
/* The derivation statements: one derivation (ddsm_store_derive), the DENY row of a policy refusal
 * (ddsm_store_deny), and the chained multi-row statement that their chained forms and the
 * batcher (batch.c) share.
 *
 * Invariants:
 *  - Only canonical paths are written: any other is DDSM_E_PATH before anything is sent.
 *  - Without a chain, a derivation is one statement under no lock: it reads the registry row
 *    through its primary key and inserts the DERIVE row only when the effective state is ACTIVE or
 *    ROTATING, in the same snapshot. The counter returned is the one the row records.
 *  - The chained statement (ddsm_store_batch_exec) is one transaction: it checks every item's
 *    expectation (existence, state, counter, zone) against custody_keys and inserts every row, in
 *    chain order, with the chain's checkpoint, or none. The chain is settled on every path:
 *    COMMITTED when written, NOT_WRITTEN when provably not, UNKNOWN when it may have been.
 *  - No derivation or DENY statement is retried once it may have reached the server.
 *  - A caller may use a key only after DDSM_OK: its DERIVE row has committed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/audit.h"
#include "ddsm/path.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "store_audit.h"
#include "store_int.h"
#include "store_pq.h"
#include "ddsm/textbuf.h"

/* The hot path: one statement, one round trip, no lock. It reads the registry row through its
 * primary key and inserts the DERIVE row only when the effective state is derivable, in the same
 * snapshot: a derivation whose statement starts after a rotation committed sees the new counter.
 * Zero rows: unknown asset; a NULL counter: not derivable (the state says why). */
const char ddsm_store_derive_sql[] =
    "WITH k AS ("
    " SELECT asset_id, derivation_counter,"
    "        ddsm_effective_state(state, grace_until) AS state"
    "   FROM custody_keys"
    "  WHERE asset_id = $1::uuid"
    "), ins AS ("
    " INSERT INTO custody_audit_log"
    "        (asset_id, derivation_path, counter, state_at_derivation, event, requester,"
    "         instance_id)"
    " SELECT asset_id, $2, derivation_counter, state, 'DERIVE', $3, $4"
    "   FROM k"
    "  WHERE state IN ('ACTIVE', 'ROTATING')"
    " RETURNING counter"
    ")"
    " SELECT k.state, ins.counter FROM k LEFT JOIN ins ON true";

/* ------------------------------------------------------------------------------------------ */
/* Derivation */

static ddsm_err derive_chained(ddsm_store *st, const ddsm_derive_req *req, const char *reason,
                               uint64_t *counter, ddsm_state *state);

/* The audit log names paths in one form only: DDSM_E_PATH unless path_text is canonical. */
static ddsm_err check_canonical_path(ddsm_store *st, const char *path_text)
{
    ddsm_path path;
    char canonical[DDSM_PATH_TEXT_MAX];
    const char *why = NULL;
    if (ddsm_path_parse(path_text, strlen(path_text), &path, &why) != DDSM_OK)
        return ddsm_pq_fail(&st->pq, DDSM_E_PATH, "path \"%.64s\": %s", path_text,
                            why != NULL ? why : "malformed");
    ddsm_path_format(&path, canonical);
    if (strcmp(canonical, path_text) != 0)
        return ddsm_pq_fail(&st->pq, DDSM_E_PATH, "path \"%.64s\" is not canonical (\"%s\")",
                            path_text, canonical);
    return DDSM_OK;
}

ddsm_err ddsm_store_derive(ddsm_store *st, const ddsm_derive_req *req, uint64_t *counter,
                           ddsm_state *state)
{
    if (st == NULL || req == NULL || req->path == NULL || counter == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    ddsm_state s;
    int64_t c = 0;
    ddsm_err err;

    err = check_canonical_path(st, req->path);
    if (err != DDSM_OK)
        goto out;
    ddsm_uuid_format(&req->asset, id_text);
    if (st->chain != NULL) {
        err = derive_chained(st, req, NULL, counter, state);
        goto out;
    }

    const char *values[] = {id_text, req->path, req->requester, req->instance};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PREPARED,
        .what = "derive",
        .name = DERIVE_STMT,
        .nparams = 4,
        .values = values,
    };
    /* Not idempotent: retried only when it provably never reached the server. */
    err = ddsm_store_run(st, &q, false, &res, NULL);
    if (err == DDSM_OK)
        err = ddsm_store_require_asset_row(st, res, id_text);
    if (err != DDSM_OK)
        goto out;
    if (ddsm_state_parse(PQgetvalue(res, 0, 0), &s) != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset %s has an unknown state", id_text);
        goto out;
    }
    if (PQgetisnull(res, 0, 1)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot derive", id_text,
                           ddsm_state_name(s));
        if (state != NULL)
            *state = s;
        goto out;
    }
    if (!ddsm_pq_get_i64(res, 0, 1, &c) || c < 0) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive returned a bad counter");
        goto out;
    }
    *counter = (uint64_t)c;
    if (state != NULL)
        *state = s;
out:
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* The optimistic multi-row statement */


/* $1 asset, $2 path, $3 requester, $4 kind, $5 expected state, $6 expected counter, $7 event,
 * $8 detail, $9 ts, $10 seq, $11 mac (arrays, one element per row, in chain order); $12 the
 * chain's instance id; $13/$14 the checkpoint (seq and MAC of the last row).
 * Kinds: D derive (exists, derivable, its zone enabled, in the expected state and counter), S
 * refused (exists in the expected non-derivable state and counter), U unknown (does not exist),
 * P policy (no check), Z zone (exists, derivable, its zone disabled). Every row's expectation
 * is checked through the primary key (the LATERAL subquery with LIMIT is never flattened into a
 * join over the registry; the zone is one more primary-key probe, sql/003_policy.sql); all rows
 * are inserted, in order, with the checkpoint, or none is. The answer has one row per element:
 * what was found, the zone last. */
const char ddsm_store_derive_batch_sql[] =
    "WITH r AS ("
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
    "                      $6::bigint[], $7::text[], $8::text[], $9::timestamptz[],"
    "                      $10::bigint[], $11::bytea[])"
    "        WITH ORDINALITY AS r(asset_id, path, requester, kind, exp_state, exp_counter, event,"
    "                             detail, ts, seq, mac, ord)"
    "), k AS ("
    " SELECT r.ord, r.kind, r.exp_state, r.exp_counter, c.asset_id IS NOT NULL AS found,"
    "        c.derivation_counter AS counter, c.state, coalesce(c.zone_on, true) AS zone_on,"
    "        c.zone"
    "   FROM r LEFT JOIN LATERAL ("
    "        SELECT ck.asset_id, ck.derivation_counter,"
    "               ddsm_effective_state(ck.state, ck.grace_until) AS state,"
    "               coalesce((SELECT z.enabled FROM custody_zones z WHERE z.zone = ck.zone),"
    "                        false) AS zone_on, ck.zone"
    "          FROM custody_keys ck WHERE ck.asset_id = r.asset_id LIMIT 1) c ON true"
    "), v AS ("
    " SELECT coalesce(bool_and(CASE k.kind"
    "          WHEN 'D' THEN k.found AND k.state IN ('ACTIVE', 'ROTATING') AND k.zone_on"
    "                        AND k.state = k.exp_state AND k.counter = k.exp_counter"
    "          WHEN 'S' THEN k.found AND k.state = k.exp_state AND k.counter = k.exp_counter"
    "          WHEN 'U' THEN NOT k.found"
    "          WHEN 'P' THEN true"
    "          WHEN 'Z' THEN k.found AND NOT k.zone_on AND k.state IN ('ACTIVE', 'ROTATING')"
    "          ELSE false END), false) AS ok"
    "   FROM k"
    "), ins AS ("
    " INSERT INTO custody_audit_log (asset_id, derivation_path, counter, state_at_derivation, ts,"
    "        event, requester, instance_id, seq, detail, mac)"
    " SELECT r.asset_id, r.path, r.exp_counter, r.exp_state, r.ts, r.event, r.requester,"
    "        $12::text, r.seq, r.detail, r.mac"
    "   FROM r, v WHERE v.ok ORDER BY r.ord"
    " RETURNING 1"
    "), head AS ("
    " INSERT INTO custody_audit_chain_heads (instance_id, seq, mac, updated_at)"
    " SELECT $12::text, $13::bigint, $14::bytea, now() FROM v WHERE v.ok"
    " ON CONFLICT (instance_id) DO UPDATE"
    "   SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at"
    " RETURNING 1"
    ")"
    " SELECT k.ord, k.found, k.counter, k.state, v.ok, (SELECT count(*) FROM ins),"
    "        (SELECT count(*) FROM head), k.zone_on, k.zone"
    "   FROM k, v ORDER BY k.ord";

static const char *const refused_detail[DDSM_STATE__COUNT] = {
    [DDSM_STATE_INITIALIZED] = "asset is INITIALIZED; cannot derive",
    [DDSM_STATE_ACTIVE] = "asset is ACTIVE",
    [DDSM_STATE_ROTATING] = "asset is ROTATING",
    [DDSM_STATE_RETIRED] = "asset is RETIRED; cannot derive",
};

void ddsm_batch_item_expect(struct ddsm_batch_item *it, bool known, bool found, ddsm_state state,
                            uint64_t counter)
{
    it->exp_state = DDSM_STATE_ACTIVE;
    it->exp_counter = 0;
    if (it->deny_reason == it->zone_reason)
        it->deny_reason = NULL; /* a zone refusal is decided again from this answer */
    if (it->deny_reason == NULL && known && found && it->zone_off && ddsm_state_derivable(state)) {
        /* Refused by the zone: a DENY row naming it, which the statement writes only while the
         * zone is still disabled (the state refusals come first). */
        snprintf(it->zone_reason, sizeof it->zone_reason, "zone %s is disabled",
                 it->zone[0] != '\0' ? it->zone : "?");
        it->deny_reason = it->zone_reason;
        it->expect = DDSM_EXPECT_ZONE_OFF;
        return;
    }
    if (it->deny_reason != NULL) {
        it->expect = DDSM_EXPECT_NONE;
    } else if (!known) {
        /* A guess: a wrong one costs the round trip that teaches the right one. */
        it->expect = DDSM_EXPECT_DERIVE;
    } else if (!found) {
        it->expect = DDSM_EXPECT_MISSING;
    } else {
        it->exp_state = state;
        it->exp_counter = counter;
        it->expect = ddsm_state_derivable(state) ? DDSM_EXPECT_DERIVE : DDSM_EXPECT_REFUSED;
    }
}

enum ddsm_chain_outcome ddsm_chain_failed_outcome(ddsm_err err, bool sent)
{
    /* A server error rolled the statement back; a lost link after sending leaves it unknown. */
    return sent && err == DDSM_E_STORE_DOWN ? DDSM_CHAIN_UNKNOWN : DDSM_CHAIN_NOT_WRITTEN;
}

ddsm_err ddsm_store_batch_exec(ddsm_store *st, ddsm_audit_chain *chain,
                               struct ddsm_batch_item *items, size_t n, bool *written)
{
    if (st == NULL || chain == NULL || items == NULL || n == 0 || written == NULL)
        return DDSM_E_ARG;
    ddsm_audit_row *rows = calloc(n, sizeof *rows);
    uint8_t(*macs)[DDSM_AUDIT_MAC_LEN] = calloc(n, DDSM_AUDIT_MAC_LEN);
    char *idtext = calloc(n, DDSM_UUID_TEXT_LEN + 1);
    ddsm_textbuf a[11];
    PGresult *res = NULL;
    bool sealed = false, sent = false;
    char ts_text[40], head_seq[24], head_mac[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    char mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    ddsm_err err;

    memset(a, 0, sizeof a);
    if (rows == NULL || macs == NULL || idtext == NULL) {
        err = DDSM_E_NOMEM;
        goto out;
    }
    int64_t ts = ddsm_audit_now_us();
    ddsm_audit_format_ts(ts, ts_text);
    for (size_t i = 0; i < n; i++) {
        struct ddsm_batch_item *it = &items[i];
        ddsm_audit_row *r = &rows[i];
        r->has_asset = true;
        r->asset = it->asset;
        r->path = it->path;
        r->ts_us = ts;
        r->requester = it->requester;
        switch (it->expect) {
        case DDSM_EXPECT_DERIVE:
        case DDSM_EXPECT_REFUSED:
            r->event = it->expect == DDSM_EXPECT_DERIVE ? "DERIVE" : "DENY";
            r->has_counter = true;
            r->counter = (int64_t)it->exp_counter;
            r->state = ddsm_state_name(it->exp_state);
            r->detail =
                it->expect == DDSM_EXPECT_DERIVE ? it->detail : refused_detail[it->exp_state];
            break;
        case DDSM_EXPECT_MISSING:
            r->event = "DENY";
            r->detail = "no such asset";
            break;
        case DDSM_EXPECT_NONE:
        case DDSM_EXPECT_ZONE_OFF:
            r->event = "DENY";
            r->detail = it->deny_reason;
            break;
        }
    }
    err = ddsm_audit_chain_seal(chain, rows, n, macs);
    if (err != DDSM_OK) {
        err = ddsm_pq_fail(&st->pq, err, "audit: cannot seal %zu rows: %s", n, ddsm_err_str(err));
        goto out;
    }
    sealed = true;

    static const char kinds[] = {[DDSM_EXPECT_DERIVE] = 'D', [DDSM_EXPECT_REFUSED] = 'S',
                                 [DDSM_EXPECT_MISSING] = 'U', [DDSM_EXPECT_NONE] = 'P',
                                 [DDSM_EXPECT_ZONE_OFF] = 'Z'};
    for (size_t k = 0; k < 11; k++)
        ddsm_textbuf_putn(&a[k], "{", 1);
    for (size_t i = 0; i < n; i++) {
        const ddsm_audit_row *r = &rows[i];
        char *idt = idtext + i * (DDSM_UUID_TEXT_LEN + 1);
        char kind[2] = {kinds[items[i].expect], '\0'};
        ddsm_uuid_format(&r->asset, idt);
        ddsm_pq_bytea_hex(macs[i], DDSM_AUDIT_MAC_LEN, mac_text);
        ddsm_textbuf_array_elem(&a[0], i, idt);
        ddsm_textbuf_array_elem(&a[1], i, r->path);
        ddsm_textbuf_array_elem(&a[2], i, r->requester);
        ddsm_textbuf_array_elem(&a[3], i, kind);
        ddsm_textbuf_array_elem(&a[4], i, r->state);
        ddsm_textbuf_array_i64(&a[5], i, r->has_counter, r->counter);
        ddsm_textbuf_array_elem(&a[6], i, r->event);
        ddsm_textbuf_array_elem(&a[7], i, r->detail);
        ddsm_textbuf_array_elem(&a[8], i, ts_text);
        ddsm_textbuf_array_i64(&a[9], i, true, r->seq);
        ddsm_textbuf_array_elem(&a[10], i, mac_text);
    }
    for (size_t k = 0; k < 11; k++) {
        ddsm_textbuf_putn(&a[k], "}", 1);
        if (a[k].oom) {
            err = DDSM_E_NOMEM;
            goto out;
        }
    }
    snprintf(head_seq, sizeof head_seq, "%" PRId64, rows[n - 1].seq);
    ddsm_pq_bytea_hex(macs[n - 1], DDSM_AUDIT_MAC_LEN, head_mac);
    const char *values[BATCH_NPARAMS] = {a[0].p, a[1].p, a[2].p, a[3].p, a[4].p,
                                         a[5].p, a[6].p, a[7].p, a[8].p, a[9].p,
                                         a[10].p, ddsm_audit_chain_instance(chain), head_seq,
                                         head_mac};
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PREPARED,
        .what = "derive",
        .name = BATCH_STMT,
        .nparams = BATCH_NPARAMS,
        .values = values,
    };
    /* Not idempotent: retried only when it provably never reached the server. */
    err = ddsm_store_run(st, &q, false, &res, &sent);
    if (err != DDSM_OK) {
        ddsm_audit_chain_settle(chain, n, macs[n - 1], ddsm_chain_failed_outcome(err, sent));
        sealed = false;
        goto out;
    }
    bool ok = PQntuples(res) == (int)n && strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    int64_t ins = 0, head = 0;
    bool counts = PQntuples(res) == (int)n && ddsm_pq_get_i64(res, 0, 5, &ins) &&
                  ddsm_pq_get_i64(res, 0, 6, &head);
    if (!counts || (ok && (ins != (int64_t)n || head != 1))) {
        /* Cannot happen with our schema; if it does, trust nothing about this chain. */
        ddsm_audit_chain_settle(chain, n, macs[n - 1], DDSM_CHAIN_UNKNOWN);
        sealed = false;
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive: unexpected answer (%d rows "
                           "for %zu, %" PRId64 " inserted)", PQntuples(res), n, ins);
        goto out;
    }
    ddsm_audit_chain_settle(chain, n, macs[n - 1],
                            ok ? DDSM_CHAIN_COMMITTED : DDSM_CHAIN_NOT_WRITTEN);
    sealed = false;
    for (size_t i = 0; i < n; i++) {
        struct ddsm_batch_item *it = &items[i];
        int64_t c = 0;
        it->found = strcmp(PQgetvalue(res, (int)i, 1), "t") == 0;
        it->state = DDSM_STATE_INITIALIZED;
        it->counter = 0;
        it->zone_off = false;
        it->zone[0] = '\0';
        if (!it->found)
            continue;
        it->zone_off = PQnfields(res) > 8 && strcmp(PQgetvalue(res, (int)i, 7), "f") == 0;
        if (PQnfields(res) > 8)
            snprintf(it->zone, sizeof it->zone, "%s", PQgetvalue(res, (int)i, 8));
        if (!ddsm_pq_get_i64(res, (int)i, 2, &c) || c < 0 ||
            ddsm_state_parse(PQgetvalue(res, (int)i, 3), &it->state) != DDSM_OK) {
            err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive: bad counter or state");
            goto out;
        }
        it->counter = (uint64_t)c;
    }
    *written = ok;
out:
    if (sealed)
        ddsm_audit_chain_settle(chain, n, macs[n - 1], DDSM_CHAIN_NOT_WRITTEN);
    PQclear(res);
    for (size_t k = 0; k < 11; k++)
        free(a[k].p);
    free(idtext);
    free(rows);
    free(macs);
    return err;
}

ddsm_err ddsm_batch_item_result(const struct ddsm_batch_item *it, char *msg, size_t cap,
                                uint64_t *counter, ddsm_state *state)
{
    char idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&it->asset, idt);
    switch (it->expect) {
    case DDSM_EXPECT_DERIVE:
        *counter = it->exp_counter;
        if (state != NULL)
            *state = it->exp_state;
        return DDSM_OK;
    case DDSM_EXPECT_REFUSED:
        snprintf(msg, cap, "asset %s is %s; cannot derive", idt, ddsm_state_name(it->exp_state));
        if (state != NULL)
            *state = it->exp_state;
        return DDSM_E_STATE;
    case DDSM_EXPECT_MISSING:
        snprintf(msg, cap, "no asset %s", idt);
        return DDSM_E_NOT_FOUND;
    case DDSM_EXPECT_NONE:
    case DDSM_EXPECT_ZONE_OFF:
        snprintf(msg, cap, "asset %s: refused: %s", idt, it->deny_reason);
        return DDSM_E_POLICY;
    }
    return DDSM_E_ARG;
}

static ddsm_err derive_chained(ddsm_store *st, const ddsm_derive_req *req, const char *reason,
                               uint64_t *counter, ddsm_state *state)
{
    struct ddsm_batch_item it;
    bool written = false;
    char idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_err err = DDSM_OK;

    if (st->cache == NULL) {
        st->cache = calloc(1, sizeof *st->cache);
        if (st->cache == NULL)
            return DDSM_E_NOMEM;
    }
    memset(&it, 0, sizeof it);
    it.asset = req->asset;
    it.path = req->path;
    it.requester = req->requester;
    it.deny_reason = reason;
    it.detail = req->detail;
    for (int attempt = 0; attempt < DDSM_OPTIMISTIC_ATTEMPTS && !written; attempt++) {
        bool found = false;
        ddsm_state s = DDSM_STATE_INITIALIZED;
        uint64_t c = 0;
        bool known = ddsm_asset_cache_get(st->cache, &it.asset, &found, &s, &c);
        ddsm_asset_cache_get_zone(st->cache, &it);
        ddsm_batch_item_expect(&it, known, found, s, c);
        err = ddsm_store_batch_exec(st, st->chain, &it, 1, &written);
        if (err != DDSM_OK) {
            ddsm_asset_cache_forget(st->cache, &it.asset);
            return err;
        }
        ddsm_asset_cache_put(st->cache, &it.asset, it.found, it.state, it.counter);
        ddsm_asset_cache_set_zone(st->cache, &it.asset, it.zone_off, it.zone);
    }
    ddsm_uuid_format(&it.asset, idt);
    if (!written)
        return ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: derive: asset %s changed %d times "
                            "while its audit row was being written; try again", idt,
                            DDSM_OPTIMISTIC_ATTEMPTS);
    char msg[DDSM_PQ_ERRMSG_MAX];
    uint64_t cv = 0;
    ddsm_state sv = DDSM_STATE_INITIALIZED;
    err = ddsm_batch_item_result(&it, msg, sizeof msg, &cv, &sv);
    if (err == DDSM_OK) {
        *counter = cv;
        if (state != NULL)
            *state = sv;
        return DDSM_OK;
    }
    if (err == DDSM_E_STATE && state != NULL)
        *state = sv;
    return ddsm_pq_fail(&st->pq, err, "%s", msg);
}

static const char deny_sql[] =
    "INSERT INTO custody_audit_log (asset_id, derivation_path, event, requester,"
    " instance_id, detail) VALUES ($1::uuid, $2, 'DENY', $3, $4, $5)";

ddsm_err ddsm_store_deny(ddsm_store *st, const ddsm_derive_req *req, const char *reason)
{
    if (st == NULL || req == NULL)
        return DDSM_E_ARG;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    PGresult *res = NULL;
    ddsm_err err;

    if (reason == NULL || reason[0] == '\0' || strlen(reason) > 500)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "deny: the reason must be 1..500 characters");
    if (req->path != NULL) {
        err = check_canonical_path(st, req->path);
        if (err != DDSM_OK)
            return err;
    }
    if (st->chain != NULL) {
        uint64_t c = 0;
        err = derive_chained(st, req, reason, &c, NULL);
        return err == DDSM_E_POLICY ? DDSM_OK : err;
    }
    ddsm_uuid_format(&req->asset, id_text);
    const char *values[] = {id_text, req->path, req->requester, req->instance, reason};
    err = ddsm_store_run_params(st, "deny", deny_sql, 5, values, false, &res, NULL);
    PQclear(res);
    return err;
}
