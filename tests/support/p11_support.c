/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "p11_support.h"

#include "fault_support.h"
#include "hex_support.h"

#include "ddsm/derive.h"
#include "ddsm/path.h"
#include "ddsm/uuid.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

CK_FUNCTION_LIST_PTR p11;
static void *g_dl;

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        fail_msg("environment variable %s is not set (run through ctest)", name);
    return v;
}

void p11_load(void)
{
    if (g_dl != NULL)
        return;
    const char *path = env_or_fail("DDSM_MODULE");
    g_dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (g_dl == NULL)
        fail_msg("dlopen %s: %s", path, dlerror());
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)dlsym(g_dl, "C_GetFunctionList");
    if (gfl == NULL)
        fail_msg("%s exports no C_GetFunctionList", path);
    assert_rv(CKR_OK, gfl(&p11));
    assert_non_null(p11);
}

void *p11_sym(const char *name)
{
    p11_load();
    return dlsym(g_dl, name);
}

void p11_init_token(const char *label, const char *pin)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "softhsm2-util --init-token --free --label '%s' --pin '%s' --so-pin 87654321 "
             ">/dev/null",
             label, pin);
    if (system(cmd) != 0)
        fail_msg("softhsm2-util --init-token --label %s failed", label);
}

void p11_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot write %s", path);
    fputs(text, f);
    if (fclose(f) != 0 || chmod(path, 0600) != 0)
        fail_msg("cannot write %s", path);
}

const char *p11_write_conf(const char *name, const char *conninfo, const char *extra)
{
    return fs_write_conf(name, NULL, conninfo, NULL, extra);
}

int p11_ctl(const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "DDSM_PIN='%s' '%s' %s", env_or_fail("DDSM_TEST_PIN"),
             env_or_fail("DDSM_CTL"), args);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static void ctl_ok(const char *what, int rc)
{
    if (rc != 0)
        fail_msg("ddsmctl %s failed with exit status %d", what, rc);
}

void p11_setup_store(void)
{
    char seed[4096];
    snprintf(seed, sizeof(seed), "%s/seed.hex", env_or_fail("DDSM_TEST_DIR"));
    FILE *f = fopen(seed, "w");
    if (f == NULL)
        fail_msg("cannot write %s", seed);
    for (int i = 0; i < 32; i++)
        fprintf(f, "%02x", i);
    fputc('\n', f);
    fclose(f);

    ctl_ok("db migrate", p11_ctl("db migrate >/dev/null"));
    ctl_ok("root import", p11_ctl("root import --hex-file '%s' >/dev/null", seed));
    ctl_ok("register vec-a", p11_ctl("asset register --label vec-a --id %s --default-path \"%s\""
                                     " >/dev/null",
                                     VEC_A_ID, VEC_A_PATH));
    ctl_ok("register vec-b", p11_ctl("asset register --label vec-b --id %s --default-path %s"
                                     " >/dev/null",
                                     VEC_B_ID, VEC_B_PATH));
    ctl_ok("register fresh",
           p11_ctl("asset register --label fresh --id %s --default-path m/3 >/dev/null", FRESH_ID));
    ctl_ok(
        "register gone",
        p11_ctl("asset register --label gone --id %s --default-path m/4 >/dev/null", RETIRED_ID));
    ctl_ok("register aes-a", p11_ctl("asset register --label aes-a --id %s --default-path m/1 "
                                     "--type aes >/dev/null",
                                     AES_ID));
    ctl_ok("activate vec-a", p11_ctl("asset activate vec-a >/dev/null"));
    ctl_ok("activate vec-b", p11_ctl("asset activate vec-b >/dev/null"));
    ctl_ok("activate gone", p11_ctl("asset activate gone >/dev/null"));
    ctl_ok("retire gone", p11_ctl("asset retire gone >/dev/null"));
    ctl_ok("activate aes-a", p11_ctl("asset activate aes-a >/dev/null"));
}

CK_SESSION_HANDLE p11_open(void)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    assert_rv(CKR_OK, p11->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s));
    return s;
}

CK_SESSION_HANDLE p11_open_user(void)
{
    CK_SESSION_HANDLE s = p11_open();
    const char *pin = env_or_fail("DDSM_TEST_PIN");
    CK_RV rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        fail_msg("C_Login: %s", ddsm_rv_name(rv));
    return s;
}

int p11_start_user_session(CK_SESSION_HANDLE *s)
{
    if (p11->C_Initialize(NULL) != CKR_OK)
        return -1;
    *s = p11_open_user();
    return 0;
}

