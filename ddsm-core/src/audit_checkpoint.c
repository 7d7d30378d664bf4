/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoint files (docs/audit.md "Checkpoints outside the database"). A MAC chain proves what
 * lies between its rows, never that its tail is still there: whoever can delete rows can roll a
 * chain back together with its in-database checkpoint, or delete a whole chain. A file kept
 * outside PostgreSQL, MACed under a key only the HSM computes, anchors each chain's head at the
 * time it was taken. The format is text, one record a line, so that it diffs and stores well:
 *
 *   DDSM-AUDIT-CHECKPOINT 1
 *   taken <UTC time, YYYY-MM-DDTHH:MM:SS.ffffffZ>
 *   writer-keys-from-id <row id, or - before migration 007>
 *   chain <seq> <MAC, 64 lowercase hex> <head's updated_at, UTC as above> <instance id>
 *   ...                                        (one line per chain, by instance id in byte order)
 *   end <number of chain lines>
 *   mac <HMAC-SHA256 under the checkpoint key of every byte before this line, 64 lowercase hex>
 *
 * Instance ids are printable ASCII (spaces allowed), which is why each is last on its line. */
#include "ddsm/audit_checkpoint.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "ddsm/mac.h"
#include "store_audit.h"
#include "ddsm/textbuf.h"

#define TIME_TEXT_MAX 40
#define CHECK_TIMEOUT_MS 120000

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void time_text(int64_t us, char out[TIME_TEXT_MAX])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, TIME_TEXT_MAX, "%.19s.%06dZ", base, (int)(us % 1000000));
}

/* custody_audit_meta.writer_keys_from_id, NULL before migration 007 (see audit.c). */
static const char cutoff_sql[] =
    "SELECT (pg_catalog.to_jsonb(m) ->> 'writer_keys_from_id')::bigint FROM custody_audit_meta m";
static const char heads_sql[] =
    "SELECT instance_id, seq, pg_catalog.encode(mac, 'hex'),"
    " pg_catalog.to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    " FROM custody_audit_chain_heads ORDER BY instance_id COLLATE \"C\"";

static ddsm_err read_cutoff(struct ddsm_pq *pq, bool *has, int64_t *cutoff)
{
    PGresult *r = NULL;
    ddsm_err e = ddsm_pq_exec_sql(pq, "checkpoint: where per-writer keys begin", cutoff_sql, 0,
                                  NULL, CHECK_TIMEOUT_MS, &r);
    if (e != DDSM_OK)
        return e;
    *has = PQntuples(r) == 1 && ddsm_pq_get_i64(r, 0, 0, cutoff);
    PQclear(r);
    return DDSM_OK;
}

