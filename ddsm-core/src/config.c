/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration: an INI file read with libinih, validated key by key.
 *
 * Precedence is resolved here and only here: the environment ($DDSM_CONF) chooses the file, the
 * file's keys override the built-in defaults set by config_defaults(). libinih's handler is not
 * told the line number (Debian builds it without INI_HANDLER_LINENO), so the file is fed to
 * ini_parse_stream through a reader that counts lines; libinih calls the handler for a line right
 * after reading it, so the count is that line's number. The reader also refuses what libinih would
 * silently mangle: over-long lines (it splits them), NUL bytes, and indented lines (it would take
 * them as continuations of the previous value). */
#include "ddsm/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddsm/path.h"
#include "ddsm/secmem.h"

enum kind {
    K_STRING,  /* char *, 1..max_len bytes, printable */
    K_SECRET,  /* char * that may hold a password (conninfo): never echoed, wiped when freed */
    K_UINT,    /* unsigned in [min, max] */
    K_BOOL,    /* true | false */
    K_LEVEL,   /* error | warn | info | debug */
    K_PATTERN, /* path_pattern: repeatable, a valid path shape */
    K_RATE,    /* ddsm_rate: "N/s", "N/min", "N/h", "N/d" or 0 */
    K_MECH,    /* mechanism: repeatable, CKM_<NAME> or 0x<hex> (the module resolves names) */
    K_MECHLIST, /* extra_mechanisms: comma-separated CKM_<NAME> or 0x<hex> */
    K_TEXTFILE, /* char *, an absolute path; "%p" and "%%" are the only '%' sequences */
};

struct key_def {
    const char *section;
    const char *name;
    enum kind kind;
    size_t offset; /* of the field in ddsm_config */
    unsigned min, max; /* K_UINT range; K_STRING / K_SECRET: max length (min is 1) */
};

#define F(field) offsetof(ddsm_config, field)
#define LABEL_MAX 32u /* a PKCS#11 token or object label as the tools show it */
#define PATH_MAX_LEN 4096u

