/* SPDX-License-Identifier: Apache-2.0 */
/* The audit chain against a real server: migration 002 over a 001 database, chained store
 * writes (lifecycle, derivations, refusals), verify on a clean log, tampering with psql (edit,
 * delete, swap, truncate, forge a MAC without the key, duplicate, move a checkpoint) with the
 * rows named, a consistent walk under concurrent writes, flat memory on a long walk, partition
 * pruning by time, and `db maintain`. The audit key here is the reserved derivation under the
 * docs/design.md vector seed, computed in-process (the HSM path is covered by test_audit_ctl.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddsm/audit.h"
#include "ddsm/derive.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "audit_support.h"
#include "hex_support.h"
#include "pg_support.h"

extern char **environ;

static ddsm_store *g_st; /* chained */
static PGconn *g_pg;
static ddsm_audit_key *g_key;

#define ERR_EQ(st, got, want)                                                                      \
    do {                                                                                           \
        ddsm_err got_ = (got);                                                                     \
        if (got_ != (want))                                                                        \
            fail_msg("%s returned %s, expected %s; store says: %s", #got, ddsm_err_str(got_),      \
                     ddsm_err_str(want), ddsm_store_errmsg(st));                                   \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Helpers */

static ddsm_store *chained_store(const char *conninfo, const char *instance)
{
    ddsm_store *st = NULL;
    if (ddsm_store_open(conninfo, NULL, &st) != DDSM_OK)
        fail_msg("store open");
    ERR_EQ(st, ddsm_store_attach_audit(st, g_key, instance), DDSM_OK);
    return st;
}

static ddsm_asset active_asset(ddsm_store *st, const char *prefix)
{
    return aus_asset(st, prefix, "tester", DDSM_STATE_ACTIVE);
}

/* A chain of its own: register + activate + n derivations (n + 2 rows). */
static void write_chain(const char *instance, unsigned n, ddsm_asset *asset)
{
    ddsm_store *st = chained_store(pgs_conninfo(), instance);
    ddsm_asset a = active_asset(st, "chain");
    ddsm_derive_req req = {.asset = a.id, .path = "m/1", .requester = "writer"};
    for (unsigned i = 0; i < n; i++) {
        uint64_t c = 99;
        ERR_EQ(st, ddsm_store_derive(st, &req, &c, NULL), DDSM_OK);
        assert_int_equal(c, 0);
    }
    if (asset != NULL)
        *asset = a;
    ddsm_store_close(st);
}

struct found {
    ddsm_audit_kind kind;
    int64_t row_id, other_id, seq_from, seq_to, id_to, count;
    char detail[512];
};
struct findings {
    struct found f[64];
    size_t n;
};

static int collect(const ddsm_audit_finding *f, void *arg)
{
    struct findings *fs = arg;
    if (fs->n < sizeof fs->f / sizeof fs->f[0]) {
        struct found *x = &fs->f[fs->n];
        x->kind = f->kind;
        x->row_id = f->row_id;
        x->other_id = f->other_id;
        x->seq_from = f->seq_from;
        x->seq_to = f->seq_to;
        x->id_to = f->id_to;
        x->count = f->count;
        snprintf(x->detail, sizeof x->detail, "%s", f->detail);
    }
    fs->n++;
    return 0;
}

static void print_findings(const struct findings *fs)
{
    for (size_t i = 0; i < fs->n && i < 64; i++)
        print_message("  %s row %" PRId64 ": %s\n", ddsm_audit_kind_name(fs->f[i].kind),
                      fs->f[i].row_id, fs->f[i].detail);
}

/* Verify with options o, which must succeed; the findings in fs. */
static ddsm_audit_verify_stats verify_opts(ddsm_store *st, const ddsm_audit_verify_opts *o,
                                           struct findings *fs)
{
    ddsm_audit_verify_stats stats;
    memset(fs, 0, sizeof *fs);
    ERR_EQ(st, ddsm_audit_verify(st, g_key, o, collect, fs, &stats), DDSM_OK);
    return stats;
}

static ddsm_audit_verify_stats verify(ddsm_store *st, const char *instance, struct findings *fs)
{
    ddsm_audit_verify_opts o;
    memset(&o, 0, sizeof o);
    o.instance = instance;
    o.page_rows = 7; /* small pages: chains and checkpoints cross page boundaries */
    return verify_opts(st, &o, fs);
}

static void expect_clean(const char *instance)
{
    struct findings fs;
    ddsm_audit_verify_stats s = verify(g_st, instance, &fs);
    if (fs.n != 0) {
        print_findings(&fs);
        fail_msg("%zu findings on a clean chain", fs.n);
    }
    assert_true(s.rows > 0);
}

/* The ids of a chain's rows, in seq order. */
static size_t chain_ids(const char *instance, int64_t *ids, size_t cap)
{
    const char *p[] = {instance};
    PGresult *r = pgs_query(g_pg,
                            "SELECT id FROM custody_audit_log WHERE instance_id = $1"
                            " ORDER BY seq",
                            1, p);
    size_t n = (size_t)PQntuples(r);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++)
        ids[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    PQclear(r);
    return n;
}

/* psql -c sql against this test's database, as an operator with full rights would. */
static void psql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void psql(const char *fmt, ...)
{
    char sql[2048], bin[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    const char *pgbin = getenv("DDSM_TEST_PGBIN");
    assert_non_null(pgbin);
    snprintf(bin, sizeof bin, "%s/psql", pgbin);
    char *argv[] = {bin, "-XAtq", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-c", sql, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, bin, NULL, NULL, argv, environ), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("psql failed: %s", sql);
}

static const struct found *find_kind(const struct findings *fs, ddsm_audit_kind k, int64_t row)
{
    for (size_t i = 0; i < fs->n && i < 64; i++)
        if (fs->f[i].kind == k && (row == 0 || fs->f[i].row_id == row))
            return &fs->f[i];
    return NULL;
}

static void expect_only(const struct findings *fs, size_t n, const char *what)
{
    if (fs->n != n) {
        print_findings(fs);
        fail_msg("%s: %zu findings, expected %zu", what, fs->n, n);
    }
}

/* A new chain of its own (instance named after prefix) with n derivations, and the ids of its
 * n + 2 rows in seq order. */
static void fresh_chain(const char *prefix, unsigned n, char inst[64], int64_t ids[16])
{
    aus_unique(prefix, inst, 64);
    write_chain(inst, n, NULL);
    assert_int_equal(chain_ids(inst, ids, 16), n + 2);
}

/* Swap columns between rows a and b: assignments is the SET list, each column taking x.column
 * (the other row's value). */
static void swap_rows(const char *assignments, int64_t a, int64_t b)
{
    psql("WITH a AS (SELECT * FROM custody_audit_log WHERE id = %" PRId64 "),"
         " b AS (SELECT * FROM custody_audit_log WHERE id = %" PRId64 ")"
         " UPDATE custody_audit_log l SET %s"
         " FROM (SELECT a.id AS target, b.* FROM a, b UNION ALL SELECT b.id, a.* FROM a, b)"
         " AS x(target) WHERE l.id = x.target",
         a, b, assignments);
}

/* ------------------------------------------------------------------------------------------ */
/* Fixture */

/* The database starts empty: the fixture migrates it first. */
static int group_setup(void **state)
{
    (void)state;
    return aus_open(0x00, "test_audit/", &g_key, &g_st, &g_pg);
}

static int group_teardown(void **state)
{
    (void)state;
    aus_close(g_key, g_st, g_pg);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Migration 002 over a 001 database with rows */

static void test_audit__migration_002_keeps_001_rows_and_verify_calls_them_pre_chain(void **s)
{
    (void)s;
    char conninfo[1024];
    char *drop = pgs_fresh_db(g_pg, "m001", conninfo, sizeof conninfo);
    PGconn *c = pgs_connect(conninfo);
    assert_string_equal(ddsm_migrations[0].name, "001_init");
    pgs_exec(c, "BEGIN", 0, NULL);
    PGresult *r = PQexec(c, ddsm_migrations[0].sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("001: %s", PQresultErrorMessage(r));
    PQclear(r);
    pgs_exec(c, "INSERT INTO ddsm_schema_migrations (name) VALUES ('001_init')", 0, NULL);
    pgs_exec(c, "COMMIT", 0, NULL);
    /* The seed design's rows: an asset and its history, over two old months. */
    pgs_exec(c,
             "INSERT INTO custody_keys (asset_id, label, default_path, state, derivation_counter)"
             " VALUES ('6f9619ff-8b86-d011-b42d-00c04fc964ff', 'old', 'm/0', 'INITIALIZED', 0)",
             0, NULL);
    pgs_exec(c,
             "INSERT INTO custody_audit_log (asset_id, derivation_path, counter,"
             " state_at_derivation, ts, event, requester, instance_id)"
             " SELECT '6f9619ff-8b86-d011-b42d-00c04fc964ff', 'm/0', 0, 'ACTIVE',"
             "        timestamptz '2024-01-15 10:00:00+00' + g * interval '1 day',"
             "        'DERIVE', 'legacy', 'old-module'"
             "   FROM generate_series(0, 40) g",
             0, NULL);
    char *before = pgs_text(
        c, "SELECT string_agg(l::text, '|' ORDER BY id) FROM custody_audit_log l", 0, NULL);
    long long max_id = pgs_int(c, "SELECT max(id) FROM custody_audit_log", 0, NULL);

    ddsm_store *st = NULL;
    unsigned applied = 0;
    assert_int_equal(ddsm_store_open(conninfo, NULL, &st), DDSM_OK);
    ERR_EQ(st, ddsm_store_migrate(st, &applied), DDSM_OK);
    assert_int_equal(applied, ddsm_migrations_count - 1);

    /* Same rows, same ids, same columns (the new ones are NULL on old rows). */
    char *after = pgs_text(c,
                           "SELECT string_agg((id, asset_id, derivation_path, counter,"
                           " state_at_derivation, ts, event, requester, instance_id, seq,"
                           " detail)::text, '|' ORDER BY id) FROM custody_audit_log",
                           0, NULL);
    assert_string_equal(before, after);
    assert_int_equal(pgs_int(c,
                             "SELECT count(*) FROM custody_audit_log WHERE mac IS NOT NULL"
                             " OR recorded_at IS NOT NULL",
                             0, NULL),
                     0);
    assert_int_equal(pgs_int(c, "SELECT chain_start_id FROM custody_audit_meta", 0, NULL),
                     max_id + 1);
    /* Partitioned by month, the old months included; nothing strayed into the default. */
    char *kind = pgs_text(c,
                          "SELECT relkind::text FROM pg_class"
                          " WHERE relname = 'custody_audit_log'",
                          0, NULL);
    assert_string_equal(kind, "p");
    free(kind);
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM custody_audit_log_2024_01", 0, NULL), 17);
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM custody_audit_log_2024_02", 0, NULL), 24);
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM custody_audit_log_default", 0, NULL), 0);
    assert_int_equal(pgs_int(c,
                             "SELECT count(*) FROM pg_class WHERE relname ="
                             " 'custody_audit_log_001'",
                             0, NULL),
                     0);
    /* New ids continue after the old ones. */
    char inst[64];
    aus_unique("m001", inst, sizeof inst);
    ERR_EQ(st, ddsm_store_attach_audit(st, g_key, inst), DDSM_OK);
    ddsm_asset a;
    ERR_EQ(st, ddsm_store_asset_register(st, NULL, "new", "hmac", NULL, "t", &a), DDSM_OK);
    assert_true(pgs_int(c, "SELECT min(id) FROM custody_audit_log WHERE mac IS NOT NULL", 0, NULL) >
                max_id);

    /* Verify: the old rows are pre-chain (one run of ids), the new chain verifies. */
    struct findings fs;
    ddsm_audit_verify_opts o;
    ddsm_audit_verify_stats stats;
    memset(&o, 0, sizeof o);
    memset(&fs, 0, sizeof fs);
    ERR_EQ(st, ddsm_audit_verify(st, g_key, &o, collect, &fs, &stats), DDSM_OK);
    expect_only(&fs, 1, "after migration");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_PRE_CHAIN);
    assert_int_equal(fs.f[0].count, 41);
    assert_int_equal(fs.f[0].id_to, max_id);
    assert_non_null(strstr(fs.f[0].detail, "before the audit chain began"));
    assert_int_equal(stats.rows, 1);
    assert_int_equal(stats.unchained_rows, 41);

    /* A row written without a chain after the migration is unauthenticated, not pre-chain. */
    ddsm_store_set_audit(st, NULL);
    ERR_EQ(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ACTIVATE, 0, "t", NULL), DDSM_OK);
    memset(&fs, 0, sizeof fs);
    ERR_EQ(st, ddsm_audit_verify(st, g_key, &o, collect, &fs, &stats), DDSM_OK);
    expect_only(&fs, 2, "after an unchained write");
    const struct found *u = find_kind(&fs, DDSM_AUDIT_UNAUTHENTICATED, 0);
    assert_non_null(u);
    assert_int_equal(u->count, 1);
    assert_int_equal(u->row_id, pgs_int(c, "SELECT max(id) FROM custody_audit_log", 0, NULL));
    assert_int_equal(stats.findings[DDSM_AUDIT_PRE_CHAIN], 1);
    assert_int_equal(stats.findings[DDSM_AUDIT_UNAUTHENTICATED], 1);

    ddsm_store_close(st);
    PQfinish(c);
    pgs_exec(g_pg, drop, 0, NULL);
    free(drop);
    free(before);
    free(after);
}

/* ------------------------------------------------------------------------------------------ */
/* Chained writes */

static void test_audit__chained_store_audits_every_event_and_refusal_in_one_chain(void **s)
{
    (void)s;
    char inst[64];
    aus_unique("events", inst, sizeof inst);
    ddsm_store *st = chained_store(pgs_conninfo(), inst);
    ERR_EQ(st, ddsm_store_attach_audit(st, g_key, "bad\ninstance"), DDSM_E_INPUT);
    assert_non_null(strstr(ddsm_store_errmsg(st), "instance id"));
    /* The chain attached before stays: the rows below are all under inst, seq 1..12. */
    ddsm_asset a = active_asset(st, "ev"), b;
    ddsm_derive_req req = {
        .asset = a.id, .path = "m/44'/0'/0'/0/7", .requester = "erin", .instance = "ignored"};
    uint64_t c = 99;
    ddsm_state state = DDSM_STATE__COUNT;

    ERR_EQ(st, ddsm_store_derive(st, &req, &c, &state), DDSM_OK);
    assert_int_equal(c, 0);
    assert_int_equal(state, DDSM_STATE_ACTIVE);
    ERR_EQ(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ROTATE_GRACE, 3600, "ops", &b),
           DDSM_OK);
    assert_int_equal(b.counter, 1);
    assert_int_equal(b.state, DDSM_STATE_ROTATING);
    /* The store's belief is stale now: the statement corrects it, the caller never notices. */
    ERR_EQ(st, ddsm_store_derive(st, &req, &c, &state), DDSM_OK);
    assert_int_equal(c, 1);
    assert_int_equal(state, DDSM_STATE_ROTATING);
    ERR_EQ(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_GRACE_END, 0, "ops", &b), DDSM_OK);
    ERR_EQ(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ROTATE, 0, "ops", &b), DDSM_OK);
    assert_int_equal(b.counter, 2);
    /* Refusals are audited: an illegal event, a retired asset, an unknown one, a policy. */
    ERR_EQ(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_ACTIVATE, 0, "ops", &b),
           DDSM_E_STATE);
    assert_non_null(strstr(ddsm_store_errmsg(st), "is ACTIVE; cannot ACTIVATE"));
    ERR_EQ(st, ddsm_store_asset_transition(st, &a.id, DDSM_EV_RETIRE, 0, "ops", &b), DDSM_OK);
    c = 99;
    ERR_EQ(st, ddsm_store_derive(st, &req, &c, &state), DDSM_E_STATE);
    assert_int_equal(state, DDSM_STATE_RETIRED);
    assert_int_equal(c, 99);
    assert_non_null(strstr(ddsm_store_errmsg(st), "is RETIRED; cannot derive"));
    ddsm_derive_req unknown = req;
    assert_int_equal(ddsm_uuid_random(&unknown.asset), DDSM_OK);
    ERR_EQ(st, ddsm_store_derive(st, &unknown, &c, &state), DDSM_E_NOT_FOUND);
    ERR_EQ(st, ddsm_store_deny(st, &req, "path shape not allowed by policy"), DDSM_OK);
    /* Not audited (nothing to say about an asset): bad paths, unknown asset for an event. */
    req.path = "m/01";
    ERR_EQ(st, ddsm_store_derive(st, &req, &c, &state), DDSM_E_PATH);
    ERR_EQ(st, ddsm_store_asset_transition(st, &unknown.asset, DDSM_EV_RETIRE, 0, "ops", &b),
           DDSM_E_NOT_FOUND);

    const char *p[] = {inst};
    PGresult *r = pgs_query(g_pg,
                            "SELECT seq, event, counter, state_at_derivation,"
                            "       coalesce(detail, ''), octet_length(mac), instance_id"
                            "  FROM custody_audit_log WHERE instance_id = $1 ORDER BY seq",
                            1, p);
    static const char *const want[][4] = {
        {"REGISTER", "0", "INITIALIZED", ""},
        {"ACTIVATE", "0", "ACTIVE", ""},
        {"DERIVE", "0", "ACTIVE", ""},
        {"ROTATE", "1", "ROTATING", "grace 3600 s"},
        {"DERIVE", "1", "ROTATING", ""},
        {"GRACE_END", "1", "ACTIVE", ""},
        {"ROTATE", "2", "ACTIVE", ""},
        {"DENY", "2", "ACTIVE", "ACTIVATE refused: the asset is ACTIVE"},
        {"RETIRE", "2", "RETIRED", ""},
        {"DENY", "2", "RETIRED", "asset is RETIRED; cannot derive"},
        {"DENY", "", "", "no such asset"},
        {"DENY", "", "", "path shape not allowed by policy"},
    };
    size_t nwant = sizeof want / sizeof want[0];
    assert_int_equal(PQntuples(r), (int)nwant);
    for (size_t i = 0; i < nwant; i++) {
        char seq[8];
        snprintf(seq, sizeof seq, "%zu", i + 1);
        assert_string_equal(PQgetvalue(r, (int)i, 0), seq);
        assert_string_equal(PQgetvalue(r, (int)i, 1), want[i][0]);
        assert_string_equal(PQgetvalue(r, (int)i, 2), want[i][1]);
        assert_string_equal(PQgetvalue(r, (int)i, 3), want[i][2]);
        assert_string_equal(PQgetvalue(r, (int)i, 4), want[i][3]);
        assert_string_equal(PQgetvalue(r, (int)i, 5), "32");
    }
    PQclear(r);
    /* The checkpoint is the last row, and the chain verifies. */
    char *head = pgs_text(g_pg,
                          "SELECT h.seq || ' ' || (h.mac = l.mac)"
                          "  FROM custody_audit_chain_heads h"
                          "  JOIN custody_audit_log l ON l.instance_id = h.instance_id"
                          "   AND l.seq = h.seq WHERE h.instance_id = $1",
                          1, p);
    char wanthead[16];
    snprintf(wanthead, sizeof wanthead, "%zu true", nwant);
    assert_string_equal(head, wanthead);
    free(head);
    expect_clean(inst);
    /* The rotation records carry the post-commit stamp reconcile relies on. */
    char idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&a.id, idt);
    const char *pa[] = {idt};
    assert_int_equal(pgs_int(g_pg,
                             "SELECT count(*) FROM custody_rotations WHERE asset_id = $1"
                             " AND committed_at >= rotated_at",
                             1, pa),
                     2);
    ddsm_store_close(st);
}

