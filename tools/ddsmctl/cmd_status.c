/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl status: one screen on the whole installation (docs/policy.md "Operator view"). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ddsm/opsview.h"
#include "tool.h"

const ctl_help cmd_status_help = {
    "status",
    "ddsmctl status [--reconcile-since DURATION] [--json]",
    "One screen on the installation: the store (reachable, PostgreSQL version, migrations), the\n"
    "HSM (the token present; with a PIN from --pin-file or $DDSM_PIN, or a custody token's\n"
    "root_pin_file, also the root key and its fingerprint; otherwise \"not checked\", never a\n"
    "prompt), assets by state, zones, the last rotation, the audit chain heads (instances, "
    "longest\n"
    "seq, age), the audit partitions and the reconcile findings (audit rows since DURATION,\n"
    "default 24h). Anything wrong is shown in red when stdout is a terminal.\n"
    "Exit 0 healthy, 1 findings (pending migrations, no root key, reconcile findings, rows in the\n"
    "default partition, missing partitions), 2 usage error, 3 the store or the HSM unavailable.\n"
    "With --json the same checks as one JSON object: {\"config\": FILE, \"checks\": [{\"check\",\n"
    "\"status\" (\"ok\", \"fail\" or null), \"detail\"}...], \"chain_heads\": [{\"instance\", "
    "\"seq\",\n"
    "\"updated\"}...], \"assets\": {STATE: N} (null when the store is unavailable), \"exit\": N}; "
    "the\n"
    "exit status is the same.",
    "  --reconcile-since DURATION  audit rows reconcile reads (30s, 5m, 2h, 1d; default 1d)\n"
    "  --json                      one JSON object instead of the screen\n",
};

struct screen {
    bool tty;
    bool json;
    unsigned lines; /* checks printed so far (JSON: the separator) */
    unsigned heads; /* chain heads printed so far (JSON) */
    int rc;         /* worst so far */
};

static void worse(struct screen *s, int rc)
{
    if (rc == CTL_EXIT_UNAVAILABLE || (rc == CTL_EXIT_REFUSED && s->rc == CTL_EXIT_OK))
        s->rc = rc;
}

/* One line: "<what>  <mark>  <text>"; mark OK, FAIL (red on a terminal) or "-". */
static void line(struct screen *s, const char *what, const char *mark, bool bad, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
static void line(struct screen *s, const char *what, const char *mark, bool bad, const char *fmt,
                 ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->json) {
        /* The heads printed before this line close their array in the first check after them. */
        printf("%s\n    {\"check\": ", s->lines == 0 ? "" : ",");
        tool_json_str(stdout, what);
        printf(", \"status\": %s, \"detail\": ", strcmp(mark, "OK") == 0     ? "\"ok\""
                                                 : strcmp(mark, "FAIL") == 0 ? "\"fail\""
                                                                             : "null");
        tool_json_str(stdout, text);
        printf("}");
        s->lines++;
        return;
    }
    if (bad && s->tty)
        printf("%-11s \033[1;31m%-4s %s\033[0m\n", what, mark, text);
    else
        printf("%-11s %-4s %s\n", what, mark, text);
}

static void age_text(int64_t now_us, int64_t then_us, char *out, size_t n)
{
    int64_t s = (now_us - then_us) / 1000000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, n, "%llds ago", (long long)s);
    else if (s < 7200)
        snprintf(out, n, "%lldm ago", (long long)(s / 60));
    else if (s < 172800)
        snprintf(out, n, "%lldh ago", (long long)(s / 3600));
    else
        snprintf(out, n, "%lldd ago", (long long)(s / 86400));
}

static bool pin_available(const ctl *c)
{
    const char *env = getenv("DDSM_PIN");
    return c->pin_file != NULL || (env != NULL && env[0] != '\0') ||
           c->cfg->backend.root_token_label != NULL;
}

