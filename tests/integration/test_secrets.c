/* SPDX-License-Identifier: Apache-2.0 */
/* Security: no secret in logs, error messages, the database or core dumps.
 *
 *  - Key memory is excluded from core dumps: after a derivation, every copy of the derived key in
 *    this process (module, its OpenSSL, SoftHSM: all in-process) lies in a mapping whose VmFlags
 *    carry "dd" (MADV_DONTDUMP), as tests/unit/test_secmem.c checks for ddsm_secure_alloc. The key
 *    is searched for masked, so the test holds no copy of it itself.
 *  - With [log] level = debug, the module and ddsmctl go through derivations, signatures, AES-GCM,
 *    a rotation, refusals and a database that cannot be reached, their stderr captured; then the
 *    database is dumped with pg_dump. Neither the logs nor the dump contain the test root seed
 *    (00 01 .. 1f), a derived key (docs/design.md vectors, the rotated and AES keys), the audit MAC key,
 *    the user PIN or the database password, in hex (both cases) or base64 (standard and URL-safe,
 *    at each of the three alignments a key can have inside a longer base64 text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ddsm/derive.h"
#include "ddsm/path.h"
#include "ddsm/uuid.h"
#include "p11_support.h"

/* A PIN and a database password that occur nowhere else. */
#define SECRET_PIN "pin-Qw7zR3kM"
#define SECRET_PASSWORD "pw-Lx4vN8tJ"

static char g_dir[2048];

static void path_in_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* ------------------------------------------------------------------------------------------ */
/* Core dumps                                                                                   */

static int hexval(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The VmFlags of /proc/self/smaps for the mapping that starts at lo. */
static void vm_flags_at(unsigned long lo, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    out[0] = '\0';
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a == lo;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, cap, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

typedef struct hit {
    unsigned long lo, hi, at;
    char name[256];
} hit;

/* Every place in this process's readable memory holding key (given masked: key ^ mask), read
 * through /proc/self/mem into a scratch mapping that is itself skipped and wiped. */
static size_t find_key_copies(const uint8_t masked[32], const uint8_t mask[32], hit *hits,
                              size_t max)
{
    const size_t chunk = 1 << 20;
    uint8_t *scratch =
        mmap(NULL, chunk + 32, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(scratch != MAP_FAILED);
    int mem = open("/proc/self/mem", O_RDONLY);
    assert_true(mem >= 0);
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_non_null(maps);
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof(line), maps) != NULL) {
        unsigned long lo, hi;
        char perms[8] = "", name[200] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %199[^\n]", &lo, &hi, perms, name) < 3)
            continue;
        if (perms[0] != 'r' || strstr(name, "[vvar") != NULL || strstr(name, "[vsyscall") != NULL)
            continue;
        if (lo == (unsigned long)(uintptr_t)scratch)
            continue;
        /* Reservations of terabytes (AddressSanitizer's shadow and allocator space) are not
         * memory a key is kept in by our code, and reading them would take hours. */
        if (hi - lo > (4UL << 30))
            continue;
        /* Chunks overlap by 31 bytes so that a key across a boundary is seen. */
        for (unsigned long off = lo; off < hi;) {
            size_t want = hi - off < chunk + 31 ? hi - off : chunk + 31;
            ssize_t got = pread(mem, scratch, want, (off_t)off);
            if (got <= 0)
                break; /* unreadable (guard pages) */
            for (ssize_t i = 0; i + 32 <= got && n < max; i++) {
                if ((scratch[i] ^ mask[0]) != masked[0])
                    continue;
                int same = 1;
                for (int k = 1; k < 32 && same; k++)
                    same = (scratch[i + k] ^ mask[k]) == masked[k];
                if (same) {
                    hits[n].lo = lo;
                    hits[n].hi = hi;
                    hits[n].at = off + (unsigned long)i;
                    snprintf(hits[n].name, sizeof(hits[n].name), "%s", name);
                    n++;
                }
            }
            if ((size_t)got <= 31 || off + (unsigned long)got >= hi)
                break;
            off += (unsigned long)got - 31;
        }
        OPENSSL_cleanse(scratch, chunk + 32);
    }
    fclose(maps);
    close(mem);
    munmap(scratch, chunk + 32);
    return n;
}

static void masked_vec_a_key(uint8_t mask[32], uint8_t masked[32])
{
    assert_int_equal(RAND_bytes(mask, 32), 1);
    for (int i = 0; i < 32; i++)
        masked[i] =
            (uint8_t)((hexval(VEC_A_KEY0[2 * i]) << 4 | hexval(VEC_A_KEY0[2 * i + 1])) ^ mask[i]);
}

/* Derive vec-a's key (HSM, audit row), cache it and use it twice: every stage that touches the
 * key bytes has run. Returns the session. */
static CK_SESSION_HANDLE derive_and_use(void)
{
    uint8_t sig[32];
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"core", 4, sig));
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"dump", 4, sig));
    return s;
}

