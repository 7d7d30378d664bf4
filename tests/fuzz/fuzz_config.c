/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_config_load over arbitrary file contents. The config unit reads only from a file (it checks
 * the file's mode on the descriptor it reads), so the input is written to a 0600 in-memory file
 * (memfd) opened through /proc/self/fd/N; nothing touches the disk.
 *
 * Checked for every input: a rejection is DDSM_E_CONFIG with a NUL-terminated reason
 * "file[:line]: ...", the output untouched, and never the value of a conninfo key (a secret) in
 * the reason; an accepted config has every required key, every value within its documented range
 * (conf/ddsm.conf.example), root_token_label and root_pin_file together, at most 16 path patterns
 * each of which parses and allows its own instances, no path of depth 0, and no line that starts
 * a section other than the six known ones. A comment line put in front keeps the result and moves
 * the reported line by one. Leaks are reported by LeakSanitizer. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddsm/config.h"
#include "ddsm/path.h"
#include "fuzz.h"

static int conf_fd = -1;
static char conf_path[64];

static void setup_file(void)
{
    if (conf_fd >= 0)
        return;
    conf_fd = memfd_create("ddsm-fuzz.conf", MFD_CLOEXEC);
    FUZZ_CHECK(conf_fd >= 0, "memfd_create: %s", strerror(errno));
    FUZZ_CHECK(fchmod(conf_fd, 0600) == 0, "fchmod: %s", strerror(errno));
    snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
}

static void write_file(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(ftruncate(conf_fd, 0) == 0, "ftruncate: %s", strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(conf_fd, data + done, size - done, (off_t)done);
        FUZZ_CHECK(n > 0, "pwrite: %s", strerror(errno));
        done += (size_t)n;
    }
}

static bool printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    }
    return true;
}

static void check_string(const char *name, const char *v, bool required, size_t max)
{
    if (v == NULL) {
        FUZZ_CHECK(!required, "required key %s is missing from an accepted config", name);
        return;
    }
    size_t n = strlen(v);
    FUZZ_CHECK(n >= 1 && n <= max, "%s has %zu characters (1..%zu)", name, n, max);
    FUZZ_CHECK(printable(v), "%s holds a control character", name);
}

#define CHECK_RANGE(field, lo, hi)                                                                 \
    FUZZ_CHECK((field) >= (lo) && (field) <= (hi), #field " = %u outside %u..%u",                  \
               (unsigned)(field), (unsigned)(lo), (unsigned)(hi))

/* Each pattern with its '*' replaced by a number is a path the policy allows. */
static void check_patterns(const ddsm_config *cfg)
{
    FUZZ_CHECK(cfg->policy.n_path_patterns <= DDSM_POLICY_MAX_PATTERNS, "%zu patterns",
               cfg->policy.n_path_patterns);
    for (size_t i = 0; i < cfg->policy.n_path_patterns; i++) {
        const char *pat = cfg->policy.path_patterns[i];
        char inst[1024];
        size_t o = 0;
        ddsm_path_pattern pp;
        ddsm_path p;
        const char *why = NULL;

        FUZZ_CHECK(pat != NULL, "pattern %zu is NULL", i);
        FUZZ_CHECK(ddsm_path_pattern_parse(pat, strlen(pat), &pp, &why) == DDSM_OK,
                   "accepted pattern \"%s\" does not parse: %s", pat, why ? why : "?");
        for (const char *c = pat; *c != '\0' && o + 2 < sizeof(inst); c++) {
            if (*c == '*') {
                inst[o++] = '7';
            } else {
                inst[o++] = *c;
            }
        }
        inst[o] = '\0';
        FUZZ_CHECK(ddsm_path_parse(inst, o, &p, &why) == DDSM_OK, "instance \"%s\" of \"%s\": %s",
                   inst, pat, why ? why : "?");
        char canon[DDSM_PATH_TEXT_MAX];
        ddsm_path_format(&p, canon);
        FUZZ_CHECK(ddsm_config_path_allowed(cfg, canon), "\"%s\" is not allowed by \"%s\"", canon,
                   pat);
    }
    if (cfg->policy.n_path_patterns == 0)
        FUZZ_CHECK(ddsm_config_path_allowed(cfg, "m/0"), "no patterns, yet m/0 is refused");
    FUZZ_CHECK(!ddsm_config_path_allowed(cfg, "m"), "depth 0 is allowed");
    FUZZ_CHECK(!ddsm_config_path_allowed(cfg, NULL), "NULL path is allowed");
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static const char *const known_sections[] = {"backend", "store", "policy", "audit", "cache", "log"};

/* In an accepted file, every line that starts with '[' (after blanks and byte order marks: no
 * mix of them hides a header) names a known section, even one without keys. */
static void check_sections(const char *text, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        size_t eol = pos;
        while (eol < size && text[eol] != '\n')
            eol++;
        size_t i = pos;
        for (;;) {
            if (i < eol && is_blank(text[i]))
                i++;
            else if (eol - i >= 3 && memcmp(text + i, "\xef\xbb\xbf", 3) == 0)
                i += 3;
            else
                break;
        }
        if (i < eol && text[i] == '[') {
            const char *close = memchr(text + i, ']', eol - i);
            FUZZ_CHECK(close != NULL, "accepted a section header without ']'");
            const char *name = text + i + 1;
            size_t n = (size_t)(close - name);
            while (n > 0 && is_blank(*name)) {
                name++;
                n--;
            }
            while (n > 0 && is_blank(name[n - 1]))
                n--;
            bool known = false;
            for (size_t k = 0; k < sizeof(known_sections) / sizeof(known_sections[0]); k++)
                known = known ||
                        (strlen(known_sections[k]) == n && memcmp(known_sections[k], name, n) == 0);
            FUZZ_CHECK(known, "accepted the unknown section [%.*s]", (int)n, name);
        }
        pos = eol + 1;
    }
}

