/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "audit_support.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ddsm/derive.h"
#include "pg_support.h"

static atomic_uint g_unique_seq; /* writer threads of the audit tests name assets too */

int aus_key(uint8_t seed_first, ddsm_audit_key **key)
{
    uint8_t seed[32];
    ddsm_prf prf;
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(seed_first + i);
    if (ddsm_prf_openssl_new(seed, sizeof seed, &prf) != DDSM_OK)
        return -1;
    ddsm_err e = ddsm_audit_key_derive(&prf, key);
    ddsm_prf_openssl_free(&prf);
    return e == DDSM_OK ? 0 : -1;
}

int aus_open(uint8_t seed_first, const char *instance_prefix, ddsm_audit_key **key, ddsm_store **st,
             PGconn **pg)
{
    char inst[128];
    ddsm_audit_key *k = NULL;
    ddsm_store *s = NULL;
    int ret = -1;
    if (aus_key(seed_first, &k) != 0)
        goto out;
    if (ddsm_store_open(pgs_conninfo(), NULL, &s) != DDSM_OK ||
        ddsm_store_migrate(s, NULL) != DDSM_OK ||
        ddsm_audit_instance_id(instance_prefix, inst, sizeof inst) != DDSM_OK ||
        ddsm_store_attach_audit(s, k, inst) != DDSM_OK) {
        fprintf(stderr, "audit fixture: %s\n", s != NULL ? ddsm_store_errmsg(s) : "store open");
        goto out;
    }
    *pg = pgs_connect(pgs_conninfo());
    *key = k;
    *st = s;
    k = NULL;
    s = NULL;
    ret = 0;
out:
    ddsm_store_close(s);
    ddsm_audit_key_free(k);
    return ret;
}

void aus_close(ddsm_audit_key *key, ddsm_store *st, PGconn *pg)
{
    ddsm_store_close(st);
    ddsm_audit_key_free(key);
    PQfinish(pg);
}

void aus_unique(const char *prefix, char *out, size_t cap)
{
    snprintf(out, cap, "%s-%u-%u", prefix, (unsigned)getpid(),
             atomic_fetch_add(&g_unique_seq, 1) + 1);
}

/* Fail the test with the store's message unless e is DDSM_OK. */
static void asset_step_ok(ddsm_store *st, ddsm_err e, const char *step, const char *label)
{
    if (e != DDSM_OK)
        fail_msg("%s %s returned %s: %s", step, label, ddsm_err_str(e), ddsm_store_errmsg(st));
}

ddsm_asset aus_asset(ddsm_store *st, const char *prefix, const char *requester, ddsm_state target)
{
    char label[80];
    ddsm_asset a;
    aus_unique(prefix, label, sizeof label);
    asset_step_ok(st, ddsm_store_asset_register(st, NULL, label, "hmac", "m/0", requester, &a),
                  "registering", label);
    if (target == DDSM_STATE_INITIALIZED)
        return a;
    asset_step_ok(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ACTIVATE, 0, requester, &a),
                  "activating", label);
    if (target == DDSM_STATE_RETIRED)
        asset_step_ok(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_RETIRE, 0, requester, &a),
                      "retiring", label);
    return a;
}