/* ------------------------------------------------------------------------------------------ */
/* Tampering (psql, as a database administrator without the HSM) */

static void test_audit__verify_names_an_edited_row(void **s)
{
    (void)s;
    char inst[64];
    int64_t ids[16];
    struct findings fs;
    fresh_chain("edit", 5, inst, ids);
    expect_clean(inst);
    psql("UPDATE custody_audit_log SET counter = counter + 1 WHERE id = %" PRId64, ids[3]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "edited row");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_EDITED);
    assert_int_equal(fs.f[0].row_id, ids[3]);
    assert_int_equal(fs.f[0].seq_from, 4);
    char want[64];
    snprintf(want, sizeof want, "row id %" PRId64 " ", ids[3]);
    assert_non_null(strstr(fs.f[0].detail, want));
}

static void test_audit__verify_names_a_deleted_row_by_its_gap(void **s)
{
    (void)s;
    char inst[64];
    int64_t ids[16];
    struct findings fs;
    fresh_chain("delete", 5, inst, ids);
    psql("DELETE FROM custody_audit_log WHERE id = %" PRId64, ids[2]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "deleted row");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_DELETED);
    assert_int_equal(fs.f[0].seq_from, 3);
    assert_int_equal(fs.f[0].seq_to, 3);
    assert_int_equal(fs.f[0].other_id, ids[1]); /* between the rows around the hole */
    assert_int_equal(fs.f[0].row_id, ids[3]);

    /* The first rows gone: a gap at the start. */
    psql("DELETE FROM custody_audit_log WHERE id = %" PRId64, ids[0]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 2, "deleted first row");
    const struct found *f = find_kind(&fs, DDSM_AUDIT_DELETED, ids[1]);
    assert_non_null(f);
    assert_int_equal(f->seq_from, 1);
    assert_int_equal(f->seq_to, 1);
}