static void check_accepted(const ddsm_config *cfg)
{
    FUZZ_CHECK(cfg->file != NULL && strcmp(cfg->file, conf_path) == 0, "file is not recorded");
    check_string("backend.module", cfg->backend.module, true, 4096);
    check_string("backend.token_label", cfg->backend.token_label, true, 32);
    check_string("backend.root_key_label", cfg->backend.root_key_label, true, 32);
    check_string("backend.root_token_label", cfg->backend.root_token_label, false, 32);
    check_string("backend.root_pin_file", cfg->backend.root_pin_file, false, 4096);
    FUZZ_CHECK((cfg->backend.root_token_label == NULL) == (cfg->backend.root_pin_file == NULL),
               "root_token_label and root_pin_file are not set together");
    check_string("store.conninfo", cfg->store.conninfo, true, 8192);
    check_string("store.listen_conninfo", cfg->store.listen_conninfo, true, 8192);
    check_string("policy.requester", cfg->policy.requester, false, 64);
    CHECK_RANGE(cfg->backend.call_timeout_ms, 1, 600000);
    CHECK_RANGE(cfg->store.connect_timeout_s, 1, 3600);
    CHECK_RANGE(cfg->store.statement_timeout_ms, 1, 3600000);
    CHECK_RANGE(cfg->store.pool_size, 1, 1024);
    CHECK_RANGE(cfg->audit.batch_max, 1, 4096);
    CHECK_RANGE(cfg->audit.batch_wait_us, 0, 1000000);
    CHECK_RANGE(cfg->cache.size, 1, 1048576);
    CHECK_RANGE(cfg->cache.ttl_ms, 1, 86400000);
    CHECK_RANGE(cfg->cache.staleness_ms, 0, 3600000);
    FUZZ_CHECK(cfg->log.level == DDSM_LOG_ERROR || cfg->log.level == DDSM_LOG_WARN ||
                   cfg->log.level == DDSM_LOG_INFO || cfg->log.level == DDSM_LOG_DEBUG,
               "log level %d", (int)cfg->log.level);
    check_patterns(cfg);
}

static size_t count_occurrences(const char *hay, size_t hay_len, const char *needle)
{
    size_t n = strlen(needle);
    size_t count = 0;
    for (size_t i = 0; i + n <= hay_len; i++) {
        if (memcmp(hay + i, needle, n) == 0)
            count++;
    }
    return count;
}

/* The reason of a rejection must not show a conninfo value (it may hold a password). The seeds
 * put SECRET_MARK in conninfo values; when the input holds the mark once, inside the value of a
 * line that starts with conninfo or listen_conninfo, nothing but that value can bring it into
 * the reason (no message of ours contains it). */