static const struct key_def keys[] = {
    {"backend", "module", K_STRING, F(backend.module), 1, PATH_MAX_LEN},
    {"backend", "token_label", K_STRING, F(backend.token_label), 1, LABEL_MAX},
    {"backend", "root_key_label", K_STRING, F(backend.root_key_label), 1, LABEL_MAX},
    {"backend", "root_token_label", K_STRING, F(backend.root_token_label), 1, LABEL_MAX},
    {"backend", "root_pin_file", K_STRING, F(backend.root_pin_file), 1, PATH_MAX_LEN},
    {"backend", "standby_module", K_STRING, F(backend.standby_module), 1, PATH_MAX_LEN},
    {"backend", "standby_token_label", K_STRING, F(backend.standby_token_label), 1, LABEL_MAX},
    {"backend", "standby_root_pin_file", K_STRING, F(backend.standby_root_pin_file), 1,
     PATH_MAX_LEN},
    {"backend", "call_timeout_ms", K_UINT, F(backend.call_timeout_ms), 1, 600000},
    {"backend", "workers", K_UINT, F(backend.workers), 1, 64},
    {"backend", "extra_mechanisms", K_MECHLIST, F(backend.extra_mechanisms), 0, 0},
    {"store", "conninfo", K_SECRET, F(store.conninfo), 1, 8192},
    {"store", "listen_conninfo", K_SECRET, F(store.listen_conninfo), 1, 8192},
    {"store", "connect_timeout_s", K_UINT, F(store.connect_timeout_s), 1, 3600},
    {"store", "statement_timeout_ms", K_UINT, F(store.statement_timeout_ms), 1, 3600000},
    {"store", "pool_size", K_UINT, F(store.pool_size), 1, 1024},
    {"store", "transaction_pooler", K_BOOL, F(store.transaction_pooler), 0, 0},
    {"policy", "path_pattern", K_PATTERN, F(policy.path_patterns), 0, 0},
    {"policy", "extractable", K_BOOL, F(policy.extractable), 0, 0},
    {"policy", "requester", K_STRING, F(policy.requester), 1, 64},
    {"policy", "rate_per_requester_asset", K_RATE, F(policy.rate_per_requester_asset), 0, 0},
    {"policy", "rate_per_requester", K_RATE, F(policy.rate_per_requester), 0, 0},
    {"policy", "mechanism", K_MECH, F(policy.mechanisms), 0, 0},
    {"policy", "deny_burst", K_UINT, F(policy.deny_burst), 0, 1000000},
    {"policy", "deny_per_minute", K_UINT, F(policy.deny_per_minute), 0, 6000000},
    {"audit", "batch_max", K_UINT, F(audit.batch_max), 1, 4096},
    {"audit", "batch_wait_us", K_UINT, F(audit.batch_wait_us), 0, 1000000},
    {"audit", "connections", K_UINT, F(audit.connections), 1, 64},
    {"cache", "size", K_UINT, F(cache.size), 1, 1048576},
    {"cache", "handles", K_UINT, F(cache.handles), 1, 1048576},
    {"cache", "ttl_ms", K_UINT, F(cache.ttl_ms), 1, 86400000},
    {"cache", "staleness_ms", K_UINT, F(cache.staleness_ms), 0, 3600000},
    {"cache", "rotation_fence", K_BOOL, F(cache.rotation_fence), 0, 0},
    {"log", "level", K_LEVEL, F(log.level), 0, 0},
    {"log", "syslog", K_BOOL, F(log.syslog), 0, 0},
    {"metrics", "textfile", K_TEXTFILE, F(metrics.textfile), 1, PATH_MAX_LEN},
    {"metrics", "interval_ms", K_UINT, F(metrics.interval_ms), 100, 3600000},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const sections[] = {"backend", "store", "policy", "audit",
                                        "cache",   "log",   "metrics"};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

struct load {
    const char *file;
    FILE *f;
    char *line;      /* getline buffer: may hold a conninfo, wiped before it is freed */
    size_t line_cap;
    int lineno;      /* of the line last handed to libinih */
    ddsm_config *cfg;
    ddsm_err err;    /* first error, DDSM_OK so far */
    int err_line;
    char *why;
    size_t why_len;
    int key_line[N_KEYS]; /* where each key was set; 0: not set */
};

static void say(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* Record the first error only, as "file:line: reason". */
static void fail_at(struct load *ld, int line, ddsm_err e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_at(struct load *ld, int line, ddsm_err e, const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    if (ld->err != DDSM_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    ld->err = e;
    ld->err_line = line;
    if (line > 0)
        say(ld->why, ld->why_len, "%s:%d: %s", ld->file, line, reason);
    else
        say(ld->why, ld->why_len, "%s: %s", ld->file, reason);
}

static bool known_section(const char *name)
{
    for (size_t i = 0; i < N_SECTIONS; i++) {
        if (strcmp(name, sections[i]) == 0)
            return true;
    }
    return false;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A section header line "[name]" (p[0] == '['): checked here because libinih does not call the
 * handler for a section without keys, so an unknown empty section would pass unnoticed. Writes
 * the trimmed header for libinih into str (at least len + 2 bytes). Returns its length. */
static size_t section_line(struct load *ld, const char *p, size_t len, char *str)
{
    const char *close = memchr(p, ']', len);
    if (close == NULL) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "section header has no closing ']'");
        return 0;
    }
    const char *name = p + 1;
    size_t name_len = (size_t)(close - name);
    while (name_len > 0 && is_blank(*name)) {
        name++;
        name_len--;
    }
    while (name_len > 0 && is_blank(name[name_len - 1]))
        name_len--;
    const char *rest = close + 1;
    const char *end = p + len;
    while (rest < end && is_blank(*rest))
        rest++;
    if (rest < end && *rest != ';' && *rest != '#') {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "unexpected text after the section header");
        return 0;
    }
    str[0] = '[';
    memcpy(str + 1, name, name_len);
    str[name_len + 1] = ']';
    str[name_len + 2] = '\0';
    char section[64];
    snprintf(section, sizeof(section), "%.*s", (int)name_len, name);
    if (name_len >= sizeof(section) || !known_section(section))
        fail_at(ld, ld->lineno, DDSM_E_CONFIG,
                "unknown section [%s] (expected backend, store, policy, audit, cache, log or "
                "metrics)",
                section);
    return name_len + 2;
}

/* fgets-style reader for ini_parse_stream: one physical line per call, counted. */
static char *read_line(char *str, int num, void *stream)
{
    struct load *ld = stream;

    errno = 0;
    ssize_t n = getline(&ld->line, &ld->line_cap, ld->f);
    if (n < 0) {
        if (ferror(ld->f))
            fail_at(ld, ld->lineno + 1, ddsm_err_errno(errno), "read error: %s",
                    strerror(errno != 0 ? errno : EIO));
        return NULL;
    }
    ld->lineno++;
    const char *p = ld->line;
    size_t len = (size_t)n;
    if (strlen(p) != len) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "line contains a NUL byte");
        len = 0;
    }
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (ld->lineno == 1 && len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
        p += 3; /* a UTF-8 byte order mark: dropped here so the header check below sees "[" */
        len -= 3;
    }
    /* Leading blanks are dropped so that no line is ever a continuation of the previous value:
     * every key must be spelt out on its own line. */
    while (len > 0 && is_blank(*p)) {
        p++;
        len--;
    }
    /* libinih would drop a byte order mark that follows blanks on line 1 and then read a section
     * header we never checked: a mark anywhere but at byte 0 of the file is an error. */
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "byte order mark not at the start of the file");
        len = 0;
    }
    if (num < 3 || len > (size_t)num - 2) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "line is too long (at most %d characters)",
                num - 2);
        len = 0;
    }
    if (len > 0 && p[0] == '[') {
        len = section_line(ld, p, len, str);
    } else {
        memcpy(str, p, len);
    }
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static const struct key_def *find_key(const char *section, const char *name, size_t *idx)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(section, keys[i].section) == 0 && strcmp(name, keys[i].name) == 0) {
            *idx = i;
            return &keys[i];
        }
    }
    return NULL;
}

