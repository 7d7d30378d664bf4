/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl audit verify, ddsmctl reconcile, ddsmctl db maintain: the audit log (docs/audit.md).
 * The work is done by ddsm-core (ddsm/audit.h); this file parses, reports and picks exit codes. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ddsm/audit.h"
#include "ddsm/audit_checkpoint.h"
#include "tool.h"

const ctl_help cmd_audit_help = {
    "audit",
    "ddsmctl audit <subcommand> [options]",
    "The tamper-evident audit log. Subcommands:\n"
    "  verify       walk every MAC chain and report edited, deleted, reordered, duplicated and\n"
    "               truncated rows, and rows without a MAC\n"
    "  checkpoint   write the chain heads, MACed under an HSM-derived key, for storage outside\n"
    "               the database",
    NULL,
};

static const ctl_help verify_help = {
    "audit verify",
    "ddsmctl audit verify [--since TIME] [--instance ID] [--allow-pre-chain]"
    " [--checkpoint FILE] [--json]",
    "Walk every writer's chain in the audit log, in one consistent snapshot, streaming (memory\n"
    "stays flat however long the log), and report with row ids: rows whose MAC does not verify\n"
    "under their writer's key (EDITED), gaps in a chain's sequence (DELETED), rows stored out of\n"
    "their chain's order (REORDERED), repeated sequence numbers (DUPLICATE), rows missing after a\n"
    "chain's last row that its checkpoint proves (TRUNCATED), missing or inconsistent checkpoints\n"
    "(CHECKPOINT), rows without a MAC written since migration 002 (UNAUTHENTICATED), rows written\n"
    "before it (PRE_CHAIN), and rows written since migration 007 under the legacy shared key\n"
    "(LEGACY_KEY). Each writer's key is derived in the HSM from the root key and its writer id,\n"
    "so this command needs the user PIN. Progress goes to stderr when it is a terminal.\n"
    "\n"
    "With --checkpoint FILE (a file of `ddsmctl audit checkpoint`), also check the log against\n"
    "it: a file whose MAC does not verify, or whose per-writer key boundary moved (ANCHOR); a\n"
    "chain now behind the seq the file anchors, or with another row there (ROLLED_BACK); a chain\n"
    "of the file with no row left (CHAIN_GONE).\n"
    "\n"
    "With --json one JSON object: {\"findings\": [{\"kind\", \"row_id\", \"detail\", "
    "\"accepted\"}...],\n"
    "\"rows\": N, \"chains\": N, \"counts\": {KIND: N}, \"verified\": true|false, \"complete\": "
    "true},\n"
    "or {\"findings\": [...], \"complete\": false} when the store cut the walk short.\n"
    "\n"
    "Exit status: 0 when everything verifies, 1 when there is any finding, 2 for bad input\n"
    "(including an unreadable or malformed checkpoint file), 3 when PostgreSQL or the HSM is\n"
    "unavailable.",
    "  --since TIME         only rows from TIME on (UTC: 2026-11-01, 2026-11-01T08:00:00Z, or a\n"
    "                       duration back from now: 7d, 12h); older partitions are not read\n"
    "  --instance ID        only the chain of this writer instance id\n"
    "  --allow-pre-chain    report rows from before migration 002 but do not fail on them\n"
    "  --checkpoint FILE    also check every chain head the checkpoint file anchors\n"
    "  --json               one JSON object instead of text\n",
};

static const ctl_help checkpoint_help = {
    "audit checkpoint",
    "ddsmctl audit checkpoint [--out FILE]",
    "Write the head of every audit chain (instance id, last seq, its MAC, when it moved) and the\n"
    "row id where per-writer keys begin, MACed under the checkpoint key the HSM derives from the\n"
    "root key, as text, to FILE or stdout. Keep it outside PostgreSQL (a WORM bucket, a ticket, a\n"
    "git repository): `ddsmctl audit verify --checkpoint FILE` then detects a chain's tail rolled\n"
    "back together with its in-database checkpoint, a whole chain deleted, and an edited or\n"
    "forged file. Run `ddsmctl audit verify` first: a checkpoint anchors the heads as they are.\n"
    "Needs the user PIN (the HSM) and reads only (ddsm_auditor suffices).\n"
    "\n"
    "Exit status: 0 when written, 2 for bad input (FILE cannot be written), 3 when PostgreSQL or\n"
    "the HSM is unavailable.",
    "  --out FILE           write to FILE (replaced when it exists) instead of stdout\n",
};

