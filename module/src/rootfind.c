/* SPDX-License-Identifier: Apache-2.0 */
#include "rootfind.h"

#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/rootpin.h"
#include "ddsm/secmem.h"
#include "hsmcall.h"
#include "rv.h"

/* Private objects carrying the root's label that one lookup examines. Only someone holding the
 * token's user PIN can make private objects, so a caller without it cannot push the root past this
 * bound; past it the lookup fails closed and says why. Public objects with the label, which anyone
 * can make, are only counted for the log (up to the same bound), never fingerprinted. */
#define CANDIDATES_MAX 4096
#define FIND_CHUNK 64

/* A lookup runs at the first derivation and again after a login change or a stale handle, so a
 * failing or crowded token is logged when what the lookup sees changes, not at every call. */
static bool first_time_ignored(ddsm_rootfind *rf, unsigned n)
{
    return atomic_exchange(&rf->logged_ignored, n + 1) != n + 1;
}

static bool first_time_detail(ddsm_rootfind *rf, CK_ULONG d)
{
    return atomic_exchange(&rf->logged_detail, d + 1) != d + 1;
}

/* The backend's answers that say "this object cannot HMAC": the object is not the root. Any
 * other failure (a lost session, a device error) fails the lookup: it proves nothing. */
static bool not_this_key(CK_RV rv)
{
    switch (rv) {
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_SIZE_RANGE:
    case CKR_MECHANISM_INVALID:
        return true;
    default:
        return false;
    }
}

static CK_RV pins_read(ddsm_rootfind *rf, ddsm_root_pins *pins, CK_ULONG *detail)
{
    ddsm_store *st = NULL;
    ddsm_err e = rf->pins.acquire(rf->pins.owner, &st);
    if (e == DDSM_OK) {
        e = ddsm_store_root_pins(st, pins);
        if (e != DDSM_OK)
            ddsm_log(DDSM_LOG_ERROR, "cannot read the root pin: %s", ddsm_store_errmsg(st));
        rf->pins.release(rf->pins.owner, st);
    } else {
        ddsm_log(DDSM_LOG_ERROR, "cannot read the root pin: no store connection: %s",
                 ddsm_err_str(e));
    }
    if (e != DDSM_OK)
        return ddsm_rv_from_err(e, DDSM_RVCTX_GENERAL, detail);
    if (!pins->table || pins->count == 0) {
        if (first_time_detail(rf, DDSM_DEVERR_ROOT_UNPINNED))
            ddsm_log(DDSM_LOG_ERROR,
                     "the store pins no root seed key%s: derivations are refused until an "
                     "administrator runs %s`ddsmctl root pin` (docs/root.md)",
                     pins->table ? "" : " (its schema predates the root pin)",
                     pins->table ? "" : "`ddsmctl db migrate`, then ");
        *detail = DDSM_DEVERR_ROOT_UNPINNED;
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

/* The secret keys labelled like the root whose CKA_PRIVATE is priv, visible through s (at most
 * CANDIDATES_MAX; *more when there were further ones). out NULL: only count them. */
static CK_RV labelled(const char *label, CK_FUNCTION_LIST_PTR be, CK_SESSION_HANDLE s,
                      CK_BBOOL priv, CK_OBJECT_HANDLE **out, size_t *n, bool *more)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_PRIVATE, &priv, sizeof(priv)},
    };
    CK_OBJECT_HANDLE chunk[FIND_CHUNK];
    CK_OBJECT_HANDLE *h = NULL;
    size_t have = 0;
    *more = false;
    CK_RV rv = be->C_FindObjectsInit(s, t, 3);
    if (rv != CKR_OK)
        return rv;
    for (;;) {
        CK_ULONG got = 0;
        rv = be->C_FindObjects(s, chunk, FIND_CHUNK, &got);
        if (rv != CKR_OK || got == 0)
            break;
        if (have + got > CANDIDATES_MAX) {
            *more = true;
            got = CANDIDATES_MAX - have;
        }
        if (out != NULL) {
            CK_OBJECT_HANDLE *grown = realloc(h, (have + got + 1) * sizeof(*h));
            if (grown == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            h = grown;
            memcpy(h + have, chunk, got * sizeof(*h));
        }
        have += got;
        if (*more)
            break;
    }
    CK_RV rv2 = be->C_FindObjectsFinal(s);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK) {
        free(h);
        return rv;
    }
    if (out != NULL)
        *out = h;
    else
        free(h);
    *n = have;
    return CKR_OK;
}

/* Only a private generic secret can be a root made by ddsmctl: anything else is not fingerprinted
 * (and an object nobody logged in could make is never asked to sign). */
static bool root_shaped(CK_FUNCTION_LIST_PTR be, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
    CK_BBOOL priv = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_PRIVATE, &priv, sizeof(priv)},
    };
    return be->C_GetAttributeValue(s, h, t, 2) == CKR_OK && kt == CKK_GENERIC_SECRET &&
           priv == CK_TRUE;
}

