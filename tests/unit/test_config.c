/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration loading: defaults, every key, every kind of bad input reported as
 * "file:line: reason", file permission checks, the shipped example, and path policy matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddsm/config.h"

static char dir[] = "/tmp/ddsm-test-config-XXXXXX";
static char conf_path[sizeof(dir) + 32];
static char why[1024];

#define MINIMAL                                                                                    \
    "[backend]\n"                                                                                  \
    "module = /usr/lib/softhsm/libsofthsm2.so\n"                                                   \
    "token_label = custody\n"                                                                      \
    "[store]\n"                                                                                    \
    "conninfo = dbname=ddsm\n"

static int make_dir(void **state)
{
    (void)state;
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    unlink(conf_path);
    return rmdir(dir);
}

static const char *write_conf_len(const char *content, size_t len, mode_t mode)
{
    snprintf(conf_path, sizeof(conf_path), "%s/ddsm.conf", dir);
    unlink(conf_path);
    FILE *f = fopen(conf_path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(conf_path, mode), 0);
    return conf_path;
}

static const char *write_conf(const char *content)
{
    return write_conf_len(content, strlen(content), 0600);
}

static ddsm_config *load_ok(const char *content)
{
    ddsm_config *cfg = NULL;
    const char *file = write_conf(content);
    ddsm_err e = ddsm_config_load(file, &cfg, why, sizeof(why));
    if (e != DDSM_OK)
        fail_msg("load failed (%d): %s", e, why);
    assert_non_null(cfg);
    return cfg;
}

/* Refused with DDSM_E_CONFIG and why == "<file>:<line>: ..." containing reason; line 0 means the
 * message has no line ("<file>: ..."). */
