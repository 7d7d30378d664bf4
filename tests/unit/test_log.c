/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: the stderr line format, level filtering, one event per line, and whole lines under
 * concurrency. stderr is redirected to a temporary file for each test. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddsm/log.h"

static int saved_stderr = -1;
static char capture_path[] = "/tmp/ddsm-test-log-XXXXXX";
static int capture_fd = -1;

static int capture_start(void **state)
{
    (void)state;
    strcpy(capture_path, "/tmp/ddsm-test-log-XXXXXX");
    capture_fd = mkstemp(capture_path);
    if (capture_fd < 0)
        return -1;
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(capture_fd, STDERR_FILENO);
    return 0;
}

static int capture_stop(void **state)
{
    (void)state;
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    close(capture_fd);
    unlink(capture_path);
    ddsm_log_setup(DDSM_LOG_WARN, 0, NULL);
    return 0;
}

/* Everything logged so far (caller frees). */
static char *captured(void)
{
    off_t end = lseek(capture_fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)end + 1);
    assert_non_null(buf);
    assert_int_equal(pread(capture_fd, buf, (size_t)end, 0), end);
    return buf;
}

static void test_log__writes_one_prefixed_line(void **state)
{
    (void)state;
    ddsm_log_setup(DDSM_LOG_INFO, 0, "ddsm-test");
    ddsm_log(DDSM_LOG_WARN, "store %s: %d rows", "down", 3);
    char *out = captured();
    char want[128];
    snprintf(want, sizeof(want), "ddsm[%ld]: WARN: store down: 3 rows\n", (long)getpid());
    assert_string_equal(out, want);
    free(out);
}

static void test_log__filters_below_the_configured_level(void **state)
{
    (void)state;
    ddsm_log_setup(DDSM_LOG_WARN, 0, NULL);
    assert_true(ddsm_log_enabled(DDSM_LOG_ERROR));
    assert_true(ddsm_log_enabled(DDSM_LOG_WARN));
    assert_false(ddsm_log_enabled(DDSM_LOG_INFO));
    assert_false(ddsm_log_enabled(DDSM_LOG_DEBUG));
    ddsm_log(DDSM_LOG_DEBUG, "hidden debug");
    ddsm_log(DDSM_LOG_INFO, "hidden info");
    ddsm_log(DDSM_LOG_ERROR, "shown error");
    char *out = captured();
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, ": ERROR: shown error\n"));
    free(out);

    ddsm_log_setup(DDSM_LOG_DEBUG, 0, NULL);
    ddsm_log(DDSM_LOG_DEBUG, "now shown");
    out = captured();
    assert_non_null(strstr(out, ": DEBUG: now shown\n"));
    free(out);
}

static void test_log__keeps_each_event_on_one_line(void **state)
{
    (void)state;
    ddsm_log_setup(DDSM_LOG_INFO, 0, NULL);
    ddsm_log(DDSM_LOG_ERROR, "ERROR: relation \"x\" does not exist\nLINE 1: forged\r");
    char *out = captured();
    size_t newlines = 0;
    for (char *p = out; *p != '\0'; p++)
        newlines += *p == '\n';
    assert_int_equal(newlines, 1);
    assert_null(strchr(out, '\r'));
    assert_non_null(strstr(out, "does not exist LINE 1: forged"));
    free(out);
}

static void test_log__truncates_long_messages_but_ends_the_line(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ddsm_log_setup(DDSM_LOG_INFO, 0, NULL);
    ddsm_log(DDSM_LOG_WARN, "%s", big);
    ddsm_log(DDSM_LOG_WARN, "after");
    char *out = captured();
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_true(strncmp(nl + 1, "ddsm[", 5) == 0);
    assert_non_null(strstr(nl + 1, ": WARN: after\n"));
    free(out);
}