static bool printable(const char *v)
{
    for (; *v != '\0'; v++) {
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    }
    return true;
}

/* Strict decimal: digits only (no sign, blank or base prefix), within [min, max]. */
static bool parse_uint(const char *v, unsigned min, unsigned max, unsigned *out)
{
    uint64_t x = 0;
    if (*v == '\0')
        return false;
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9')
            return false;
        x = x * 10u + (uint64_t)(*v - '0');
        if (x > max)
            return false;
    }
    if (x < min)
        return false;
    *out = (unsigned)x;
    return true;
}

static void *field(ddsm_config *cfg, const struct key_def *k)
{
    return (char *)cfg + k->offset;
}

/* One "mechanism = NAME" line: CKM_ and upper-case letters, digits and '_', or 0x and 1..8 hex
 * digits. Whether the module knows the name is its own check (C_Initialize). */
/* A mechanism as the config names it: CKM_<NAME> or 0x followed by 1..8 hex digits. */
static bool mechanism_ok(const char *value)
{
    size_t n = strlen(value);
    bool ok = false;
    if (n > 4 && n <= 64 && strncmp(value, "CKM_", 4) == 0) {
        ok = true;
        for (size_t i = 4; i < n; i++)
            ok = ok && ((value[i] >= 'A' && value[i] <= 'Z') ||
                        (value[i] >= '0' && value[i] <= '9') || value[i] == '_');
    } else if (n > 2 && n <= 10 && (strncmp(value, "0x", 2) == 0)) {
        ok = true;
        for (size_t i = 2; i < n; i++)
            ok = ok && ((value[i] >= '0' && value[i] <= '9') ||
                        (value[i] >= 'a' && value[i] <= 'f') || (value[i] >= 'A' && value[i] <= 'F'));
    }
    return ok;
}