static void assert_refused_content(const char *content, size_t len, int line, const char *reason)
{
    ddsm_config *cfg = (ddsm_config *)(uintptr_t)1;
    const char *file = write_conf_len(content, len, 0600);
    ddsm_err e = ddsm_config_load(file, &cfg, why, sizeof(why));
    if (e != DDSM_E_CONFIG)
        fail_msg("expected DDSM_E_CONFIG, got %d (%s) for:\n%s", e, why, content);
    assert_ptr_equal(cfg, (ddsm_config *)(uintptr_t)1); /* untouched */
    char prefix[256];
    if (line > 0)
        snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
    else
        snprintf(prefix, sizeof(prefix), "%s: ", file);
    if (strncmp(why, prefix, strlen(prefix)) != 0)
        fail_msg("\"%s\" does not start with \"%s\"", why, prefix);
    if (strstr(why, reason) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", why, reason);
}

static void assert_refused(const char *content, int line, const char *reason)
{
    assert_refused_content(content, strlen(content), line, reason);
}

/* The values of the keys the defaults test and the every-key test check (NULL: unset). */
struct config_values {
    const char *module, *token_label, *root_key_label, *root_token_label, *root_pin_file;
    unsigned call_timeout_ms;
    const char *conninfo, *listen_conninfo;
    unsigned connect_timeout_s, statement_timeout_ms, pool_size;
    size_t n_path_patterns;
    const char *path_patterns[2];
    bool extractable;
    const char *requester;
    unsigned batch_max, batch_wait_us, cache_size, cache_ttl_ms, cache_staleness_ms;
    ddsm_log_level log_level;
    bool log_syslog;
};

static void assert_string_or_null(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else
        assert_string_equal(got, want);
}

static void assert_config_values(const ddsm_config *cfg, const struct config_values *w)
{
    assert_string_or_null(cfg->backend.module, w->module);
    assert_string_or_null(cfg->backend.token_label, w->token_label);
    assert_string_or_null(cfg->backend.root_key_label, w->root_key_label);
    assert_string_or_null(cfg->backend.root_token_label, w->root_token_label);
    assert_string_or_null(cfg->backend.root_pin_file, w->root_pin_file);
    assert_int_equal(cfg->backend.call_timeout_ms, w->call_timeout_ms);
    assert_string_or_null(cfg->store.conninfo, w->conninfo);
    assert_string_or_null(cfg->store.listen_conninfo, w->listen_conninfo);
    assert_int_equal(cfg->store.connect_timeout_s, w->connect_timeout_s);
    assert_int_equal(cfg->store.statement_timeout_ms, w->statement_timeout_ms);
    assert_int_equal(cfg->store.pool_size, w->pool_size);
    assert_int_equal(cfg->policy.n_path_patterns, w->n_path_patterns);
    for (size_t i = 0; i < w->n_path_patterns; i++)
        assert_string_equal(cfg->policy.path_patterns[i], w->path_patterns[i]);
    assert_int_equal(cfg->policy.extractable, w->extractable);
    assert_string_or_null(cfg->policy.requester, w->requester);
    assert_int_equal(cfg->audit.batch_max, w->batch_max);
    assert_int_equal(cfg->audit.batch_wait_us, w->batch_wait_us);
    assert_int_equal(cfg->cache.size, w->cache_size);
    assert_int_equal(cfg->cache.ttl_ms, w->cache_ttl_ms);
    assert_int_equal(cfg->cache.staleness_ms, w->cache_staleness_ms);
    assert_int_equal(cfg->log.level, w->log_level);
    assert_int_equal(cfg->log.syslog, w->log_syslog);
}

static void test_config__minimal_file_gets_documented_defaults(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok(MINIMAL);
    assert_string_equal(cfg->file, conf_path);
    const struct config_values defaults = {
        .module = "/usr/lib/softhsm/libsofthsm2.so",
        .token_label = "custody",
        .root_key_label = "ddsm-root",
        .call_timeout_ms = 5000,
        .conninfo = "dbname=ddsm",
        .listen_conninfo = "dbname=ddsm",
        .connect_timeout_s = 5,
        .statement_timeout_ms = 5000,
        .pool_size = 8,
        .batch_max = 64,
        .batch_wait_us = 200,
        .cache_size = 4096,
        .cache_ttl_ms = 300000,
        .cache_staleness_ms = 1000,
        .log_level = DDSM_LOG_WARN,
    };
    assert_config_values(cfg, &defaults);
    ddsm_config_free(cfg);
}

static void test_config__reads_every_key(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok("; every key, none at its default\n"
                               "[backend]\n"
                               "module = /opt/hsm/lib.so\n"
                               "token_label = apps\n"
                               "root_key_label = seed-2\n"
                               "root_token_label = vault\n"
                               "root_pin_file = /etc/ddsm/vault.pin\n"
                               "call_timeout_ms = 750\n"
                               "[store]\n"
                               "conninfo = host=/tmp port=5433 dbname=x user=y\n"
                               "listen_conninfo = postgresql://db.internal/x\n"
                               "connect_timeout_s = 2\n"
                               "statement_timeout_ms = 1500\n"
                               "pool_size = 3\n"
                               "[policy]\n"
                               "path_pattern = m/44'/*'/*'/*/*\n"
                               "path_pattern = m/7h\n"
                               "extractable = true\n"
                               "requester = payments\n"
                               "[audit]\n"
                               "batch_max = 16\n"
                               "batch_wait_us = 0\n"
                               "[cache]\n"
                               "size = 10\n"
                               "ttl_ms = 60000\n"
                               "staleness_ms = 0\n"
                               "[log]\n"
                               "level = debug\n"
                               "syslog = true\n");
    const struct config_values every = {
        .module = "/opt/hsm/lib.so",
        .token_label = "apps",
        .root_key_label = "seed-2",
        .root_token_label = "vault",
        .root_pin_file = "/etc/ddsm/vault.pin",
        .call_timeout_ms = 750,
        .conninfo = "host=/tmp port=5433 dbname=x user=y",
        .listen_conninfo = "postgresql://db.internal/x",
        .connect_timeout_s = 2,
        .statement_timeout_ms = 1500,
        .pool_size = 3,
        .n_path_patterns = 2,
        .path_patterns = {"m/44'/*'/*'/*/*", "m/7h"},
        .extractable = true,
        .requester = "payments",
        .batch_max = 16,
        .batch_wait_us = 0,
        .cache_size = 10,
        .cache_ttl_ms = 60000,
        .cache_staleness_ms = 0,
        .log_level = DDSM_LOG_DEBUG,
        .log_syslog = true,
    };
    assert_config_values(cfg, &every);
    ddsm_config_free(cfg);
}

static void test_config__accepts_comments_blank_lines_crlf_and_spaced_headers(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok("\xef\xbb\xbf# a comment\r\n"
                               "\r\n"
                               "[ backend ]  ; spaced header\r\n"
                               "module = /m.so ; inline comment\r\n"
                               "token_label=custody\r\n"
                               "[store]\r\n"
                               "conninfo = dbname=ddsm\r\n"
                               "[log]\r\n"
                               "  level = info\r\n");
    assert_string_equal(cfg->backend.module, "/m.so");
    assert_string_equal(cfg->backend.token_label, "custody");
    assert_int_equal(cfg->log.level, DDSM_LOG_INFO);
    ddsm_config_free(cfg);
}

/* libinih would read an indented line as the continuation of the previous value; here an
 * indented line is an ordinary key. */
static void test_config__indented_line_is_a_key_not_a_continuation(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok(MINIMAL "pool_size = 3\n"
                                       "    connect_timeout_s = 9\n");
    assert_int_equal(cfg->store.pool_size, 3);
    assert_int_equal(cfg->store.connect_timeout_s, 9);
    ddsm_config_free(cfg);
    assert_refused(MINIMAL "pool_size = 3\n"
                           "    4\n",
                   7, "syntax error");
}

static void test_config__rejects_unknown_section(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[stores]\n"
                           "pool_size = 3\n",
                   6, "unknown section [stores]");
    /* an empty unknown section too: libinih alone would never report it */
    assert_refused(MINIMAL "[debug]\n", 6, "unknown section [debug]");
    assert_refused("[Backend]\nmodule = x\n", 1, "unknown section [Backend]");
    assert_refused("\xef\xbb\xbf[cache2]\n" MINIMAL, 1, "unknown section [cache2]");
}

