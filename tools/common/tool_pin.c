/* SPDX-License-Identifier: Apache-2.0 */
/* The PIN prompt. Every byte read here is a secret: it goes straight into the caller's secure
 * buffer and the one-byte staging variable is cleared. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "tool.h"

/* The terminal state to restore if a signal arrives while echo is off. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_dirty;

static void restore_tty_on_signal(int sig)
{
    if (tty_dirty)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

tool_pin_prompt tool_pin_prompt_secret(const char *token_label, char *buf, size_t cap,
                                       size_t *len)
{
    struct termios quiet;
    struct sigaction sa, old_int, old_term, old_hup;
    size_t n = 0;
    bool too_long = false;
    char c;

    if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return TOOL_PIN_NO_TERMINAL;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = restore_tty_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    quiet = saved_tty;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
    quiet.c_lflag |= ECHONL;
    fprintf(stderr, "HSM user PIN for token \"%s\": ", token_label);
    fflush(stderr);
    tty_dirty = 1;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    for (;;) {
        ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || c == '\n')
            break;
        if (n == cap) {
            too_long = true;
            continue;
        }
        buf[n++] = c;
    }
    c = 0;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    tty_dirty = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (too_long)
        return TOOL_PIN_TOO_LONG;
    if (n == 0)
        return TOOL_PIN_EMPTY;
    *len = n;
    return TOOL_PIN_OK;
}
