/* SPDX-License-Identifier: Apache-2.0 */
/* Lifecycle transitions of an asset (ddsm_store_asset_transition), with and without a chain.
 *
 * Invariants:
 *  - Without a chain, an event is one statement (transition_sql): it locks the asset's row (FOR
 *    UPDATE), applies the event only when the effective state is one that ddsm_state_next lets it
 *    leave, and in the same transaction updates the row, writes the GRACE_END row of a grace
 *    window that had ended, the event's row, the custody_rotations row of a rotation, and the
 *    NOTIFY. A refused event changes nothing (DDSM_E_STATE).
 *  - With a chain: one read of the row, then one statement through ddsm_asset_transition (SECURITY
 *    DEFINER, sql/006_roles.sql), which writes the predicted rows only while the locked row is as
 *    read; otherwise it writes nothing and the rows are predicted again, at most
 *    DDSM_OPTIMISTIC_ATTEMPTS times. A refused event writes its DENY row. The chain is settled on
 *    every path.
 *  - The counter moves only by ROTATE and ROTATE_GRACE, by one.
 *  - The event's statement is never retried once it may have reached the server. Stamping a
 *    rotation as committed is a later, idempotent, best-effort statement: its failure is logged
 *    and changes neither the result nor the store's last message. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/audit.h"
#include "ddsm/log.h"
#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "store_audit.h"
#include "store_int.h"
#include "store_pq.h"
#include "ddsm/textbuf.h"

/* A grace window longer than this is a typo, not a policy. */
#define GRACE_MAX_S (366LL * 24 * 3600)

/* One lifecycle event in one statement. The row is locked first (FOR UPDATE returns its latest
 * committed version), so the state check, the counter bump and the audit rows agree even under
 * concurrent events. $3/$4 are the (from, to) pairs that ddsm_state_next allows for this event;
 * the event applies only when the effective state is one of the "from" states. A ROTATING row
 * whose grace ended is written down as ended (GRACE_END row) before the event's own row.
 * The trigger custody_keys_guard checks the result again. */
static const char transition_sql[] =
    "WITH cur AS ("
    " SELECT asset_id, derivation_counter, state AS stored_state,"
    "        ddsm_effective_state(state, grace_until) AS state"
    "   FROM custody_keys"
    "  WHERE asset_id = $1::uuid"
    "    FOR UPDATE"
    "), rule AS ("
    " SELECT r.from_state, r.to_state"
    "   FROM unnest($3::text[], $4::text[]) AS r(from_state, to_state)"
    "), upd AS ("
    " UPDATE custody_keys k"
    "    SET state = rule.to_state,"
    "        derivation_counter = cur.derivation_counter + $5::bigint,"
    "        grace_until = CASE WHEN rule.to_state = 'ROTATING'"
    "                           THEN now() + make_interval(secs => $6::double precision) END,"
    "        updated_at = now()"
    "   FROM cur JOIN rule ON rule.from_state = cur.state"
    "  WHERE k.asset_id = cur.asset_id"
    " RETURNING k.*"
    "), aud AS ("
    " INSERT INTO custody_audit_log"
    "        (asset_id, counter, state_at_derivation, event, requester, detail)"
    " SELECT cur.asset_id, cur.derivation_counter, 'ACTIVE', 'GRACE_END', $7,"
    "        'grace window had ended'"
    "   FROM cur, upd"
    "  WHERE cur.stored_state = 'ROTATING' AND cur.state = 'ACTIVE'"
    " UNION ALL"
    " SELECT upd.asset_id, upd.derivation_counter, upd.state, $2, $7, $8"
    "   FROM upd"
    "), rot AS ("
    " INSERT INTO custody_rotations (asset_id, from_counter, to_counter, grace_until, requester)"
    " SELECT upd.asset_id, cur.derivation_counter, upd.derivation_counter, upd.grace_until, $7"
    "   FROM upd, cur"
    "  WHERE upd.derivation_counter > cur.derivation_counter"
    " RETURNING id"
    "), note AS ("
    " SELECT pg_notify($9, upd.asset_id::text || ' ' || upd.derivation_counter || ' ' ||"
    "                      ddsm_effective_state(upd.state, upd.grace_until))"
    "   FROM upd"
    ")"
    " SELECT cur.state, (SELECT count(*) FROM note), " ASSET_COLS("upd") ","
    "        (SELECT id FROM rot)"
    "   FROM cur LEFT JOIN upd ON true";