static void test_log__environment_level_overrides_the_configured_one(void **state)
{
    (void)state;
    assert_int_equal(setenv("DDSM_LOG_LEVEL", "debug", 1), 0);
    ddsm_log_setup(DDSM_LOG_ERROR, 0, NULL);
    assert_true(ddsm_log_enabled(DDSM_LOG_DEBUG));
    ddsm_log(DDSM_LOG_DEBUG, "shown by the environment");
    assert_int_equal(setenv("DDSM_LOG_LEVEL", "error", 1), 0);
    ddsm_log_setup(DDSM_LOG_DEBUG, 0, NULL);
    assert_false(ddsm_log_enabled(DDSM_LOG_WARN));
    ddsm_log(DDSM_LOG_WARN, "hidden by the environment");
    unsetenv("DDSM_LOG_LEVEL");
    char *out = captured();
    assert_non_null(strstr(out, ": DEBUG: shown by the environment\n"));
    assert_null(strstr(out, "hidden"));
    free(out);
}

static void test_log__environment_level_not_a_level_is_ignored_with_a_warning(void **state)
{
    (void)state;
    static const char *const bad[] = {"DEBUG", "verbose", "4", "debug ", " warn"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(setenv("DDSM_LOG_LEVEL", bad[i], 1), 0);
        ddsm_log_setup(DDSM_LOG_WARN, 0, NULL);
        assert_true(ddsm_log_enabled(DDSM_LOG_WARN));
        assert_false(ddsm_log_enabled(DDSM_LOG_INFO));
    }
    /* Empty counts as unset: no warning. */
    assert_int_equal(setenv("DDSM_LOG_LEVEL", "", 1), 0);
    ddsm_log_setup(DDSM_LOG_WARN, 0, NULL);
    unsetenv("DDSM_LOG_LEVEL");
    char *out = captured();
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, "DDSM_LOG_LEVEL is not error, warn, info or debug"));
         p++)
        n++;
    assert_int_equal(n, sizeof(bad) / sizeof(bad[0]));
    free(out);
}

#define N_THREADS 4
#define N_LINES 500

static void *log_lines(void *arg)
{
    for (int i = 0; i < N_LINES; i++)
        ddsm_log(DDSM_LOG_WARN, "thread %d line %d %s", (int)(intptr_t)arg, i,
                 "padding-padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

static void test_log__concurrent_lines_never_interleave(void **state)
{
    (void)state;
    pthread_t t[N_THREADS];
    ddsm_log_setup(DDSM_LOG_WARN, 0, NULL);
    for (intptr_t i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_lines, (void *)i), 0);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    char *out = captured();
    char prefix[64];
    int n = 0;
    snprintf(prefix, sizeof(prefix), "ddsm[%ld]: WARN: thread ", (long)getpid());
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n"), n++) {
        int th = -1, ln = -1;
        char pad[80];
        assert_true(strncmp(line, prefix, strlen(prefix)) == 0);
        assert_int_equal(sscanf(line + strlen(prefix), "%d line %d %79s", &th, &ln, pad), 3);
        assert_string_equal(pad, "padding-padding-padding-padding-padding-padding-padding-padding");
    }
    assert_int_equal(n, N_THREADS * N_LINES);
    free(out);
}

int main(void)
{
    unsetenv("DDSM_LOG_LEVEL"); /* the caller's must not change what these tests see */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log__writes_one_prefixed_line, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_log__filters_below_the_configured_level,
                                        capture_start, capture_stop),
        cmocka_unit_test_setup_teardown(test_log__keeps_each_event_on_one_line, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_log__truncates_long_messages_but_ends_the_line,
                                        capture_start, capture_stop),
        cmocka_unit_test_setup_teardown(test_log__concurrent_lines_never_interleave, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_log__environment_level_overrides_the_configured_one,
                                        capture_start, capture_stop),
        cmocka_unit_test_setup_teardown(
            test_log__environment_level_not_a_level_is_ignored_with_a_warning, capture_start,
            capture_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
