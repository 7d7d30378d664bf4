/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl plumbing: messages, argument parsing, exit codes, small parsers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ddsm/secmem.h"

__attribute__((format(printf, 2, 0))) static void vmsg(const char *prefix, const char *fmt,
                                                       va_list ap)
{
    fprintf(stderr, "ddsmctl: %s", prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void ctl_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("error: ", fmt, ap);
    va_end(ap);
}

void ctl_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("warning: ", fmt, ap);
    va_end(ap);
}

void ctl_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

void ctl_help_print(FILE *f, const ctl_help *h)
{
    fprintf(f, "Usage: %s\n\n%s\n", h->usage, h->about);
    fprintf(f, "\nOptions:\n");
    if (h->options != NULL)
        fputs(h->options, f);
    fputs("  --conf FILE          configuration file (default: $DDSM_CONF, else " DDSM_CONF_DEFAULT
          ")\n"
          "  --pin-file FILE      HSM user PIN from the first line of FILE (else $DDSM_PIN, else "
          "a prompt)\n"
          "  -h, --help           show this help\n",
          f);
}

int ctl_usage_error(const ctl_help *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("usage error: ", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Usage: %s\nTry 'ddsmctl %s%s--help'.\n", h->usage, h->name,
            h->name[0] != '\0' ? " " : "");
    return CTL_EXIT_USAGE;
}

static int is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

int ctl_run_sub(ctl *c, const ctl_help *h, const ctl_sub *subs, size_t nsubs, int argc,
                char **argv)
{
    if (argc < 2)
        return ctl_usage_error(h, "missing subcommand");
    if (is_help(argv[1])) {
        ctl_help_print(stdout, h);
        return CTL_EXIT_OK;
    }
    for (size_t i = 0; i < nsubs; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(c, argc - 1, argv + 1);
    return ctl_usage_error(h, "unknown subcommand '%s %s'", h->name, argv[1]);
}

int ctl_parse(ctl *c, const ctl_help *h, int argc, char **argv, const ctl_opt *opts, size_t nopts,
              const char **pos, size_t min_pos, size_t max_pos, size_t *npos)
{
    size_t np = 0;
    bool only_pos = false;

    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (is_help(argv[i])) {
            ctl_help_print(stdout, h);
            return CTL_HELP_SHOWN;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (np == max_pos)
                return ctl_usage_error(h, "unexpected argument '%s'", a);
            pos[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq != NULL ? (size_t)(eq - a) : strlen(a);
        const ctl_opt *o = NULL;
        const char **global = NULL;
        for (size_t k = 0; k < nopts; k++) {
            if (strlen(opts[k].name) == nl && strncmp(opts[k].name, a, nl) == 0) {
                o = &opts[k];
                break;
            }
        }
        if (o == NULL && nl == 6 && strncmp(a, "--conf", nl) == 0)
            global = &c->conf_path;
        else if (o == NULL && nl == 10 && strncmp(a, "--pin-file", nl) == 0)
            global = &c->pin_file;
        if (o == NULL && global == NULL)
            return ctl_usage_error(h, "unknown option '%.*s'", (int)nl, a);
        if (o != NULL && o->flag != NULL) {
            if (eq != NULL)
                return ctl_usage_error(h, "option %s takes no value", o->name);
            *o->flag = true;
            continue;
        }
        const char *v;
        if (eq != NULL) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            return ctl_usage_error(h, "option %.*s needs a value", (int)nl, a);
        }
        if (global != NULL) {
            *global = v;
        } else if (o->multi != NULL) {
            if (*o->multi_n == o->multi_cap)
                return ctl_usage_error(h, "option %s given more than %zu times", o->name,
                                       o->multi_cap);
            o->multi[(*o->multi_n)++] = v;
        } else {
            if (*o->val != NULL)
                return ctl_usage_error(h, "option %s given twice", o->name);
            *o->val = v;
        }
    }
    if (np < min_pos)
        return ctl_usage_error(h, "missing argument");
    *npos = np;
    return CTL_EXIT_OK;
}

int ctl_config(ctl *c)
{
    char why[512];
    if (c->cfg != NULL)
        return CTL_EXIT_OK;
    const char *path = c->conf_path != NULL ? c->conf_path : ddsm_config_default_path();
    why[0] = '\0';
    ddsm_err e = ddsm_config_load(path, &c->cfg, why, sizeof(why));
    if (e != DDSM_OK) {
        ctl_err("configuration: %s", why[0] != '\0' ? why : ddsm_err_str(e));
        c->cfg = NULL;
        return e == DDSM_E_NOMEM ? CTL_EXIT_UNAVAILABLE : CTL_EXIT_USAGE;
    }
    ddsm_log_setup(c->cfg->log.level, 0, "ddsmctl");
    ddsm_store_set_transaction_pooler(c->cfg->store.transaction_pooler);
    return CTL_EXIT_OK;
}

int ctl_exit_for(ddsm_err e)
{
    switch (e) {
    case DDSM_OK:
        return CTL_EXIT_OK;
    case DDSM_E_PATH:
    case DDSM_E_UUID:
    case DDSM_E_INPUT:
    case DDSM_E_CONFIG:
        return CTL_EXIT_USAGE;
    case DDSM_E_NOT_FOUND:
    case DDSM_E_EXISTS:
    case DDSM_E_STATE:
    case DDSM_E_POLICY:
        return CTL_EXIT_REFUSED;
    case DDSM_E_ARG:
    case DDSM_E_NOMEM:
    case DDSM_E_STORE_DOWN:
    case DDSM_E_STORE:
    case DDSM_E_HSM:
    case DDSM_E_CRYPTO:
    case DDSM_E_IO:
    case DDSM_E_TIMEOUT:
    case DDSM_E_PRIVILEGE:
    case DDSM_E_DURABILITY:
    case DDSM_E__COUNT:
        break;
    }
    return CTL_EXIT_UNAVAILABLE;
}

int ctl_exit_for_rv(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return CTL_EXIT_OK;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_TOKEN_WRITE_PROTECTED:
        return CTL_EXIT_REFUSED;
    default:
        return CTL_EXIT_UNAVAILABLE;
    }
}

