/* SPDX-License-Identifier: Apache-2.0 */
/* The policy gate's answers to a call (policy.h): a refusal gets its detail code, its DENY row,
 * its log line and its count here, at the level of the check ladder; the gate's state is
 * policy.c's. */
#include "policy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ctx.h"
#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ladder.h"
#include "rv.h"

static CK_ULONG detail_of(ddsm_deny_reason why)
{
    switch (why) {
    case DDSM_DENY_PATH:
        return DDSM_DEVERR_POLICY_PATH;
    case DDSM_DENY_RATE_ASSET:
        return DDSM_DEVERR_POLICY_RATE_ASSET;
    case DDSM_DENY_RATE_REQUESTER:
        return DDSM_DEVERR_POLICY_RATE_REQUESTER;
    case DDSM_DENY_ZONE:
        return DDSM_DEVERR_POLICY_ZONE;
    case DDSM_DENY_MECHANISM:
        return DDSM_DEVERR_POLICY_MECHANISM;
    default:
        return DDSM_DEVERR_NONE;
    }
}

CK_RV ddsm_mpolicy_refuse(ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                          ddsm_deny_reason why, const char *reason)
{
    char id[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(asset, id);
    ddsm_log(DDSM_LOG_INFO, "%s: refused by policy: asset %s path %s: %s", c->fn, id,
             canon_path != NULL ? canon_path : "-", reason);
    c->detail = detail_of(why);
    ddsm_metrics_denied(c->ctx->metrics, why, DDSM_STATE__COUNT);
    if (why == DDSM_DENY_PATH)
        ddsm_vkey_record_denial_bounded(c, asset, canon_path, reason);
    else
        ddsm_vkey_record_denial(c, asset, canon_path, reason);
    return CKR_FUNCTION_REJECTED;
}

CK_RV ddsm_mpolicy_rate(ddsm_call *c, const ddsm_uuid *asset, const char *canon_path,
                        const char *requester)
{
    ddsm_deny_reason why = DDSM_DENY_RATE_REQUESTER;
    char reason[DDSM_MPOLICY_REASON_MAX];
    ddsm_err e = DDSM_OK;
    switch (ddsm_mpolicy_rate_take(c->ctx->policy, asset, requester, &why, reason, &e)) {
    case DDSM_MPOLICY_PASS:
        return CKR_OK;
    case DDSM_MPOLICY_FAIL:
        return ddsm_call_err(c, e, DDSM_RVCTX_DERIVE); /* fail closed */
    case DDSM_MPOLICY_REFUSE:
        break;
    }
    return ddsm_mpolicy_refuse(c, asset, canon_path, why, reason);
}

CK_RV ddsm_mpolicy_mechanism(ddsm_call *c, const ddsm_hentry *e, CK_MECHANISM_TYPE m)
{
    if (ddsm_mpolicy_mech_allowed(c->ctx->policy, m))
        return CKR_OK;
    char reason[128];
    snprintf(reason, sizeof(reason), "mechanism %s is not allowed by policy", ddsm_mech_name(m));
    return ddsm_mpolicy_refuse(c, &e->asset, e->path, DDSM_DENY_MECHANISM, reason);
}

CK_RV ddsm_mpolicy_zone_refused(ddsm_call *c, const ddsm_uuid *asset, const char *store_msg)
{
    /* "asset <uuid>: refused: zone <name> is disabled" (ddsm-core store_derive.c,
     * ddsm_batch_item_result) */
    char zone[DDSM_ZONE_NAME_MAX + 1] = "?";
    const char *z = store_msg != NULL ? strstr(store_msg, "zone ") : NULL;
    if (z != NULL) {
        z += 5;
        size_t n = strcspn(z, " ");
        if (n > 0 && n <= DDSM_ZONE_NAME_MAX) {
            memcpy(zone, z, n);
            zone[n] = '\0';
        }
    }
    if (!ddsm_zone_name_valid(zone))
        snprintf(zone, sizeof(zone), "?");
    char id[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(asset, id);
    ddsm_log(DDSM_LOG_INFO, "%s: refused by policy: asset %s: zone %s is disabled", c->fn, id,
             zone);
    ddsm_ctx_zone_note(c->ctx, asset, false, zone);
    ddsm_metrics_denied(c->ctx->metrics, DDSM_DENY_ZONE, DDSM_STATE__COUNT);
    c->detail = DDSM_DEVERR_POLICY_ZONE;
    return CKR_FUNCTION_REJECTED;
}

CK_RV ddsm_mpolicy_key_use(ddsm_call *c, const ddsm_hentry *e, ddsm_use use)
{
    static const char *const uses[] = {"sign", "verify", "encrypt", "decrypt", "object"};
    char zone[DDSM_ZONE_NAME_MAX + 1];
    if (use == DDSM_USE_OBJECT || !ddsm_mpolicy_zone_off(c->ctx->policy, &e->asset, zone))
        return CKR_OK;
    char reason[DDSM_ZONE_NAME_MAX + 64];
    snprintf(reason, sizeof(reason), "zone %s is disabled; %s refused", zone,
             (unsigned)use < sizeof(uses) / sizeof(uses[0]) ? uses[use] : "use");
    return ddsm_mpolicy_refuse(c, &e->asset, e->path, DDSM_DENY_ZONE, reason);
}
