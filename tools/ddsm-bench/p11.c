/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 plumbing: the module loaded as an application loads it (dlopen, C_GetFunctionList,
 * C_Initialize, C_Login, C_FindObjects), and the backend HSM loaded directly through ddsm-hsm for
 * the baselines. The PIN is a secret: it stays in secure memory and is never printed. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "ddsm/names.h"
#include "ddsm/secmem.h"

#define LINE_FILE_MAX 4096

bool bench_read_line_secret(const char *file, char *buf, size_t cap, size_t *len, char *why,
                            size_t why_len)
{
    bool ok = false;
    char *text = ddsm_secure_alloc(LINE_FILE_MAX + 1);
    size_t got = 0;
    int fd = -1;

    if (text == NULL) {
        snprintf(why, why_len, "out of secure memory reading %s", file);
        goto out;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_len, "cannot open %s: %s", file, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, text + got, LINE_FILE_MAX - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, why_len, "cannot read %s: %s", file, strerror(errno));
            goto out;
        }
        if (r == 0 || (got += (size_t)r) == LINE_FILE_MAX)
            break;
    }
    size_t n = 0;
    while (n < got && text[n] != '\n')
        n++;
    if (n > 0 && text[n - 1] == '\r')
        n--;
    if (n == 0) {
        snprintf(why, why_len, "%s: the first line is empty", file);
        goto out;
    }
    if (n > cap) {
        snprintf(why, why_len, "%s: the first line is longer than %zu bytes", file, cap);
        goto out;
    }
    memcpy(buf, text, n);
    buf[n] = '\0';
    *len = n;
    ok = true;
out:
    if (fd >= 0)
        close(fd);
    ddsm_secure_free(text, LINE_FILE_MAX + 1);
    return ok;
}

/* The slot whose token carries label. */
static CK_RV find_slot(CK_FUNCTION_LIST_PTR fl, const char *label, CK_SLOT_ID *out)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    size_t want = strlen(label);
    CK_RV rv = fl->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK)
        return rv;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        size_t len = sizeof(ti.label);
        while (len > 0 && ti.label[len - 1] == ' ')
            len--;
        if (len == want && memcmp(ti.label, label, len) == 0) {
            *out = slots[i];
            return CKR_OK;
        }
    }
    return CKR_TOKEN_NOT_PRESENT;
}

/* Every secret key labelled label (at most 2 reported). */
static CK_RV find_secret_key(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, const char *label,
                             CK_OBJECT_HANDLE *out, CK_ULONG *count)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = fl->C_FindObjectsInit(s, t, 2);
    if (rv != CKR_OK)
        return rv;
    rv = fl->C_FindObjects(s, found, 2, &n);
    CK_RV frv = fl->C_FindObjectsFinal(s);
    if (rv == CKR_OK)
        rv = frv;
    if (rv != CKR_OK)
        return rv;
    *count = n;
    if (n == 1)
        *out = found[0];
    return CKR_OK;
}

static CK_RV login_user(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, const char *pin,
                        size_t pin_len)
{
    CK_RV rv = fl->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)pin_len);
    return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

/* Candidates for the module when neither --module nor $DDSM_MODULE names it: beside the build
 * tree's tools/ directory, or an installed lib/ next to bin/. */
static void *dlopen_module(bench *b, char *why, size_t why_len)
{
    static char found[PATH_MAX];
    char exe[PATH_MAX];
    void *dl;

    if (b->module_path != NULL) {
        dl = dlopen(b->module_path, RTLD_NOW | RTLD_LOCAL);
        if (dl == NULL)
            snprintf(why, why_len, "cannot load the module %s: %s", b->module_path, dlerror());
        return dl;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL)
            *slash = '\0';
        const char *rel[] = {"../module/libddsm-pkcs11.so", "../lib/libddsm-pkcs11.so"};
        for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
            int len = snprintf(found, sizeof(found), "%s/%s", exe, rel[i]);
            if (len > 0 && (size_t)len < sizeof(found) && access(found, R_OK) == 0) {
                char *real = realpath(found, NULL);
                if (real != NULL) {
                    snprintf(found, sizeof(found), "%s", real);
                    free(real);
                }
                b->module_path = found;
                return dlopen_module(b, why, why_len);
            }
        }
    }
    b->module_path = "libddsm-pkcs11.so";
    return dlopen_module(b, why, why_len);
}