/* Column of the rotation id in transition_sql's answer. */
#define TRANSITION_ROT_COL (2 + ASSET_NCOLS)

/* Run after a rotation has committed: a server time at or after the commit, which reconcile
 * compares with the start of derivation statements (ddsm_audit_reconcile_sql). Idempotent. */
static const char rotation_committed_sql[] = "SELECT ddsm_rotation_committed($1::bigint)";

static bool event_bumps_counter(ddsm_event ev)
{
    return ev == DDSM_EV_ROTATE || ev == DDSM_EV_ROTATE_GRACE;
}

/* The audit log's event names: a rotation with grace is a ROTATE whose state is ROTATING. */
static const char *audit_event_name(ddsm_event ev)
{
    return ev == DDSM_EV_ROTATE_GRACE ? "ROTATE" : ddsm_event_name(ev);
}

/* Postgres array literals of the states ev may leave from and where each one leads, as
 * ddsm_state_next says. Built from our own state names (no user text). */
static void transition_rules(ddsm_event ev, char from[128], char to[128])
{
    size_t nf = 0, nt = 0;
    from[nf++] = '{';
    to[nt++] = '{';
    for (unsigned s = 0; s < DDSM_STATE__COUNT; s++) {
        ddsm_state next;
        if (ddsm_state_next((ddsm_state)s, ev, &next) != DDSM_OK)
            continue;
        nf += (size_t)snprintf(from + nf, 128 - nf, "%s%s", nf > 1 ? "," : "",
                               ddsm_state_name((ddsm_state)s));
        nt += (size_t)snprintf(to + nt, 128 - nt, "%s%s", nt > 1 ? "," : "",
                               ddsm_state_name(next));
    }
    snprintf(from + nf, 128 - nf, "}");
    snprintf(to + nt, 128 - nt, "}");
}

/* The parameters a grace window adds to a lifecycle event: for ROTATE_GRACE its length in seconds
 * and the audit detail naming it; NULL (SQL NULL) for every other event. */
struct grace_params {
    char grace[24], detail[64];
    const char *grace_v, *detail_v;
};

static ddsm_err grace_params(ddsm_store *st, ddsm_event ev, int64_t grace_s, struct grace_params *g)
{
    g->grace_v = g->detail_v = NULL;
    if (ev != DDSM_EV_ROTATE_GRACE)
        return DDSM_OK;
    if (grace_s <= 0 || grace_s > GRACE_MAX_S)
        return ddsm_pq_fail(&st->pq, DDSM_E_INPUT, "grace period of %" PRId64 " s is out of "
                            "range (1 s to %lld s)", grace_s, GRACE_MAX_S);
    snprintf(g->grace, sizeof g->grace, "%" PRId64, grace_s);
    snprintf(g->detail, sizeof g->detail, "grace %" PRId64 " s", grace_s);
    g->grace_v = g->grace;
    g->detail_v = g->detail;
    return DDSM_OK;
}

/* Stamp the rotation rot_id (text) as committed. Best effort: the rotation itself has committed
 * and stands; without the stamp reconcile bounds its commit by the next rotation instead. */
static void rotation_committed(ddsm_store *st, const char *rot_id)
{
    const char *values[] = {rot_id};
    PGresult *res = NULL;
    char keep[sizeof st->pq.errmsg];
    memcpy(keep, st->pq.errmsg, sizeof keep);
    if (ddsm_store_run_params(st, "stamp rotation", rotation_committed_sql, 1, values, true, &res,
                              NULL) != DDSM_OK)
        ddsm_log(DDSM_LOG_WARN, "store: rotation %s committed but could not be stamped: %s",
                 rot_id, st->pq.errmsg);
    memcpy(st->pq.errmsg, keep, sizeof keep);
    PQclear(res);
}