#define SECRET_MARK "SeCrEt"

static bool in_conninfo_value(const char *text, size_t size, size_t at)
{
    size_t bol = at;
    while (bol > 0 && text[bol - 1] != '\n')
        bol--;
    while (bol < at && is_blank(text[bol]))
        bol++;
    size_t klen = 0;
    if (at - bol >= 8 && memcmp(text + bol, "conninfo", 8) == 0)
        klen = 8;
    else if (at - bol >= 15 && memcmp(text + bol, "listen_conninfo", 15) == 0)
        klen = 15;
    if (klen == 0)
        return false;
    size_t i = bol + klen;
    while (i < at && is_blank(text[i]))
        i++;
    return i < at && (text[i] == '=' || text[i] == ':') && at < size;
}

static void check_no_secret(const char *text, size_t size, const char *why)
{
    if (count_occurrences(text, size, SECRET_MARK) != 1)
        return;
    size_t at = 0;
    while (memcmp(text + at, SECRET_MARK, strlen(SECRET_MARK)) != 0)
        at++;
    if (in_conninfo_value(text, size, at))
        FUZZ_CHECK(strstr(why, SECRET_MARK) == NULL, "the reason \"%s\" shows a conninfo value",
                   why);
}

/* The line number in "file:N: ..." (0 for "file: ..."). */
static int reason_line(const char *why)
{
    size_t plen = strlen(conf_path);
    const char *p = why + plen + 1;
    int line = 0;
    while (*p >= '0' && *p <= '9' && line < 100000000)
        line = line * 10 + (*p++ - '0');
    return *p == ':' ? line : 0;
}

/* A comment line put in front changes nothing but the line numbers, which all move by one: the
 * reason names the right line. (Not after a byte order mark, which only counts on line 1.) */
static void check_shifted(const uint8_t *data, size_t size, ddsm_err want, const char *why)
{
    static const char comment[] = "; shifted\n";
    static uint8_t buf[64 * 1024];
    ddsm_config *cfg = NULL;
    char why2[512];

    if (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        return;
    if (size > sizeof(buf) - (sizeof(comment) - 1))
        return;
    memcpy(buf, comment, sizeof(comment) - 1);
    memcpy(buf + sizeof(comment) - 1, data, size);
    write_file(buf, size + sizeof(comment) - 1);
    ddsm_err e = ddsm_config_load(conf_path, &cfg, why2, sizeof(why2));
    FUZZ_CHECK(e == want, "a leading comment line changes the result from %d to %d", want, e);
    if (e == DDSM_OK) {
        ddsm_config_free(cfg);
        return;
    }
    int line = reason_line(why);
    int line2 = reason_line(why2);
    FUZZ_CHECK(line2 == (line > 0 ? line + 1 : 0),
               "after a leading comment line the error moves from line %d to %d:\n%s\n%s", line,
               line2, why, why2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddsm_config *const sentinel = (ddsm_config *)(uintptr_t)0x5a5a5a5a;
    ddsm_config *cfg = sentinel;
    char why[512];

    setup_file();
    write_file(data, size);
    memset(why, 0x7f, sizeof(why));
    ddsm_err e = ddsm_config_load(conf_path, &cfg, why, sizeof(why));
    if (e == DDSM_OK) {
        FUZZ_CHECK(cfg != NULL && cfg != sentinel, "accepted without a config");
        check_accepted(cfg);
        check_sections((const char *)data, size);
        ddsm_config_free(cfg);
        check_shifted(data, size, e, "");
        return 0;
    }
    FUZZ_CHECK(e == DDSM_E_CONFIG, "rejected with error %d (%s), not DDSM_E_CONFIG", e,
               ddsm_err_str(e));
    FUZZ_CHECK(cfg == sentinel, "a rejection wrote the output");
    FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL, "the reason is not NUL-terminated");
    size_t plen = strlen(conf_path);
    FUZZ_CHECK(strncmp(why, conf_path, plen) == 0 && why[plen] == ':' && why[plen + 1] != '\0',
               "the reason \"%s\" does not start with \"file:\"", why);
    check_no_secret((const char *)data, size, why);
    check_shifted(data, size, e, why);
    return 0;
}