/* [backend] extra_mechanisms: a comma-separated list of names or numbers, each checked. */
static void test_config__extra_mechanisms_is_a_checked_list(void **state)
{
    (void)state;
#define BACKEND_WITH(v)                                                                            \
    "[backend]\n"                                                                                  \
    "module = /usr/lib/softhsm/libsofthsm2.so\n"                                                   \
    "token_label = custody\n"                                                                      \
    "extra_mechanisms = " v "\n"                                                                   \
    "[store]\n"                                                                                    \
    "conninfo = dbname=ddsm\n"
    ddsm_config *cfg = load_ok(BACKEND_WITH("0x80001234, CKM_RSA_X9_31 ,0x1"));
    assert_int_equal(cfg->backend.n_extra_mechanisms, 3);
    assert_string_equal(cfg->backend.extra_mechanisms[0], "0x80001234");
    assert_string_equal(cfg->backend.extra_mechanisms[1], "CKM_RSA_X9_31");
    assert_string_equal(cfg->backend.extra_mechanisms[2], "0x1");
    ddsm_config_free(cfg);
    cfg = load_ok(MINIMAL);
    assert_int_equal(cfg->backend.n_extra_mechanisms, 0);
    ddsm_config_free(cfg);
    assert_refused(BACKEND_WITH("0x80001234,, CKM_FOO"), 4, "comma-separated list");
    assert_refused(BACKEND_WITH("0x"), 4, "comma-separated list");
    assert_refused(BACKEND_WITH("ckm_foo"), 4, "comma-separated list");
    assert_refused(BACKEND_WITH("0x123456789"), 4, "comma-separated list");
    assert_refused(BACKEND_WITH("CKM_A CKM_B"), 4, "separated by commas");
    assert_refused(BACKEND_WITH("CKM_A,"), 4, "comma-separated list");
#undef BACKEND_WITH
}

static void test_config__rejects_unknown_key(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[cache]\n"
                           "size = 5\n"
                           "sizes = 5\n",
                   8, "unknown key \"sizes\" in [cache]");
    assert_refused("[backend]\nModule = x\n", 2, "unknown key \"Module\" in [backend]");
    /* a fixed key in the wrong section */
    assert_refused(MINIMAL "[log]\nconninfo = x\n", 7, "unknown key \"conninfo\" in [log]");
}