static ddsm_err transition_chained(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                   int64_t grace_s, const char *requester, ddsm_asset *out);

ddsm_err ddsm_store_asset_transition(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                     int64_t grace_s, const char *requester, ddsm_asset *out)
{
    if (st == NULL || id == NULL || (unsigned)ev >= DDSM_EV__COUNT)
        return DDSM_E_ARG;
    if (st->chain != NULL)
        return transition_chained(st, id, ev, grace_s, requester, out);
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char from[128], to[128];
    struct grace_params g;
    ddsm_err err;

    ddsm_uuid_format(id, id_text);
    err = grace_params(st, ev, grace_s, &g);
    if (err != DDSM_OK)
        goto out;
    transition_rules(ev, from, to);

    const char *values[] = {id_text, audit_event_name(ev), from, to,
                            event_bumps_counter(ev) ? "1" : "0", g.grace_v, requester,
                            g.detail_v, DDSM_NOTIFY_CHANNEL};
    err = ddsm_store_run_params(st, ddsm_event_name(ev), transition_sql, 9, values, false, &res,
                                NULL);
    if (err == DDSM_OK)
        err = ddsm_store_require_asset_row(st, res, id_text);
    if (err != DDSM_OK)
        goto out;
    if (PQgetisnull(res, 0, 2)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot %s", id_text,
                           PQgetvalue(res, 0, 0), ddsm_event_name(ev));
        goto out;
    }
    ddsm_asset a;
    err = ddsm_store_asset_from_row(st, res, 0, 2, &a);
    if (err != DDSM_OK)
        goto out;
    if (!PQgetisnull(res, 0, TRANSITION_ROT_COL))
        rotation_committed(st, PQgetvalue(res, 0, TRANSITION_ROT_COL));
    if (out != NULL)
        *out = a;
out:
    PQclear(res);
    return err;
}

/* ------------------------------------------------------------------------------------------ */
/* Chained lifecycle */

/* The chained form of transition_sql, through the SECURITY DEFINER function of
 * sql/006_roles.sql (which ddsm_admin may call; it sends the NOTIFY). The writer predicts the rows
 * from the state it read ($2 stored state, $3 effective state, $4 counter) and the function applies
 * the event only while that prediction holds (under the row lock); otherwise it changes nothing
 * and answers what it found. $5 the new state (NULL: the event is refused and only the DENY row is
 * written), $6 the counter increment, $7 grace seconds, $8 requester, $9 instance id, $10..$16 the
 * rows (counter, state, ts, event, seq, detail, mac), $17/$18 the checkpoint. */
static const char transition_chained_sql[] =
    "SELECT r.o_stored_state, r.o_state, r.o_counter, r.o_ok, r.o_audit, r.o_head, r.o_notified,"
    "       r.o_rotation, (r.o_asset).*"
    "  FROM ddsm_asset_transition($1::uuid, $2, $3, $4::bigint, $5, $6::bigint,"
    "                             $7::double precision, $8, $9, $10::bigint[], $11::text[],"
    "                             $12::timestamptz[], $13::text[], $14::bigint[], $15::text[],"
    "                             $16::bytea[], $17::bigint, $18::bytea) r";
#define CHAINED_ASSET_COL 8

static const char asset_state_sql[] =
    "SELECT state, ddsm_effective_state(state, grace_until), derivation_counter"
    "  FROM custody_keys WHERE asset_id = $1::uuid";

/* stored state, effective state and counter from columns col.. of row 0. */
static bool read_cur(const PGresult *res, int col, ddsm_state *stored, ddsm_state *eff,
                     int64_t *counter)
{
    return ddsm_state_parse(PQgetvalue(res, 0, col), stored) == DDSM_OK &&
           ddsm_state_parse(PQgetvalue(res, 0, col + 1), eff) == DDSM_OK &&
           ddsm_pq_get_i64(res, 0, col + 2, counter) && *counter >= 0;
}

