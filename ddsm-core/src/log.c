/* SPDX-License-Identifier: Apache-2.0 */
/* One line per event: "ddsm[pid]: LEVEL: message" on stderr, written with a single write(2) so
 * lines from concurrent threads never interleave, or syslog(3), which is thread-safe itself.
 *
 * The module runs inside other programs: the syslog identity, facility and connection are the
 * host's. So no openlog()/closelog() here (openlog would rename the host's lines, and glibc keeps
 * the ident pointer, which would dangle into the unloaded module after dlclose); each line names
 * its writer itself ("ddsm-pkcs11[pid]: ...") and carries LOG_USER with its level. */
#include "ddsm/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024
#define IDENT_MAX 64

static atomic_int log_level = DDSM_LOG_WARN;
static atomic_int log_syslog;
static pthread_mutex_t setup_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_ident[IDENT_MAX] = "ddsm"; /* under setup_lock */

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_words[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

/* DDSM_LOG_LEVEL: 1 and *out set when it names a level, 0 when unset or empty, -1 when it names
 * none. secure_getenv: a set-id host's caller must not turn its logging up. */
static int env_level(ddsm_log_level *out)
{
    const char *env = secure_getenv("DDSM_LOG_LEVEL");
    if (env == NULL || env[0] == '\0')
        return 0;
    for (int i = DDSM_LOG_ERROR; i <= DDSM_LOG_DEBUG; i++) {
        if (strcmp(env, level_words[i]) == 0) {
            *out = (ddsm_log_level)i;
            return 1;
        }
    }
    return -1;
}

void ddsm_log_setup(ddsm_log_level level, int use_syslog, const char *ident)
{
    if ((int)level < DDSM_LOG_ERROR)
        level = DDSM_LOG_ERROR;
    if (level > DDSM_LOG_DEBUG)
        level = DDSM_LOG_DEBUG;
    /* Precedence: the environment over the caller's (configured) level. */
    int env = env_level(&level);
    pthread_mutex_lock(&setup_lock);
    snprintf(log_ident, sizeof(log_ident), "%s",
             ident != NULL && ident[0] != '\0' ? ident : "ddsm");
    atomic_store(&log_syslog, use_syslog ? 1 : 0);
    atomic_store(&log_level, (int)level);
    pthread_mutex_unlock(&setup_lock);
    if (env < 0)
        ddsm_log(DDSM_LOG_WARN, "DDSM_LOG_LEVEL is not error, warn, info or debug: ignored");
}

int ddsm_log_enabled(ddsm_log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void ddsm_log(ddsm_log_level level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    va_list ap;

    if (!ddsm_log_enabled(level) || fmt == NULL)
        return;
    if ((int)level < DDSM_LOG_ERROR)
        level = DDSM_LOG_ERROR;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* One event, one line: control characters (a newline in a database error text, say) must
     * not split it or forge another line. */
    for (char *p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }

    if (atomic_load_explicit(&log_syslog, memory_order_relaxed)) {
        char ident[IDENT_MAX];
        pthread_mutex_lock(&setup_lock);
        memcpy(ident, log_ident, sizeof(ident));
        pthread_mutex_unlock(&setup_lock);
        syslog(LOG_USER | syslog_prio[level], "%s[%ld]: %s", ident, (long)getpid(), msg);
        return;
    }
    char line[LOG_LINE_MAX + 64];
    int len = snprintf(line, sizeof(line), "ddsm[%ld]: %s: %s\n", (long)getpid(),
                       level_names[level], msg);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(line)) {
        len = (int)sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    for (size_t off = 0; off < (size_t)len;) {
        ssize_t w = write(STDERR_FILENO, line + off, (size_t)len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report a failing stderr */
        off += (size_t)w;
    }
}
