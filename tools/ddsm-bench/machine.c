/* SPDX-License-Identifier: Apache-2.0 */
/* The machine a run was made on, printed with every result: figures mean nothing without it. */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* The value after "key:" of the first line of file starting with key, trimmed. */
static bool proc_field(const char *file, const char *key, char *out, size_t n)
{
    char line[512];
    bool found = false;
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return false;
    size_t klen = strlen(key);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) != 0)
            continue;
        char *v = strchr(line + klen, ':');
        if (v == NULL)
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\n");
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        snprintf(out, n, "%.*s", (int)len, v);
        found = true;
    }
    fclose(f);
    return found;
}

void bench_machine_load(char *out, size_t n)
{
    double l[3];
    if (getloadavg(l, 3) == 3)
        snprintf(out, n, "%.2f %.2f %.2f", l[0], l[1], l[2]);
    else
        snprintf(out, n, "?");
}

void bench_machine_host(bench_machine *m)
{
    char mem[64] = "";
    struct utsname u;
    time_t now = time(NULL);
    struct tm tm;

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = cores > 0 ? (unsigned)cores : 0;
    if (!proc_field("/proc/cpuinfo", "model name", m->cpu, sizeof(m->cpu)))
        snprintf(m->cpu, sizeof(m->cpu), "unknown");
    if (proc_field("/proc/meminfo", "MemTotal", mem, sizeof(mem)))
        m->mem_bytes = strtoull(mem, NULL, 10) * 1024; /* "NNN kB" */
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname, u.release, u.machine);
    bench_machine_load(m->load_start, sizeof(m->load_start));
    gmtime_r(&now, &tm);
    strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

bool bench_machine_pg(bench_machine *m, const char *conninfo, char *why, size_t why_len)
{
    static const char sql[] =
        "SELECT version(), current_setting('synchronous_commit'), current_setting('fsync'),"
        " current_setting('wal_sync_method'), current_setting('shared_buffers'),"
        " current_setting('commit_delay'), current_setting('max_connections')";
    bool ok = false;
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(why, why_len, "PostgreSQL: %s", PQerrorMessage(c));
        goto out;
    }
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(why, why_len, "PostgreSQL: %s", PQerrorMessage(c));
        goto out;
    }
    struct {
        char *dst;
        size_t n;
    } cols[] = {
        {m->pg_version, sizeof(m->pg_version)},
        {m->pg_synchronous_commit, sizeof(m->pg_synchronous_commit)},
        {m->pg_fsync, sizeof(m->pg_fsync)},
        {m->pg_wal_sync_method, sizeof(m->pg_wal_sync_method)},
        {m->pg_shared_buffers, sizeof(m->pg_shared_buffers)},
        {m->pg_commit_delay, sizeof(m->pg_commit_delay)},
        {m->pg_max_connections, sizeof(m->pg_max_connections)},
    };
    for (int i = 0; i < (int)(sizeof(cols) / sizeof(cols[0])); i++)
        snprintf(cols[i].dst, cols[i].n, "%s", PQgetvalue(r, 0, i));
    ok = true;
out:
    PQclear(r);
    PQfinish(c);
    return ok;
}

/* A blank-padded PKCS#11 text field, trimmed. */
static int padded_len(const CK_UTF8CHAR *s, size_t n)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
        n--;
    return (int)n;
}

void bench_machine_p11_info(CK_FUNCTION_LIST_PTR fl, char *out, size_t n)
{
    CK_INFO info;
    if (fl->C_GetInfo(&info) != CKR_OK) {
        snprintf(out, n, "unknown (C_GetInfo failed)");
        return;
    }
    snprintf(out, n, "%.*s, %.*s %u.%u, Cryptoki %u.%u",
             padded_len(info.manufacturerID, sizeof(info.manufacturerID)), info.manufacturerID,
             padded_len(info.libraryDescription, sizeof(info.libraryDescription)),
             info.libraryDescription, info.libraryVersion.major, info.libraryVersion.minor,
             info.cryptokiVersion.major, info.cryptokiVersion.minor);
}