bool bench_module_open(bench *b, char *why, size_t why_len)
{
    CK_RV rv;
    CK_ULONG count = 0;

    b->mod_dl = dlopen_module(b, why, why_len);
    if (b->mod_dl == NULL)
        return false;
    snprintf(b->machine.module_path, sizeof(b->machine.module_path), "%s", b->module_path);
    CK_C_GetFunctionList gfl =
        (CK_C_GetFunctionList)(uintptr_t)dlsym(b->mod_dl, "C_GetFunctionList");
    if (gfl == NULL) {
        snprintf(why, why_len, "%s exports no C_GetFunctionList", b->module_path);
        return false;
    }
    if ((rv = gfl(&b->mod)) != CKR_OK || b->mod == NULL) {
        snprintf(why, why_len, "module C_GetFunctionList: %s", ddsm_rv_name(rv));
        return false;
    }
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    if ((rv = b->mod->C_Initialize(&args)) != CKR_OK) {
        snprintf(why, why_len,
                 "module C_Initialize: %s (the module's own message is on stderr; it reads %s)",
                 ddsm_rv_name(rv), b->conf_path);
        return false;
    }
    b->mod_initialized = true;
    bench_machine_p11_info(b->mod, b->machine.module_info, sizeof(b->machine.module_info));
    if ((rv = find_slot(b->mod, b->cfg->backend.token_label, &b->mod_slot)) != CKR_OK) {
        snprintf(why, why_len, "module: no slot with token \"%s\": %s", b->cfg->backend.token_label,
                 ddsm_rv_name(rv));
        return false;
    }
    if ((rv = bench_module_session(b, &b->mod_login)) != CKR_OK) {
        snprintf(why, why_len, "module C_OpenSession: %s", ddsm_rv_name(rv));
        return false;
    }
    b->have_mod_login = true;
    if ((rv = login_user(b->mod, b->mod_login, b->pin_secret, b->pin_len)) != CKR_OK) {
        snprintf(why, why_len, "module C_Login: %s", ddsm_rv_name(rv));
        return false;
    }
    rv =
        find_secret_key(b->mod, b->mod_login, b->cfg->backend.root_key_label, &b->mod_root, &count);
    if (rv != CKR_OK) {
        snprintf(why, why_len, "module: finding the root key: %s", ddsm_rv_name(rv));
        return false;
    }
    if (count == 0 && b->cfg->backend.root_token_label != NULL) {
        b->mod_root = CK_DDSM_ROOT_HANDLE; /* the root lives on a custody token */
    } else if (count != 1) {
        snprintf(why, why_len,
                 "module: %s secret key labelled \"%s\" (import one with `ddsmctl root import`)",
                 count == 0 ? "no" : "more than one", b->cfg->backend.root_key_label);
        return false;
    }
    return true;
}

void bench_module_close(bench *b)
{
    if (b->have_mod_login)
        (void)b->mod->C_CloseSession(b->mod_login);
    b->have_mod_login = false;
    if (b->mod_initialized)
        (void)b->mod->C_Finalize(NULL);
    b->mod_initialized = false;
    if (b->mod_dl != NULL)
        dlclose(b->mod_dl);
    b->mod_dl = NULL;
    b->mod = NULL;
}

CK_RV bench_module_session(bench *b, CK_SESSION_HANDLE *out)
{
    return b->mod->C_OpenSession(b->mod_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
}

bool bench_thread_fail_rv(bench_thread *t, const char *what, CK_RV rv)
{
    snprintf(t->why, sizeof(t->why), "%s: %s", what, ddsm_rv_name(rv));
    return false;
}

bool bench_mod_thread_init(bench_thread *t, size_t size)
{
    bench_mod_thread *m = bench_thread_alloc(t, size);
    if (m == NULL)
        return false;
    CK_RV rv = bench_module_session(t->b, &m->s);
    if (rv != CKR_OK)
        return bench_thread_fail_rv(t, "C_OpenSession", rv);
    m->have_s = true;
    return true;
}

void bench_mod_thread_fini(bench_thread *t)
{
    bench_mod_thread *m = t->priv;
    if (m == NULL)
        return;
    if (m->have_s)
        (void)t->b->mod->C_CloseSession(m->s);
    free(m);
    t->priv = NULL;
}

CK_RV bench_backend_session(bench *b, CK_SESSION_HANDLE *out)
{
    return b->be->C_OpenSession(b->be_slot, CKF_SERIAL_SESSION, NULL, NULL, out);
}

CK_RV bench_module_derive_tmpl(bench *b, CK_SESSION_HANDLE s, const ddsm_uuid *asset,
                               const char *path, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                               CK_OBJECT_HANDLE *out)
{
    unsigned char param[DDSM_DERIVE_PARAM_MAX];
    size_t len = ddsm_derive_param(param, sizeof(param), asset->b, path);
    if (len == 0)
        return CKR_ARGUMENTS_BAD;
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, (CK_ULONG)len};
    return b->mod->C_DeriveKey(s, &m, b->mod_root, tmpl, n, out);
}

