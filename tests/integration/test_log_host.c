/* SPDX-License-Identifier: Apache-2.0 */
/* The module inside a host program that logs to syslog under its own identity: loading the
 * module (dlopen), initialising it with [log] syslog = true, logging through it, finalising and
 * unloading it (dlclose) must leave the host's identity and facility as they were, and the host's
 * next syslog() must work. Every line the module writes names it ("ddsm-pkcs11[pid]: ") and
 * carries LOG_USER. $DDSM_LOG_LEVEL overrides the configured level.
 *
 * The syslog sink is ours: before anything else the test enters a mount namespace of its own
 * (unshare, as root), puts a tmpfs over /dev holding links to the real devices, and binds a unix
 * datagram socket at /dev/log, where glibc's syslog() sends. syslog() returns after its send(), so
 * every line is queued on the socket when the call returns: reading with MSG_DONTWAIT is exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "ddsm/pkcs11-compat.h"

#define MAX_LINES 256
#define LINE_MAX_LEN 2048

static int g_sink = -1;
static char g_lines[MAX_LINES][LINE_MAX_LEN];
static int g_n;

/* /dev becomes a private tmpfs with links to the real entries and our socket as "log". */
static int sink_setup(void)
{
    const char *dir = getenv("DDSM_TEST_DIR");
    char olddev[PATH_MAX], from[PATH_MAX * 2], to[PATH_MAX];
    if (dir == NULL) {
        fprintf(stderr, "DDSM_TEST_DIR is not set: run through scripts/lib/run-integration\n");
        return -1;
    }
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf(stderr, "a private mount namespace needs root (CAP_SYS_ADMIN): %s\n",
                strerror(errno));
        return -1;
    }
    snprintf(olddev, sizeof(olddev), "%s/olddev", dir);
    if (mkdir(olddev, 0755) != 0 && errno != EEXIST)
        return -1;
    if (mount("/dev", olddev, "none", MS_BIND | MS_REC, NULL) != 0 ||
        mount("ddsm-test-dev", "/dev", "tmpfs", 0, "mode=0755") != 0) {
        fprintf(stderr, "mounting the private /dev: %s\n", strerror(errno));
        return -1;
    }
    DIR *d = opendir(olddev);
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "log") == 0)
            continue;
        snprintf(from, sizeof(from), "%s/%s", olddev, e->d_name);
        snprintf(to, sizeof(to), "/dev/%s", e->d_name);
        if (symlink(from, to) != 0) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    g_sink = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    if (g_sink < 0 || bind(g_sink, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "binding /dev/log: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Every line queued on the sink since the last call, into g_lines[0..g_n). */
static void drain(void)
{
    g_n = 0;
    for (;;) {
        char buf[LINE_MAX_LEN];
        ssize_t n = recv(g_sink, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            return;
        }
        assert_true(g_n < MAX_LINES);
        buf[n] = '\0';
        snprintf(g_lines[g_n++], LINE_MAX_LEN, "%s", buf);
    }
}

/* A line as glibc writes it: "<PRI>Mmm dd hh:mm:ss TAG: text". Its PRI, and whether the part
 * after the timestamp starts with tag_text. */
static int line_pri(const char *line)
{
    assert_int_equal(line[0], '<');
    return atoi(line + 1);
}

static void assert_line(const char *line, int pri, const char *tag_text)
{
    const char *gt = strchr(line, '>');
    assert_non_null(gt);
    if (line_pri(line) != pri || strlen(gt + 1) < 16 ||
        strncmp(gt + 1 + 16, tag_text, strlen(tag_text)) != 0)
        fail_msg("syslog line \"%s\": expected priority %d and \"%s\" after the timestamp", line,
                 pri, tag_text);
}

/* The host logs one line and it arrives under the host's identity and facility. */
static void host_logs(const char *text)
{
    char want[256];
    syslog(LOG_NOTICE, "%s", text);
    drain();
    assert_int_equal(g_n, 1);
    snprintf(want, sizeof(want), "myhost[%ld]: %s", (long)getpid(), text);
    assert_line(g_lines[0], LOG_LOCAL3 | LOG_NOTICE, want);
}

/* $DDSM_CONF with [log] syslog = true at level error, as a 0600 file of this test's own. */
static void write_conf(char *path, size_t len)
{
    const char *base = getenv("DDSM_CONF");
    assert_non_null(base);
    snprintf(path, len, "%s/loghost.conf", getenv("DDSM_TEST_DIR"));
    FILE *in = fopen(base, "r"), *out = fopen(path, "w");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fputs("\n[log]\nlevel = error\nsyslog = true\n", out);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

static void test_log_host__keeps_host_identity_through_load_use_unload(void **state)
{
    char conf[PATH_MAX], prefix[64];
    write_conf(conf, sizeof(conf));
    assert_int_equal(setenv("DDSM_CONF", conf, 1), 0);
    /* Configured level error; the environment asks for debug, so the refusal below (logged at
     * info) must appear. */
    assert_int_equal(setenv("DDSM_LOG_LEVEL", "debug", 1), 0);

    openlog("myhost", LOG_PID, LOG_LOCAL3);
    host_logs("before load");

    void *h = dlopen(getenv("DDSM_MODULE"), RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)dlsym(h, "C_GetFunctionList");
    assert_non_null(gfl);
    CK_FUNCTION_LIST_PTR f = NULL;
    assert_int_equal(gfl(&f), CKR_OK);
    assert_int_equal(f->C_Initialize(NULL), CKR_OK);
    drain(); /* whatever initialisation logged at debug: checked with the next lines */
    int init_lines = g_n;
    for (int i = 0; i < init_lines; i++) {
        snprintf(prefix, sizeof(prefix), "myhost[%ld]: ddsm-pkcs11[%ld]: ", (long)getpid(),
                 (long)getpid());
        assert_int_equal(line_pri(g_lines[i]) & LOG_FACMASK, LOG_USER);
        assert_line(g_lines[i], line_pri(g_lines[i]), prefix);
    }
    host_logs("after initialize");

    CK_SLOT_INFO si;
    assert_int_equal(f->C_GetSlotInfo(0x7777, &si), CKR_SLOT_ID_INVALID);
    drain();
    assert_int_equal(g_n, 1);
    snprintf(prefix, sizeof(prefix),
             "myhost[%ld]: ddsm-pkcs11[%ld]: C_GetSlotInfo: ", (long)getpid(), (long)getpid());
    assert_line(g_lines[0], LOG_USER | LOG_INFO, prefix);
    assert_non_null(strstr(g_lines[0], "CKR_SLOT_ID_INVALID"));
    host_logs("while loaded");

    assert_int_equal(f->C_Finalize(NULL), CKR_OK);
    drain();
    g_n = 0;
    assert_int_equal(dlclose(h), 0);
    host_logs("after unload");
    closelog();
    /* The host can open again with another identity: nothing of the module's is left in it. */
    openlog("myhost", LOG_PID, LOG_LOCAL3);
    host_logs("reopened");
    closelog();
    unsetenv("DDSM_LOG_LEVEL");
}

int main(void)
{
    if (sink_setup() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_host__keeps_host_identity_through_load_use_unload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
