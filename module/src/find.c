/* SPDX-License-Identifier: Apache-2.0 */
/* Finding objects: the backend's objects first, then virtual ones.
 *
 * Virtual candidates (only for a session in a user state; none otherwise):
 *  - CKA_LABEL "<asset uuid>/<path>" or "<asset label>/<path>": that key at the asset's current
 *    counter (the label is the lookup key: any hardening spelling of the path is accepted);
 *  - else CKA_ID (the asset UUID bytes then the path, ddsm_key_id): that key likewise; an id that
 *    names no asset key (too short, the nil UUID, a malformed path) finds no virtual object and
 *    costs no store round trip;
 *  - else CKA_DDSM_ASSET_ID (+ CKA_DDSM_PATH, default: the asset's default path): likewise;
 *  - else one object per ACTIVE/ROTATING asset at its default path;
 *  - then the session's own session objects (C_DeriveKey with CKA_TOKEN false) that match every
 *    attribute of the template and whose counter is still usable.
 * An asset of an EC key type (ec.h) has two objects where others have one: its private key and
 * then its public key, with the same label and CKA_ID (an Ed25519 path with a normal index has
 * none). Every other template attribute filters the candidates by value (CKA_CLASS =
 * CKO_PUBLIC_KEY finds only EC public keys, CKA_KEY_TYPE = CKK_AES finds none for HMAC assets, an
 * attribute these objects do not have, a sensitive value or CKA_EC_POINT never matches). Paths the policy refuses are not listed. Finding reads the
 * store once and writes nothing: derivation and its audit row happen at first use. A find of one
 * asset (by label or CKA_DDSM_ASSET_ID) does not even read the store while the module's record of
 * the asset is as fresh as signing requires: kept current by NOTIFY while the LISTEN link is up,
 * else younger than [cache] staleness_ms (labels and default paths, which no NOTIFY announces,
 * are trusted for staleness_ms only). Such a find allocates nothing either: its few candidates
 * live in the session (DDSM_FIND_INLINE), and only a longer list goes to the heap.
 *
 * When the store is needed for a find and cannot answer, C_FindObjectsInit fails with
 * CKR_DEVICE_ERROR (ulDeviceError DDSM_DEVERR_STORE_DOWN) and leaves no operation active: an
 * application that never calls C_FindObjectsFinal after a failed step (PyKCS11 does not) would
 * otherwise get CKR_OPERATION_ACTIVE from every later find of the session. A find the store cannot
 * serve never silently returns no virtual objects. A template with a CKA_DDSM_* attribute is not
 * sent to the backend (its objects cannot match).
 *
 * A backend object handle with the top bit set is dropped (it would be misread as ours). The
 * backend's part of the search ends only when the backend returns no handle at all (PKCS#11's end
 * of a search; a short batch is not one), never because dropping handles emptied a batch. */
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/pkcs11-ddsm.h"
#include "ddsm/state.h"
#include "ec.h"
#include "entry.h"
#include "handles.h"
#include "ladder.h"
#include "rv.h"
#include "sesstab.h"
#include "vattr.h"
#include "vkey.h"

#define LOOKUP_MAX (DDSM_ASSET_LABEL_MAX + 1 + DDSM_PATH_TEXT_MAX + 64)

/* The candidates: in few while they fit (no allocation for the find of one asset), else on the
 * heap. */
typedef struct cand_list {
    CK_OBJECT_HANDLE *h;
    size_t n, cap;
    CK_OBJECT_HANDLE few[DDSM_FIND_INLINE];
} cand_list;

static void cand_init(cand_list *l)
{
    l->h = l->few;
    l->n = 0;
    l->cap = DDSM_FIND_INLINE;
}

static void cand_free(cand_list *l)
{
    if (l->h != l->few)
        free(l->h);
    cand_init(l);
}

typedef struct find_req {
    ddsm_call *c;
    const CK_ATTRIBUTE *t;
    CK_ULONG n;
    bool by_label;    /* CKA_LABEL was the lookup key: not compared as a filter */
    const char *path; /* the path asked for, NULL: each asset's default */
    cand_list *out;
    CK_RV rv;
} find_req;