CK_RV bench_module_derive(bench *b, CK_SESSION_HANDLE s, const ddsm_uuid *asset, const char *path,
                          CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
    };
    return bench_module_derive_tmpl(b, s, asset, path, t, 2, out);
}

CK_RV bench_p11_hmac(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                     const uint8_t *msg, size_t len, uint8_t mac[32])
{
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG mac_len = 32;
    CK_RV rv = fl->C_SignInit(s, &m, key);
    if (rv != CKR_OK)
        return rv;
    rv = fl->C_Sign(s, (CK_BYTE_PTR)msg, (CK_ULONG)len, mac, &mac_len);
    if (rv == CKR_OK && mac_len != 32)
        rv = CKR_FUNCTION_FAILED;
    return rv;
}

bool bench_backend_open(bench *b, char *why, size_t why_len)
{
    CK_RV rv;
    CK_ULONG count = 0;
    const char *custody = b->cfg->backend.root_token_label;
    const char *token = custody != NULL ? custody : b->cfg->backend.token_label;
    char *pin = NULL;
    size_t pin_len = 0;
    bool ok = false;

    rv = ddsm_hsm_load(b->cfg->backend.module, &b->hsm, why, why_len);
    if (rv != CKR_OK)
        goto out;
    b->be = ddsm_hsm_functions(b->hsm);
    bench_machine_p11_info(b->be, b->machine.hsm_info, sizeof(b->machine.hsm_info));
    if ((rv = find_slot(b->be, token, &b->be_slot)) != CKR_OK) {
        snprintf(why, why_len, "backend: no slot with token \"%s\": %s", token, ddsm_rv_name(rv));
        goto out;
    }
    rv = b->be->C_OpenSession(b->be_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                              &b->be_login);
    if (rv != CKR_OK) {
        snprintf(why, why_len, "backend C_OpenSession: %s", ddsm_rv_name(rv));
        goto out;
    }
    b->have_be_login = true;
    if (custody != NULL) {
        pin = ddsm_secure_alloc(BENCH_PIN_MAX + 1);
        if (pin == NULL) {
            snprintf(why, why_len, "out of secure memory");
            goto out;
        }
        if (!bench_read_line_secret(b->cfg->backend.root_pin_file, pin, BENCH_PIN_MAX, &pin_len,
                                    why, why_len))
            goto out;
        rv = ddsm_hsm_login_secret(b->hsm, b->be_login, pin, pin_len);
    } else {
        rv = ddsm_hsm_login_secret(b->hsm, b->be_login, b->pin_secret, b->pin_len);
    }
    if (rv != CKR_OK) {
        snprintf(why, why_len, "backend C_Login on \"%s\": %s", token, ddsm_rv_name(rv));
        goto out;
    }
    rv = find_secret_key(b->be, b->be_login, b->cfg->backend.root_key_label, &b->be_root, &count);
    if (rv != CKR_OK || count != 1) {
        snprintf(why, why_len, "backend: %s secret key labelled \"%s\" on \"%s\"%s%s",
                 count == 0 ? "no" : "more than one", b->cfg->backend.root_key_label, token,
                 rv != CKR_OK ? ": " : "", rv != CKR_OK ? ddsm_rv_name(rv) : "");
        goto out;
    }
    ok = true;
out:
    if (pin != NULL)
        ddsm_secure_free(pin, BENCH_PIN_MAX + 1);
    return ok;
}

void bench_backend_close(bench *b)
{
    if (b->have_be_login)
        (void)b->be->C_CloseSession(b->be_login);
    b->have_be_login = false;
    ddsm_hsm_unload(b->hsm);
    b->hsm = NULL;
    b->be = NULL;
}