static void test_config__rejects_key_outside_any_section(void **state)
{
    (void)state;
    assert_refused("module = /m.so\n" MINIMAL, 1, "outside any [section]");
}

static void test_config__rejects_bad_section_headers(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[cache\n", 6, "no closing ']'");
    assert_refused(MINIMAL "[cache] size = 5\n", 6, "unexpected text after the section header");
}

static void test_config__rejects_non_numeric_values(void **state)
{
    (void)state;
    const char *bad[] = {"abc", "5 0", "+5", "-1", "0x10", "1e3", "5.0", "", "٣"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char content[512];
        snprintf(content, sizeof(content), MINIMAL "pool_size = %s\n", bad[i]);
        assert_refused(content, 6,
                       "\"pool_size\" in [store] must be a whole number from 1 to 1024");
    }
}

static void test_config__hsm_workers_default_to_the_store_pool_size(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok(MINIMAL);
    assert_int_equal(cfg->backend.workers, 0);
    assert_int_equal(ddsm_config_hsm_workers(cfg), 8);
    ddsm_config_free(cfg);
    cfg = load_ok(MINIMAL "pool_size = 3\n");
    assert_int_equal(ddsm_config_hsm_workers(cfg), 3);
    ddsm_config_free(cfg);
    cfg = load_ok("[backend]\nmodule = m\ntoken_label = t\nworkers = 24\n"
                  "[store]\nconninfo = dbname=ddsm\npool_size = 3\n");
    assert_int_equal(ddsm_config_hsm_workers(cfg), 24);
    ddsm_config_free(cfg);
    assert_refused("[backend]\nmodule = m\ntoken_label = t\nworkers = 65\n"
                   "[store]\nconninfo = dbname=ddsm\n",
                   4, "from 1 to 64, not \"65\"");
    assert_refused("[backend]\nmodule = m\ntoken_label = t\nworkers = 0\n"
                   "[store]\nconninfo = dbname=ddsm\n",
                   4, "from 1 to 64, not \"0\"");
}

static void test_config__rejects_numbers_out_of_range(void **state)
{
    (void)state;
    assert_refused(MINIMAL "pool_size = 0\n", 6, "from 1 to 1024, not \"0\"");
    assert_refused(MINIMAL "pool_size = 1025\n", 6, "from 1 to 1024, not \"1025\"");
    assert_refused(MINIMAL "pool_size = 99999999999999999999999\n", 6, "from 1 to 1024");
    assert_refused(MINIMAL "[cache]\nttl_ms = 0\n", 7, "\"ttl_ms\" in [cache]");
    assert_refused(MINIMAL "[audit]\nbatch_wait_us = 1000001\n", 7,
                   "\"batch_wait_us\" in [audit] must be a whole number from 0 to 1000000");
    ddsm_config *cfg = load_ok(MINIMAL "pool_size = 1024\n[audit]\nbatch_wait_us = 1000000\n");
    assert_int_equal(cfg->store.pool_size, 1024);
    assert_int_equal(cfg->audit.batch_wait_us, 1000000);
    ddsm_config_free(cfg);
}

static void test_config__rejects_bad_booleans(void **state)
{
    (void)state;
    const char *bad[] = {"yes", "True", "1", "on", "false!"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char content[512];
        snprintf(content, sizeof(content), MINIMAL "[log]\nsyslog = %s\n", bad[i]);
        assert_refused(content, 7, "\"syslog\" in [log] must be true or false");
    }
    assert_refused(MINIMAL "[policy]\nextractable = no\n", 7,
                   "\"extractable\" in [policy] must be true or false, not \"no\"");
}

static void test_config__rejects_unknown_log_level(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[log]\nlevel = verbose\n", 7,
                   "must be error, warn, info or debug, not \"verbose\"");
    assert_refused(MINIMAL "[log]\nlevel = WARN\n", 7, "must be error, warn, info or debug");
}

