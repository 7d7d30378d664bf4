/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fault_support.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ddsm/derive.h"
#include "ddsm/path.h"
#include "ddsm/uuid.h"

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        fail_msg("environment variable %s is not set (run through ctest)", name);
    return v;
}

int fs_services(const char *cmd, const char *dir)
{
    const char *src = getenv("DDSM_SOURCE_DIR");
    if (src == NULL)
        return -1;
    char script[PATH_MAX];
    snprintf(script, sizeof(script), "%s/scripts/lib/services", src);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl(script, script, cmd, dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void fs_cluster_start(const char *name, char *dir, size_t dir_len, char *conninfo,
                      size_t conninfo_len)
{
    snprintf(dir, dir_len, "%s/%s", env_or_fail("DDSM_TEST_DIR"), name);
    if (fs_services("start", dir) != 0) {
        fs_services("stop", dir);
        fail_msg("scripts/lib/services start %s failed", dir);
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/conninfo", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(conninfo, (int)conninfo_len, f) == NULL) {
        if (f != NULL)
            fclose(f);
        fs_services("stop", dir);
        fail_msg("no conninfo in %s", path);
    }
    fclose(f);
    conninfo[strcspn(conninfo, "\n")] = '\0';
    size_t n = strlen(conninfo);
    snprintf(conninfo + n, conninfo_len - n, " dbname=postgres");
}

const char *fs_write_conf(const char *name, const char *module, const char *conninfo,
                          const char *backend_keys, const char *extra)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s.conf", env_or_fail("DDSM_TEST_DIR"), name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot write %s", path);
    fprintf(f,
            "[backend]\nmodule = %s\ntoken_label = custody\nroot_key_label = ddsm-root\n%s\n"
            "[store]\nconninfo = %s\n%s\n",
            module != NULL ? module : "/usr/lib/softhsm/libsofthsm2.so",
            backend_keys != NULL ? backend_keys : "",
            conninfo != NULL ? conninfo : env_or_fail("DDSM_TEST_CONNINFO"),
            extra != NULL ? extra : "");
    fclose(f);
    chmod(path, 0600);
    setenv("DDSM_CONF", path, 1);
    return path;
}

int64_t fs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t fs_now_ms(void)
{
    return fs_now_ns() / 1000000;
}

bool fs_expected_secret(const char *uuid_text, const ddsm_path *path, uint64_t counter,
                        uint8_t out[32])
{
    uint8_t seed[32];
    ddsm_prf prf;
    ddsm_uuid id;
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    if (ddsm_uuid_parse(uuid_text, strlen(uuid_text), &id) != DDSM_OK ||
        ddsm_prf_openssl_new(seed, sizeof(seed), &prf) != DDSM_OK)
        return false;
    bool ok = ddsm_derive_secret(&prf, &id, path, counter, out) == DDSM_OK;
    ddsm_prf_openssl_free(&prf);
    return ok;
}

bool fs_expected_key(const char *uuid_text, const char *path, uint64_t counter, uint8_t out[32])
{
    ddsm_path p;
    return ddsm_path_parse(path, strlen(path), &p, NULL) == DDSM_OK &&
           fs_expected_secret(uuid_text, &p, counter, out);
}

void fs_hmac(const uint8_t key[32], const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (HMAC(EVP_sha256(), key, 32, data, len, out, &n) == NULL || n != 32)
        memset(out, 0, 32); /* never equal to a real MAC the tests compare with */
}

void fs_uuid_bytes(const char *text, uint8_t out[16])
{
    ddsm_uuid id;
    if (ddsm_uuid_parse(text, strlen(text), &id) != DDSM_OK)
        fail_msg("bad uuid %s", text);
    memcpy(out, id.b, 16);
}

void fs_faults(const char *text)
{
    const char *ctl = env_or_fail("DDSM_FAULT_CTL");
    FILE *f = fopen(ctl, "w");
    if (f == NULL)
        fail_msg("cannot write %s", ctl);
    fputs(text, f);
    fclose(f);
    /* The wrapper compares size and mtime: make sure the mtime moves even when the size does
     * not. */
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
}

long fs_log_count(const char *fn)
{
    FILE *f = fopen(env_or_fail("DDSM_FAULT_LOG"), "r");
    if (f == NULL)
        return 0;
    char line[128];
    long n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        n += strcmp(line, fn) == 0;
    }
    fclose(f);
    return n;
}

void fs_log_reset(void)
{
    FILE *f = fopen(env_or_fail("DDSM_FAULT_LOG"), "w");
    if (f != NULL)
        fclose(f);
}

size_t fs_module_backends(const char *conninfo, long *pids, size_t max)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE application_name = "
                            "'ddsm-pkcs11' AND datname = current_database() ORDER BY pid");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("pg_stat_activity: %s", PQerrorMessage(c));
    size_t n = 0;
    for (int i = 0; i < PQntuples(r) && n < max; i++)
        pids[n++] = strtol(PQgetvalue(r, i, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

long fs_missing_derive_rows(const char *conninfo, const char *uuid_text, const char *const *paths,
                            const uint64_t *counters, size_t n)
{
    size_t cap = 64, pn = 0, cn = 0;
    for (size_t k = 0; k < n; k++)
        cap += strlen(paths[k]) + 24;
    char *pa = malloc(cap), *ca = malloc(cap);
    if (pa == NULL || ca == NULL)
        fail_msg("out of memory");
    pn += (size_t)snprintf(pa + pn, cap - pn, "{");
    cn += (size_t)snprintf(ca + cn, cap - cn, "{");
    for (size_t k = 0; k < n; k++) {
        /* Canonical paths hold digits, '/', 'm' and '\'' only: safe inside double quotes. */
        pn += (size_t)snprintf(pa + pn, cap - pn, "%s\"%s\"", k ? "," : "", paths[k]);
        cn += (size_t)snprintf(ca + cn, cap - cn, "%s%llu", k ? "," : "",
                               (unsigned long long)counters[k]);
    }
    snprintf(pa + pn, cap - pn, "}");
    snprintf(ca + cn, cap - cn, "}");
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(c));
    const char *params[] = {pa, ca, uuid_text};
    PGresult *r = PQexecParams(
        c,
        "SELECT count(*) FROM unnest($1::text[], $2::bigint[]) AS w(path, counter) "
        "WHERE NOT EXISTS (SELECT 1 FROM custody_audit_log l WHERE l.event = 'DERIVE' "
        "AND l.asset_id = $3::uuid AND l.derivation_path = w.path AND l.counter = w.counter)",
        3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("checking DERIVE rows: %s", PQerrorMessage(c));
    long missing = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    free(pa);
    free(ca);
    return missing;
}