/* Report every copy; return how many a core dump would contain (undumpable ones in *dd). */
static int dumpable_copies(const hit *hits, size_t n, int *dd_out)
{
    int bad = 0, good = 0;
    for (size_t i = 0; i < n; i++) {
        char flags[512];
        vm_flags_at(hits[i].lo, flags, sizeof(flags));
        int dd = strstr(flags, " dd") != NULL;
        print_message("key copy at 0x%lx in %lx-%lx %s: %s\n", hits[i].at, hits[i].lo, hits[i].hi,
                      hits[i].name, dd ? "MADV_DONTDUMP" : "DUMPABLE");
        bad += !dd;
        good += dd;
    }
    if (dd_out != NULL)
        *dd_out = good;
    return bad;
}

/* The derived-key cache (the module's secure memory) is in a MADV_DONTDUMP mapping, and logging
 * out leaves no copy of the key anywhere in the process. */
static void test_secrets__the_key_cache_is_excluded_from_core_dumps(void **state)
{
    uint8_t mask[32], masked[32];
    hit hits[16];
    int undumpable = 0;
    masked_vec_a_key(mask, masked);
    CK_SESSION_HANDLE s = derive_and_use();
    size_t n = find_key_copies(masked, mask, hits, 16);
    assert_true(n >= 1); /* found: else the search proves nothing */
    (void)dumpable_copies(hits, n, &undumpable);
    assert_true(undumpable >= 1);
    assert_rv(CKR_OK, p11->C_Logout(s));
    n = find_key_copies(masked, mask, hits, 16);
    (void)dumpable_copies(hits, n, NULL);
    assert_int_equal(n, 0);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* While a derived key is cached and in use, no copy of it sits in dumpable memory: not in the
 * module, not in OpenSSL's MAC contexts, not in SoftHSM. */
static void test_secrets__no_dumpable_copy_of_a_derived_key_while_it_is_in_use(void **state)
{
    uint8_t mask[32], masked[32];
    hit hits[16];
    masked_vec_a_key(mask, masked);
    CK_SESSION_HANDLE s = derive_and_use();
    size_t n = find_key_copies(masked, mask, hits, 16);
    assert_true(n >= 1);
    assert_int_equal(dumpable_copies(hits, n, NULL), 0);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* ------------------------------------------------------------------------------------------ */
/* Logs, error messages and the database                                                        */

typedef struct needle {
    char what[64];
    char text[80];
} needle;

static needle g_needles[256];
static size_t g_n;

static void add(const char *what, const char *text)
{
    assert_true(g_n < sizeof(g_needles) / sizeof(g_needles[0]));
    snprintf(g_needles[g_n].what, sizeof(g_needles[g_n].what), "%s", what);
    snprintf(g_needles[g_n].text, sizeof(g_needles[g_n].text), "%s", text);
    g_n++;
}

/* Every text form of a 32-byte secret. */
static void add_secret(const char *what, const uint8_t key[32])
{
    char hex[65], up[65], w[64];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
        snprintf(up + 2 * i, 3, "%02X", key[i]);
    }
    snprintf(w, sizeof(w), "%s (hex)", what);
    add(w, hex);
    snprintf(w, sizeof(w), "%s (HEX)", what);
    add(w, up);
    /* base64 of the key behind k bytes of something else: only the 4-character groups made of key
     * bytes alone are fixed; they appear wherever the key is encoded at that alignment. */
    for (int k = 0; k < 3; k++) {
        uint8_t buf[35] = {0};
        unsigned char b64[64];
        memcpy(buf + k, key, 32);
        int len = EVP_EncodeBlock(b64, buf, 32 + k);
        assert_true(len > 0);
        int first = (k + 2) / 3, last = (k + 32) / 3; /* groups [first, last) */
        char core[48];
        snprintf(core, sizeof(core), "%.*s", 4 * (last - first), (const char *)b64 + 4 * first);
        snprintf(w, sizeof(w), "%s (base64, offset %d)", what, k);
        add(w, core);
        for (char *p = core; *p != '\0'; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        snprintf(w, sizeof(w), "%s (base64url, offset %d)", what, k);
        add(w, core);
        OPENSSL_cleanse(buf, sizeof(buf));
        OPENSSL_cleanse(b64, sizeof(b64));
    }
}

static void add_key_hex(const char *what, const char *hex)
{
    uint8_t key[32];
    p11_unhex(hex, key, 32);
    add_secret(what, key);
    OPENSSL_cleanse(key, sizeof(key));
}

static void add_derived(const char *what, const char *uuid, const char *path, uint64_t counter)
{
    uint8_t key[32];
    p11_expected_key(uuid, path, counter, key);
    add_secret(what, key);
    OPENSSL_cleanse(key, sizeof(key));
}

static void collect_needles(void)
{
    uint8_t seed[32], audit[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    add_secret("the root seed", seed);
    add_key_hex("vec-a key, counter 0", VEC_A_KEY0);
    add_key_hex("vec-b key, counter 0", VEC_B_KEY0);
    add_derived("vec-b key, counter 1", VEC_B_ID, VEC_B_PATH, 1);
    add_derived("aes-a key, counter 0", AES_ID, "m/1", 0);
    /* The audit MAC key: the reserved derivation (nil UUID, depth 0, counter 0). */
    ddsm_prf prf;
    ddsm_uuid nil;
    ddsm_path root_path;
    memset(&nil, 0, sizeof(nil));
    memset(&root_path, 0, sizeof(root_path));
    assert_int_equal(ddsm_prf_openssl_new(seed, sizeof(seed), &prf), DDSM_OK);
    assert_int_equal(ddsm_derive_secret(&prf, &nil, &root_path, 0, audit), DDSM_OK);
    ddsm_prf_openssl_free(&prf);
    add_secret("the audit MAC key", audit);
    OPENSSL_cleanse(audit, sizeof(audit));
    OPENSSL_cleanse(seed, sizeof(seed));
    add("the user PIN", SECRET_PIN);
    add("the database password", SECRET_PASSWORD);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot read %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void assert_clean(const char *path, const char *must_contain)
{
    size_t len = 0;
    char *text = slurp(path, &len);
    /* Not vacuous: the file has what it should. */
    if (strstr(text, must_contain) == NULL)
        fail_msg("%s lacks \"%s\" (%zu bytes): nothing was captured?", path, must_contain, len);
    for (size_t i = 0; i < g_n; i++) {
        if (memmem(text, len, g_needles[i].text, strlen(g_needles[i].text)) != NULL)
            fail_msg("%s contains %s: %s", path, g_needles[i].what, g_needles[i].text);
    }
    print_message("%s: %zu bytes, none of %zu secret forms\n", path, len, g_n);
    free(text);
}

/* stderr (fd 2) of this process and of everything it runs goes to a file while capturing. */
static int g_saved_stderr = -1;

static void capture_begin(const char *path)
{
    fflush(stderr);
    g_saved_stderr = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(g_saved_stderr >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
}

static void capture_end(void)
{
    if (g_saved_stderr < 0)
        return;
    fflush(stderr);
    dup2(g_saved_stderr, 2);
    close(g_saved_stderr);
    g_saved_stderr = -1;
}

static void conf_with(const char *conninfo, const char *name)
{
    char path[4096];
    path_in_dir(path, sizeof(path), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[backend]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = custody\n"
            "root_key_label = ddsm-root\n\n[store]\nconninfo = %s password=" SECRET_PASSWORD
            "\nconnect_timeout_s = 2\n\n[log]\nlevel = debug\n",
            conninfo);
    fclose(f);
    chmod(path, 0600);
    setenv("DDSM_CONF", path, 1);
}

static void exercise_module(void)
{
    uint8_t sig[32], iv[12] = {1}, ct[64], pt[64];
    CK_ULONG n;
    CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m_gcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};

    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    /* Derive by C_DeriveKey (the vector), by find; sign, verify, read what may be read. */
    CK_OBJECT_HANDLE a = 0;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &a));
    assert_rv(CKR_OK, p11_hmac_sign(s, a, (const uint8_t *)"log", 3, sig));
    assert_rv(CKR_OK, p11->C_VerifyInit(s, &hmac, a));
    assert_rv(CKR_OK, p11->C_Verify(s, (CK_BYTE_PTR) "log", 3, sig, 32));
    uint8_t value[32];
    CK_ATTRIBUTE t[] = {{CKA_VALUE, value, sizeof(value)}};
    assert_rv(CKR_ATTRIBUTE_SENSITIVE, p11->C_GetAttributeValue(s, a, t, 1));
    CK_OBJECT_HANDLE b = p11_find_label(s, "vec-b/" VEC_B_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(s, b, (const uint8_t *)"log", 3, sig));
    CK_OBJECT_HANDLE aes = p11_find_label(s, "aes-a/m/1");
    assert_rv(CKR_OK, p11->C_EncryptInit(s, &m_gcm, aes));
    n = sizeof(ct);
    assert_rv(CKR_OK, p11->C_Encrypt(s, (CK_BYTE_PTR) "plaintext", 9, ct, &n));
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &m_gcm, aes));
    CK_ULONG pn = sizeof(pt);
    assert_rv(CKR_OK, p11->C_Decrypt(s, ct, n, pt, &pn));
    ct[0] ^= 1; /* a tag that fails */
    assert_rv(CKR_OK, p11->C_DecryptInit(s, &m_gcm, aes));
    pn = sizeof(pt);
    assert_rv(CKR_ENCRYPTED_DATA_INVALID, p11->C_Decrypt(s, ct, n, pt, &pn));
    /* Refusals: the root's value, an unknown asset, a bad path, signing with the root. */
    CK_OBJECT_HANDLE root = p11_root(s);
    assert_rv(CKR_ATTRIBUTE_SENSITIVE, p11->C_GetAttributeValue(s, root, t, 1));
    CK_OBJECT_HANDLE x = 0;
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, UNKNOWN_ID, "m/0", NULL, 0, &x));
    assert_rv(CKR_MECHANISM_PARAM_INVALID, p11_derive(s, VEC_A_ID, "m/01", NULL, 0, &x));
    assert_rv(CKR_KEY_FUNCTION_NOT_PERMITTED, p11->C_SignInit(s, &hmac, root));
    /* A rotation (ddsmctl, logged too), the old key refused, the new one derived. */
    assert_int_equal(p11_ctl("asset rotate vec-b"), 0);
    for (;;) { /* until the NOTIFY is heard; a module that never hears it meets ctest's timeout */
        if (p11->C_SignInit(s, &hmac, b) == CKR_KEY_HANDLE_INVALID)
            break;
        n = sizeof(sig);
        assert_rv(CKR_OK, p11->C_Sign(s, (CK_BYTE_PTR) "x", 1, sig, &n));
        p11_sleep_ms(50);
    }
    assert_rv(CKR_KEY_HANDLE_INVALID, p11->C_SignInit(s, &hmac, b));
    b = p11_find_label(s, "vec-b/" VEC_B_PATH);
    assert_rv(CKR_OK, p11_hmac_sign(s, b, (const uint8_t *)"log", 3, sig));
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_secrets__logs_errors_and_the_database_hold_no_secret(void **state)
{
    char module_log[4096], dump[4096], cmd[8192], dead[1024];
    const char *ci = getenv("DDSM_TEST_CONNINFO");
    path_in_dir(module_log, sizeof(module_log), "module-and-ddsmctl.log");
    path_in_dir(dump, sizeof(dump), "dump.sql");
    collect_needles();

    /* The user PIN becomes one that occurs nowhere else. */
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open();
    const char *old = getenv("DDSM_TEST_PIN");
    assert_rv(CKR_OK, p11->C_SetPIN(s, (CK_UTF8CHAR_PTR)old, strlen(old),
                                    (CK_UTF8CHAR_PTR)SECRET_PIN, strlen(SECRET_PIN)));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    setenv("DDSM_TEST_PIN", SECRET_PIN, 1);

    conf_with(ci, "debug.conf");
    capture_begin(module_log);
    exercise_module();
    /* ddsmctl reads the same configuration (debug level): writing and reading commands. */
    assert_int_equal(p11_ctl("asset show vec-a --json >/dev/null"), 0);
    assert_int_equal(p11_ctl("asset list >/dev/null"), 0);
    assert_int_equal(p11_ctl("audit verify >/dev/null"), 0);
    assert_int_equal(p11_ctl("root info >/dev/null"), 0);
    assert_true(p11_ctl("asset rotate no-such-asset >/dev/null") != 0);
    /* The database out of reach: errors name the failure, never the password. */
    snprintf(dead, sizeof(dead), "host=127.0.0.1 port=1 user=postgres dbname=nowhere");
    conf_with(dead, "dead.conf");
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    s = p11_open_user();
    CK_OBJECT_HANDLE x = 0;
    assert_rv(CKR_DEVICE_ERROR, p11_derive(s, VEC_A_ID, "m/7", NULL, 0, &x));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    assert_true(p11_ctl("asset list >/dev/null") != 0);
    capture_end();

    snprintf(cmd, sizeof(cmd), "'%s/pg_dump' '%s' > '%s'", getenv("DDSM_TEST_PGBIN"), ci, dump);
    assert_int_equal(system(cmd), 0);

    /* Debug lines of both programs, the unreachable store's error, the audit rows. */
    assert_clean(module_log, "DEBUG: ");
    assert_clean(module_log, "is the root seed key");
    assert_clean(module_log, "ddsmctl");
    assert_clean(module_log, "port 1");
    assert_clean(dump, "custody_audit_log");
    assert_clean(dump, "DERIVE");
}