static void test_audit__verify_names_swapped_rows(void **s)
{
    (void)s;
    char inst[64];
    int64_t ids[16];
    struct findings fs;
    fresh_chain("swap", 5, inst, ids);
    /* Swap the whole content of two rows, MACs and sequence numbers included: each row still
     * verifies alone, but the ids now disagree with the chain order. */
    swap_rows("asset_id = x.asset_id, derivation_path = x.derivation_path, counter = x.counter,"
              " state_at_derivation = x.state_at_derivation, ts = x.ts, event = x.event,"
              " requester = x.requester, seq = x.seq, detail = x.detail, mac = x.mac",
              ids[2], ids[3]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "swapped rows");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_REORDERED);
    assert_int_equal(fs.f[0].row_id, ids[2]);   /* now holding seq 4 */
    assert_int_equal(fs.f[0].other_id, ids[3]); /* now holding seq 3 */

    /* Swap the content only (sequence numbers and MACs stay): both rows fail their MAC. */
    fresh_chain("swap2", 2, inst, ids);
    swap_rows("event = x.event, counter = x.counter, state_at_derivation = x.state_at_derivation,"
              " derivation_path = x.derivation_path",
              ids[1], ids[2]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 2, "swapped content");
    assert_non_null(find_kind(&fs, DDSM_AUDIT_EDITED, ids[1]));
    assert_non_null(find_kind(&fs, DDSM_AUDIT_EDITED, ids[2]));
}

