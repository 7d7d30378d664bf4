/* SPDX-License-Identifier: Apache-2.0 */
/* The HSM PIN: from a file, the environment or the terminal. Every buffer here holds a secret: it
 * lives in secure memory and is wiped; the PIN is never printed, only its absence reported. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "ddsm/secmem.h"
#include "tool.h"

#define PIN_FILE_MAX 4096

static int pin_alloc_secret(ctl_pin *p)
{
    p->buf = ddsm_secure_alloc(CTL_PIN_MAX + 1);
    p->len = 0;
    if (p->buf == NULL) {
        ctl_err("out of secure memory for the PIN");
        return CTL_EXIT_UNAVAILABLE;
    }
    return CTL_EXIT_OK;
}

void ctl_pin_free(ctl_pin *p)
{
    if (p == NULL || p->buf == NULL)
        return;
    ddsm_secure_free(p->buf, CTL_PIN_MAX + 1);
    p->buf = NULL;
    p->len = 0;
}

int ctl_pin_from_file_secret(const char *file, ctl_pin *out)
{
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    ctl_pin p = {NULL, 0};

    int rc = ctl_read_file_secret(file, "PIN file", PIN_FILE_MAX, &text, &len);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
        ctl_warn("PIN file %s may be read by group or others (mode %03o); chmod 600 it", file,
                 (unsigned)(st.st_mode & 0777));
    size_t n = 0;
    while (n < len && text[n] != '\n')
        n++;
    if (n > 0 && text[n - 1] == '\r')
        n--;
    rc = CTL_EXIT_USAGE;
    if (n == 0) {
        ctl_err("PIN file %s: the first line is empty", file);
        goto out;
    }
    if (n > CTL_PIN_MAX) {
        ctl_err("PIN file %s: the first line is longer than %d bytes", file, CTL_PIN_MAX);
        goto out;
    }
    rc = pin_alloc_secret(&p);
    if (rc != CTL_EXIT_OK)
        goto out;
    memcpy(p.buf, text, n);
    p.len = n;
    *out = p;
    p.buf = NULL;
    rc = CTL_EXIT_OK;
out:
    ctl_pin_free(&p);
    if (text != NULL)
        ddsm_secure_free(text, PIN_FILE_MAX + 1);
    return rc;
}

static int pin_prompt_secret(const char *token_label, ctl_pin *out)
{
    ctl_pin p = {NULL, 0};
    int rc = pin_alloc_secret(&p);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = CTL_EXIT_USAGE;
    switch (tool_pin_prompt_secret(token_label, p.buf, CTL_PIN_MAX, &p.len)) {
    case TOOL_PIN_OK:
        *out = p;
        p.buf = NULL;
        rc = CTL_EXIT_OK;
        break;
    case TOOL_PIN_NO_TERMINAL:
        ctl_err("cannot read the terminal settings: %s", strerror(errno));
        break;
    case TOOL_PIN_TOO_LONG:
        ctl_err("the PIN is longer than %d bytes", CTL_PIN_MAX);
        break;
    case TOOL_PIN_EMPTY:
        ctl_err("no PIN entered");
        break;
    }
    ctl_pin_free(&p);
    return rc;
}

int ctl_pin_get_secret(const ctl *c, const char *token_label, ctl_pin *out)
{
    if (c->pin_file != NULL)
        return ctl_pin_from_file_secret(c->pin_file, out);
    char *env = getenv("DDSM_PIN");
    if (env != NULL) {
        size_t n = strlen(env);
        ctl_pin p = {NULL, 0};
        int rc = CTL_EXIT_USAGE;
        if (n == 0)
            ctl_err("DDSM_PIN is set but empty");
        else if (n > CTL_PIN_MAX)
            ctl_err("DDSM_PIN is longer than %d bytes", CTL_PIN_MAX);
        else if ((rc = pin_alloc_secret(&p)) == CTL_EXIT_OK) {
            memcpy(p.buf, env, n);
            p.len = n;
            *out = p;
        }
        /* Scrub our copy of the environment so the PIN does not linger in /proc/self/environ. */
        ddsm_wipe(env, n);
        unsetenv("DDSM_PIN");
        return rc;
    }
    if (!isatty(STDIN_FILENO)) {
        ctl_err("no HSM PIN: use --pin-file FILE or set DDSM_PIN (stdin is not a terminal, so "
                "ddsmctl cannot prompt)");
        return CTL_EXIT_USAGE;
    }
    return pin_prompt_secret(token_label, out);
}