/* Append a copy of the checked mechanism name item to list (n entries, at most max), for the
 * key `what`: 1, or 0 with the error recorded. */
static int push_mechanism(struct load *ld, char **list, size_t *n, size_t max, const char *item,
                          const char *what)
{
    if (*n == max) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "too many %s (at most %zu)", what, max);
        return 0;
    }
    char *copy = strdup(item);
    if (copy == NULL) {
        fail_at(ld, ld->lineno, DDSM_E_NOMEM, "out of memory");
        return 0;
    }
    list[(*n)++] = copy;
    return 1;
}

static int set_mechanism(struct load *ld, const char *value)
{
    ddsm_config *cfg = ld->cfg;
    if (!mechanism_ok(value)) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "\"mechanism\" in [policy] must be a PKCS#11 "
                "mechanism name such as CKM_SHA256_HMAC, or 0x followed by 1..8 hex digits, not "
                "\"%s\"", value);
        return 0;
    }
    return push_mechanism(ld, cfg->policy.mechanisms, &cfg->policy.n_mechanisms,
                          DDSM_POLICY_MAX_MECHANISMS, value, "\"mechanism\" lines in [policy]");
}

/* [backend] extra_mechanisms: "0x80001234, CKM_FOO", items separated by commas and blanks. */
static int set_mechanism_list(struct load *ld, const char *value)
{
    ddsm_config *cfg = ld->cfg;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        char item[65];
        bool ok = n > 0 && n < sizeof(item);
        if (ok) {
            memcpy(item, p, n);
            item[n] = '\0';
            ok = mechanism_ok(item);
        }
        if (!ok) {
            fail_at(ld, ld->lineno, DDSM_E_CONFIG, "\"extra_mechanisms\" in [backend] must be a "
                    "comma-separated list of PKCS#11 mechanism names such as CKM_SHA256_HMAC or "
                    "0x followed by 1..8 hex digits, not \"%s\"", value);
            return 0;
        }
        if (!push_mechanism(ld, cfg->backend.extra_mechanisms, &cfg->backend.n_extra_mechanisms,
                            DDSM_BACKEND_MAX_EXTRA_MECHANISMS, item,
                            "\"extra_mechanisms\" in [backend]"))
            return 0;
        p += n;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return 1;
        if (*p != ',') {
            fail_at(ld, ld->lineno, DDSM_E_CONFIG, "\"extra_mechanisms\" in [backend]: items "
                    "are separated by commas, not \"%s\"", value);
            return 0;
        }
        p++;
    }
}

/* [metrics] textfile: an absolute path whose only '%' sequences are %p (the process id) and %%. */
static int set_textfile(struct load *ld, const struct key_def *k, const char *section,
                        const char *value)
{
    size_t n = strlen(value);
    if (n == 0 || n > k->max || value[0] != '/' || !printable(value)) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "\"%s\" in [%s] must be an absolute path of at "
                "most %u printable characters", k->name, section, k->max);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (value[i] == '%' && value[i + 1] != 'p' && value[i + 1] != '%') {
            fail_at(ld, ld->lineno, DDSM_E_CONFIG, "\"%s\" in [%s]: '%%' must be followed by "
                    "p (the process id) or %% (a percent sign)", k->name, section);
            return 0;
        }
        if (value[i] == '%')
            i++;
    }
    char *copy = strdup(value);
    if (copy == NULL) {
        fail_at(ld, ld->lineno, DDSM_E_NOMEM, "out of memory");
        return 0;
    }
    *(char **)field(ld->cfg, k) = copy;
    return 1;
}