static void test_audit__verify_proves_a_truncated_tail_from_the_checkpoint(void **s)
{
    (void)s;
    char inst[64];
    int64_t ids[16];
    struct findings fs;
    fresh_chain("tail", 5, inst, ids);
    psql("DELETE FROM custody_audit_log WHERE id IN (%" PRId64 ", %" PRId64 ")", ids[5], ids[6]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "truncated tail");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_TRUNCATED);
    assert_int_equal(fs.f[0].row_id, ids[4]);
    assert_int_equal(fs.f[0].seq_from, 6);
    assert_int_equal(fs.f[0].seq_to, 7);

    /* Every row gone: the checkpoint alone proves the chain existed. */
    psql("DELETE FROM custody_audit_log WHERE instance_id = '%s'", inst);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "whole chain deleted");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_TRUNCATED);
    assert_int_equal(fs.f[0].seq_to, 7);
}

static void test_audit__verify_rejects_a_mac_recomputed_without_the_key(void **s)
{
    (void)s;
    char inst[64];
    int64_t ids[16];
    struct findings fs;
    fresh_chain("forge", 4, inst, ids);
    /* Edit a row and give it the MAC an attacker can compute: a SHA-256 of its previous MAC and
     * its content, or an HMAC under a key of their own. */
    psql("UPDATE custody_audit_log l SET requester = 'mallory',"
         " mac = sha256(p.mac || convert_to(l::text, 'UTF8'))"
         " FROM custody_audit_log p WHERE l.id = %" PRId64 " AND p.id = %" PRId64,
         ids[3], ids[2]);
    psql("UPDATE custody_audit_log l SET counter = 7,"
         " mac = sha256(convert_to('a key of my own', 'UTF8') || convert_to(l::text, 'UTF8'))"
         " WHERE l.id = %" PRId64,
         ids[4]);
    verify(g_st, inst, &fs);
    /* The two forged rows, and the untouched row after them, whose link to the replaced MAC
     * breaks (verify says which). */
    expect_only(&fs, 3, "forged MACs");
    assert_non_null(find_kind(&fs, DDSM_AUDIT_EDITED, ids[3]));
    assert_non_null(find_kind(&fs, DDSM_AUDIT_EDITED, ids[4]));
    const struct found *next = find_kind(&fs, DDSM_AUDIT_EDITED, ids[5]);
    assert_non_null(next);
    assert_int_equal(next->other_id, ids[4]);
    assert_non_null(strstr(next->detail, "MAC was replaced"));

    /* A MAC removed is no better. */
    fresh_chain("nomac", 1, inst, ids);
    psql("UPDATE custody_audit_log SET mac = NULL WHERE id = %" PRId64, ids[1]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "removed MAC");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_EDITED);
    assert_int_equal(fs.f[0].row_id, ids[1]);
}