static void test_config__rejects_path_pattern_that_is_not_a_path_shape(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[policy]\npath_pattern = m/44'/01\n", 7,
                   "path_pattern \"m/44'/01\" is not a valid path shape: component has a leading "
                   "zero");
    assert_refused(MINIMAL "[policy]\npath_pattern = m\n", 7, "is not a valid path shape");
    assert_refused(MINIMAL "[policy]\npath_pattern = m/**\n", 7, "is not a valid path shape");
    assert_refused(MINIMAL "[policy]\npath_pattern = m/2147483648\n", 7, "below 2^31");
}

static void test_config__rejects_more_than_16_path_patterns(void **state)
{
    (void)state;
    char content[2048];
    size_t o = (size_t)snprintf(content, sizeof(content), MINIMAL "[policy]\n");
    for (int i = 0; i < 17; i++)
        o += (size_t)snprintf(content + o, sizeof(content) - o, "path_pattern = m/%d\n", i);
    assert_refused(content, 6 + 17, "too many \"path_pattern\" lines in [policy] (at most 16)");
}

static void test_config__rejects_a_key_set_twice(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[backend]\ntoken_label = other\n", 7,
                   "\"token_label\" in [backend] is set twice (first on line 3)");
}

static void test_config__rejects_empty_and_oversized_strings(void **state)
{
    (void)state;
    assert_refused("[backend]\nmodule =\n", 2, "empty value for \"module\" in [backend]");
    assert_refused("[backend]\nmodule = x\ntoken_label = 123456789012345678901234567890123\n", 3,
                   "value of \"token_label\" in [backend] is too long (at most 32 characters)");
}

/* The conninfo may carry a password: no error about it repeats its value. */
static void test_config__never_echoes_a_conninfo(void **state)
{
    (void)state;
    assert_refused(MINIMAL "listen_conninfo = password=hunter2\x01\n", 6,
                   "\"listen_conninfo\" in [store] contains a control character");
    assert_null(strstr(why, "hunter2"));
}

static void test_config__names_each_missing_required_key(void **state)
{
    (void)state;
    assert_refused("[backend]\ntoken_label = custody\n[store]\nconninfo = x\n", 0,
                   "missing required key \"module\" in [backend]");
    assert_refused("[backend]\nmodule = /m.so\n[store]\nconninfo = x\n", 0,
                   "missing required key \"token_label\" in [backend]");
    assert_refused("[backend]\nmodule = /m.so\ntoken_label = custody\n", 0,
                   "missing required key \"conninfo\" in [store]");
    assert_refused("", 0, "missing required key \"module\" in [backend]");
}

static void test_config__root_token_label_and_root_pin_file_go_together(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[backend]\nroot_token_label = vault\n", 7,
                   "\"root_token_label\" needs \"root_pin_file\"");
    assert_refused(MINIMAL "[backend]\nroot_pin_file = /etc/pin\n", 7,
                   "\"root_pin_file\" is only used with \"root_token_label\"");
}

static void test_config__standby_keys_go_together(void **state)
{
    (void)state;
    assert_refused(MINIMAL "[backend]\nstandby_token_label = spare\n", 7,
                   "\"standby_token_label\" needs \"standby_root_pin_file\"");
    assert_refused(MINIMAL "[backend]\nstandby_root_pin_file = /etc/pin\n", 7,
                   "\"standby_root_pin_file\" is only used with \"standby_token_label\"");
    assert_refused(MINIMAL "[backend]\nstandby_module = /m2.so\n", 7,
                   "\"standby_module\" is only used with \"standby_token_label\"");
    ddsm_config *cfg = load_ok(MINIMAL "[backend]\nstandby_token_label = spare\n"
                                       "standby_root_pin_file = /nonexistent/spare.pin\n");
    assert_string_equal(cfg->backend.standby_token_label, "spare");
    assert_string_equal(cfg->backend.standby_root_pin_file, "/nonexistent/spare.pin");
    assert_null(cfg->backend.standby_module); /* the module uses [backend] module */
    ddsm_config_free(cfg);
}

static void test_config__reports_libinih_syntax_errors_with_their_line(void **state)
{
    (void)state;
    assert_refused(MINIMAL "this line has no equals sign\n", 6, "syntax error");
}

