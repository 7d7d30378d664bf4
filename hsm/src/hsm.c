/* SPDX-License-Identifier: Apache-2.0 */
#include "ddsm/hsm.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/log.h"
#include "ddsm/secmem.h"

struct ddsm_hsm {
    void *dl;
    CK_FUNCTION_LIST_PTR fl;
    int we_initialized; /* only then do we C_Finalize */
};

CK_RV ddsm_hsm_load(const char *path, ddsm_hsm **out, char *why, size_t why_len)
{
    CK_RV rv = CKR_GENERAL_ERROR;
    ddsm_hsm *h = NULL;

    if (path == NULL || out == NULL) {
        snprintf(why, why_len, "no backend module configured");
        return CKR_ARGUMENTS_BAD;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(why, why_len, "out of memory");
        return CKR_HOST_MEMORY;
    }
    h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h->dl == NULL) {
        snprintf(why, why_len, "cannot load backend module %s: %s", path, dlerror());
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    ddsm_C_GetInterface_fn get_interface =
        (ddsm_C_GetInterface_fn)(uintptr_t)dlsym(h->dl, "C_GetInterface");
    if (get_interface != NULL) {
        CK_INTERFACE_PTR iface = NULL;
        if (get_interface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &iface, 0) == CKR_OK &&
            iface != NULL && iface->pFunctionList != NULL)
            h->fl = (CK_FUNCTION_LIST_PTR)iface->pFunctionList;
    }
    if (h->fl == NULL) {
        CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)dlsym(h->dl, "C_GetFunctionList");
        if (gfl == NULL) {
            snprintf(why, why_len, "%s exports no C_GetFunctionList", path);
            rv = CKR_DEVICE_ERROR;
            goto out;
        }
        rv = gfl(&h->fl);
        if (rv != CKR_OK || h->fl == NULL) {
            snprintf(why, why_len, "%s: C_GetFunctionList failed: %s", path, ddsm_rv_name(rv));
            rv = CKR_DEVICE_ERROR;
            goto out;
        }
    }
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = h->fl->C_Initialize(&args);
    if (rv == CKR_OK) {
        h->we_initialized = 1;
    } else if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        rv = CKR_OK;
    } else {
        snprintf(why, why_len, "%s: C_Initialize failed: %s", path, ddsm_rv_name(rv));
        goto out;
    }
    *out = h;
    h = NULL;
out:
    if (h != NULL) {
        if (h->dl != NULL)
            dlclose(h->dl);
        free(h);
    }
    return rv;
}

void ddsm_hsm_unload(ddsm_hsm *h)
{
    if (h == NULL)
        return;
    if (h->we_initialized)
        (void)h->fl->C_Finalize(NULL);
    dlclose(h->dl);
    free(h);
}

void ddsm_hsm_abandon(ddsm_hsm *h)
{
    /* The library stays mapped: the parent's backend state in this child is not ours to touch. */
    free(h);
}

CK_FUNCTION_LIST_PTR ddsm_hsm_functions(const ddsm_hsm *h)
{
    return h->fl;
}

static int padded_equal(const CK_UTF8CHAR *field, size_t field_len, const char *s)
{
    size_t n = strlen(s);
    if (n > field_len || memcmp(field, s, n) != 0)
        return 0;
    for (size_t i = n; i < field_len; i++)
        if (field[i] != ' ' && field[i] != '\0')
            return 0;
    return 1;
}

CK_RV ddsm_hsm_find_token(ddsm_hsm *h, const char *label, CK_SLOT_ID *slot)
{
    CK_ULONG n = 0;
    CK_SLOT_ID *slots = NULL;
    CK_RV rv = h->fl->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return rv;
    if (n == 0)
        return CKR_TOKEN_NOT_PRESENT;
    slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return CKR_HOST_MEMORY;
    rv = h->fl->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK)
        goto out;
    rv = CKR_TOKEN_NOT_PRESENT;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (h->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (padded_equal(ti.label, sizeof(ti.label), label)) {
            *slot = slots[i];
            rv = CKR_OK;
            break;
        }
    }
out:
    free(slots);
    return rv;
}

CK_RV ddsm_hsm_find_object(ddsm_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                           const char *label, CK_OBJECT_HANDLE *out, unsigned *count)
{
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = h->fl->C_FindObjectsInit(s, tmpl, 2);
    if (rv != CKR_OK)
        return rv;
    rv = h->fl->C_FindObjects(s, found, 2, &n);
    CK_RV rv2 = h->fl->C_FindObjectsFinal(s);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK)
        return rv;
    *count = (unsigned)n;
    if (n == 1)
        *out = found[0];
    return CKR_OK;
}

CK_RV ddsm_hsm_login_secret(ddsm_hsm *h, CK_SESSION_HANDLE s, const char *pin, size_t pin_len)
{
    CK_RV rv = h->fl->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin_len);
    return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

CK_RV ddsm_hsm_hmac_sha256(ddsm_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                           const uint8_t *msg, size_t len, uint8_t out[32])
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG out_len = 32;
    CK_RV rv = h->fl->C_SignInit(s, &mech, key);
    if (rv != CKR_OK)
        return rv;
    rv = h->fl->C_Sign(s, (CK_BYTE_PTR)msg, len, out, &out_len);
    if (rv == CKR_OK && out_len != 32) {
        ddsm_wipe(out, 32);
        rv = CKR_DEVICE_ERROR;
    }
    return rv;
}

static ddsm_err hsm_prf_hmac_root(void *arg, const uint8_t *msg, size_t len, uint8_t out[32])
{
    ddsm_hsm_prf_ctx *ctx = arg;
    ctx->last_rv = ddsm_hsm_hmac_sha256(ctx->hsm, ctx->session, ctx->root, msg, len, out);
    return ctx->last_rv == CKR_OK ? DDSM_OK : DDSM_E_HSM;
}

void ddsm_hsm_prf_init(ddsm_hsm_prf_ctx *ctx, ddsm_hsm *h, CK_SESSION_HANDLE s,
                       CK_OBJECT_HANDLE root, ddsm_prf *out)
{
    ctx->hsm = h;
    ctx->session = s;
    ctx->root = root;
    ctx->last_rv = CKR_OK;
    out->hmac_root = hsm_prf_hmac_root;
    out->ctx = ctx;
}