/* Store one key's value; returns 0 (libinih's "error on this line") after recording why. */
static int set_value(struct load *ld, const struct key_def *k, const char *section,
                     const char *value)
{
    ddsm_config *cfg = ld->cfg;
    int line = ld->lineno;

    switch (k->kind) {
    case K_STRING:
    case K_SECRET: {
        size_t len = strlen(value);
        if (len == 0) {
            fail_at(ld, line, DDSM_E_CONFIG, "empty value for \"%s\" in [%s]", k->name, section);
            return 0;
        }
        if (len > k->max) {
            fail_at(ld, line, DDSM_E_CONFIG, "value of \"%s\" in [%s] is too long (at most %u "
                    "characters)", k->name, section, k->max);
            return 0;
        }
        if (!printable(value)) {
            fail_at(ld, line, DDSM_E_CONFIG, "value of \"%s\" in [%s] contains a control "
                    "character", k->name, section);
            return 0;
        }
        char *copy = strdup(value);
        if (copy == NULL) {
            fail_at(ld, line, DDSM_E_NOMEM, "out of memory");
            return 0;
        }
        *(char **)field(cfg, k) = copy;
        return 1;
    }
    case K_UINT:
        if (!parse_uint(value, k->min, k->max, (unsigned *)field(cfg, k))) {
            fail_at(ld, line, DDSM_E_CONFIG, "\"%s\" in [%s] must be a whole number from %u to "
                    "%u, not \"%s\"", k->name, section, k->min, k->max, value);
            return 0;
        }
        return 1;
    case K_BOOL:
        if (strcmp(value, "true") == 0) {
            *(bool *)field(cfg, k) = true;
        } else if (strcmp(value, "false") == 0) {
            *(bool *)field(cfg, k) = false;
        } else {
            fail_at(ld, line, DDSM_E_CONFIG, "\"%s\" in [%s] must be true or false, not \"%s\"",
                    k->name, section, value);
            return 0;
        }
        return 1;
    case K_LEVEL: {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (strcmp(value, names[i]) == 0) {
                cfg->log.level = (ddsm_log_level)i;
                return 1;
            }
        }
        fail_at(ld, line, DDSM_E_CONFIG, "\"%s\" in [%s] must be error, warn, info or debug, "
                "not \"%s\"", k->name, section, value);
        return 0;
    }
    case K_PATTERN: {
        ddsm_path_pattern pat;
        const char *why = NULL;
        if (cfg->policy.n_path_patterns == DDSM_POLICY_MAX_PATTERNS) {
            fail_at(ld, line, DDSM_E_CONFIG, "too many \"path_pattern\" lines in [policy] (at "
                    "most %d)", DDSM_POLICY_MAX_PATTERNS);
            return 0;
        }
        if (ddsm_path_pattern_parse(value, strlen(value), &pat, &why) != DDSM_OK) {
            fail_at(ld, line, DDSM_E_CONFIG, "path_pattern \"%s\" is not a valid path shape: %s",
                    value, why != NULL ? why : "malformed");
            return 0;
        }
        char *copy = strdup(value);
        if (copy == NULL) {
            fail_at(ld, line, DDSM_E_NOMEM, "out of memory");
            return 0;
        }
        cfg->policy.path_patterns[cfg->policy.n_path_patterns++] = copy;
        return 1;
    }
    case K_RATE: {
        const char *why = NULL;
        if (ddsm_rate_parse(value, (ddsm_rate *)field(cfg, k), &why) != DDSM_OK) {
            fail_at(ld, line, DDSM_E_CONFIG, "\"%s\" in [%s] must be a rate such as 100/s, "
                    "6000/min, 50000/h or 1000000/d, or 0 for no limit, not \"%s\": %s", k->name,
                    section, value, why != NULL ? why : "malformed");
            return 0;
        }
        return 1;
    }
    case K_MECH:
        return set_mechanism(ld, value);
    case K_MECHLIST:
        return set_mechanism_list(ld, value);
    case K_TEXTFILE:
        return set_textfile(ld, k, section, value);
    }
    return 0;
}

