/* SPDX-License-Identifier: Apache-2.0 */
/* --hsm-latency-us: a networked HSM modelled by the fault wrapper (tests/faultp11), which every
 * call to the backend then crosses, from the module and from the baselines alike. The module reads
 * its configuration from $DDSM_CONF only, so the bench gives it a copy of the configuration whose
 * [backend] module is the wrapper, and tells the wrapper (its environment, read at load) the real
 * library, the latency and the concurrency limit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#ifndef DDSM_BENCH_FAULTP11
#define DDSM_BENCH_FAULTP11 ""
#endif

/* Whether line (of an INI file) opens a section; *sect its name. */
static bool section_of(const char *line, char *sect, size_t n)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (*line != '[')
        return false;
    const char *end = strchr(line, ']');
    if (end == NULL)
        return false;
    snprintf(sect, n, "%.*s", (int)(end - line - 1), line + 1);
    return true;
}

/* Whether line sets key (key = value). */
static bool sets_key(const char *line, const char *key)
{
    size_t n = strlen(key);
    while (*line == ' ' || *line == '\t')
        line++;
    if (strncmp(line, key, n) != 0)
        return false;
    line += n;
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == '=';
}

/* Copy conf to a private file with [backend] module = lib. */
static bool write_conf(bench *b, const char *lib, char *why, size_t why_len)
{
    char line[4096], sect[64] = "";
    bool ok = false, replaced = false;
    FILE *in = fopen(b->conf_path, "r");
    FILE *out = NULL;
    if (in == NULL) {
        snprintf(why, why_len, "--hsm-latency-us: %s: %s", b->conf_path, strerror(errno));
        return false;
    }
    snprintf(b->net_conf, sizeof(b->net_conf), "/tmp/ddsm-bench-conf.XXXXXX");
    int fd = mkstemp(b->net_conf);
    if (fd < 0 || (out = fdopen(fd, "w")) == NULL) {
        snprintf(why, why_len, "--hsm-latency-us: a private copy of the configuration: %s",
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    while (fgets(line, sizeof(line), in) != NULL) {
        if (section_of(line, sect, sizeof(sect))) {
            fputs(line, out);
        } else if (strcmp(sect, "backend") == 0 && sets_key(line, "module")) {
            fprintf(out, "module = %s\n", lib);
            replaced = true;
        } else {
            fputs(line, out);
        }
    }
    ok = fclose(out) == 0 && replaced;
    out = NULL;
    if (!ok)
        snprintf(why, why_len, "--hsm-latency-us: no [backend] module line in %s to redirect",
                 b->conf_path);
out:
    fclose(in);
    return ok;
}

bool bench_hsmnet_setup(bench *b, char *why, size_t why_len)
{
    char num[32];
    const char *lib = b->fault_lib;
    if (lib == NULL || lib[0] == '\0')
        lib = getenv("DDSM_FAULTP11");
    if (lib == NULL || lib[0] == '\0')
        lib = DDSM_BENCH_FAULTP11;
    if (lib[0] == '\0' || access(lib, R_OK) != 0) {
        snprintf(why, why_len,
                 "--hsm-latency-us needs the fault wrapper of the build tree (ddsm-faultp11): "
                 "name it with --fault-lib");
        return false;
    }
    if (!write_conf(b, lib, why, why_len))
        return false;
    /* The wrapper reads these once, when it is loaded: before the module or the bench loads it. */
    setenv("DDSM_FAULT_TARGET", b->cfg->backend.module, 1);
    snprintf(num, sizeof(num), "%u", b->hsm_latency_us);
    setenv("DDSM_FAULT_LATENCY_US", num, 1);
    snprintf(num, sizeof(num), "%u", b->hsm_concurrency);
    setenv("DDSM_FAULT_CONCURRENCY", num, 1);
    unsetenv("DDSM_FAULT_CTL");
    unsetenv("DDSM_FAULT_LOG");
    setenv("DDSM_CONF", b->net_conf, 1);
    char *dup = strdup(lib);
    if (dup == NULL) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    free(b->cfg->backend.module);
    b->cfg->backend.module = dup;
    return true;
}

void bench_hsmnet_cleanup(bench *b)
{
    if (b->net_conf[0] != '\0')
        unlink(b->net_conf);
    b->net_conf[0] = '\0';
}