static void test_audit__verify_names_duplicates_and_moved_checkpoints(void **s)
{
    (void)s;
    char inst[64];
    int64_t ids[16];
    struct findings fs;
    fresh_chain("dup", 3, inst, ids);
    psql("INSERT INTO custody_audit_log (asset_id, derivation_path, counter,"
         " state_at_derivation, ts, event, requester, instance_id, seq, detail, mac)"
         " SELECT asset_id, derivation_path, counter, state_at_derivation, ts, event,"
         " requester, instance_id, seq, detail, mac FROM custody_audit_log WHERE id = %" PRId64,
         ids[2]);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "duplicated row");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_DUPLICATE);
    assert_int_equal(fs.f[0].other_id, ids[2]);
    assert_true(fs.f[0].row_id > ids[4]);

    fresh_chain("head", 3, inst, ids);
    psql("UPDATE custody_audit_chain_heads SET seq = 3 WHERE instance_id = '%s'", inst);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "checkpoint behind");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_CHECKPOINT);
    assert_int_equal(fs.f[0].row_id, ids[4]);
    psql("DELETE FROM custody_audit_chain_heads WHERE instance_id = '%s'", inst);
    verify(g_st, inst, &fs);
    expect_only(&fs, 1, "checkpoint gone");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_CHECKPOINT);
    assert_non_null(strstr(fs.f[0].detail, "has no checkpoint"));
}

