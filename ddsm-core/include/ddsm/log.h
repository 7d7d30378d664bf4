/* SPDX-License-Identifier: Apache-2.0 */
/* One line per event to stderr or syslog. Never pass key bytes or PINs: log their length. */
#ifndef DDSM_LOG_H
#define DDSM_LOG_H

typedef enum ddsm_log_level {
    DDSM_LOG_ERROR = 0,
    DDSM_LOG_WARN,
    DDSM_LOG_INFO,
    DDSM_LOG_DEBUG
} ddsm_log_level;

/* Defaults: WARN to stderr. Both settings are process-wide and thread-safe to read. A valid
 * $DDSM_LOG_LEVEL (error|warn|info|debug) overrides level; an invalid one is ignored with a
 * warning. With use_syslog, each line goes to syslog(3) as "ident[pid]: message" at LOG_USER and
 * the level's priority, under the host program's own openlog() settings, which are never changed
 * (ident NULL or empty: "ddsm"). */
void ddsm_log_setup(ddsm_log_level level, int use_syslog, const char *ident);
void ddsm_log(ddsm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ddsm_log_enabled(ddsm_log_level level);

#endif