ddsm_err ddsm_audit_checkpoint_write(ddsm_store *st, const ddsm_audit_key *ckey, FILE *out,
                                     uint64_t *chains)
{
    ddsm_textbuf b = {NULL, 0, 0, false};
    PGresult *r = NULL;
    uint8_t mac[DDSM_AUDIT_MAC_LEN];
    char mac_hex[2 * DDSM_AUDIT_MAC_LEN + 1], t[TIME_TEXT_MAX];
    bool has_cutoff = false, in_tx = false;
    int64_t cutoff = 0;
    if (st == NULL || ckey == NULL || out == NULL)
        return DDSM_E_ARG;
    struct ddsm_pq *pq = ddsm_store_pq(st);

    ddsm_err e = ddsm_pq_ensure(pq, NULL);
    if (e == DDSM_OK)
        e = ddsm_pq_exec_sql(pq, "checkpoint: begin",
                             "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 0, NULL);
    if (e != DDSM_OK)
        goto out;
    in_tx = true;
    e = read_cutoff(pq, &has_cutoff, &cutoff);
    if (e == DDSM_OK)
        e = ddsm_pq_exec_sql(pq, "checkpoint: read the chain heads", heads_sql, 0, NULL,
                             CHECK_TIMEOUT_MS, &r);
    if (e != DDSM_OK)
        goto out;

    time_text(ddsm_audit_now_us(), t);
    ddsm_textbuf_printf(&b, "%s\ntaken %s\n", DDSM_CHECKPOINT_MAGIC, t);
    if (has_cutoff)
        ddsm_textbuf_printf(&b, "writer-keys-from-id %" PRId64 "\n", cutoff);
    else
        ddsm_textbuf_printf(&b, "writer-keys-from-id -\n");
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        int64_t seq = 0;
        const char *inst = PQgetvalue(r, i, 0);
        size_t il = strlen(inst);
        bool printable = il > 0 && il <= DDSM_AUDIT_INSTANCE_MAX;
        for (size_t j = 0; printable && j < il; j++)
            printable = (unsigned char)inst[j] >= 0x20 && (unsigned char)inst[j] <= 0x7e;
        /* No writer makes such a name; one put there by hand would break the file's lines. */
        if (!printable) {
            e = ddsm_pq_fail(pq, DDSM_E_STORE,
                             "checkpoint: custody_audit_chain_heads holds an instance id that is "
                             "not 1..%d printable characters (%zu bytes): no chain of a writer",
                             DDSM_AUDIT_INSTANCE_MAX, il);
            goto out;
        }
        if (!ddsm_pq_get_i64(r, i, 1, &seq) || strlen(PQgetvalue(r, i, 2)) != 64) {
            e = ddsm_pq_fail(pq, DDSM_E_STORE, "checkpoint: a chain head does not parse");
            goto out;
        }
        ddsm_textbuf_printf(&b, "chain %" PRId64 " %s %s ", seq, PQgetvalue(r, i, 2),
                            PQgetvalue(r, i, 3));
        ddsm_textbuf_putn(&b, inst, il);
        ddsm_textbuf_putn(&b, "\n", 1);
    }
    ddsm_textbuf_printf(&b, "end %d\n", n);
    if (b.oom) {
        e = DDSM_E_NOMEM;
        goto out;
    }
    e = ddsm_audit_checkpoint_mac(ckey, (const uint8_t *)b.p, b.len, mac);
    if (e != DDSM_OK)
        goto out;
    hex(mac, sizeof mac, mac_hex);
    ddsm_textbuf_printf(&b, "mac %s\n", mac_hex);
    if (b.oom) {
        e = DDSM_E_NOMEM;
        goto out;
    }
    if (fwrite(b.p, 1, b.len, out) != b.len || fflush(out) != 0) {
        e = DDSM_E_IO;
        goto out;
    }
    if (chains != NULL)
        *chains = (uint64_t)n;
out:
    PQclear(r);
    if (in_tx && pq->conn != NULL && PQtransactionStatus(pq->conn) != PQTRANS_IDLE &&
        ddsm_pq_exec_sql(pq, "checkpoint: end", e == DDSM_OK ? "COMMIT" : "ROLLBACK", 0, NULL, 0,
                         NULL) != DDSM_OK)
        ddsm_pq_reset(pq);
    free(b.p);
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading a file back */

struct anchor {
    const char *inst; /* points into the parsed copy */
    int64_t seq;
    char mac[2 * DDSM_AUDIT_MAC_LEN + 1];
    char time[TIME_TEXT_MAX];
};

static bool all_of(const char *s, size_t n, const char *set)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || strchr(set, s[i]) == NULL)
            return false;
    return true;
}

static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    if (!all_of(s, n, "0123456789") || n > 18 || (n > 1 && s[0] == '0'))
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    *out = v;
    return true;
}

#define HEXDIGITS "0123456789abcdef"
#define TIMECHARS "0123456789-:.TZ"

static int bad(char *why, size_t cap, unsigned line, const char *what)
{
    snprintf(why, cap, "line %u: %s", line, what);
    return -1;
}