/* ------------------------------------------------------------------------------------------ */
/* Walks */

struct writer {
    char instance[64];
    atomic_int *stop;
    atomic_uint n;
    atomic_bool done; /* the writer stopped (error or stop) */
    char err[256];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    ddsm_store *st = chained_store(pgs_conninfo(), w->instance);
    ddsm_asset a = active_asset(st, "busy");
    ddsm_derive_req req = {.asset = a.id, .path = "m/2"};
    while (!atomic_load(w->stop)) {
        uint64_t c;
        if (ddsm_store_derive(st, &req, &c, NULL) != DDSM_OK) {
            snprintf(w->err, sizeof w->err, "%s", ddsm_store_errmsg(st));
            break;
        }
        w->n++;
    }
    atomic_store(&w->done, true);
    ddsm_store_close(st);
    return NULL;
}

/* A walk sees one snapshot: rows and checkpoints written meanwhile never look like tampering. */
static void test_audit__verify_is_consistent_while_writers_append(void **s)
{
    (void)s;
    atomic_int stop = 0;
    struct writer w[3];
    pthread_t th[3];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 3; i++) {
        aus_unique("live", w[i].instance, sizeof w[i].instance);
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    /* The writers' set-up (connect, register, activate) is not what this measures: the window
     * starts once each has written its first row (or stopped). */
    for (int i = 0; i < 3; i++)
        while (atomic_load(&w[i].n) == 0 && !atomic_load(&w[i].done))
            usleep(1000);
    usleep(200000);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 3; i++) {
            struct findings fs;
            verify(g_st, w[i].instance, &fs);
            if (fs.n != 0) {
                print_findings(&fs);
                fail_msg("findings while %s was being written", w[i].instance);
            }
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        if (w[i].err[0] != '\0')
            fail_msg("writer %d: %s", i, w[i].err);
        assert_true(w[i].n > 10);
        expect_clean(w[i].instance);
    }
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* The walk streams: memory does not grow with the log (here ~100k rows, ~40 MB as text). */
static void test_audit__verify_streams_in_flat_memory(void **s)
{
    (void)s;
    enum { ROWS = 100000 };
    char inst[64];
    aus_unique("bulk", inst, sizeof inst);
    /* One chain of ROWS rows built here with the audit key (ts in the current month), loaded
     * with COPY-free multi-row inserts of 5000 rows. */
    uint8_t prev[32] = {0}, mac[32];
    char *sql = malloc(5000 * 420 + 1024);
    assert_non_null(sql);
    int64_t now_us = (int64_t)time(NULL) * 1000000;
    ddsm_uuid asset;
    assert_int_equal(ddsm_uuid_random(&asset), DDSM_OK);
    char idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_uuid_format(&asset, idt);
    for (int base = 0; base < ROWS; base += 5000) {
        size_t off = (size_t)sprintf(sql, "INSERT INTO custody_audit_log (asset_id,"
                                          " derivation_path, counter, state_at_derivation, ts,"
                                          " event, requester, instance_id, seq, mac) VALUES ");
        for (int i = base; i < base + 5000; i++) {
            ddsm_audit_row r;
            memset(&r, 0, sizeof r);
            r.event = "DERIVE";
            r.has_asset = true;
            r.asset = asset;
            r.path = "m/0";
            r.has_counter = true;
            r.counter = 0;
            r.state = "ACTIVE";
            r.ts_us = now_us + i;
            r.requester = "bulk-loader-with-a-long-requester-name-to-make-rows-bigger-0123456789";
            r.instance = inst;
            r.seq = i + 1;
            assert_int_equal(ddsm_audit_row_mac(g_key, prev, &r, mac), DDSM_OK);
            memcpy(prev, mac, 32);
            off += (size_t)sprintf(sql + off,
                                   "%s('%s','m/0',0,'ACTIVE',"
                                   "'epoch'::timestamptz + %" PRId64 " * interval '1 microsecond',"
                                   "'DERIVE','%s','%s',%d,'\\x",
                                   i > base ? "," : "", idt, r.ts_us, r.requester, inst, i + 1);
            for (int k = 0; k < 32; k++)
                off += (size_t)sprintf(sql + off, "%02x", mac[k]);
            off += (size_t)sprintf(sql + off, "')");
        }
        pgs_exec(g_pg, sql, 0, NULL);
    }
    char hex[65];
    hexs_encode(prev, 32, hex);
    const char *hp[] = {inst, hex};
    pgs_exec(g_pg,
             "INSERT INTO custody_audit_chain_heads (instance_id, seq, mac)"
             " VALUES ($1, 100000, decode($2, 'hex'))",
             2, hp);
    free(sql);

    ddsm_audit_verify_opts o;
    struct findings fs;
    memset(&o, 0, sizeof o);
    memset(&fs, 0, sizeof fs); /* its pages resident before the measure */
    o.instance = inst;
    long before = max_rss_kb();
    ddsm_audit_verify_stats stats = verify_opts(g_st, &o, &fs);
    long grown = max_rss_kb() - before;
    print_message("verified %" PRIu64 " rows; peak RSS %ld kB, grew by %ld kB\n", stats.rows,
                  before, grown);
    expect_only(&fs, 0, "bulk chain");
    assert_int_equal(stats.rows, ROWS);
#if defined(__SANITIZE_ADDRESS__)
    /* ASan's quarantine keeps freed memory resident on purpose: RSS says nothing here. */
    print_message("the memory bound is not checked under AddressSanitizer\n");
#else
    assert_true(grown < 8 * 1024);
#endif
}