static ddsm_err transition_chained(ddsm_store *st, const ddsm_uuid *id, ddsm_event ev,
                                   int64_t grace_s, const char *requester, ddsm_asset *out)
{
    PGresult *res = NULL;
    char id_text[DDSM_UUID_TEXT_LEN + 1];
    char deny[96];
    struct grace_params g;
    ddsm_state stored, eff;
    int64_t counter = 0;
    ddsm_err err;

    ddsm_uuid_format(id, id_text);
    err = grace_params(st, ev, grace_s, &g);
    if (err != DDSM_OK)
        return err;
    const char *idv[] = {id_text};
    err = ddsm_store_run_params(st, "read asset", asset_state_sql, 1, idv, true, &res, NULL);
    if (err == DDSM_OK)
        err = ddsm_store_require_asset_row(st, res, id_text);
    if (err != DDSM_OK)
        goto out;
    if (!read_cur(res, 0, &stored, &eff, &counter)) {
        err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset %s has a bad state", id_text);
        goto out;
    }
    PQclear(res);
    res = NULL;

    for (int attempt = 0; attempt < DDSM_OPTIMISTIC_ATTEMPTS; attempt++) {
        ddsm_audit_row rows[2];
        uint8_t macs[2][DDSM_AUDIT_MAC_LEN];
        size_t n = 0;
        ddsm_state next;
        bool allowed = ddsm_state_next(eff, ev, &next) == DDSM_OK;
        int64_t bump = allowed && event_bumps_counter(ev) ? 1 : 0;
        int64_t ts = ddsm_audit_now_us();
        memset(rows, 0, sizeof rows);
        if (allowed && stored == DDSM_STATE_ROTATING && eff == DDSM_STATE_ACTIVE) {
            rows[n].event = "GRACE_END";
            rows[n].counter = counter;
            rows[n].state = "ACTIVE";
            rows[n].detail = "grace window had ended";
            n++;
        }
        if (allowed) {
            rows[n].event = audit_event_name(ev);
            rows[n].counter = counter + bump;
            rows[n].state = ddsm_state_name(next);
            rows[n].detail = g.detail_v;
        } else {
            snprintf(deny, sizeof deny, "%s refused: the asset is %s", ddsm_event_name(ev),
                     ddsm_state_name(eff));
            rows[n].event = "DENY";
            rows[n].counter = counter;
            rows[n].state = ddsm_state_name(eff);
            rows[n].detail = deny;
        }
        n++;
        for (size_t i = 0; i < n; i++) {
            rows[i].has_asset = true;
            rows[i].asset = *id;
            rows[i].has_counter = true;
            rows[i].ts_us = ts;
            rows[i].requester = requester;
        }
        err = ddsm_audit_chain_seal(st->chain, rows, n, macs);
        if (err != DDSM_OK) {
            err = ddsm_pq_fail(&st->pq, err, "audit: cannot seal the %s rows",
                               ddsm_event_name(ev));
            goto out;
        }

        ddsm_textbuf a[7];
        char ts_text[40], mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
        char cnt[24], bumpt[24], head_seq[24], head_mac[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
        memset(a, 0, sizeof a);
        ddsm_audit_format_ts(ts, ts_text);
        for (size_t k = 0; k < 7; k++)
            ddsm_textbuf_putn(&a[k], "{", 1);
        for (size_t i = 0; i < n; i++) {
            ddsm_pq_bytea_hex(macs[i], DDSM_AUDIT_MAC_LEN, mac_text);
            ddsm_textbuf_array_i64(&a[0], i, true, rows[i].counter);
            ddsm_textbuf_array_elem(&a[1], i, rows[i].state);
            ddsm_textbuf_array_elem(&a[2], i, ts_text);
            ddsm_textbuf_array_elem(&a[3], i, rows[i].event);
            ddsm_textbuf_array_i64(&a[4], i, true, rows[i].seq);
            ddsm_textbuf_array_elem(&a[5], i, rows[i].detail);
            ddsm_textbuf_array_elem(&a[6], i, mac_text);
        }
        bool oom = false;
        for (size_t k = 0; k < 7; k++) {
            ddsm_textbuf_putn(&a[k], "}", 1);
            oom = oom || a[k].oom;
        }
        snprintf(cnt, sizeof cnt, "%" PRId64, counter);
        snprintf(bumpt, sizeof bumpt, "%" PRId64, bump);
        snprintf(head_seq, sizeof head_seq, "%" PRId64, rows[n - 1].seq);
        ddsm_pq_bytea_hex(macs[n - 1], DDSM_AUDIT_MAC_LEN, head_mac);
        const char *values[] = {id_text, ddsm_state_name(stored), ddsm_state_name(eff), cnt,
                                allowed ? ddsm_state_name(next) : NULL, bumpt, g.grace_v,
                                requester, rows[0].instance, a[0].p, a[1].p, a[2].p, a[3].p,
                                a[4].p, a[5].p, a[6].p, head_seq, head_mac};
        bool sent = false;
        err = oom ? DDSM_E_NOMEM
                  : ddsm_store_run_params(st, ddsm_event_name(ev), transition_chained_sql, 18,
                                          values, false, &res, &sent);
        for (size_t k = 0; k < 7; k++)
            free(a[k].p);
        if (err != DDSM_OK) {
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1],
                                    ddsm_chain_failed_outcome(err, sent));
            goto out;
        }
        int64_t okn = 0, audn = 0, headn = 0;
        if (PQntuples(res) == 0) {
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_NOT_WRITTEN);
            err = ddsm_pq_fail(&st->pq, DDSM_E_NOT_FOUND, "no asset %s", id_text);
            goto out;
        }
        if (!ddsm_pq_get_i64(res, 0, 3, &okn) || !ddsm_pq_get_i64(res, 0, 4, &audn) ||
            !ddsm_pq_get_i64(res, 0, 5, &headn) ||
            (okn == 1 && (audn != (int64_t)n || headn != 1))) {
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_UNKNOWN);
            err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: %s: unexpected answer",
                               ddsm_event_name(ev));
            goto out;
        }
        if (okn == 0) {
            /* The asset moved since we read it: predict again from what the statement saw. */
            ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_NOT_WRITTEN);
            if (!read_cur(res, 0, &stored, &eff, &counter)) {
                err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: asset %s has a bad state",
                                   id_text);
                goto out;
            }
            PQclear(res);
            res = NULL;
            continue;
        }
        ddsm_audit_chain_settle(st->chain, n, macs[n - 1], DDSM_CHAIN_COMMITTED);
        if (!allowed) {
            if (st->cache != NULL)
                ddsm_asset_cache_put(st->cache, id, true, eff, (uint64_t)counter);
            err = ddsm_pq_fail(&st->pq, DDSM_E_STATE, "asset %s is %s; cannot %s", id_text,
                               ddsm_state_name(eff), ddsm_event_name(ev));
            goto out;
        }
        ddsm_asset a1;
        err = ddsm_store_asset_from_row(st, res, 0, CHAINED_ASSET_COL, &a1);
        if (err != DDSM_OK)
            goto out;
        if (st->cache != NULL)
            ddsm_asset_cache_put(st->cache, id, true, a1.state, a1.counter);
        if (!PQgetisnull(res, 0, 7))
            rotation_committed(st, PQgetvalue(res, 0, 7));
        if (out != NULL)
            *out = a1;
        goto out;
    }
    err = ddsm_pq_fail(&st->pq, DDSM_E_STORE, "store: %s: asset %s changed %d times while its "
                       "audit rows were being written; try again", ddsm_event_name(ev), id_text,
                       DDSM_OPTIMISTIC_ATTEMPTS);
out:
    PQclear(res);
    return err;
}