static int handle_key(void *user, const char *section, const char *name, const char *value)
{
    struct load *ld = user;
    size_t idx = 0;

    if (section[0] == '\0') {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "key \"%s\" is outside any [section]", name);
        return 0;
    }
    if (!known_section(section))
        return 0; /* already reported at its header */
    const struct key_def *k = find_key(section, name, &idx);
    if (k == NULL) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "unknown key \"%s\" in [%s]", name, section);
        return 0;
    }
    if (ld->key_line[idx] != 0 && k->kind != K_PATTERN && k->kind != K_MECH) {
        fail_at(ld, ld->lineno, DDSM_E_CONFIG, "\"%s\" in [%s] is set twice (first on line %d)",
                name, section, ld->key_line[idx]);
        return 0;
    }
    ld->key_line[idx] = ld->lineno;
    return set_value(ld, k, section, value);
}

static void config_defaults(ddsm_config *cfg)
{
    cfg->backend.call_timeout_ms = 5000;
    cfg->store.connect_timeout_s = 5;
    cfg->store.statement_timeout_ms = 5000;
    cfg->store.pool_size = 8;
    cfg->policy.extractable = false;
    cfg->policy.deny_burst = 100;
    cfg->policy.deny_per_minute = 600;
    cfg->audit.batch_max = 64;
    cfg->audit.batch_wait_us = 200;
    cfg->audit.connections = 2;
    cfg->cache.size = 4096;
    cfg->cache.handles = 1048576;
    cfg->cache.ttl_ms = 300000;
    cfg->cache.staleness_ms = 1000;
    cfg->log.level = DDSM_LOG_WARN;
    cfg->log.syslog = false;
    cfg->policy.rate_per_requester_asset = (ddsm_rate){0, 1};
    cfg->policy.rate_per_requester = (ddsm_rate){0, 1};
    cfg->metrics.interval_ms = 10000;
}

static int line_of(const struct load *ld, const char *section, const char *name)
{
    size_t idx = 0;
    return find_key(section, name, &idx) != NULL ? ld->key_line[idx] : 0;
}

/* What no single line can tell: required keys, keys that need each other, derived defaults. */
static void check_whole(struct load *ld)
{
    ddsm_config *cfg = ld->cfg;
    static const struct {
        const char *section, *name;
    } required[] = {{"backend", "module"}, {"backend", "token_label"}, {"store", "conninfo"}};

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (line_of(ld, required[i].section, required[i].name) == 0)
            fail_at(ld, 0, DDSM_E_CONFIG, "missing required key \"%s\" in [%s]",
                    required[i].name, required[i].section);
    }
    if (cfg->backend.root_token_label != NULL && cfg->backend.root_pin_file == NULL)
        fail_at(ld, line_of(ld, "backend", "root_token_label"), DDSM_E_CONFIG,
                "\"root_token_label\" needs \"root_pin_file\" in [backend] (the module logs in "
                "to the custody token itself)");
    if (cfg->backend.root_pin_file != NULL && cfg->backend.root_token_label == NULL)
        fail_at(ld, line_of(ld, "backend", "root_pin_file"), DDSM_E_CONFIG,
                "\"root_pin_file\" is only used with \"root_token_label\" in [backend]");
    if (cfg->backend.standby_token_label != NULL && cfg->backend.standby_root_pin_file == NULL)
        fail_at(ld, line_of(ld, "backend", "standby_token_label"), DDSM_E_CONFIG,
                "\"standby_token_label\" needs \"standby_root_pin_file\" in [backend] (the "
                "module logs in to the standby token itself)");
    if (cfg->backend.standby_token_label == NULL &&
        (cfg->backend.standby_root_pin_file != NULL || cfg->backend.standby_module != NULL))
        fail_at(ld,
                line_of(ld, "backend",
                        cfg->backend.standby_module != NULL ? "standby_module"
                                                            : "standby_root_pin_file"),
                DDSM_E_CONFIG,
                "\"%s\" is only used with \"standby_token_label\" in [backend]",
                cfg->backend.standby_module != NULL ? "standby_module" : "standby_root_pin_file");
    if (ld->err != DDSM_OK)
        return;
    if (cfg->backend.root_key_label == NULL)
        cfg->backend.root_key_label = strdup("ddsm-root");
    if (cfg->store.listen_conninfo == NULL)
        cfg->store.listen_conninfo = strdup(cfg->store.conninfo);
    if (cfg->backend.root_key_label == NULL || cfg->store.listen_conninfo == NULL)
        fail_at(ld, 0, DDSM_E_NOMEM, "out of memory");
}