static bool is_vendor(CK_ATTRIBUTE_TYPE t)
{
    return t == CKA_DDSM_ASSET_ID || t == CKA_DDSM_PATH || t == CKA_DDSM_COUNTER ||
           t == CKA_DDSM_STATE;
}

/* Whether every filter attribute of the template has this value on the object (vattr.h). */
static bool matches(const find_req *r, const ddsm_hentry *e)
{
    return ddsm_vattr_match(e, r->t, r->n, r->by_label);
}

static CK_RV cand_push(cand_list *l, CK_OBJECT_HANDLE h)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->h[i] == h)
            return CKR_OK;
    if (l->n == l->cap) {
        size_t cap = 2 * l->cap;
        CK_OBJECT_HANDLE *bigger = realloc(l->h != l->few ? l->h : NULL, cap * sizeof(*bigger));
        if (bigger == NULL)
            return CKR_HOST_MEMORY;
        if (l->h == l->few)
            memcpy(bigger, l->few, l->n * sizeof(*bigger));
        l->h = bigger;
        l->cap = cap;
    }
    l->h[l->n++] = h;
    return CKR_OK;
}

/* One asset as the store reported it (from_store: record its state) or as the module's records
 * know it, and list its key if it matches. */
static CK_RV consider(find_req *r, const ddsm_asset *a, bool from_store)
{
    ddsm_ctx *ctx = r->c->ctx;
    char canon[DDSM_PATH_TEXT_MAX];
    ddsm_path p;
    ddsm_asset_rec *rec = ddsm_vkeys_asset(ctx->vkeys, &a->id);
    if (rec == NULL)
        return CKR_HOST_MEMORY;
    if (from_store)
        ddsm_asset_rec_update(ctx->vkeys, rec, a);
    if (!ddsm_state_derivable(a->state))
        return CKR_OK;
    const char *path = r->path != NULL ? r->path : a->default_path;
    if (ddsm_path_parse(path, strlen(path), &p, NULL) != DDSM_OK)
        return CKR_OK;
    ddsm_path_format(&p, canon);
    if (!ddsm_config_path_allowed(ctx->cfg, canon))
        return CKR_OK;

    ddsm_hentry e;
    memset(&e, 0, sizeof(e));
    e.asset = a->id;
    memcpy(e.path, canon, sizeof(canon));
    e.counter = a->counter;
    e.aux = rec;
    /* EC assets have two objects, the private then the public key (ec.h). */
    uint32_t variants[2];
    size_t nv = ddsm_ec_found_variants(a->key_type, ctx->cfg->policy.extractable, &p, variants);
    CK_RV rv = CKR_OK;
    for (size_t i = 0; i < nv && rv == CKR_OK; i++) {
        e.variant = variants[i];
        if (!matches(r, &e))
            continue;
        CK_OBJECT_HANDLE h;
        rv = ddsm_vkey_intern(r->c, &a->id, canon, a->counter, e.variant, &h);
        if (rv == CKR_OK)
            rv = cand_push(r->out, h);
    }
    return rv;
}

static int list_cb(const ddsm_asset *a, void *arg)
{
    find_req *r = arg;
    r->rv = consider(r, a, true);
    return r->rv != CKR_OK;
}

/* Whether a found object of this variant could match, looking only at the attributes that do
 * not depend on the asset. */
static bool variant_may_match(const CK_ATTRIBUTE *t, CK_ULONG n, const ddsm_hentry *e)
{
    for (CK_ULONG i = 0; i < n; i++) {
        switch (t[i].type) {
        case CKA_LABEL:
        case CKA_ID:
        case CKA_UNIQUE_ID:
        case CKA_DDSM_ASSET_ID:
        case CKA_DDSM_PATH:
        case CKA_DDSM_COUNTER:
        case CKA_DDSM_STATE:
            continue;
        default:
            break;
        }
        find_req r = {NULL, &t[i], 1, false, NULL, NULL, CKR_OK};
        if (!matches(&r, e))
            return false;
    }
    return true;
}