/* --since prunes the partitions before it (and their chains do not look truncated). */
static void test_audit__verify_since_prunes_older_partitions(void **s)
{
    (void)s;
    /* A chain from January 2024, built here with the key. */
    char inst[64];
    aus_unique("old", inst, sizeof inst);
    uint8_t prev[32] = {0}, mac[32];
    char hex[65];
    for (int i = 0; i < 3; i++) {
        ddsm_audit_row r;
        memset(&r, 0, sizeof r);
        r.event = "DENY";
        r.ts_us = 1705312800000000LL + i; /* 2024-01-15 10:00:00 UTC */
        r.instance = inst;
        r.seq = i + 1;
        r.detail = "old";
        assert_int_equal(ddsm_audit_row_mac(g_key, prev, &r, mac), DDSM_OK);
        memcpy(prev, mac, 32);
        hexs_encode(mac, 32, hex);
        char ts[40], seq[8];
        snprintf(ts, sizeof ts, "%" PRId64, r.ts_us);
        snprintf(seq, sizeof seq, "%d", i + 1);
        const char *p[] = {ts, inst, seq, hex};
        pgs_exec(g_pg,
                 "INSERT INTO custody_audit_log (ts, event, instance_id, seq, detail, mac)"
                 " VALUES ('epoch'::timestamptz + $1::bigint * interval '1 microsecond',"
                 " 'DENY', $2, $3::bigint, 'old', decode($4, 'hex'))",
                 4, p);
    }
    const char *hp[] = {inst, hex};
    pgs_exec(g_pg,
             "INSERT INTO custody_audit_chain_heads (instance_id, seq, mac)"
             " VALUES ($1, 3, decode($2, 'hex'))",
             2, hp);
    /* It landed in the default partition (no 2024 partition here): maintain does not care,
     * verify does not either. */
    expect_clean(inst);

    ddsm_audit_verify_opts o;
    struct findings fs;
    memset(&o, 0, sizeof o);
    o.instance = inst;
    o.has_since = true;
    o.since_us = 1735689600000000LL; /* 2025-01-01 */
    ddsm_audit_verify_stats stats = verify_opts(g_st, &o, &fs);
    expect_only(&fs, 0, "old chain outside the window");
    assert_int_equal(stats.rows, 0);
    /* Its last row deleted, the checkpoint outside the window still proves it. */
    psql("DELETE FROM custody_audit_log WHERE instance_id = '%s' AND seq = 3", inst);
    verify_opts(g_st, &o, &fs);
    expect_only(&fs, 1, "old chain truncated");
    assert_int_equal(fs.f[0].kind, DDSM_AUDIT_TRUNCATED);

    /* The plan: with a since, partitions wholly before it are not scanned. */
    pgs_exec(g_pg, "SELECT ddsm_audit_ensure_partition('2024-01-01')", 0, NULL);
    pgs_exec(g_pg, "SELECT ddsm_audit_ensure_partition('2024-02-01')", 0, NULL);
    char sql[4096];
    snprintf(sql, sizeof sql, "EXPLAIN %s", ddsm_audit_verify_sql);
    const char *params[] = {"2025-01-01 00:00:00+00", NULL};
    PGresult *r = pgs_query(g_pg, sql, 2, params);
    size_t used = 0;
    char plan[16384];
    plan[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++)
        used += (size_t)snprintf(plan + used, used < sizeof plan ? sizeof plan - used : 0, "%s\n",
                                 PQgetvalue(r, i, 0));
    PQclear(r);
    if (strstr(plan, "custody_audit_log_2024_01") != NULL ||
        strstr(plan, "custody_audit_log_2024_02") != NULL)
        fail_msg("the 2024 partitions are scanned despite since 2025:\n%s", plan);
    if (strstr(plan, "custody_audit_log_default") == NULL)
        fail_msg("the plan lost the default partition:\n%s", plan);
    params[0] = "-infinity";
    r = pgs_query(g_pg, sql, 2, params);
    bool seen = false;
    for (int i = 0; i < PQntuples(r); i++)
        seen = seen || strstr(PQgetvalue(r, i, 0), "custody_audit_log_2024_01") != NULL;
    PQclear(r);
    assert_true(seen);
}

/* ------------------------------------------------------------------------------------------ */
/* Partitions */

struct maint {
    int created, present, strays;
    int64_t moved, stray_rows;
    char months[16][8];
    char stray_month[8];
};