/* Whatever kind each error is, the one on the earliest line is reported. */
static void test_config__reports_the_first_error_by_line(void **state)
{
    (void)state;
    assert_refused(MINIMAL "junk\n[log]\nlevel = loud\n", 6, "syntax error");
    assert_refused(MINIMAL "[log]\nlevel = loud\njunk\n", 7, "not \"loud\"");
    assert_refused("[nope]\n[backend]\nmodule = \n", 1, "unknown section [nope]");
}

static void test_config__rejects_over_long_lines(void **state)
{
    (void)state;
    char content[1024];
    char value[400];
    memset(value, 'a', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    snprintf(content, sizeof(content), MINIMAL "[policy]\nrequester = %s\n", value);
    assert_refused(content, 7, "line is too long");
}

static void test_config__rejects_nul_byte_in_a_line(void **state)
{
    (void)state;
    static const char content[] = MINIMAL "[log]\nlevel = warn\0debug\n";
    assert_refused_content(content, sizeof(content) - 1, 7, "NUL byte");
}

static void test_config__rejects_byte_order_mark_after_blanks(void **state)
{
    (void)state;
    /* libinih drops a mark on line 1 even after blanks; the section must not slip past us. */
    static const char content[] = " \xef\xbb\xbf[bogus]\n" MINIMAL;
    assert_refused_content(content, sizeof(content) - 1, 1, "byte order mark");
}

static void test_config__refuses_group_or_other_writable_file(void **state)
{
    (void)state;
    ddsm_config *cfg = NULL;
    const mode_t bad[] = {0620, 0602, 0666, 0660};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *file = write_conf_len(MINIMAL, strlen(MINIMAL), bad[i]);
        assert_int_equal(ddsm_config_load(file, &cfg, why, sizeof(why)), DDSM_E_CONFIG);
        assert_null(cfg);
        assert_non_null(strstr(why, "writable by group or others"));
        assert_true(strncmp(why, file, strlen(file)) == 0);
    }
    const char *file = write_conf_len(MINIMAL, strlen(MINIMAL), 0644);
    assert_int_equal(ddsm_config_load(file, &cfg, why, sizeof(why)), DDSM_OK);
    ddsm_config_free(cfg);
}

static void test_config__reports_missing_file_and_non_regular_file(void **state)
{
    (void)state;
    ddsm_config *cfg = NULL;
    char missing[sizeof(dir) + 16];
    snprintf(missing, sizeof(missing), "%s/absent.conf", dir);
    assert_int_equal(ddsm_config_load(missing, &cfg, why, sizeof(why)), DDSM_E_IO);
    assert_non_null(strstr(why, "cannot open"));
    assert_true(strncmp(why, missing, strlen(missing)) == 0);
    assert_int_equal(ddsm_config_load(dir, &cfg, why, sizeof(why)), DDSM_E_CONFIG);
    assert_non_null(strstr(why, "not a regular file"));
    assert_null(cfg);
}

static void test_config__tolerates_missing_why_buffer(void **state)
{
    (void)state;
    ddsm_config *cfg = NULL;
    const char *file = write_conf("[nope]\n");
    assert_int_equal(ddsm_config_load(file, &cfg, NULL, 0), DDSM_E_CONFIG);
    assert_int_equal(ddsm_config_load(NULL, &cfg, why, sizeof(why)), DDSM_E_ARG);
    ddsm_config_free(NULL);
}

static void test_config__default_path_follows_ddsm_conf(void **state)
{
    (void)state;
    char *saved = getenv("DDSM_CONF") != NULL ? strdup(getenv("DDSM_CONF")) : NULL;
    setenv("DDSM_CONF", "/srv/ddsm/test.conf", 1);
    assert_string_equal(ddsm_config_default_path(), "/srv/ddsm/test.conf");
    setenv("DDSM_CONF", "", 1);
    assert_string_equal(ddsm_config_default_path(), DDSM_CONF_DEFAULT);
    unsetenv("DDSM_CONF");
    assert_string_equal(ddsm_config_default_path(), "/etc/ddsm/ddsm.conf");
    if (saved != NULL) {
        setenv("DDSM_CONF", saved, 1);
        free(saved);
    }
}