/* Whether a found object of this key type (any of its variants) could match. */
static bool type_may_match(const CK_ATTRIBUTE *t, CK_ULONG n, const char *key_type,
                           bool extractable)
{
    ddsm_hentry e;
    uint32_t variants[2];
    size_t nv = ddsm_ec_found_variants(key_type, extractable, NULL, variants);
    for (size_t v = 0; v < nv; v++) {
        memset(&e, 0, sizeof(e));
        strcpy(e.path, "m/0");
        e.variant = variants[v];
        if (variant_may_match(t, n, &e))
            return true;
    }
    return false;
}

/* Whether no virtual object could match whatever the asset, so that such finds (CKA_CLASS =
 * CKO_CERTIFICATE, ...) cost no store round trip. */
static bool hopeless(const CK_ATTRIBUTE *t, CK_ULONG n, bool extractable)
{
    static const char *const types[] = {"hmac", "aes", "secp256k1", "ed25519", "p256"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (type_may_match(t, n, types[i], extractable))
            return false;
    return true;
}

/* The session's own session objects (C_DeriveKey with CKA_TOKEN false) that match the template
 * and are still usable, after the found ones. Every attribute filters here, CKA_LABEL included:
 * a session object is not looked up by its label, only listed. */
static CK_RV owned_candidates(ddsm_call *c, const CK_ATTRIBUTE *t, CK_ULONG n, cand_list *out)
{
    CK_OBJECT_HANDLE few[DDSM_FIND_INLINE], *owned = few;
    size_t count = ddsm_htab_owned(c->ctx->handles, c->sess->h, few, DDSM_FIND_INLINE);
    CK_RV rv = CKR_OK;
    if (count > DDSM_FIND_INLINE) {
        /* Objects may come and go between the two walks: the second one's count is the list. */
        size_t cap = count + DDSM_FIND_INLINE;
        owned = malloc(cap * sizeof(*owned));
        if (owned == NULL)
            return CKR_HOST_MEMORY;
        count = ddsm_htab_owned(c->ctx->handles, c->sess->h, owned, cap);
        if (count > cap)
            count = cap;
    }
    for (size_t i = 0; i < count && rv == CKR_OK; i++) {
        ddsm_hentry e;
        if (ddsm_htab_get(c->ctx->handles, owned[i], &e) != CKR_OK)
            continue; /* destroyed meanwhile */
        if (!ddsm_vattr_match(&e, t, n, false))
            continue;
        CK_RV use = ddsm_vkey_check(c, &e, DDSM_USE_OBJECT);
        if (use == CKR_OBJECT_HANDLE_INVALID)
            continue; /* rotated away or retired: no longer an object */
        rv = use == CKR_OK ? cand_push(out, owned[i]) : use;
    }
    if (owned != few)
        free(owned);
    return rv;
}

/* Collect the virtual candidates. Store errors come back as (rv, detail) for C_FindObjects. */
static CK_RV virtual_candidates(ddsm_call *c, const CK_ATTRIBUTE *t, CK_ULONG n, cand_list *out,
                                CK_ULONG *detail)
{
    const CK_ATTRIBUTE *label = NULL, *asset_id = NULL, *path_attr = NULL, *key_id = NULL;
    char lookup[LOOKUP_MAX], path[DDSM_PATH_TEXT_MAX + 64];
    ddsm_uuid id_asset = {{0}};
    ddsm_store *st = NULL;
    ddsm_asset a;
    ddsm_err err = DDSM_OK;
    find_req r = {c, t, n, false, NULL, out, CKR_OK};

    if (!ddsm_session_is_user(c) || hopeless(t, n, c->ctx->cfg->policy.extractable))
        return CKR_OK;
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].type == CKA_LABEL)
            label = &t[i];
        else if (t[i].type == CKA_DDSM_ASSET_ID)
            asset_id = &t[i];
        else if (t[i].type == CKA_DDSM_PATH)
            path_attr = &t[i];
        else if (t[i].type == CKA_ID)
            key_id = &t[i];
    }
    if (label != NULL) {
        /* "<uuid or asset label>/<path>": asset labels never contain '/'. */
        if (label->pValue == NULL || label->ulValueLen >= sizeof(lookup))
            return CKR_OK;
        memcpy(lookup, label->pValue, label->ulValueLen);
        lookup[label->ulValueLen] = '\0';
        char *slash = strchr(lookup, '/');
        if (slash == NULL || memchr(lookup, '\0', label->ulValueLen) != NULL)
            return CKR_OK;
        *slash = '\0';
        r.path = slash + 1;
        r.by_label = true;
    } else if (key_id != NULL) {
        /* The id names its key (vattr.c still compares it, in canonical form). */
        ddsm_path p;
        if (key_id->pValue == NULL ||
            ddsm_key_id_parse(key_id->pValue, key_id->ulValueLen, &id_asset, &p) != DDSM_OK)
            return CKR_OK;
        ddsm_path_format(&p, path);
        r.path = path;
        asset_id = NULL; /* a filter now, compared by value */
    } else if (asset_id != NULL) {
        if (asset_id->pValue == NULL || asset_id->ulValueLen != 16)
            return CKR_OK;
    }
    if (path_attr != NULL && label == NULL && key_id == NULL) {
        if (path_attr->pValue == NULL || path_attr->ulValueLen >= sizeof(path))
            return CKR_OK;
        memcpy(path, path_attr->pValue, path_attr->ulValueLen);
        path[path_attr->ulValueLen] = '\0';
        r.path = path;
    }

    if (label != NULL || key_id != NULL || asset_id != NULL) {
        /* One asset: the records kept current by NOTIFY answer without a round trip while they
         * are as fresh as signing requires (vkey.h ddsm_vkeys_asset_fresh). */
        ddsm_uuid id = id_asset;
        if (asset_id != NULL)
            memcpy(id.b, asset_id->pValue, 16);
        if (ddsm_vkeys_asset_fresh(c->ctx->vkeys, label != NULL ? lookup : NULL,
                                   label != NULL ? NULL : &id, r.path == NULL, &a))
            return consider(&r, &a, false);
    }
    err = ddsm_ctx_store_acquire(c->ctx, &st);
    if (err != DDSM_OK)
        goto out;
    if (label != NULL || key_id != NULL || asset_id != NULL) {
        if (label != NULL) {
            err = ddsm_store_asset_find(st, lookup, &a);
        } else {
            ddsm_uuid id = id_asset;
            if (asset_id != NULL)
                memcpy(id.b, asset_id->pValue, 16);
            err = ddsm_store_asset_get(st, &id, &a);
        }
        if (err == DDSM_E_NOT_FOUND || err == DDSM_E_UUID || err == DDSM_E_INPUT) {
            err = DDSM_OK; /* no such asset: nothing to find */
        } else if (err == DDSM_OK) {
            r.rv = consider(&r, &a, true);
        }
    } else {
        err = ddsm_store_asset_list(st, list_cb, &r);
    }
    ddsm_ctx_store_release(c->ctx, st);
