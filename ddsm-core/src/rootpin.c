/* SPDX-License-Identifier: Apache-2.0 */
/* The root pin: reads and appends custody_root_pins (sql/005_root_pin.sql). */
#include "ddsm/rootpin.h"

#include <stdio.h>
#include <string.h>

#include "ddsm/secmem.h"
#include "store_audit.h"
#include "store_pq.h"

/* to_regclass first: a store migrated before 005 has no table, and naming a missing table in the
 * same statement would fail at parse time. */
static const char has_table_sql[] = "SELECT to_regclass('custody_root_pins') IS NOT NULL";

static const char pins_sql[] = "SELECT fingerprint FROM custody_root_pins"
                               " GROUP BY fingerprint ORDER BY min(id)";

static const char record_sql[] =
    "INSERT INTO custody_root_pins"
    " (fingerprint, event, token_label, key_label, unique_id, check_value, not_enforced)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)";

const char *ddsm_pin_event_name(ddsm_pin_event ev)
{
    switch (ev) {
    case DDSM_PIN_CREATE:
        return "CREATE";
    case DDSM_PIN_IMPORT:
        return "IMPORT";
    case DDSM_PIN_RECOVER:
        return "RECOVER";
    case DDSM_PIN_PIN:
        return "PIN";
    }
    return "?";
}

static bool fp_well_formed(const char *fp)
{
    if (fp == NULL || strlen(fp) != DDSM_FINGERPRINT_HEX)
        return false;
    for (size_t i = 0; i < DDSM_FINGERPRINT_HEX; i++)
        if (!((fp[i] >= '0' && fp[i] <= '9') || (fp[i] >= 'a' && fp[i] <= 'f')))
            return false;
    return true;
}

static ddsm_err has_table(ddsm_store *st, bool *out)
{
    PGresult *res = NULL;
    ddsm_err err = ddsm_store_run_params(st, "look for the root pin", has_table_sql, 0, NULL, true,
                                         &res, NULL);
    if (err == DDSM_OK) {
        if (PQntuples(res) != 1)
            err = ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE, "store: root pin: no row");
        else
            *out = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    }
    PQclear(res);
    return err;
}

ddsm_err ddsm_store_root_pins(ddsm_store *st, ddsm_root_pins *out)
{
    PGresult *res = NULL;
    ddsm_root_pins p;
    if (st == NULL || out == NULL)
        return DDSM_E_ARG;
    memset(&p, 0, sizeof(p));
    ddsm_err err = has_table(st, &p.table);
    if (err != DDSM_OK || !p.table)
        goto out;
    err = ddsm_store_run_params(st, "read the root pin", pins_sql, 0, NULL, true, &res, NULL);
    if (err != DDSM_OK)
        goto out;
    int n = PQntuples(res);
    if (n > DDSM_ROOT_PINS_MAX) {
        err =
            ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STATE,
                         "the store pins %d different roots, more than %d", n, DDSM_ROOT_PINS_MAX);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const char *fp = PQgetvalue(res, i, 0);
        if (!fp_well_formed(fp)) {
            err = ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE,
                               "store: a root pin is not 32 lower-case hex digits");
            goto out;
        }
        memcpy(p.fingerprint[i], fp, DDSM_FINGERPRINT_HEX + 1);
    }
    p.count = (size_t)n;
out:
    PQclear(res);
    if (err == DDSM_OK)
        *out = p;
    return err;
}

ddsm_err ddsm_store_root_pin_record(ddsm_store *st, const ddsm_root_pin *pin)
{
    PGresult *res = NULL;
    bool table = false;
    if (st == NULL || pin == NULL || pin->token_label == NULL || pin->key_label == NULL)
        return DDSM_E_ARG;
    if (!fp_well_formed(pin->fingerprint))
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_INPUT,
                            "a root fingerprint is 32 lower-case hex digits");
    ddsm_err err = has_table(st, &table);
    if (err != DDSM_OK)
        return err;
    if (!table)
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STATE,
                            "the store has no root pin table (migration 005_root_pin): run "
                            "`ddsmctl db migrate`");
    const char *values[7] = {pin->fingerprint, ddsm_pin_event_name(pin->event),
                             pin->token_label, pin->key_label,
                             pin->unique_id,   pin->check_value,
                             pin->not_enforced};
    err =
        ddsm_store_run_params(st, "record the root pin", record_sql, 7, values, false, &res, NULL);
    PQclear(res);
    return err;
}

bool ddsm_root_pins_has(const ddsm_root_pins *pins, const char *fp)
{
    bool found = false;
    if (pins == NULL || fp == NULL || strlen(fp) != DDSM_FINGERPRINT_HEX)
        return false;
    for (size_t i = 0; i < pins->count; i++)
        found |= ddsm_ct_equal(pins->fingerprint[i], fp, DDSM_FINGERPRINT_HEX);
    return found;
}