static void hsm_status(ctl *c, struct screen *s)
{
    const ddsm_config *cfg = c->cfg;
    if (pin_available(c)) {
        ctl_hsm h;
        bool exists = false;
        CK_OBJECT_HANDLE root = CK_INVALID_HANDLE;
        char fp[DDSM_FINGERPRINT_HEX + 1];
        int rc = ctl_hsm_open_root(c, &h);
        if (rc != CTL_EXIT_OK) {
            line(s, "hsm", "FAIL", true, "token \"%s\" of %s: unavailable (see above)",
                 cfg->backend.root_token_label != NULL ? cfg->backend.root_token_label
                                                       : cfg->backend.token_label,
                 cfg->backend.module);
            worse(s, rc == CTL_EXIT_REFUSED ? CTL_EXIT_REFUSED : CTL_EXIT_UNAVAILABLE);
            ctl_hsm_close(&h);
            return;
        }
        rc = ctl_hsm_find_root(&h, &exists, &root);
        if (rc == CTL_EXIT_OK && exists)
            rc = ctl_hsm_fingerprint(&h, root, fp);
        if (rc != CTL_EXIT_OK) {
            line(s, "hsm", "FAIL", true, "token \"%s\": the root key could not be read",
                 h.token_label);
            worse(s, rc);
        } else if (!exists) {
            line(s, "hsm", "FAIL", true, "token \"%s\" present; no root key \"%s\" on it",
                 h.token_label, h.key_label);
            worse(s, CTL_EXIT_REFUSED);
        } else {
            line(s, "hsm", "OK", false, "token \"%s\" present; root key \"%s\", fingerprint %s",
                 h.token_label, h.key_label, fp);
        }
        ctl_hsm_close(&h);
        return;
    }
    /* No PIN: the token's presence only. */
    char why[512] = "";
    ddsm_hsm *hsm = NULL;
    CK_SLOT_ID slot = 0;
    CK_RV rv = ddsm_hsm_load(cfg->backend.module, &hsm, why, sizeof(why));
    if (rv != CKR_OK) {
        line(s, "hsm", "FAIL", true, "%s does not load: %s", cfg->backend.module,
             why[0] != '\0' ? why : ddsm_rv_name(rv));
        worse(s, CTL_EXIT_UNAVAILABLE);
        return;
    }
    rv = ddsm_hsm_find_token(hsm, cfg->backend.token_label, &slot);
    if (rv != CKR_OK) {
        line(s, "hsm", "FAIL", true, "no token \"%s\" in %s (%s)", cfg->backend.token_label,
             cfg->backend.module, ddsm_rv_name(rv));
        worse(s, CTL_EXIT_UNAVAILABLE);
    } else {
        line(s, "hsm", "OK", false,
             "token \"%s\" present; root key not checked (no PIN: --pin-file or DDSM_PIN)",
             cfg->backend.token_label);
    }
    ddsm_hsm_unload(hsm);
}

struct recon {
    uint64_t n;
};

static int count_finding(const ddsm_reconcile_finding *f, void *arg)
{
    ((struct recon *)arg)->n++;
    return 0;
}

struct heads {
    int64_t now_us;
    FILE *json; /* --json: the chain_heads array's items go here; NULL: to the screen */
    unsigned n;
};

static int heads_line(const ddsm_chain_head *h, void *arg)
{
    struct heads *hs = arg;
    if (hs->json != NULL) {
        char t[40];
        ctl_format_time(h->updated_us, t);
        fprintf(hs->json, "%s\n    {\"instance\": ", hs->n == 0 ? "" : ",");
        tool_json_str(hs->json, h->instance);
        fprintf(hs->json, ", \"seq\": %lld, \"updated\": \"%s\"}", (long long)h->seq, t);
        hs->n++;
        return 0;
    }
    char age[32];
    age_text(hs->now_us, h->updated_us, age, sizeof(age));
    printf("%-11s %-4s   %s: seq %lld, %s\n", "", "", h->instance, (long long)h->seq, age);
    return 0;
}