int p11_end_session(CK_SESSION_HANDLE s)
{
    p11->C_CloseSession(s);
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

int p11_finalize_teardown(void **state)
{
    (void)state;
    (void)p11->C_Finalize(NULL);
    return 0;
}

size_t p11_find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, size_t max)
{
    CK_ULONG got = 0;
    size_t total = 0;
    assert_rv(CKR_OK, p11->C_FindObjectsInit(s, t, n));
    do {
        CK_OBJECT_HANDLE batch[16];
        assert_rv(CKR_OK, p11->C_FindObjects(s, batch, 16, &got));
        for (CK_ULONG i = 0; i < got; i++)
            if (total < max)
                out[total++] = batch[i];
    } while (got > 0);
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(s));
    return total;
}

CK_OBJECT_HANDLE p11_find_label(CK_SESSION_HANDLE s, const char *label)
{
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h[4];
    size_t n = p11_find(s, t, 1, h, 4);
    if (n != 1)
        fail_msg("found %zu objects labelled %s, expected 1", n, label);
    return h[0];
}

CK_OBJECT_HANDLE p11_root(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "ddsm-root", 9}};
    CK_OBJECT_HANDLE h[4];
    size_t n = p11_find(s, t, 2, h, 4);
    if (n != 1)
        fail_msg("found %zu root keys, expected 1", n);
    return h[0];
}

size_t p11_backend_object_count(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE h[256];
    size_t n = p11_find(s, NULL, 0, h, 256), count = 0;
    for (size_t i = 0; i < n; i++)
        count += h[i] < 0x80000000UL;
    return count;
}

static void uuid_bytes(const char *text, uint8_t out[16])
{
    size_t j = 0;
    for (size_t i = 0; text[i] != '\0' && j < 32; i++) {
        if (text[i] == '-')
            continue;
        char pair[3] = {text[i], text[i + 1], 0};
        out[j / 2] = (uint8_t)strtoul(pair, NULL, 16);
        j += 2;
        i++;
    }
    assert_int_equal(j, 32);
}

size_t p11_param(uint8_t *buf, size_t len, const char *uuid_text, const char *path)
{
    uint8_t id[16];
    uuid_bytes(uuid_text, id);
    size_t n = ddsm_derive_param(buf, len, id, path);
    assert_true(n > 0);
    return n;
}

CK_RV p11_derive(CK_SESSION_HANDLE s, const char *uuid_text, const char *path, CK_ATTRIBUTE *t,
                 CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    uint8_t param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, p11_param(param, sizeof(param), uuid_text, path)};
    return p11->C_DeriveKey(s, &m, p11_root(s), t, n, out);
}

CK_RV p11_sign_fixed(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE m,
                     const uint8_t *data, size_t len, uint8_t *sig, size_t sig_len)
{
    CK_MECHANISM mech = {m, NULL, 0};
    CK_ULONG out_len = sig_len;
    CK_RV rv = p11->C_SignInit(s, &mech, key);
    if (rv != CKR_OK)
        return rv;
    rv = p11->C_Sign(s, (CK_BYTE_PTR)data, len, sig, &out_len);
    if (rv == CKR_OK && out_len != sig_len)
        fail_msg("signature of %lu bytes", (unsigned long)out_len);
    return rv;
}

CK_RV p11_hmac_sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const uint8_t *data, size_t len,
                    uint8_t out[32])
{
    return p11_sign_fixed(s, h, CKM_SHA256_HMAC, data, len, out, 32);
}

void p11_unhex(const char *hex, uint8_t *out, size_t n)
{
    hexs_exact(hex, out, n);
}

void p11_hmac_expected(const char *key_hex, const uint8_t *data, size_t len, uint8_t out[32])
{
    uint8_t key[32];
    p11_unhex(key_hex, key, 32);
    p11_hmac_raw(key, data, len, out);
}

long p11_sql_long(const char *sql)
{
    PGconn *c = PQconnectdb(env_or_fail("DDSM_TEST_CONNINFO"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

long p11_audit_count(void)
{
    return p11_sql_long("SELECT count(*) FROM custody_audit_log");
}

CK_ULONG p11_attr_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
    CK_ULONG v = 0;
    CK_ATTRIBUTE a = {t, &v, sizeof(v)};
    if (p11->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
        return (CK_ULONG)-1;
    return v;
}

void p11_expected_key(const char *uuid_text, const char *path, uint64_t counter, uint8_t out[32])
{
    if (!fs_expected_key(uuid_text, path, counter, out))
        fail_msg("cannot compute the key of %s %s #%llu", uuid_text, path,
                 (unsigned long long)counter);
}

void p11_hmac_raw(const uint8_t key[32], const uint8_t *data, size_t len, uint8_t out[32])
{
    unsigned int out_len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, 32, data, len, out, &out_len));
    assert_int_equal(out_len, 32);
}

void p11_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