void ctl_requester(char *out, size_t n)
{
    char name[256];
    const char *user = NULL;
    char pwbuf[2048];
    struct passwd pw;
    struct passwd *res = NULL;

    if (getlogin_r(name, sizeof(name)) == 0 && name[0] != '\0')
        user = name;
    else if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL)
        user = res->pw_name;
    if (user != NULL)
        snprintf(out, n, "ddsmctl:%s", user);
    else
        snprintf(out, n, "ddsmctl:uid=%u", (unsigned)getuid());
}

bool ctl_parse_uint(const char *text, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned long v = 0;
    size_t n = strlen(text);
    if (n == 0 || n > 9 || (n > 1 && text[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

#define DURATION_MAX_S (366LL * 86400) /* the store refuses longer grace windows */

bool ctl_parse_duration(const char *text, int64_t *secs, const char **why)
{
    size_t n = strlen(text);
    int64_t v = 0;
    int64_t unit;
    if (n < 2) {
        *why = "expected a number and a unit: 30s, 5m, 2h or 1d";
        return false;
    }
    switch (text[n - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        *why = "the unit must be s, m, h or d (e.g. 30s, 5m, 2h, 1d)";
        return false;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if (text[i] < '0' || text[i] > '9') {
            *why = "expected a number and a unit: 30s, 5m, 2h or 1d";
            return false;
        }
        if (i == 0 && text[i] == '0' && n > 2) {
            *why = "leading zeros are not allowed";
            return false;
        }
        v = v * 10 + (text[i] - '0');
        if (v > DURATION_MAX_S) {
            *why = "longer than 366 days";
            return false;
        }
    }
    if (v == 0) {
        *why = "must be positive";
        return false;
    }
    if (v > DURATION_MAX_S / unit) {
        *why = "longer than 366 days";
        return false;
    }
    *secs = v * unit;
    return true;
}

int ctl_read_file_secret(const char *path, const char *what, size_t max, char **buf, size_t *len)
{
    int rc = CTL_EXIT_USAGE;
    char *b = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ctl_err("cannot open %s %s: %s", what, path, strerror(errno));
        goto out;
    }
    b = ddsm_secure_alloc(max + 1);
    if (b == NULL) {
        ctl_err("out of secure memory reading %s %s", what, path);
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    for (;;) {
        char extra;
        ssize_t r;
        if (got < max)
            r = read(fd, b + got, max - got);
        else
            r = read(fd, &extra, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ctl_err("cannot read %s %s: %s", what, path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        if (got == max) {
            ctl_err("%s %s is too large (more than %zu bytes)", what, path, max);
            goto out;
        }
        got += (size_t)r;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    b = NULL;
    rc = CTL_EXIT_OK;
out:
    if (b != NULL)
        ddsm_secure_free(b, max + 1);
    if (fd >= 0)
        close(fd);
    return rc;
}

bool ctl_vec_push(ctl_vec *vec, const void *item)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap == 0 ? 16 : vec->cap * 2;
        void *items = realloc(vec->items, cap * vec->item_size);
        if (items == NULL) {
            vec->oom = true;
            return false;
        }
        vec->items = items;
        vec->cap = cap;
    }
    memcpy((char *)vec->items + vec->n * vec->item_size, item, vec->item_size);
    vec->n++;
    return true;
}

void ctl_format_time(int64_t us, char out[40])
{
    int64_t s = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        s -= 1;
    }
    time_t t = (time_t)s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, 40, "@%lld", (long long)us);
        return;
    }
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%06lldZ", base, (long long)frac);
}