out:
    if (err != DDSM_OK) {
        ddsm_log(DDSM_LOG_WARN, "find: virtual objects unavailable: %s", ddsm_err_str(err));
        return ddsm_rv_from_err(err, DDSM_RVCTX_GENERAL, detail);
    }
    return r.rv;
}

CK_RV ddsm_C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate,
                             CK_ULONG ulCount)
{
    cand_list cands;
    CK_ULONG detail = 0;
    bool be_active = false;
    cand_init(&cands);
    DDSM_CALL(c, "C_FindObjectsInit");
    DDSM_LADDER_SESSION(c, hSession, pTemplate != NULL || ulCount == 0);

    ddsm_mutex_lock(c.sess->lock);
    bool busy = c.sess->find.active;
    ddsm_mutex_unlock(c.sess->lock);
    if (busy) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    bool vendor = false;
    for (CK_ULONG i = 0; i < ulCount; i++)
        vendor = vendor || is_vendor(pTemplate[i].type);
    if (!vendor) {
        rv = c.ctx->be->C_FindObjectsInit(hSession, pTemplate, ulCount);
        if (rv != CKR_OK)
            goto out;
        be_active = true;
    }
    rv = virtual_candidates(&c, pTemplate, ulCount, &cands, &detail);
    if (rv == CKR_OK && ddsm_session_is_user(&c))
        rv = owned_candidates(&c, pTemplate, ulCount, &cands);
    if (rv != CKR_OK) {
        c.detail = detail;
        goto out; /* the backend's part ends below: nothing is left active */
    }

    ddsm_mutex_lock(c.sess->lock);
    if (c.sess->find.active) {
        rv = CKR_OPERATION_ACTIVE;
    } else {
        ddsm_find *f = &c.sess->find;
        f->active = true;
        f->be_active = be_active;
        f->be_done = !be_active;
        f->n_virt = cands.n;
        f->pos = 0;
        if (cands.h == cands.few) {
            memcpy(f->few, cands.few, cands.n * sizeof(f->few[0]));
            f->virt = f->few;
        } else {
            f->virt = cands.h;
            cand_init(&cands);
        }
        be_active = false; /* the session owns it now */
    }
    ddsm_mutex_unlock(c.sess->lock);
out:
    if (be_active)
        (void)c.ctx->be->C_FindObjectsFinal(hSession);
    cand_free(&cands);
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                         CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
    CK_ULONG got = 0;
    DDSM_CALL(c, "C_FindObjects");
    DDSM_LADDER_SESSION(c, hSession, phObject != NULL && pulObjectCount != NULL);

    ddsm_mutex_lock(c.sess->lock);
    ddsm_find *f = &c.sess->find;
    bool active = f->active, from_backend = f->active && !f->be_done;
    ddsm_mutex_unlock(c.sess->lock);
    if (!active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    bool be_exhausted = false;
    while (from_backend && !be_exhausted && got < ulMaxObjectCount) {
        /* The backend's objects first; no lock held across its call. */
        CK_ULONG want = ulMaxObjectCount - got, n = 0;
        rv = c.ctx->be->C_FindObjects(hSession, phObject + got, want, &n);
        if (rv != CKR_OK)
            goto out;
        if (n > want) {
            rv = ddsm_call_backend(&c, CKR_DEVICE_ERROR);
            goto out;
        }
        be_exhausted = n == 0;
        CK_ULONG base = got;
        for (CK_ULONG i = 0; i < n; i++) {
            CK_OBJECT_HANDLE h = phObject[base + i];
            if (h >= DDSM_HANDLE_TOP) {
                /* A backend handle in our half of the space would be misread: refuse it. */
                ddsm_log(DDSM_LOG_ERROR, "backend object handle 0x%lx has the top bit set",
                         (unsigned long)h);
                continue;
            }
            phObject[got++] = h;
        }
    }
    ddsm_mutex_lock(c.sess->lock);
    if (!f->active) {
        ddsm_mutex_unlock(c.sess->lock);
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    if (from_backend && be_exhausted)
        f->be_done = true;
    while (f->be_done && got < ulMaxObjectCount && f->pos < f->n_virt)
        phObject[got++] = f->virt[f->pos++];
    ddsm_mutex_unlock(c.sess->lock);
    if (rv == CKR_OK)
        *pulObjectCount = got;
out:
    return ddsm_call_end(&c, rv);
}

CK_RV ddsm_C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
    DDSM_CALL(c, "C_FindObjectsFinal");
    DDSM_LADDER_SESSION(c, hSession, 1);
    ddsm_mutex_lock(c.sess->lock);
    ddsm_find *f = &c.sess->find;
    bool active = f->active, be_active = f->be_active;
    ddsm_find_reset(f);
    ddsm_mutex_unlock(c.sess->lock);
    if (!active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    if (be_active)
        rv = c.ctx->be->C_FindObjectsFinal(hSession);
out:
    return ddsm_call_end(&c, rv);
}