CK_RV ddsm_root_find(ddsm_rootfind *rf, ddsm_hsm *h, ddsm_hsmcall *calls, CK_SESSION_HANDLE s,
                     CK_OBJECT_HANDLE *root, bool *quarantined, CK_ULONG *detail)
{
    ddsm_root_pins pins;
    CK_OBJECT_HANDLE *cand = NULL;
    size_t n = 0;
    bool more = false;
    CK_OBJECT_HANDLE found = CK_INVALID_HANDLE;
    char found_fp[DDSM_FINGERPRINT_HEX + 1] = "";
    unsigned ignored = 0;
    *quarantined = false;
    CK_RV rv = pins_read(rf, &pins, detail);
    if (rv != CKR_OK)
        return rv;
    size_t n_public = 0;
    bool more_public = false;
    /* The primary's root token, or the standby token (standby.h). */
    CK_FUNCTION_LIST_PTR be = ddsm_hsm_functions(h);
    rv = labelled(rf->label, be, s, CK_TRUE, &cand, &n, &more);
    if (rv == CKR_OK)
        rv = labelled(rf->label, be, s, CK_FALSE, NULL, &n_public, &more_public);
    if (rv != CKR_OK) {
        rv = ddsm_rv_from_backend(rv, detail);
        goto out;
    }
    ignored = (unsigned)n_public;
    for (size_t i = 0; i < n; i++) {
        char fp[DDSM_FINGERPRINT_HEX + 1];
        if (!root_shaped(be, s, cand[i])) {
            ignored++;
            continue;
        }
        ddsm_hsmcall_prf_ctx pctx;
        ddsm_prf prf;
        ddsm_hsmcall_prf_init(&pctx, calls, h, s, cand[i], &prf);
        ddsm_err e = ddsm_root_fingerprint(&prf, fp);
        if (e != DDSM_OK && pctx.status != DDSM_HSMCALL_ANSWERED) {
            ddsm_log(DDSM_LOG_ERROR, "cannot fingerprint the root: the HSM did not answer in %u ms",
                     rf->timeout_ms);
            *quarantined = pctx.status == DDSM_HSMCALL_QUARANTINED;
            *detail = DDSM_DEVERR_TIMEOUT;
            rv = CKR_DEVICE_ERROR;
            goto out;
        }
        if (e == DDSM_E_HSM && !not_this_key(pctx.last_rv)) {
            ddsm_log(DDSM_LOG_ERROR, "cannot fingerprint the root: %s", ddsm_rv_name(pctx.last_rv));
            rv = ddsm_rv_from_backend(pctx.last_rv, detail);
            goto out;
        }
        if (e != DDSM_OK) {
            if (e != DDSM_E_HSM) {
                rv = ddsm_rv_from_err(e, DDSM_RVCTX_GENERAL, detail);
                goto out;
            }
            ignored++; /* an object that cannot HMAC: an impostor need not be able to */
            continue;
        }
        if (!ddsm_root_pins_has(&pins, fp)) {
            ignored++;
            continue;
        }
        if (found == CK_INVALID_HANDLE) {
            found = cand[i];
            memcpy(found_fp, fp, sizeof(fp));
        } else if (!ddsm_ct_equal(found_fp, fp, DDSM_FINGERPRINT_HEX)) {
            /* Two different roots this store accepts, on one token: an operator's mistake that
             * no one without the store's admin role and the token's PIN can make. */
            if (first_time_detail(rf, DDSM_DEVERR_ROOT_AMBIGUOUS))
                ddsm_log(DDSM_LOG_ERROR,
                         "the root token holds two different pinned roots labelled \"%s\" "
                         "(fingerprints %s and %s): refusing to choose",
                         rf->label, found_fp, fp);
            *detail = DDSM_DEVERR_ROOT_AMBIGUOUS;
            rv = CKR_DEVICE_ERROR;
            goto out;
        }
        /* else: the same root twice (a copy): either handle derives the same keys. */
    }
    if (ignored > 0 && first_time_ignored(rf, ignored))
        ddsm_log(DDSM_LOG_WARN,
                 "ignoring %u object%s labelled \"%s\" on the root token whose fingerprint is "
                 "not pinned (an impostor or a stale key: see docs/root.md)%s",
                 ignored, ignored == 1 ? "" : "s", rf->label,
                 more || more_public ? "; more were not examined" : "");
    if (found == CK_INVALID_HANDLE) {
        CK_ULONG d = n == 0 && n_public == 0 ? DDSM_DEVERR_ROOT_MISSING : DDSM_DEVERR_ROOT_MISMATCH;
        if (first_time_detail(rf, d))
            ddsm_log(DDSM_LOG_ERROR,
                     d == DDSM_DEVERR_ROOT_MISSING
                         ? "no secret key labelled \"%s\" on the root token"
                         : "no secret key labelled \"%s\" on the root token has a fingerprint "
                           "the store pins (`ddsmctl root info` shows both)",
                     rf->label);
        *detail = d;
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    atomic_store(&rf->logged_detail, 0);
    *root = found;
    ddsm_log(DDSM_LOG_DEBUG, "root seed key is object 0x%lx (fingerprint %s)", (unsigned long)found,
             found_fp);
    rv = CKR_OK;
out:
    free(cand);
    return rv;
}