/* Parse copy (NUL-terminated, modified in place). 0 on success; -1 with why set. */
static int parse(char *copy, size_t len, struct anchor **out, size_t *n_out, size_t *mac_off,
                 char file_mac[2 * DDSM_AUDIT_MAC_LEN + 1], bool *has_cutoff, int64_t *cutoff,
                 char *why, size_t cap)
{
    size_t n = 0, max = 0;
    struct anchor *a = NULL;
    unsigned ln = 0;
    char *p = copy, *end = copy + len;
    bool ended = false;
    int64_t declared = -1;
    *out = NULL;
    if (len == 0 || copy[len - 1] != '\n')
        return bad(why, cap, 1, "the file is empty or does not end with a newline");
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = (size_t)(nl - p);
        *nl = '\0';
        ln++;
        if (memchr(p, '\0', l) != NULL) {
            free(a);
            return bad(why, cap, ln, "a NUL byte");
        }
        if (ln == 1) {
            if (strcmp(p, DDSM_CHECKPOINT_MAGIC) != 0) {
                free(a);
                return bad(why, cap, ln,
                           "not a checkpoint file (expected \"" DDSM_CHECKPOINT_MAGIC "\")");
            }
        } else if (ln == 2) {
            if (strncmp(p, "taken ", 6) != 0 || !all_of(p + 6, l - 6, TIMECHARS) ||
                l - 6 >= TIME_TEXT_MAX) {
                free(a);
                return bad(why, cap, ln, "expected \"taken <UTC time>\"");
            }
        } else if (ln == 3) {
            static const char k[] = "writer-keys-from-id ";
            if (strncmp(p, k, sizeof k - 1) != 0) {
                free(a);
                return bad(why, cap, ln, "expected \"writer-keys-from-id <row id or ->\"");
            }
            const char *v = p + sizeof k - 1;
            *has_cutoff = strcmp(v, "-") != 0;
            if (*has_cutoff && !parse_i64(v, strlen(v), cutoff)) {
                free(a);
                return bad(why, cap, ln, "the row id is not a number");
            }
        } else if (!ended && strncmp(p, "chain ", 6) == 0) {
            /* chain <seq> <mac> <time> <instance> */
            char *f[4];
            char *q = p + 6;
            for (int i = 0; i < 3; i++) {
                char *sp = strchr(q, ' ');
                if (sp == NULL) {
                    free(a);
                    return bad(why, cap, ln, "expected \"chain <seq> <mac> <time> <instance>\"");
                }
                *sp = '\0';
                f[i] = q;
                q = sp + 1;
            }
            f[3] = q;
            struct anchor x;
            memset(&x, 0, sizeof x);
            size_t il = strlen(f[3]);
            if (!parse_i64(f[0], strlen(f[0]), &x.seq) || x.seq < 1 || strlen(f[1]) != 64 ||
                !all_of(f[1], 64, HEXDIGITS) || !all_of(f[2], strlen(f[2]), TIMECHARS) ||
                strlen(f[2]) >= TIME_TEXT_MAX || il == 0 || il > DDSM_AUDIT_INSTANCE_MAX ||
                !all_of(f[3], il,
                        " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                        "abcdefghijklmnopqrstuvwxyz{|}~")) {
                free(a);
                return bad(why, cap, ln, "a malformed chain line");
            }
            memcpy(x.mac, f[1], 65);
            snprintf(x.time, sizeof x.time, "%s", f[2]);
            x.inst = f[3];
            if (n == max) {
                size_t m = max != 0 ? 2 * max : 64;
                struct anchor *g = realloc(a, m * sizeof *g);
                if (g == NULL) {
                    free(a);
                    snprintf(why, cap, "out of memory");
                    return -2;
                }
                a = g;
                max = m;
            }
            if (n > 0 && strcmp(a[n - 1].inst, x.inst) >= 0) {
                free(a);
                return bad(why, cap, ln, "chains out of order or repeated");
            }
            a[n++] = x;
        } else if (!ended && strncmp(p, "end ", 4) == 0) {
            if (!parse_i64(p + 4, l - 4, &declared) || (size_t)declared != n) {
                free(a);
                return bad(why, cap, ln, "the chain count does not match the chain lines");
            }
            ended = true;
        } else if (ended && strncmp(p, "mac ", 4) == 0 && l == 4 + 64 &&
                   all_of(p + 4, 64, HEXDIGITS) && nl + 1 == end) {
            *mac_off = (size_t)(p - copy);
            memcpy(file_mac, p + 4, 65);
            *out = a;
            *n_out = n;
            return 0;
        } else {
            free(a);
            return bad(why, cap, ln,
                       ended ? "expected \"mac <64 hex digits>\" as the last line"
                             : "unexpected line");
        }
        p = nl + 1;
    }
    free(a);
    return bad(why, cap, ln, "the file ends before its \"end\" and \"mac\" lines");
}