static void test_config__path_allowed_without_patterns_accepts_any_valid_path(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok(MINIMAL);
    assert_true(ddsm_config_path_allowed(cfg, "m/0"));
    assert_true(ddsm_config_path_allowed(cfg, "m/44'/0'/0'/0/0"));
    assert_false(ddsm_config_path_allowed(cfg, "m/01"));
    assert_false(ddsm_config_path_allowed(cfg, "m"));
    assert_false(ddsm_config_path_allowed(cfg, NULL));
    ddsm_config_free(cfg);
}

static void test_config__path_allowed_matches_star_hardening_and_depth(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok(MINIMAL "[policy]\n"
                                       "path_pattern = m/44'/*'/*'/*/*\n"
                                       "path_pattern = m/7h/*\n");
    assert_true(ddsm_config_path_allowed(cfg, "m/44'/0'/0'/0/0"));
    assert_true(ddsm_config_path_allowed(cfg, "m/44'/60'/3'/1/99"));
    assert_true(ddsm_config_path_allowed(cfg, "m/44h/60H/3'/1/99")); /* marks are equivalent */
    assert_true(ddsm_config_path_allowed(cfg, "m/7'/5"));
    assert_false(ddsm_config_path_allowed(cfg, "m/44'/0/0'/0/0"));   /* '*'' needs hardening */
    assert_false(ddsm_config_path_allowed(cfg, "m/44'/0'/0'/0'/0")); /* '*' refuses it */
    assert_false(ddsm_config_path_allowed(cfg, "m/44/0'/0'/0/0"));   /* 44 vs 44' */
    assert_false(ddsm_config_path_allowed(cfg, "m/45'/0'/0'/0/0"));
    assert_false(ddsm_config_path_allowed(cfg, "m/44'/0'/0'/0"));     /* depth 4 */
    assert_false(ddsm_config_path_allowed(cfg, "m/44'/0'/0'/0/0/0")); /* depth 6 */
    assert_false(ddsm_config_path_allowed(cfg, "m/7'/5'"));
    assert_false(ddsm_config_path_allowed(cfg, "m/7/5"));
    ddsm_config_free(cfg);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    static char buf[64 * 1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static const char *example_text(void)
{
    char path[4096];
    const char *src = getenv("DDSM_SOURCE_DIR");
    if (src != NULL && src[0] != '\0') {
        snprintf(path, sizeof(path), "%s/conf/ddsm.conf.example", src);
    } else { /* run by hand: find it from this file's location */
        snprintf(path, sizeof(path), "%s", __FILE__);
        char *cut = strstr(path, "tests/unit/test_config.c");
        assert_non_null(cut);
        snprintf(cut, sizeof(path) - (size_t)(cut - path), "conf/ddsm.conf.example");
    }
    char *text = read_all(path);
    if (text == NULL)
        fail_msg("cannot read %s", path);
    return text;
}

static void test_config__example_file_parses(void **state)
{
    (void)state;
    ddsm_config *cfg = load_ok(example_text());
    assert_string_equal(cfg->backend.module, "/usr/lib/softhsm/libsofthsm2.so");
    assert_string_equal(cfg->backend.token_label, "custody");
    assert_string_equal(cfg->backend.root_key_label, "ddsm-root");
    /* the example shows the defaults */
    assert_int_equal(cfg->store.pool_size, 8);
    assert_int_equal(cfg->cache.staleness_ms, 1000);
    assert_int_equal(cfg->log.level, DDSM_LOG_WARN);
    ddsm_config_free(cfg);
}

/* Every key appears in the example, set or commented out, with "Default" said near it. */
static void test_config__example_documents_every_key(void **state)
{
    (void)state;
    const char *text = example_text();
    const char *keys[][2] = {
        {"backend", "module"},          {"backend", "token_label"},
        {"backend", "root_key_label"},  {"backend", "root_token_label"},
        {"backend", "root_pin_file"},   {"backend", "call_timeout_ms"},
        {"store", "conninfo"},          {"store", "listen_conninfo"},
        {"store", "connect_timeout_s"}, {"store", "statement_timeout_ms"},
        {"store", "pool_size"},         {"policy", "path_pattern"},
        {"policy", "extractable"},      {"policy", "requester"},
        {"audit", "batch_max"},         {"audit", "batch_wait_us"},
        {"cache", "size"},              {"cache", "ttl_ms"},
        {"cache", "staleness_ms"},      {"log", "level"},
        {"log", "syslog"},              {"backend", "standby_token_label"},
        {"backend", "standby_module"},  {"backend", "standby_root_pin_file"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char header[32], set[64], commented[64];
        snprintf(header, sizeof(header), "\n[%s]\n", keys[i][0]);
        snprintf(set, sizeof(set), "\n%s = ", keys[i][1]);
        snprintf(commented, sizeof(commented), "\n; %s = ", keys[i][1]);
        const char *section = strstr(text, header);
        if (section == NULL)
            fail_msg("example has no [%s] section", keys[i][0]);
        const char *next = strstr(section + 1, "\n[");
        const char *at = strstr(section, set);
        if (at == NULL || (next != NULL && at > next))
            at = strstr(section, commented);
        if (at == NULL || (next != NULL && at > next))
            fail_msg("example does not show %s in [%s]", keys[i][1], keys[i][0]);
        /* the comment block just above the key names its default */
        const char *block = at;
        while (block > section && !(block[-1] == '\n' && block[0] == '\n'))
            block--;
        char buf[2048];
        size_t len = (size_t)(at - block);
        if (len > sizeof(buf) - 1)
            len = sizeof(buf) - 1;
        memcpy(buf, block, len);
        buf[len] = '\0';
        if (strstr(buf, "Default") == NULL && strstr(buf, "Required") == NULL)
            fail_msg("example gives no default for %s in [%s]", keys[i][1], keys[i][0]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config__minimal_file_gets_documented_defaults),
        cmocka_unit_test(test_config__reads_every_key),
        cmocka_unit_test(test_config__standby_keys_go_together),
        cmocka_unit_test(test_config__accepts_comments_blank_lines_crlf_and_spaced_headers),
        cmocka_unit_test(test_config__indented_line_is_a_key_not_a_continuation),
        cmocka_unit_test(test_config__rejects_unknown_section),
        cmocka_unit_test(test_config__rejects_unknown_key),
        cmocka_unit_test(test_config__extra_mechanisms_is_a_checked_list),
        cmocka_unit_test(test_config__rejects_key_outside_any_section),
        cmocka_unit_test(test_config__rejects_bad_section_headers),
        cmocka_unit_test(test_config__rejects_non_numeric_values),
        cmocka_unit_test(test_config__rejects_numbers_out_of_range),
        cmocka_unit_test(test_config__hsm_workers_default_to_the_store_pool_size),
        cmocka_unit_test(test_config__rejects_bad_booleans),
        cmocka_unit_test(test_config__rejects_unknown_log_level),
        cmocka_unit_test(test_config__rejects_path_pattern_that_is_not_a_path_shape),
        cmocka_unit_test(test_config__rejects_more_than_16_path_patterns),
        cmocka_unit_test(test_config__rejects_a_key_set_twice),
        cmocka_unit_test(test_config__rejects_empty_and_oversized_strings),
        cmocka_unit_test(test_config__never_echoes_a_conninfo),
        cmocka_unit_test(test_config__names_each_missing_required_key),
        cmocka_unit_test(test_config__root_token_label_and_root_pin_file_go_together),
        cmocka_unit_test(test_config__reports_libinih_syntax_errors_with_their_line),
        cmocka_unit_test(test_config__reports_the_first_error_by_line),
        cmocka_unit_test(test_config__rejects_over_long_lines),
        cmocka_unit_test(test_config__rejects_nul_byte_in_a_line),
        cmocka_unit_test(test_config__rejects_byte_order_mark_after_blanks),
        cmocka_unit_test(test_config__refuses_group_or_other_writable_file),
        cmocka_unit_test(test_config__reports_missing_file_and_non_regular_file),
        cmocka_unit_test(test_config__tolerates_missing_why_buffer),
        cmocka_unit_test(test_config__default_path_follows_ddsm_conf),
        cmocka_unit_test(test_config__path_allowed_without_patterns_accepts_any_valid_path),
        cmocka_unit_test(test_config__path_allowed_matches_star_hardening_and_depth),
        cmocka_unit_test(test_config__example_file_parses),
        cmocka_unit_test(test_config__example_documents_every_key),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