const ctl_help cmd_reconcile_help = {
    "reconcile",
    "ddsmctl reconcile [--since TIME] [--json]",
    "Compare, for every ACTIVE or ROTATING asset, the registry's counter with its rotation\n"
    "records and its audit rows, in one set-based query, and report:\n"
    "  COUNTER_DRIFT            the registry counter is not where the rotation records end, or an\n"
    "                           audit row carries a counter above the registry's\n"
    "  MISSING_AUDIT_ENTRY      a rotation record without its ROTATE audit row, or a counter the\n"
    "                           registry passed with neither a rotation record nor a ROTATE row\n"
    "  ROTATED_COUNTER_DERIVED  a derivation whose statement began after a rotation to a newer\n"
    "                           counter had committed, yet used the older counter\n"
    "as a table, or as JSON with --json.\n"
    "\n"
    "Exit status: 0 when there is no finding, 1 when there is any, 2 for bad input, 3 when\n"
    "PostgreSQL is unavailable.",
    "  --since TIME         only audit rows from TIME on (as for `audit verify`)\n"
    "  --json               one JSON object: {\"findings\": [...], \"count\": N}\n",
};

static const ctl_help maintain_help = {
    "db maintain",
    "ddsmctl db maintain [--months N]",
    "Make sure the audit log's monthly partitions (UTC) exist for the current month and the next\n"
    "N, moving into them any of their rows that waited in the default partition, and report the\n"
    "rows still in the default partition by month (a writer's clock far off, or a partition that\n"
    "was missing for a month maintain does not cover). Idempotent and safe to run from cron;\n"
    "concurrent runs wait for each other. A derivation never fails for want of a partition: the\n"
    "default partition takes its row.\n"
    "\n"
    "Exit status: 0 when done (rows left in the default partition are reported on stderr as a\n"
    "warning), 2 for bad input, 3 when PostgreSQL is unavailable.",
    "  --months N           months ahead to prepare, 0..120 (default 3)\n",
};

/* ------------------------------------------------------------------------------------------ */

static int store_fail(ddsm_store *st, const char *what, ddsm_err e)
{
    ctl_err("%s: %s", what, ddsm_store_errmsg(st));
    int rc = ctl_exit_for(e);
    /* A refusal from the store here is a failure of the store, not of the operator. */
    return rc == CTL_EXIT_REFUSED ? CTL_EXIT_UNAVAILABLE : rc;
}

/* TIME: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] (UTC), or a duration back from now (7d, 12h). */
static bool parse_since(const char *text, int64_t *us, const char **why)
{
    struct tm tm;
    int64_t secs = 0;
    memset(&tm, 0, sizeof tm);
    if (ctl_parse_duration(text, &secs, why)) {
        *us = ((int64_t)time(NULL) - secs) * 1000000;
        return true;
    }
    const char *end = strptime(text, "%Y-%m-%d", &tm);
    if (end == NULL) {
        *why = "expected YYYY-MM-DD[THH:MM[:SS]][Z] (UTC) or a duration such as 7d";
        return false;
    }
    if (*end == 'T' || *end == ' ') {
        const char *t = strptime(end + 1, "%H:%M:%S", &tm);
        if (t == NULL)
            t = strptime(end + 1, "%H:%M", &tm);
        if (t == NULL) {
            *why = "the time of day must be HH:MM or HH:MM:SS";
            return false;
        }
        end = t;
    }
    if (*end == 'Z')
        end++;
    if (*end != '\0') {
        *why = "unexpected text after the date and time (times are UTC; no offsets)";
        return false;
    }
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && tm.tm_year != 69) {
        *why = "not a valid date";
        return false;
    }
    *us = (int64_t)t * 1000000;
    return true;
}