int cmd_status(ctl *c, int argc, char **argv)
{
    const char *since_text = NULL;
    const char *pos[1];
    size_t npos = 0;
    int64_t since_s = 86400;
    ddsm_store *st = NULL;
    ddsm_overview o;
    memset(&o, 0, sizeof o);
    bool json = false;
    bool have_overview = false;
    char *heads_buf = NULL;
    size_t heads_len = 0;
    struct heads hs = {0, NULL, 0};
    struct screen s = {isatty(STDOUT_FILENO) == 1, false, 0, 0, CTL_EXIT_OK};
    const ctl_opt opts[] = {{"--reconcile-since", &since_text, NULL, NULL, 0, NULL},
                            {"--json", NULL, &json, NULL, 0, NULL}};

    int rc = ctl_parse(c, &cmd_status_help, argc, argv, opts, 2, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (since_text != NULL) {
        const char *why = NULL;
        if (!ctl_parse_duration(since_text, &since_s, &why))
            return ctl_usage_error(&cmd_status_help, "--reconcile-since '%s': %s", since_text, why);
    }
    rc = ctl_config(c);
    if (rc != CTL_EXIT_OK)
        return rc;
    s.json = json;
    if (json) {
        hs.json = open_memstream(&heads_buf, &heads_len);
        if (hs.json == NULL) {
            ctl_err("out of memory");
            return CTL_EXIT_UNAVAILABLE;
        }
        printf("{\"config\": ");
        tool_json_str(stdout, c->cfg->file);
        printf(", \"checks\": [");
    } else {
        printf("%-11s %-4s %s\n", "config", "", c->cfg->file);
    }

    rc = ctl_store_open(c, false, &st);
    ddsm_err e = rc == CTL_EXIT_OK ? ddsm_overview_get(st, &o) : DDSM_E_STORE_DOWN;
    if (e != DDSM_OK) {
        bool migrate = e == DDSM_E_STATE;
        line(&s, "store", "FAIL", true, "%s",
             st != NULL ? ddsm_store_errmsg(st) : "cannot open the store");
        worse(&s, migrate ? CTL_EXIT_REFUSED : CTL_EXIT_UNAVAILABLE);
        hsm_status(c, &s);
        goto out;
    }
    bool pending = o.migrations_applied < ddsm_migrations_count;
    line(&s, "store", pending ? "FAIL" : "OK", pending,
         "PostgreSQL %s; schema %s (%u of %u migrations applied%s)", o.server_version,
         o.last_migration, o.migrations_applied, ddsm_migrations_count,
         pending ? ": run `ddsmctl db migrate`" : "");
    if (pending)
        worse(&s, CTL_EXIT_REFUSED);
    hsm_status(c, &s);
    have_overview = true;
    hs.now_us = o.now_us;

    uint64_t total = 0;
    for (int i = 0; i < DDSM_STATE__COUNT; i++)
        total += o.assets[i];
    line(&s, "assets", "", false,
         "%llu: ACTIVE %llu, ROTATING %llu, INITIALIZED %llu, RETIRED %llu",
         (unsigned long long)total, (unsigned long long)o.assets[DDSM_STATE_ACTIVE],
         (unsigned long long)o.assets[DDSM_STATE_ROTATING],
         (unsigned long long)o.assets[DDSM_STATE_INITIALIZED],
         (unsigned long long)o.assets[DDSM_STATE_RETIRED]);
    line(&s, "zones", "", false, "%llu, %llu disabled (%llu asset%s derive nothing)",
         (unsigned long long)o.zones, (unsigned long long)o.zones_disabled,
         (unsigned long long)o.assets_in_disabled_zones,
         o.assets_in_disabled_zones == 1 ? "" : "s");
    if (o.has_rotation) {
        char t[40], age[32];
        ctl_format_time(o.last_rotation_us, t);
        age_text(o.now_us, o.last_rotation_us, age, sizeof(age));
        line(&s, "rotation", "", false, "last %s (%s): %s, counter %lld -> %lld; %llu in all", t,
             age, o.last_rotation_label, (long long)o.last_rotation_from,
             (long long)o.last_rotation_to, (unsigned long long)o.rotations);
    } else {
        line(&s, "rotation", "", false, "none yet");
    }
    if (o.chains > 0) {
        char newest[32], oldest[32];
        age_text(o.now_us, o.chain_newest_us, newest, sizeof(newest));
        age_text(o.now_us, o.chain_oldest_us, oldest, sizeof(oldest));
        line(&s, "audit", "", false,
             "%llu chain%s; longest at seq %lld; checkpoints moved %s (newest), %s (oldest)",
             (unsigned long long)o.chains, o.chains == 1 ? "" : "s", (long long)o.chain_seq_max,
             newest, oldest);
        e = ddsm_overview_chain_heads(st, 3, heads_line, &hs);
        if (e != DDSM_OK)
            worse(&s, ctl_store_fail(st, e, "cannot read the chain heads"));
    } else {
        line(&s, "audit", "", false, "no chain yet");
    }
    bool parts_bad =
        o.default_partition_rows > 0 || !o.current_partition || o.future_partitions == 0;
    line(&s, "partitions", parts_bad ? "FAIL" : "OK", parts_bad,
         "current month %s, %u month%s ahead, %lld row%s in the default partition%s",
         o.current_partition ? "present" : "MISSING", o.future_partitions,
         o.future_partitions == 1 ? "" : "s", (long long)o.default_partition_rows,
         o.default_partition_rows == 1 ? "" : "s", parts_bad ? " (run `ddsmctl db maintain`)" : "");
    if (parts_bad)
        worse(&s, CTL_EXIT_REFUSED);

    struct recon r = {0};
    ddsm_reconcile_opts ro = {true, o.now_us - since_s * 1000000};
    uint64_t n = 0;
    e = ddsm_audit_reconcile(st, &ro, count_finding, &r, &n);
    if (e != DDSM_OK) {
        line(&s, "reconcile", "FAIL", true, "could not run: %s", ddsm_store_errmsg(st));
        worse(&s, ctl_exit_for(e));
    } else {
        line(&s, "reconcile", n > 0 ? "FAIL" : "OK", n > 0,
             "%llu finding%s (audit rows since %s ago; `ddsmctl reconcile` lists them)",
             (unsigned long long)n, n == 1 ? "" : "s", since_text != NULL ? since_text : "1d");
        if (n > 0)
            worse(&s, CTL_EXIT_REFUSED);
    }
out:
    ddsm_store_close(st);
    if (json) {
        /* memstream: its text is valid once closed. */
        fclose(hs.json);
        printf("%s],\n  \"chain_heads\": [%s%s],\n  \"assets\": ", s.lines == 0 ? "" : "\n  ",
               heads_buf != NULL ? heads_buf : "", hs.n == 0 ? "" : "\n  ");
        free(heads_buf);
        if (have_overview)
            printf("{\"ACTIVE\": %llu, \"ROTATING\": %llu, \"INITIALIZED\": %llu, "
                   "\"RETIRED\": %llu}",
                   (unsigned long long)o.assets[DDSM_STATE_ACTIVE],
                   (unsigned long long)o.assets[DDSM_STATE_ROTATING],
                   (unsigned long long)o.assets[DDSM_STATE_INITIALIZED],
                   (unsigned long long)o.assets[DDSM_STATE_RETIRED]);
        else
            printf("null");
        printf(",\n  \"exit\": %d}\n", s.rc);
    }
    return s.rc;
}