ddsm_err ddsm_config_file_trusted(const struct stat *st, char *why, size_t why_len)
{
    if (!S_ISREG(st->st_mode)) {
        say(why, why_len, "not a regular file");
        return DDSM_E_CONFIG;
    }
    if (st->st_uid != geteuid() && st->st_uid != 0) {
        say(why, why_len, "owned by uid %lu, neither this user (uid %lu) nor root (chown it)",
            (unsigned long)st->st_uid, (unsigned long)geteuid());
        return DDSM_E_CONFIG;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        say(why, why_len, "writable by group or others (mode %04o; chmod go-w)",
            (unsigned)(st->st_mode & 07777));
        return DDSM_E_CONFIG;
    }
    return DDSM_OK;
}

/* The PIN file is a secret the module trusts like the configuration: checked as it is. */
static void check_pin_file(struct load *ld)
{
    const char *f = ld->cfg->backend.root_pin_file;
    struct stat st;
    char untrusted[160];
    /* One that cannot be looked at now (not there yet) is checked again at every login. */
    if (f != NULL && stat(f, &st) == 0 &&
        ddsm_config_file_trusted(&st, untrusted, sizeof(untrusted)) != DDSM_OK)
        fail_at(ld, line_of(ld, "backend", "root_pin_file"), DDSM_E_CONFIG,
                "root_pin_file %s refused: %s", f, untrusted);
    f = ld->cfg->backend.standby_root_pin_file;
    if (f != NULL && stat(f, &st) == 0 &&
        ddsm_config_file_trusted(&st, untrusted, sizeof(untrusted)) != DDSM_OK)
        fail_at(ld, line_of(ld, "backend", "standby_root_pin_file"), DDSM_E_CONFIG,
                "standby_root_pin_file %s refused: %s", f, untrusted);
}

const char *ddsm_config_default_path(void)
{
    /* secure_getenv: a set-id program loading the module must not be steered by its caller. */
    const char *env = secure_getenv("DDSM_CONF");
    return env != NULL && env[0] != '\0' ? env : DDSM_CONF_DEFAULT;
}

ddsm_err ddsm_config_load(const char *file, ddsm_config **out, char *why, size_t why_len)
{
    struct load ld;
    struct stat st;
    int fd = -1;

    memset(&ld, 0, sizeof(ld));
    ld.file = file;
    ld.why = why;
    ld.why_len = why_len;
    if (why != NULL && why_len > 0)
        why[0] = '\0';
    if (file == NULL || out == NULL) {
        say(why, why_len, "no configuration file given");
        return DDSM_E_ARG;
    }

    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fail_at(&ld, 0, ddsm_err_errno(errno), "cannot open: %s", strerror(errno));
        goto out;
    }
    /* Checked on the descriptor we read, so the file cannot be swapped in between. */
    if (fstat(fd, &st) != 0) {
        fail_at(&ld, 0, ddsm_err_errno(errno), "cannot stat: %s", strerror(errno));
        goto out;
    }
    char untrusted[160];
    if (ddsm_config_file_trusted(&st, untrusted, sizeof(untrusted)) != DDSM_OK) {
        fail_at(&ld, 0, DDSM_E_CONFIG, "refused: %s; it decides which HSM and database are "
                "trusted", untrusted);
        goto out;
    }
    ld.f = fdopen(fd, "r");
    if (ld.f == NULL) {
        fail_at(&ld, 0, ddsm_err_errno(errno), "cannot read: %s", strerror(errno));
        goto out;
    }
    fd = -1; /* owned by ld.f now */
    ld.cfg = calloc(1, sizeof(*ld.cfg));
    if (ld.cfg == NULL) {
        fail_at(&ld, 0, DDSM_E_NOMEM, "out of memory");
        goto out;
    }
    config_defaults(ld.cfg);
    ld.cfg->file = strdup(file);
    if (ld.cfg->file == NULL) {
        fail_at(&ld, 0, DDSM_E_NOMEM, "out of memory");
        goto out;
    }

    int rc = ini_parse_stream(read_line, &ld, handle_key, &ld);
    if (rc == -2) {
        fail_at(&ld, 0, DDSM_E_NOMEM, "out of memory");
    } else if (rc > 0 && (ld.err == DDSM_OK || rc < ld.err_line)) {
        /* A line libinih could not parse, before any error of ours. */
        ld.err = DDSM_OK;
        fail_at(&ld, rc, DDSM_E_CONFIG, "syntax error: expected \"[section]\", \"key = value\" "
                "or a comment");
    } else if (rc < 0 && ld.err == DDSM_OK) {
        fail_at(&ld, 0, DDSM_E_IO, "cannot read the file");
    }
    if (ld.err == DDSM_OK)
        check_whole(&ld);
    if (ld.err == DDSM_OK)
        check_pin_file(&ld);
    if (ld.err == DDSM_OK) {
        *out = ld.cfg;
        ld.cfg = NULL;
    }