static void on_maint(const ddsm_maintain_event *e, void *arg)
{
    struct maint *m = arg;
    if (e->what == DDSM_MAINTAIN_STRAY) {
        m->strays++;
        m->stray_rows += e->rows;
        snprintf(m->stray_month, sizeof m->stray_month, "%s", e->month);
        return;
    }
    if (m->created + m->present < 16)
        snprintf(m->months[m->created + m->present], 8, "%s", e->month);
    if (e->what == DDSM_MAINTAIN_CREATED) {
        m->created++;
        m->moved += e->rows;
    } else {
        m->present++;
    }
}

static void test_audit__maintain_creates_months_idempotently_and_rescues_strays(void **s)
{
    (void)s;
    char conninfo[1024];
    char *drop = pgs_fresh_db(g_pg, "parts", conninfo, sizeof conninfo);
    PGconn *c = pgs_connect(conninfo);
    char inst[64];
    aus_unique("parts", inst, sizeof inst);
    ddsm_store *st = chained_store(conninfo, inst);
    ERR_EQ(st, ddsm_store_migrate(st, NULL), DDSM_OK);

    /* Migration made this month and the next three; maintain 6 adds three, then nothing. */
    struct maint m;
    int64_t strays = -1;
    memset(&m, 0, sizeof m);
    ERR_EQ(st, ddsm_audit_maintain(st, 6, on_maint, &m, &strays), DDSM_OK);
    assert_int_equal(m.present, 4);
    assert_int_equal(m.created, 3);
    assert_int_equal(strays, 0);
    char *month = pgs_text(c, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')", 0, NULL);
    assert_string_equal(m.months[0], month);
    free(month);
    memset(&m, 0, sizeof m);
    ERR_EQ(st, ddsm_audit_maintain(st, 6, on_maint, &m, &strays), DDSM_OK);
    assert_int_equal(m.created, 0);
    assert_int_equal(m.present, 7);

    /* A derivation never fails for want of a partition: drop this month's, derive, and the row
     * waits in the default partition; maintain moves it home and reports nothing left over. */
    char *name = pgs_text(c,
                          "SELECT 'custody_audit_log_' || to_char(now() AT TIME ZONE 'UTC',"
                          " 'YYYY_MM')",
                          0, NULL);
    const char *np[] = {name};
    char *dropsql = pgs_text(c, "SELECT 'DROP TABLE ' || quote_ident($1)", 1, np);
    pgs_exec(c, dropsql, 0, NULL);
    free(dropsql);
    ddsm_asset a = active_asset(st, "nopart");
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    uint64_t cnt = 9;
    ERR_EQ(st, ddsm_store_derive(st, &req, &cnt, NULL), DDSM_OK);
    /* REGISTER, ACTIVATE, DERIVE */
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM custody_audit_log_default", 0, NULL), 3);

    /* A stray far in the future (a writer's clock gone wrong) stays and is reported. */
    pgs_exec(c,
             "INSERT INTO custody_audit_log (ts, event, detail)"
             " VALUES ('2099-03-04 05:06:07+00', 'DENY', 'clock skew')",
             0, NULL);
    memset(&m, 0, sizeof m);
    ERR_EQ(st, ddsm_audit_maintain(st, 3, on_maint, &m, &strays), DDSM_OK);
    assert_int_equal(m.created, 1);
    assert_int_equal(m.moved, 3);
    assert_int_equal(strays, 1);
    assert_int_equal(m.strays, 1);
    assert_string_equal(m.stray_month, "2099-03");
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM custody_audit_log_default", 0, NULL), 1);
    const char *ip[] = {inst};
    assert_int_equal(
        pgs_int(c, "SELECT count(*) FROM custody_audit_log WHERE instance_id = $1", 1, ip), 3);
    /* The chain is intact after the move. */
    struct findings fs;
    ddsm_audit_verify_opts o;
    ddsm_audit_verify_stats stats;
    memset(&o, 0, sizeof o);
    memset(&fs, 0, sizeof fs);
    o.instance = inst;
    ERR_EQ(st, ddsm_audit_verify(st, g_key, &o, collect, &fs, &stats), DDSM_OK);
    expect_only(&fs, 0, "moved rows");
    assert_int_equal(stats.rows, 3);
    ERR_EQ(st, ddsm_audit_maintain(st, 121, NULL, NULL, NULL), DDSM_E_INPUT);

    ddsm_store_close(st);
    PQfinish(c);
    pgs_exec(g_pg, drop, 0, NULL);
    free(drop);
    free(name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit__migration_002_keeps_001_rows_and_verify_calls_them_pre_chain),
        cmocka_unit_test(test_audit__chained_store_audits_every_event_and_refusal_in_one_chain),
        cmocka_unit_test(test_audit__verify_names_an_edited_row),
        cmocka_unit_test(test_audit__verify_names_a_deleted_row_by_its_gap),
        cmocka_unit_test(test_audit__verify_names_swapped_rows),
        cmocka_unit_test(test_audit__verify_proves_a_truncated_tail_from_the_checkpoint),
        cmocka_unit_test(test_audit__verify_rejects_a_mac_recomputed_without_the_key),
        cmocka_unit_test(test_audit__verify_names_duplicates_and_moved_checkpoints),
        cmocka_unit_test(test_audit__verify_is_consistent_while_writers_append),
        cmocka_unit_test(test_audit__verify_streams_in_flat_memory),
        cmocka_unit_test(test_audit__verify_since_prunes_older_partitions),
        cmocka_unit_test(test_audit__maintain_creates_months_idempotently_and_rescues_strays),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
