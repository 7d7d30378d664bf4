/* SPDX-License-Identifier: Apache-2.0 */
/* After the runs: `ddsmctl audit verify` (and `ddsmctl reconcile`) when this ddsmctl has them, so a
 * rotate-storm result comes with the audit's own verdict. The PIN reaches the child through
 * DDSM_PIN in the child's environment only (built in secure memory, wiped after the spawn), or
 * through --pin-file when the bench was given one. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "ddsm/secmem.h"

extern char **environ;

#define ARGV_MAX 16

/* ddsmctl: --ctl, else $DDSM_CTL, else beside this executable, else the PATH. */
static const char *ctl_path(bench *b)
{
    static char beside[PATH_MAX];
    if (b->ctl_path != NULL)
        return b->ctl_path;
    ssize_t n = readlink("/proc/self/exe", beside, sizeof(beside) - 1);
    if (n > 0) {
        beside[n] = '\0';
        char *slash = strrchr(beside, '/');
        if (slash != NULL && (size_t)(slash - beside) + sizeof("/ddsmctl") <= sizeof(beside)) {
            strcpy(slash, "/ddsmctl");
            if (access(beside, X_OK) == 0)
                return b->ctl_path = beside;
        }
    }
    return b->ctl_path = "ddsmctl";
}

/* Run argv with stdout and stderr into out (the first cap - 1 bytes); its exit code (or 128 +
 * signal) into *code. false when it could not be started. */
static bool spawn_capture(char *const argv[], char *const envp[], char *out, size_t cap, int *code)
{
    int fds[2];
    pid_t pid;
    posix_spawn_file_actions_t fa;
    size_t got = 0;
    int status = 0;

    out[0] = '\0';
    if (pipe2(fds, O_CLOEXEC) != 0)
        return false;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err != 0) {
        close(fds[0]);
        snprintf(out, cap, "cannot run %s: %s", argv[0], strerror(err));
        return false;
    }
    for (;;) {
        char buf[4096];
        ssize_t r = read(fds[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r < cap - 1 - got ? (size_t)r : cap - 1 - got;
        memcpy(out + got, buf, take);
        got += take;
    }
    out[got] = '\0';
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
}

void bench_run_ctl_check(bench *b, const char *const *words, size_t n_words, bench_check *out)
{
    char *argv[ARGV_MAX];
    char **envp = NULL;
    char *pin_env = NULL;
    size_t pin_env_len = sizeof("DDSM_PIN=") + BENCH_PIN_MAX;
    size_t n = 0, ne = 0;
    int code = 0;

    memset(out, 0, sizeof(*out));
    out->status = "not run";
    if (n_words + 6 > ARGV_MAX)
        return;
    /* Does this ddsmctl have the command? `<words> --help` exits 0 when it does. */
    argv[n++] = (char *)ctl_path(b);
    for (size_t i = 0; i < n_words; i++)
        argv[n++] = (char *)words[i];
    argv[n++] = (char *)"--help";
    argv[n] = NULL;
    if (!spawn_capture(argv, environ, out->output, sizeof(out->output), &code) || code != 0) {
        out->status = "not available";
        out->exit_code = code;
        return;
    }

    n = 0;
    argv[n++] = (char *)ctl_path(b);
    argv[n++] = (char *)"--conf";
    argv[n++] = (char *)b->conf_path;
    if (b->pin_file != NULL) {
        argv[n++] = (char *)"--pin-file";
        argv[n++] = (char *)b->pin_file;
    }
    for (size_t i = 0; i < n_words; i++)
        argv[n++] = (char *)words[i];
    argv[n] = NULL;

    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    envp = calloc(count + 2, sizeof(*envp));
    if (envp == NULL) {
        snprintf(out->output, sizeof(out->output), "out of memory");
        out->status = "failed";
        out->exit_code = -1;
        return;
    }
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "DDSM_PIN=", 9) != 0)
            envp[ne++] = environ[i];
    if (b->pin_file == NULL) {
        pin_env = ddsm_secure_alloc(pin_env_len);
        if (pin_env != NULL) {
            snprintf(pin_env, pin_env_len, "DDSM_PIN=%.*s", (int)b->pin_len, b->pin_secret);
            envp[ne++] = pin_env;
        }
    }
    envp[ne] = NULL;
    bool ran = spawn_capture(argv, envp, out->output, sizeof(out->output), &code);
    if (pin_env != NULL)
        ddsm_secure_free(pin_env, pin_env_len);
    free(envp);
    out->exit_code = ran ? code : -1;
    out->status = ran && code == 0 ? "passed" : "failed";
}