out:
    if (ld.line != NULL) {
        ddsm_wipe(ld.line, ld.line_cap);
        free(ld.line);
    }
    if (ld.f != NULL)
        fclose(ld.f);
    if (fd >= 0)
        close(fd);
    ddsm_config_free(ld.cfg);
    return ld.err;
}

static void free_secret_string(char *s)
{
    if (s == NULL)
        return;
    ddsm_wipe(s, strlen(s));
    free(s);
}

void ddsm_config_free(ddsm_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->file);
    free(cfg->backend.module);
    free(cfg->backend.token_label);
    free(cfg->backend.root_key_label);
    free(cfg->backend.root_token_label);
    free(cfg->backend.root_pin_file);
    free(cfg->backend.standby_module);
    free(cfg->backend.standby_token_label);
    free(cfg->backend.standby_root_pin_file);
    free_secret_string(cfg->store.conninfo);
    free_secret_string(cfg->store.listen_conninfo);
    for (size_t i = 0; i < cfg->policy.n_path_patterns && i < DDSM_POLICY_MAX_PATTERNS; i++)
        free(cfg->policy.path_patterns[i]);
    free(cfg->policy.requester);
    for (size_t i = 0; i < cfg->policy.n_mechanisms && i < DDSM_POLICY_MAX_MECHANISMS; i++)
        free(cfg->policy.mechanisms[i]);
    for (size_t i = 0;
         i < cfg->backend.n_extra_mechanisms && i < DDSM_BACKEND_MAX_EXTRA_MECHANISMS; i++)
        free(cfg->backend.extra_mechanisms[i]);
    free(cfg->metrics.textfile);
    free(cfg);
}

bool ddsm_config_path_allowed(const ddsm_config *cfg, const char *canonical_path)
{
    ddsm_path path;
    const char *why = NULL;

    /* A path that does not parse is never allowed, patterns or not. */
    if (canonical_path == NULL ||
        ddsm_path_parse(canonical_path, strlen(canonical_path), &path, &why) != DDSM_OK)
        return false;
    if (cfg == NULL || cfg->policy.n_path_patterns == 0)
        return true;
    for (size_t i = 0; i < cfg->policy.n_path_patterns && i < DDSM_POLICY_MAX_PATTERNS; i++) {
        ddsm_path_pattern pat;
        const char *p = cfg->policy.path_patterns[i];
        if (p != NULL && ddsm_path_pattern_parse(p, strlen(p), &pat, &why) == DDSM_OK &&
            ddsm_path_pattern_match(&pat, &path))
            return true;
    }
    return false;
}