/* The configuration decides which HSM and database are trusted: writable by group or others, it
 * is refused (C_Initialize's only fitting code, CKR_FUNCTION_FAILED), and nothing starts. */
static void test_secrets__a_config_writable_by_others_is_refused(void **state)
{
    static const struct {
        mode_t mode;
        CK_RV rv;
    } cases[] = {
        {0666, CKR_FUNCTION_FAILED},
        {0602, CKR_FUNCTION_FAILED},
        {0620, CKR_FUNCTION_FAILED},
        {0660, CKR_FUNCTION_FAILED},
        {0644, CKR_OK},
        {0600, CKR_OK},
        {0400, CKR_OK},
    };
    char path[4096];
    const char *saved = getenv("DDSM_CONF");
    char keep[4096];
    snprintf(keep, sizeof(keep), "%s", saved);
    snprintf(path, sizeof(path), "%s", p11_write_conf("modes", NULL, NULL));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(chmod(path, cases[i].mode), 0);
        CK_RV rv = p11->C_Initialize(NULL);
        if (rv != cases[i].rv)
            fail_msg("config mode %04o: %s, expected %s", (unsigned)cases[i].mode, ddsm_rv_name(rv),
                     ddsm_rv_name(cases[i].rv));
        CK_INFO info;
        if (rv == CKR_OK)
            assert_rv(CKR_OK, p11->C_Finalize(NULL));
        else
            assert_rv(CKR_CRYPTOKI_NOT_INITIALIZED, p11->C_GetInfo(&info));
    }
    setenv("DDSM_CONF", keep, 1);
}

static int teardown(void **state)
{
    capture_end();
    (void)p11->C_Finalize(NULL); /* after a failure half way */
    return 0;
}

int main(void)
{
    snprintf(g_dir, sizeof(g_dir), "%s", getenv("DDSM_TEST_DIR") ? getenv("DDSM_TEST_DIR") : ".");
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        /* First: the search holds no copy of any key but the one it looks for. */
        cmocka_unit_test_teardown(test_secrets__the_key_cache_is_excluded_from_core_dumps,
                                  teardown),
        cmocka_unit_test_teardown(
            test_secrets__no_dumpable_copy_of_a_derived_key_while_it_is_in_use, teardown),
        cmocka_unit_test_teardown(test_secrets__logs_errors_and_the_database_hold_no_secret,
                                  teardown),
        cmocka_unit_test(test_secrets__a_config_writable_by_others_is_refused),
    };
    return cmocka_run_group_tests_name("secrets", tests, NULL, NULL);
}