/* --since TIME (NULL: not given) into *has and *us. Returns an exit code (usage error printed). */
static int since_option(const ctl_help *h, const char *since, bool *has, int64_t *us)
{
    const char *why = NULL;
    if (since == NULL)
        return CTL_EXIT_OK;
    if (!parse_since(since, us, &why))
        return ctl_usage_error(h, "--since '%s': %s", since, why);
    *has = true;
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* audit verify */

struct vreport {
    bool allow_pre_chain;
    bool progress_shown;
    bool json;
    uint64_t printed; /* findings printed (JSON: the separator) */
    uint64_t counted; /* findings that fail the run */
};

static int on_finding(const ddsm_audit_finding *f, void *arg)
{
    struct vreport *r = arg;
    bool accepted = f->kind == DDSM_AUDIT_PRE_CHAIN && r->allow_pre_chain;
    if (r->progress_shown) {
        fputs("\r\033[K", stderr);
        r->progress_shown = false;
    }
    if (!accepted)
        r->counted++;
    if (r->json) {
        printf("%s\n    {\"kind\": \"%s\", \"row_id\": %" PRId64 ", \"detail\": ",
               r->printed == 0 ? "" : ",", ddsm_audit_kind_name(f->kind), f->row_id);
        tool_json_str(stdout, f->detail);
        printf(", \"accepted\": %s}", accepted ? "true" : "false");
        r->printed++;
        return 0;
    }
    r->printed++;
    if (f->row_id == 0)
        printf("%-16s %s\n", ddsm_audit_kind_name(f->kind), f->detail);
    else
        printf("%-16s row %-10" PRId64 " %s%s\n", ddsm_audit_kind_name(f->kind), f->row_id,
               f->detail, accepted ? " (accepted: --allow-pre-chain)" : "");
    return 0;
}

static void on_progress(uint64_t rows, uint64_t chains, void *arg)
{
    struct vreport *r = arg;
    fprintf(stderr, "\r\033[Kverifying: %" PRIu64 " rows in %" PRIu64 " chains", rows, chains);
    r->progress_shown = true;
}

/* The whole of FILE (at most DDSM_CHECKPOINT_FILE_MAX bytes) into *text. An exit code (message
 * printed). */
static int read_checkpoint_file(const char *file, char **text, size_t *len)
{
    FILE *f = fopen(file, "rb");
    *text = NULL;
    *len = 0;
    if (f == NULL) {
        ctl_err("--checkpoint %s: %s", file, strerror(errno));
        return CTL_EXIT_USAGE;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    int rc = CTL_EXIT_OK;
    while (b != NULL) {
        if (n == cap) {
            if (cap > DDSM_CHECKPOINT_FILE_MAX) {
                ctl_err("--checkpoint %s: larger than %u bytes: not a checkpoint file", file,
                        DDSM_CHECKPOINT_FILE_MAX);
                rc = CTL_EXIT_USAGE;
                break;
            }
            char *g = realloc(b, cap * 2);
            if (g == NULL) {
                free(b);
                b = NULL;
                break;
            }
            b = g;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                ctl_err("--checkpoint %s: %s", file, strerror(errno));
                rc = CTL_EXIT_USAGE;
            }
            break;
        }
    }
    fclose(f);
    if (b == NULL) {
        ctl_err("--checkpoint %s: out of memory", file);
        return CTL_EXIT_UNAVAILABLE;
    }
    if (rc != CTL_EXIT_OK) {
        free(b);
        return rc;
    }
    *text = b;
    *len = n;
    return CTL_EXIT_OK;
}

static int audit_verify(ctl *c, int argc, char **argv)
{
    const char *since = NULL, *instance = NULL, *checkpoint = NULL;
    bool allow_pre = false, have_hsm = false;
    bool json = false;
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_audit_key *key = NULL, *ckey = NULL;
    char *ck_text = NULL;
    size_t ck_len = 0;
    ctl_hsm h;
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf prf;
    const ctl_opt opts[] = {
        {"--since", &since, NULL, NULL, 0, NULL},
        {"--instance", &instance, NULL, NULL, 0, NULL},
        {"--allow-pre-chain", NULL, &allow_pre, NULL, 0, NULL},
        {"--checkpoint", &checkpoint, NULL, NULL, 0, NULL},
        {"--json", NULL, &json, NULL, 0, NULL},
    };
    int rc = ctl_parse(c, &verify_help, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 0, 0,
                       &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    ddsm_audit_verify_opts vo;
    memset(&vo, 0, sizeof vo);
    rc = since_option(&verify_help, since, &vo.has_since, &vo.since_us);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (instance != NULL && (instance[0] == '\0' || strlen(instance) > DDSM_AUDIT_INSTANCE_MAX))
        return ctl_usage_error(&verify_help, "--instance must be 1..%d characters",
                               DDSM_AUDIT_INSTANCE_MAX);
    vo.instance = instance;
    if (checkpoint != NULL) {
        rc = read_checkpoint_file(checkpoint, &ck_text, &ck_len);
        if (rc != CTL_EXIT_OK)
            return rc;
    }
    c->store_role = DDSM_ROLE_AUDITOR; /* read only: ddsm_auditor suffices */
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    /* The HSM stays open for the walk: each writer's key is derived when its chain comes up. */
    rc = ctl_root_prf(c, &h, &pctx, &prf);
    if (rc != CTL_EXIT_OK)
        goto out;
    have_hsm = true;
    ddsm_err e = ddsm_audit_key_derive(&prf, &key);
    if (e == DDSM_OK && ck_text != NULL)
        e = ddsm_audit_checkpoint_key_derive(&prf, &ckey);
    if (e != DDSM_OK) {
        rc = ctl_key_fail(&pctx, "the audit keys", e);
        goto out;
    }
    vo.prf = &prf;

    struct vreport rep = {.allow_pre_chain = allow_pre, .json = json};
    if (isatty(STDERR_FILENO)) {
        vo.progress = on_progress;
        vo.progress_arg = &rep;
    }
    ddsm_audit_verify_stats stats;
    if (json)
        printf("{\"findings\": [");
    e = ddsm_audit_verify(st, key, &vo, on_finding, &rep, &stats);
    if (rep.progress_shown)
        fputs("\r\033[K", stderr);
    if (json && e != DDSM_OK)
        printf("%s], \"complete\": false}\n", rep.printed == 0 ? "" : "\n  ");
    if (e != DDSM_OK) {
        rc = pctx.last_rv != CKR_OK ? ctl_key_fail(&pctx, "a writer's audit key", e)
                                    : store_fail(st, "audit verify", e);
        goto out;
    }
    if (ck_text != NULL) {
        char why[256];
        e = ddsm_audit_checkpoint_check(st, ckey, ck_text, ck_len, on_finding, &rep, &stats, why,
                                        sizeof why);
        if (e == DDSM_E_INPUT) {
            ctl_err("--checkpoint %s: not a checkpoint file: %s", checkpoint, why);
            rc = CTL_EXIT_USAGE;
            goto out;
        }
        if (e != DDSM_OK) {
            rc = store_fail(st, "audit verify --checkpoint", e);
            goto out;
        }
    }
    uint64_t total = 0;
    for (int k = 0; k < DDSM_AUDIT__KINDS; k++)
        total += stats.findings[k];
    rc = rep.counted == 0 ? CTL_EXIT_OK : CTL_EXIT_REFUSED;
    if (json) {
        printf("%s],\n  \"rows\": %" PRIu64 ", \"chains\": %" PRIu64 ", \"counts\": {",
               rep.printed == 0 ? "" : "\n  ", stats.rows, stats.chains);
        const char *sep = "";
        for (int k = 0; k < DDSM_AUDIT__KINDS; k++) {
            if (stats.findings[k] == 0)
                continue;
            printf("%s\"%s\": %" PRIu64, sep, ddsm_audit_kind_name((ddsm_audit_kind)k),
                   stats.findings[k]);
            sep = ", ";
        }
        printf("}, \"verified\": %s, \"complete\": true}\n", rc == CTL_EXIT_OK ? "true" : "false");
        goto out;
    }
    printf("verified %" PRIu64 " chained rows in %" PRIu64 " chains", stats.rows, stats.chains);
    if (ck_text != NULL)
        printf(" and the checkpoint file");
    if (total == 0) {
        printf(": everything verifies\n");
    } else {
        printf(": %" PRIu64 " finding%s (", total, total == 1 ? "" : "s");
        const char *sep = "";
        for (int k = 0; k < DDSM_AUDIT__KINDS; k++) {
            if (stats.findings[k] == 0)
                continue;
            printf("%s%s %" PRIu64, sep, ddsm_audit_kind_name((ddsm_audit_kind)k),
                   stats.findings[k]);
            sep = ", ";
        }
        printf(")%s\n", rep.counted == 0 ? "; pre-chain rows accepted" : "");
    }
out:
    ddsm_audit_key_free(key);
    ddsm_audit_key_free(ckey);
    if (have_hsm)
        ctl_hsm_close(&h);
    ddsm_store_close(st);
    free(ck_text);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* audit checkpoint */

static int audit_checkpoint(ctl *c, int argc, char **argv)
{
    const char *out_file = NULL;
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_audit_key *ckey = NULL;
    FILE *f = NULL;
    bool have_hsm = false;
    ctl_hsm h;
    ddsm_hsm_prf_ctx pctx;
    ddsm_prf prf;
    char tmp[4096];
    tmp[0] = '\0';
    const ctl_opt opts[] = {{"--out", &out_file, NULL, NULL, 0, NULL}};
    int rc = ctl_parse(c, &checkpoint_help, argc, argv, opts, 1, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (out_file != NULL &&
        (out_file[0] == '\0' ||
         snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out_file, (long)getpid()) >= (int)sizeof tmp))
        return ctl_usage_error(&checkpoint_help, "--out needs a file name (at most %zu bytes)",
                               sizeof tmp - 32);
    c->store_role = DDSM_ROLE_AUDITOR;
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = ctl_root_prf(c, &h, &pctx, &prf);
    if (rc != CTL_EXIT_OK)
        goto out;
    have_hsm = true;
    ddsm_err e = ddsm_audit_checkpoint_key_derive(&prf, &ckey);
    if (e != DDSM_OK) {
        rc = ctl_key_fail(&pctx, "the checkpoint key", e);
        goto out;
    }
    /* To a file beside FILE, renamed over it once complete: a reader never sees half a file. */
    if (out_file != NULL) {
        f = fopen(tmp, "wx");
        if (f == NULL) {
            ctl_err("--out %s: %s", out_file, strerror(errno));
            rc = CTL_EXIT_USAGE;
            goto out;
        }
    }
    uint64_t chains = 0;
    e = ddsm_audit_checkpoint_write(st, ckey, f != NULL ? f : stdout, &chains);
    if (e == DDSM_E_IO) {
        ctl_err("%s: %s", out_file != NULL ? out_file : "stdout", strerror(errno));
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    if (e != DDSM_OK) {
        rc = store_fail(st, "audit checkpoint", e);
        goto out;
    }
    if (f != NULL) {
        int closed = fclose(f);
        f = NULL;
        if (closed != 0 || rename(tmp, out_file) != 0) {
            ctl_err("--out %s: %s", out_file, strerror(errno));
            rc = CTL_EXIT_USAGE;
            goto out;
        }
        tmp[0] = '\0';
        fprintf(stderr, "checkpoint of %" PRIu64 " chain%s written to %s\n", chains,
                chains == 1 ? "" : "s", out_file);
    }
    rc = CTL_EXIT_OK;
out:
    if (f != NULL)
        fclose(f);
    if (tmp[0] != '\0')
        unlink(tmp);
    ddsm_audit_key_free(ckey);
    if (have_hsm)
        ctl_hsm_close(&h);
    ddsm_store_close(st);
    return rc;
}

int cmd_audit(ctl *c, int argc, char **argv)
{
    static const ctl_sub subs[] = {{"verify", audit_verify}, {"checkpoint", audit_checkpoint}};
    return ctl_run_sub(c, &cmd_audit_help, subs, sizeof(subs) / sizeof(subs[0]), argc, argv);
}

/* ------------------------------------------------------------------------------------------ */
/* reconcile */

struct rreport {
    bool json;
    uint64_t n;
};

static int on_reconcile(const ddsm_reconcile_finding *f, void *arg)
{
    struct rreport *r = arg;
    char id[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&f->asset, id);
    if (r->json) {
        printf("%s\n    {\"kind\": ", r->n == 0 ? "" : ",");
        tool_json_str(stdout, f->kind);
        printf(", \"asset\": \"%s\", \"label\": ", id);
        tool_json_str(stdout, f->label);
        printf(", \"row_id\": ");
        if (f->row_id != 0)
            printf("%" PRId64, f->row_id);
        else
            printf("null");
        printf(", \"counter\": %" PRId64 ", \"expected\": %" PRId64 ", \"detail\": ", f->counter,
               f->expected);
        tool_json_str(stdout, f->detail);
        printf("}");
    } else {
        if (r->n == 0)
            printf("%-24s %-36s %-20s %-8s %-8s %-8s %s\n", "KIND", "ASSET", "LABEL", "ROW",
                   "COUNTER", "EXPECTED", "DETAIL");
        char row[24];
        if (f->row_id != 0)
            snprintf(row, sizeof row, "%" PRId64, f->row_id);
        else
            snprintf(row, sizeof row, "-");
        printf("%-24s %-36s %-20.20s %-8s %-8" PRId64 " %-8" PRId64 " %s\n", f->kind, id, f->label,
               row, f->counter, f->expected, f->detail);
    }
    r->n++;
    return 0;
}

int cmd_reconcile(ctl *c, int argc, char **argv)
{
    const char *since = NULL;
    bool json = false;
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    const ctl_opt opts[] = {
        {"--since", &since, NULL, NULL, 0, NULL},
        {"--json", NULL, &json, NULL, 0, NULL},
    };
    int rc = ctl_parse(c, &cmd_reconcile_help, argc, argv, opts, sizeof opts / sizeof opts[0], pos,
                       0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    ddsm_reconcile_opts ro;
    memset(&ro, 0, sizeof ro);
    rc = since_option(&cmd_reconcile_help, since, &ro.has_since, &ro.since_us);
    if (rc != CTL_EXIT_OK)
        return rc;
    c->store_role = DDSM_ROLE_AUDITOR; /* read only: ddsm_auditor suffices */
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    struct rreport rep = {.json = json};
    if (json)
        printf("{\"findings\": [");
    uint64_t n = 0;
    ddsm_err e = ddsm_audit_reconcile(st, &ro, on_reconcile, &rep, &n);
    if (json)
        printf("%s], \"count\": %" PRIu64 "}\n", rep.n == 0 ? "" : "\n  ", rep.n);
    if (e != DDSM_OK) {
        rc = store_fail(st, "reconcile", e);
        goto out;
    }
    if (!json)
        printf("%s%" PRIu64 " finding%s\n", n == 0 ? "reconcile: " : "\n", n, n == 1 ? "" : "s");
    rc = n == 0 ? CTL_EXIT_OK : CTL_EXIT_REFUSED;
out:
    ddsm_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* db maintain */

struct mreport {
    unsigned created, present;
    const char *first, *last;
    char first_buf[8], last_buf[8];
};

static void on_maintain(const ddsm_maintain_event *e, void *arg)
{
    struct mreport *r = arg;
    switch (e->what) {
    case DDSM_MAINTAIN_CREATED:
        r->created++;
        printf("created partition %s for %s", e->partition, e->month);
        if (e->rows > 0)
            printf(" (moved %" PRId64 " rows in from the default partition)", e->rows);
        printf("\n");
        break;
    case DDSM_MAINTAIN_PRESENT:
        r->present++;
        break;
    case DDSM_MAINTAIN_STRAY:
        ctl_warn("the default partition holds %" PRId64 " row%s of %s (ids %" PRId64 "..%" PRId64
                 ")",
                 e->rows, e->rows == 1 ? "" : "s", e->month, e->min_id, e->max_id);
        return;
    }
    if (r->first == NULL) {
        snprintf(r->first_buf, sizeof r->first_buf, "%s", e->month);
        r->first = r->first_buf;
    }
    snprintf(r->last_buf, sizeof r->last_buf, "%s", e->month);
    r->last = r->last_buf;
}

int cmd_db_maintain(ctl *c, int argc, char **argv)
{
    const char *months_text = NULL;
    unsigned months = 3;
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    const ctl_opt opts[] = {
        {"--months", &months_text, NULL, NULL, 0, NULL},
    };
    int rc = ctl_parse(c, &maintain_help, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 0, 0,
                       &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (months_text != NULL && !ctl_parse_uint(months_text, 0, 120, &months))
        return ctl_usage_error(&maintain_help, "--months must be a whole number from 0 to 120");
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    struct mreport rep;
    memset(&rep, 0, sizeof rep);
    int64_t strays = 0;
    ddsm_err e = ddsm_audit_maintain(st, months, on_maintain, &rep, &strays);
    if (e != DDSM_OK) {
        rc = store_fail(st, "db maintain", e);
        goto out;
    }
    printf("monthly partitions ready from %s to %s (%u created, %u already there); ",
           rep.first != NULL ? rep.first : "?", rep.last != NULL ? rep.last : "?", rep.created,
           rep.present);
    if (strays == 0)
        printf("the default partition is empty\n");
    else
        printf("%" PRId64 " row%s in the default partition\n", strays, strays == 1 ? "" : "s");
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}