static int report(ddsm_audit_finding_cb cb, void *arg, ddsm_audit_verify_stats *stats,
                  ddsm_audit_kind kind, const char *inst, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static int report(ddsm_audit_finding_cb cb, void *arg, ddsm_audit_verify_stats *stats,
                  ddsm_audit_kind kind, const char *inst, int64_t seq, const char *fmt, ...)
{
    char detail[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (stats != NULL)
        stats->findings[kind]++;
    if (cb == NULL)
        return 0;
    ddsm_audit_finding f = {
        .kind = kind, .instance = inst, .seq_from = seq, .seq_to = seq, .detail = detail};
    return cb(&f, arg);
}

/* For each anchor (by ordinality): the MAC of the chain's row at the anchored seq (NULL: none)
 * and the chain's last seq (NULL: no row at all). Probes the chain index per anchor. */
static const char anchors_sql[] =
    "SELECT (SELECT pg_catalog.encode(l.mac, 'hex') FROM custody_audit_log l"
    "         WHERE l.instance_id = f.inst AND l.seq = f.seq ORDER BY l.id LIMIT 1),"
    "       (SELECT max(l.seq) FROM custody_audit_log l WHERE l.instance_id = f.inst)"
    "  FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS f(inst, seq, ord)"
    " ORDER BY f.ord";


ddsm_err ddsm_audit_checkpoint_check(ddsm_store *st, const ddsm_audit_key *ckey, const char *text,
                                     size_t len, ddsm_audit_finding_cb cb, void *arg,
                                     ddsm_audit_verify_stats *stats, char *why, size_t why_cap)
{
    char *copy = NULL;
    struct anchor *a = NULL;
    size_t n = 0, mac_off = 0;
    char file_mac[2 * DDSM_AUDIT_MAC_LEN + 1], want_hex[2 * DDSM_AUDIT_MAC_LEN + 1];
    uint8_t want[DDSM_AUDIT_MAC_LEN];
    bool has_cutoff = false, db_has_cutoff = false;
    int64_t cutoff = 0, db_cutoff = 0;
    ddsm_textbuf insts = {NULL, 0, 0, false}, seqs = {NULL, 0, 0, false};
    PGresult *r = NULL;
    ddsm_err e = DDSM_E_ARG;
    if (st == NULL || ckey == NULL || text == NULL || why == NULL || why_cap == 0)
        return DDSM_E_ARG;
    why[0] = '\0';
    struct ddsm_pq *pq = ddsm_store_pq(st);
    if (len > DDSM_CHECKPOINT_FILE_MAX) {
        snprintf(why, why_cap, "larger than %u bytes", DDSM_CHECKPOINT_FILE_MAX);
        return DDSM_E_INPUT;
    }
    copy = malloc(len + 1);
    if (copy == NULL)
        return DDSM_E_NOMEM;
    memcpy(copy, text, len);
    copy[len] = '\0';
    int pr = parse(copy, len, &a, &n, &mac_off, file_mac, &has_cutoff, &cutoff, why, why_cap);
    if (pr != 0) {
        e = pr == -2 ? DDSM_E_NOMEM : DDSM_E_INPUT;
        goto out;
    }
    /* The MAC covers the original bytes (parse wrote NULs into the copy). */
    e = ddsm_audit_checkpoint_mac(ckey, (const uint8_t *)text, mac_off, want);
    if (e != DDSM_OK)
        goto out;
    hex(want, sizeof want, want_hex);
    if (CRYPTO_memcmp(want_hex, file_mac, 64) != 0) {
        report(cb, arg, stats, DDSM_AUDIT_ANCHOR, NULL, 0,
               "the checkpoint file's MAC does not verify under the checkpoint key: the file was "
               "edited or forged (or made under another root); none of its chains was checked");
        e = DDSM_OK;
        goto out;
    }

    e = ddsm_pq_ensure(pq, NULL);
    if (e == DDSM_OK)
        e = read_cutoff(pq, &db_has_cutoff, &db_cutoff);
    if (e != DDSM_OK)
        goto out;
    if (has_cutoff != db_has_cutoff || (has_cutoff && cutoff != db_cutoff)) {
        char was[24] = "-", now[24] = "-";
        if (has_cutoff)
            snprintf(was, sizeof was, "%" PRId64, cutoff);
        if (db_has_cutoff)
            snprintf(now, sizeof now, "%" PRId64, db_cutoff);
        if (report(cb, arg, stats, DDSM_AUDIT_ANCHOR, NULL, 0,
                   "per-writer keys began at row id %s when the checkpoint file was taken, the "
                   "database now says %s: rows below the boundary are checked under the legacy "
                   "shared key",
                   was, now) != 0)
            goto out;
    }
    if (n == 0)
        goto out;
    ddsm_textbuf_putn(&insts, "{", 1);
    ddsm_textbuf_putn(&seqs, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char s[24];
        snprintf(s, sizeof s, "%" PRId64, a[i].seq);
        ddsm_textbuf_array_elem(&insts, i, a[i].inst);
        ddsm_textbuf_array_elem(&seqs, i, s);
    }
    ddsm_textbuf_putn(&insts, "}", 1);
    ddsm_textbuf_putn(&seqs, "}", 1);
    if (insts.oom || seqs.oom) {
        e = DDSM_E_NOMEM;
        goto out;
    }
    const char *v[] = {insts.p, seqs.p};
    e = ddsm_pq_exec_sql(pq, "checkpoint: look up the anchored rows", anchors_sql, 2, v,
                         CHECK_TIMEOUT_MS, &r);
    if (e != DDSM_OK)
        goto out;
    if ((size_t)PQntuples(r) != n) {
        e = ddsm_pq_fail(pq, DDSM_E_STORE, "checkpoint: the anchored rows do not parse");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t last = 0;
        bool any = ddsm_pq_get_i64(r, (int)i, 1, &last);
        bool row = !PQgetisnull(r, (int)i, 0);
        int stop = 0;
        if (!any)
            stop = report(cb, arg, stats, DDSM_AUDIT_CHAIN_GONE, a[i].inst, a[i].seq,
                          "chain %s: the checkpoint file anchors it at seq %" PRId64
                          " (head of %s) but no row of it is left: the whole chain was deleted",
                          a[i].inst, a[i].seq, a[i].time);
        else if (!row && last < a[i].seq)
            stop =
                report(cb, arg, stats, DDSM_AUDIT_ROLLED_BACK, a[i].inst, a[i].seq,
                       "chain %s: the checkpoint file anchors it at seq %" PRId64
                       " (head of %s) but it now ends at seq %" PRId64 ": its tail was rolled back",
                       a[i].inst, a[i].seq, a[i].time, last);
        else if (!row)
            stop = report(cb, arg, stats, DDSM_AUDIT_ROLLED_BACK, a[i].inst, a[i].seq,
                          "chain %s: the row at seq %" PRId64
                          " that the checkpoint file anchors (head of %s) is missing",
                          a[i].inst, a[i].seq, a[i].time);
        else if (strcmp(PQgetvalue(r, (int)i, 0), a[i].mac) != 0)
            stop = report(cb, arg, stats, DDSM_AUDIT_ROLLED_BACK, a[i].inst, a[i].seq,
                          "chain %s: the row at seq %" PRId64 " does not carry the MAC the "
                          "checkpoint file anchors (head of %s): the chain was rewritten from "
                          "there on",
                          a[i].inst, a[i].seq, a[i].time);
        if (stop != 0)
            break;
    }
    e = DDSM_OK;
out:
    PQclear(r);
    free(insts.p);
    free(seqs.p);
    free(a);
    free(copy);
    return e;
}
