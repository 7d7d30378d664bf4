/* SPDX-License-Identifier: Apache-2.0 */
/* The PostgreSQL store against a real server: schema, registry, lifecycle, derivation
 * bookkeeping, the guard trigger, NOTIFY, plans, timeouts and concurrency. Runs through
 * scripts/lib/run-integration, which gives it its own database ($DDSM_TEST_CONNINFO). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ddsm/state.h"
#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "pg_support.h"

static ddsm_store *g_st;
static PGconn *g_pg;
static unsigned g_seq;

#define ERR_EQ(got, want)                                                                         \
    do {                                                                                          \
        ddsm_err got_ = (got);                                                                    \
        if (got_ != (want))                                                                       \
            fail_msg("%s returned %d (%s), expected %d (%s); store says: %s", #got, got_,         \
                     ddsm_err_str(got_), (int)(want), ddsm_err_str(want),                         \
                     ddsm_store_errmsg(g_st));                                                    \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Helpers */

static void uuid_text(const ddsm_uuid *id, char out[DDSM_UUID_TEXT_LEN + 1])
{
    ddsm_uuid_format(id, out);
}

static void unique_label(const char *prefix, char *out, size_t cap)
{
    snprintf(out, cap, "%s-%u-%u", prefix, (unsigned)getpid(), ++g_seq);
}

/* Register an asset and walk it to `target` through the API. */
static ddsm_asset new_asset(const char *prefix, ddsm_state target)
{
    char label[64];
    ddsm_asset a;
    unique_label(prefix, label, sizeof label);
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, label, "hmac", "m/44'/0'/0'/0/0", "tester", &a),
           DDSM_OK);
    if (target == DDSM_STATE_INITIALIZED)
        return a;
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ACTIVATE, 0, "tester", &a), DDSM_OK);
    if (target == DDSM_STATE_ROTATING)
        ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE_GRACE, 3600, "tester", &a),
               DDSM_OK);
    if (target == DDSM_STATE_RETIRED)
        ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_RETIRE, 0, "tester", &a),
               DDSM_OK);
    assert_int_equal(a.state, target);
    return a;
}

/* Everything the store holds about one asset, as text, to prove that a refusal changed nothing. */
static char *snapshot(const ddsm_uuid *id)
{
    char t[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(id, t);
    const char *p[] = {t};
    return pgs_text(g_pg,
                    "SELECT (SELECT k::text FROM custody_keys k WHERE asset_id = $1::uuid)"
                    " || ' audit=' || (SELECT count(*) FROM custody_audit_log"
                    "                   WHERE asset_id = $1::uuid)"
                    " || ' rotations=' || (SELECT count(*) FROM custody_rotations"
                    "                       WHERE asset_id = $1::uuid)",
                    1, p);
}

static long long count_for(const char *sql, const ddsm_uuid *id)
{
    char t[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(id, t);
    const char *p[] = {t};
    return pgs_int(g_pg, sql, 1, p);
}

static long long audit_rows(const ddsm_uuid *id, const char *event)
{
    char t[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(id, t);
    const char *p[] = {t, event};
    return pgs_int(g_pg,
                   "SELECT count(*) FROM custody_audit_log WHERE asset_id = $1::uuid"
                   " AND event = $2",
                   2, p);
}

static long long table_rows(const char *table_sql)
{
    return pgs_int(g_pg, table_sql, 0, NULL);
}

static bool event_bumps(ddsm_event e)
{
    return e == DDSM_EV_ROTATE || e == DDSM_EV_ROTATE_GRACE;
}

/* ------------------------------------------------------------------------------------------ */
/* Fixture */

static int group_setup(void **state)
{
    (void)state;
    ddsm_store_opts opts = {.connect_timeout_s = 5, .statement_timeout_ms = 5000,
                            .application_name = "test_store"};
    if (ddsm_store_open(pgs_conninfo(), &opts, &g_st) != DDSM_OK)
        return -1;
    g_pg = pgs_connect(pgs_conninfo());
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ddsm_store_close(g_st);
    PQfinish(g_pg);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Migrations (these run first: the database starts empty) */

static void test_store__migrate_applies_every_migration_once(void **state)
{
    (void)state;
    unsigned applied = 12345;
    ERR_EQ(ddsm_store_migrate(g_st, &applied), DDSM_OK);
    assert_int_equal(applied, ddsm_migrations_count);
    assert_true(ddsm_migrations_count >= 1);
    assert_int_equal(table_rows("SELECT count(*) FROM ddsm_schema_migrations"),
                     ddsm_migrations_count);
    assert_int_equal(table_rows("SELECT count(*) FROM ddsm_schema_migrations WHERE name = "
                                "'001_init'"), 1);

    applied = 12345;
    ERR_EQ(ddsm_store_migrate(g_st, &applied), DDSM_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(table_rows("SELECT count(*) FROM ddsm_schema_migrations"),
                     ddsm_migrations_count);
}

struct migrator {
    const char *conninfo;
    ddsm_err err;
    unsigned applied;
    char msg[256];
};

static void *migrate_thread(void *arg)
{
    struct migrator *m = arg;
    ddsm_store *st = NULL;
    m->err = ddsm_store_open(m->conninfo, NULL, &st);
    if (m->err == DDSM_OK)
        m->err = ddsm_store_migrate(st, &m->applied);
    snprintf(m->msg, sizeof m->msg, "%s", ddsm_store_errmsg(st));
    ddsm_store_close(st);
    return NULL;
}

static void test_store__concurrent_migrators_apply_each_migration_exactly_once(void **state)
{
    (void)state;
    char conninfo[1024];
    char *drop = pgs_fresh_db(g_pg, "mig", conninfo, sizeof conninfo);

    enum { N = 4 };
    struct migrator m[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].conninfo = conninfo;
        assert_int_equal(pthread_create(&th[i], NULL, migrate_thread, &m[i]), 0);
    }
    unsigned total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (m[i].err != DDSM_OK)
            fail_msg("migrator %d: %s: %s", i, ddsm_err_str(m[i].err), m[i].msg);
        total += m[i].applied;
    }
    assert_int_equal(total, ddsm_migrations_count);

    PGconn *c = pgs_connect(conninfo);
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM ddsm_schema_migrations", 0, NULL),
                     ddsm_migrations_count);
    PQfinish(c);
    pgs_exec(g_pg, drop, 0, NULL);
    free(drop);
}

/* The guard trigger's copy of the lifecycle must be ddsm_state_next, row for row. */
static void test_store__sql_lifecycle_table_matches_state_next(void **state)
{
    (void)state;
    long long allowed = 0;
    for (unsigned s = 0; s < DDSM_STATE__COUNT; s++) {
        for (unsigned e = 0; e < DDSM_EV__COUNT; e++) {
            ddsm_state next;
            const char *p[] = {ddsm_state_name((ddsm_state)s), ddsm_event_name((ddsm_event)e)};
            PGresult *r = pgs_query(g_pg,
                                    "SELECT to_state, bumps_counter FROM custody_lifecycle"
                                    " WHERE from_state = $1 AND event = $2",
                                    2, p);
            if (ddsm_state_next((ddsm_state)s, (ddsm_event)e, &next) == DDSM_OK) {
                allowed++;
                if (PQntuples(r) != 1)
                    fail_msg("custody_lifecycle lacks %s --%s-->", p[0], p[1]);
                assert_string_equal(PQgetvalue(r, 0, 0), ddsm_state_name(next));
                assert_string_equal(PQgetvalue(r, 0, 1), event_bumps((ddsm_event)e) ? "t" : "f");
            } else if (PQntuples(r) != 0) {
                fail_msg("custody_lifecycle allows %s --%s--> that ddsm_state_next refuses", p[0],
                         p[1]);
            }
            PQclear(r);
        }
    }
    assert_int_equal(table_rows("SELECT count(*) FROM custody_lifecycle"), allowed);
}

/* ------------------------------------------------------------------------------------------ */
/* Registry */

static void test_store__register_then_find_by_id_and_by_label(void **state)
{
    (void)state;
    ddsm_uuid id;
    char label[64], idt[DDSM_UUID_TEXT_LEN + 1];
    ddsm_asset a, b;
    assert_int_equal(ddsm_uuid_parse("6f9619ff-8b86-d011-b42d-00c04fc964ff", 36, &id), DDSM_OK);
    unique_label("reg", label, sizeof label);
    long long t0 = (long long)time(NULL) * 1000000LL;

    ERR_EQ(ddsm_store_asset_register(g_st, &id, label, "aes", "m/44h/0H/0'/0/5", "alice", &a),
           DDSM_OK);
    assert_memory_equal(a.id.b, id.b, 16);
    assert_string_equal(a.label, label);
    assert_string_equal(a.key_type, "aes");
    assert_string_equal(a.default_path, "m/44'/0'/0'/0/5"); /* canonical */
    assert_int_equal(a.counter, 0);
    assert_int_equal(a.state, DDSM_STATE_INITIALIZED);
    assert_int_equal(a.grace_until_us, 0);
    assert_true(a.created_us >= t0 - 5000000 && a.created_us <= t0 + 5000000);
    assert_true(a.updated_us >= a.created_us);

    ERR_EQ(ddsm_store_asset_find(g_st, label, &b), DDSM_OK);
    assert_memory_equal(&a, &b, sizeof a);
    uuid_text(&id, idt);
    ERR_EQ(ddsm_store_asset_find(g_st, idt, &b), DDSM_OK);
    assert_memory_equal(&a, &b, sizeof a);
    ERR_EQ(ddsm_store_asset_find(g_st, "6F9619FF-8B86-D011-B42D-00C04FC964FF", &b), DDSM_OK);
    assert_memory_equal(&a, &b, sizeof a);
    ERR_EQ(ddsm_store_asset_get(g_st, &id, &b), DDSM_OK);
    assert_memory_equal(&a, &b, sizeof a);

    /* The registration is in the audit log. */
    assert_int_equal(audit_rows(&id, "REGISTER"), 1);
    const char *p[] = {idt};
    char *who = pgs_text(g_pg, "SELECT requester || ' ' || derivation_path || ' ' || counter ||"
                               " ' ' || state_at_derivation FROM custody_audit_log"
                               " WHERE asset_id = $1::uuid AND event = 'REGISTER'", 1, p);
    assert_string_equal(who, "alice m/44'/0'/0'/0/5 0 INITIALIZED");
    free(who);

    /* Defaults: random v4 id, key type hmac, path m/0. */
    unique_label("reg-default", label, sizeof label);
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, label, NULL, NULL, NULL, &b), DDSM_OK);
    assert_string_equal(b.key_type, "hmac");
    assert_string_equal(b.default_path, "m/0");
    assert_int_equal(b.id.b[6] >> 4, 4);
    assert_false(ddsm_uuid_is_nil(&b.id));
}

static void test_store__register_stores_hostile_label_verbatim(void **state)
{
    (void)state;
    const char *label = "x'); DROP TABLE custody_keys; -- \\ \" $1";
    ddsm_asset a, b;
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, label, "hmac", NULL, NULL, &a), DDSM_OK);
    ERR_EQ(ddsm_store_asset_find(g_st, label, &b), DDSM_OK);
    assert_string_equal(b.label, label);
    assert_true(table_rows("SELECT count(*) FROM custody_keys") >= 1);
}

static void test_store__register_refuses_duplicate_label_or_id_and_writes_nothing(void **state)
{
    (void)state;
    ddsm_asset a, b;
    char label[64], other[64];
    unique_label("dup", label, sizeof label);
    unique_label("dup-other", other, sizeof other);
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, label, "hmac", NULL, NULL, &a), DDSM_OK);
    long long keys = table_rows("SELECT count(*) FROM custody_keys");
    long long audit = table_rows("SELECT count(*) FROM custody_audit_log");

    memset(&b, 0x5a, sizeof b);
    ddsm_asset untouched = b;
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, label, "hmac", NULL, NULL, &b), DDSM_E_EXISTS);
    assert_non_null(strstr(ddsm_store_errmsg(g_st), label));
    assert_non_null(strstr(ddsm_store_errmsg(g_st), "already exists"));
    assert_memory_equal(&b, &untouched, sizeof b); /* out untouched on failure */

    ERR_EQ(ddsm_store_asset_register(g_st, &a.id, other, "hmac", NULL, NULL, &b), DDSM_E_EXISTS);
    assert_non_null(strstr(ddsm_store_errmsg(g_st), "with id"));

    assert_int_equal(table_rows("SELECT count(*) FROM custody_keys"), keys);
    assert_int_equal(table_rows("SELECT count(*) FROM custody_audit_log"), audit);
}

static void test_store__register_refuses_bad_labels_paths_and_key_types(void **state)
{
    (void)state;
    char long_label[DDSM_ASSET_LABEL_MAX + 2];
    memset(long_label, 'a', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = '\0'; /* 129 characters */
    const char *bad_labels[] = {
        "",
        long_label,
        "a/b",
        "tab\there",
        "bell\a",
        " leading",
        "trailing ",
        "caf\xc3\xa9",
        "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "6F9619FF8B86D011B42D00C04FC964FF",
        "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
        "6f9619ff8b86-d011-b42d00c04fc964ff",
    };
    struct {
        const char *path;
        const char *key_type;
        ddsm_err want;
    } bad_other[] = {
        {"m/01", "hmac", DDSM_E_PATH},
        {"m", "hmac", DDSM_E_PATH},
        {"x/1", "hmac", DDSM_E_PATH},
        {"m/2147483648", "hmac", DDSM_E_PATH},
        {"m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", "hmac", DDSM_E_PATH},
        {"m/0", "rsa", DDSM_E_INPUT},
        {"m/0", "HMAC", DDSM_E_INPUT},
        {"m/0", "", DDSM_E_INPUT},
    };
    long long keys = table_rows("SELECT count(*) FROM custody_keys");
    long long audit = table_rows("SELECT count(*) FROM custody_audit_log");
    ddsm_asset a;

    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        ddsm_err e = ddsm_store_asset_register(g_st, NULL, bad_labels[i], "hmac", NULL, NULL, &a);
        if (e != DDSM_E_INPUT)
            fail_msg("label #%zu \"%s\": got %s", i, bad_labels[i], ddsm_err_str(e));
        assert_true(strlen(ddsm_store_errmsg(g_st)) > 10);
    }
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, NULL, "hmac", NULL, NULL, &a), DDSM_E_INPUT);
    for (size_t i = 0; i < sizeof bad_other / sizeof bad_other[0]; i++) {
        char label[64];
        unique_label("bad", label, sizeof label);
        ddsm_err e = ddsm_store_asset_register(g_st, NULL, label, bad_other[i].key_type,
                                               bad_other[i].path, NULL, &a);
        if (e != bad_other[i].want)
            fail_msg("path \"%s\" key type \"%s\": got %s (%s)", bad_other[i].path,
                     bad_other[i].key_type, ddsm_err_str(e), ddsm_store_errmsg(g_st));
    }
    ddsm_uuid nil;
    memset(&nil, 0, sizeof nil);
    ERR_EQ(ddsm_store_asset_register(g_st, &nil, "nil-asset", "hmac", NULL, NULL, &a),
           DDSM_E_UUID);
    assert_int_equal(table_rows("SELECT count(*) FROM custody_keys"), keys);
    assert_int_equal(table_rows("SELECT count(*) FROM custody_audit_log"), audit);

    /* The limits themselves are fine. */
    long_label[DDSM_ASSET_LABEL_MAX] = '\0';
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, long_label, "hmac",
                                     "m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/2147483647'", NULL,
                                     &a),
           DDSM_OK);
    assert_string_equal(a.default_path, "m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/2147483647'");
    ERR_EQ(ddsm_store_asset_register(g_st, NULL, "with spaces inside", "hmac", NULL, NULL, &a),
           DDSM_OK);
}

static void test_store__find_unknown_asset_is_not_found(void **state)
{
    (void)state;
    ddsm_asset a;
    ddsm_uuid id;
    ERR_EQ(ddsm_store_asset_find(g_st, "no-such-label", &a), DDSM_E_NOT_FOUND);
    assert_non_null(strstr(ddsm_store_errmsg(g_st), "no-such-label"));
    ERR_EQ(ddsm_store_asset_find(g_st, "00000000-0000-4000-8000-00000000dead", &a),
           DDSM_E_NOT_FOUND);
    assert_int_equal(ddsm_uuid_random(&id), DDSM_OK);
    ERR_EQ(ddsm_store_asset_get(g_st, &id, &a), DDSM_E_NOT_FOUND);
    ERR_EQ(ddsm_store_asset_find(g_st, "", &a), DDSM_E_INPUT);
}

struct list_acc {
    int calls;
    int stop_after;
    char *joined; /* labels in the order listed, '\n' separated */
    size_t len, cap;
    const char *want_label;
    bool seen;
    ddsm_state seen_state;
};

static int list_cb(const ddsm_asset *a, void *arg)
{
    struct list_acc *acc = arg;
    size_t n = strlen(a->label);
    if (acc->len + n + 2 > acc->cap) {
        acc->cap = (acc->cap + n + 2) * 2;
        acc->joined = realloc(acc->joined, acc->cap);
        if (acc->joined == NULL)
            abort();
    }
    if (acc->len > 0)
        acc->joined[acc->len++] = '\n';
    memcpy(acc->joined + acc->len, a->label, n + 1);
    acc->len += n;
    if (acc->want_label != NULL && strcmp(a->label, acc->want_label) == 0) {
        acc->seen = true;
        acc->seen_state = a->state;
    }
    acc->calls++;
    return acc->stop_after > 0 && acc->calls >= acc->stop_after;
}

static void test_store__list_is_ordered_by_label_and_stops_when_asked(void **state)
{
    (void)state;
    ddsm_asset r = new_asset("list", DDSM_STATE_ROTATING);
    long long n = table_rows("SELECT count(*) FROM custody_keys");
    assert_true(n >= 3);
    struct list_acc acc = {.want_label = r.label};
    ERR_EQ(ddsm_store_asset_list(g_st, list_cb, &acc), DDSM_OK);
    assert_int_equal(acc.calls, n);
    assert_true(acc.seen);
    assert_int_equal(acc.seen_state, DDSM_STATE_ROTATING);
    /* In the order the database collates labels. */
    char *want = pgs_text(g_pg, "SELECT string_agg(label, E'\\n' ORDER BY label, asset_id)"
                                " FROM custody_keys", 0, NULL);
    assert_string_equal(acc.joined, want);
    free(want);
    free(acc.joined);

    struct list_acc stop = {.stop_after = 2};
    ERR_EQ(ddsm_store_asset_list(g_st, list_cb, &stop), DDSM_OK);
    assert_int_equal(stop.calls, 2);
    free(stop.joined);
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle */

static void test_store__every_lifecycle_event_is_applied_or_refused_as_the_table_says(void **s)
{
    (void)s;
    for (unsigned from = 0; from < DDSM_STATE__COUNT; from++) {
        for (unsigned e = 0; e < DDSM_EV__COUNT; e++) {
            ddsm_asset a = new_asset("lc", (ddsm_state)from), b;
            ddsm_state next;
            char *before = snapshot(&a.id);
            long long rotations = count_for("SELECT count(*) FROM custody_rotations"
                                            " WHERE asset_id = $1::uuid", &a.id);
            ddsm_err got = ddsm_store_asset_transition(g_st, &a.id, (ddsm_event)e, 60, "bob", &b);
            const char *en = ddsm_event_name((ddsm_event)e), *sn = ddsm_state_name(from);

            if (ddsm_state_next((ddsm_state)from, (ddsm_event)e, &next) == DDSM_OK) {
                if (got != DDSM_OK)
                    fail_msg("%s --%s--> refused: %s", sn, en, ddsm_store_errmsg(g_st));
                assert_int_equal(b.state, next);
                assert_int_equal(b.counter, a.counter + (event_bumps((ddsm_event)e) ? 1 : 0));
                assert_int_equal(count_for("SELECT count(*) FROM custody_rotations"
                                           " WHERE asset_id = $1::uuid", &a.id),
                                 rotations + (event_bumps((ddsm_event)e) ? 1 : 0));
                if (next == DDSM_STATE_ROTATING)
                    assert_true(b.grace_until_us > b.updated_us + 55 * 1000000LL);
                else
                    assert_int_equal(b.grace_until_us, 0);
                /* The newest audit row is this event, with the new counter and state. */
                char idt[DDSM_UUID_TEXT_LEN + 1];
                uuid_text(&a.id, idt);
                const char *p[] = {idt};
                char *last = pgs_text(g_pg, "SELECT event || ' ' || counter || ' ' ||"
                                            " state_at_derivation || ' ' || requester"
                                            " FROM custody_audit_log WHERE asset_id = $1::uuid"
                                            " ORDER BY id DESC LIMIT 1", 1, p);
                char want[128];
                snprintf(want, sizeof want, "%s %llu %s bob",
                         e == DDSM_EV_ROTATE_GRACE ? "ROTATE" : en,
                         (unsigned long long)b.counter, ddsm_state_name(next));
                assert_string_equal(last, want);
                free(last);
            } else {
                if (got != DDSM_E_STATE)
                    fail_msg("%s --%s--> returned %s, expected a refusal", sn, en,
                             ddsm_err_str(got));
                char want[128];
                snprintf(want, sizeof want, "is %s; cannot %s", sn, en);
                if (strstr(ddsm_store_errmsg(g_st), want) == NULL)
                    fail_msg("message \"%s\" does not say \"%s\"", ddsm_store_errmsg(g_st), want);
                char *after = snapshot(&a.id);
                assert_string_equal(before, after);
                free(after);
            }
            free(before);
        }
    }
}

static void test_store__transition_refuses_unknown_asset_and_bad_grace(void **state)
{
    (void)state;
    ddsm_uuid id;
    ddsm_asset b;
    assert_int_equal(ddsm_uuid_random(&id), DDSM_OK);
    ERR_EQ(ddsm_store_asset_transition(g_st, &id, DDSM_EV_ACTIVATE, 0, NULL, &b),
           DDSM_E_NOT_FOUND);
    ddsm_asset a = new_asset("grace-bad", DDSM_STATE_ACTIVE);
    char *before = snapshot(&a.id);
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE_GRACE, 0, NULL, &b),
           DDSM_E_INPUT);
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE_GRACE, -5, NULL, &b),
           DDSM_E_INPUT);
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE_GRACE, 400LL * 86400, NULL,
                                       &b),
           DDSM_E_INPUT);
    char *after = snapshot(&a.id);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_store__rotate_adds_exactly_one_and_records_the_rotation(void **state)
{
    (void)state;
    ddsm_asset a = new_asset("rot", DDSM_STATE_ACTIVE), b;
    char idt[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&a.id, idt);
    for (uint64_t i = 1; i <= 3; i++) {
        ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE, 0, "carol", &b), DDSM_OK);
        assert_int_equal(b.counter, i);
        assert_int_equal(b.state, DDSM_STATE_ACTIVE);
    }
    const char *p[] = {idt};
    char *rows = pgs_text(g_pg, "SELECT string_agg(from_counter || '>' || to_counter || ':' ||"
                                " requester || ':' || (grace_until IS NULL), ' ' ORDER BY id)"
                                " FROM custody_rotations WHERE asset_id = $1::uuid", 1, p);
    assert_string_equal(rows, "0>1:carol:true 1>2:carol:true 2>3:carol:true");
    free(rows);
    assert_int_equal(audit_rows(&a.id, "ROTATE"), 3);
    assert_int_equal(pgs_int(g_pg, "SELECT derivation_counter FROM custody_keys"
                                   " WHERE asset_id = $1::uuid", 1, p), 3);
}

static void test_store__grace_window_reads_rotating_then_active_once_it_passes(void **state)
{
    (void)state;
    ddsm_asset a = new_asset("grace", DDSM_STATE_ACTIVE), b;
    char idt[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&a.id, idt);
    const char *p[] = {idt};

    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE_GRACE, 1, "dave", &b), DDSM_OK);
    assert_int_equal(b.state, DDSM_STATE_ROTATING);
    assert_int_equal(b.counter, 1);
    assert_true(b.grace_until_us > b.updated_us);
    assert_true(b.grace_until_us <= b.updated_us + 1000000 + 1000);
    char *rot = pgs_text(g_pg, "SELECT grace_until IS NOT NULL FROM custody_rotations"
                               " WHERE asset_id = $1::uuid", 1, p);
    assert_string_equal(rot, "t");
    free(rot);

    /* During grace: ROTATING, derivations use the new counter. */
    uint64_t c = 99;
    ddsm_state s = DDSM_STATE__COUNT;
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    ERR_EQ(ddsm_store_asset_get(g_st, &a.id, &b), DDSM_OK);
    assert_int_equal(b.state, DDSM_STATE_ROTATING);
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_OK);
    assert_int_equal(c, 1);
    assert_int_equal(s, DDSM_STATE_ROTATING);
    /* ROTATE is not allowed while ROTATING: refused, nothing changes. */
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE, 0, NULL, &b), DDSM_E_STATE);

    usleep(1300 * 1000);

    /* After it: effectively ACTIVE everywhere, although the row still says ROTATING. */
    ERR_EQ(ddsm_store_asset_get(g_st, &a.id, &b), DDSM_OK);
    assert_int_equal(b.state, DDSM_STATE_ACTIVE);
    assert_int_equal(b.grace_until_us, 0);
    ERR_EQ(ddsm_store_asset_find(g_st, a.label, &b), DDSM_OK);
    assert_int_equal(b.state, DDSM_STATE_ACTIVE);
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_OK);
    assert_int_equal(c, 1);
    assert_int_equal(s, DDSM_STATE_ACTIVE);
    char *stored = pgs_text(g_pg, "SELECT state FROM custody_keys WHERE asset_id = $1::uuid", 1,
                            p);
    assert_string_equal(stored, "ROTATING");
    free(stored);
    /* GRACE_END is no longer possible: the window is over. */
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_GRACE_END, 0, NULL, &b),
           DDSM_E_STATE);
    assert_non_null(strstr(ddsm_store_errmsg(g_st), "is ACTIVE; cannot GRACE_END"));

    /* The next event finalises the window (GRACE_END row first) and applies. */
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE, 0, "dave", &b), DDSM_OK);
    assert_int_equal(b.state, DDSM_STATE_ACTIVE);
    assert_int_equal(b.counter, 2);
    char *events = pgs_text(g_pg, "SELECT string_agg(event || ':' || counter || ':' ||"
                                  " state_at_derivation, ' ' ORDER BY id) FROM custody_audit_log"
                                  " WHERE asset_id = $1::uuid AND event <> 'DERIVE'", 1, p);
    assert_string_equal(events, "REGISTER:0:INITIALIZED ACTIVATE:0:ACTIVE ROTATE:1:ROTATING "
                                "GRACE_END:1:ACTIVE ROTATE:2:ACTIVE");
    free(events);
    stored = pgs_text(g_pg, "SELECT state || ' ' || (grace_until IS NULL) FROM custody_keys"
                            " WHERE asset_id = $1::uuid", 1, p);
    assert_string_equal(stored, "ACTIVE true");
    free(stored);
}

static void test_store__explicit_grace_end_returns_to_active(void **state)
{
    (void)state;
    ddsm_asset a = new_asset("grace-end", DDSM_STATE_ROTATING), b;
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_GRACE_END, 0, NULL, &b), DDSM_OK);
    assert_int_equal(b.state, DDSM_STATE_ACTIVE);
    assert_int_equal(b.counter, a.counter);
    assert_int_equal(b.grace_until_us, 0);
    assert_int_equal(audit_rows(&a.id, "GRACE_END"), 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Derivation */

static void test_store__derive_follows_the_state_and_audits_only_successes(void **state)
{
    (void)state;
    ddsm_asset act = new_asset("drv-act", DDSM_STATE_ACTIVE);
    ddsm_asset rot = new_asset("drv-rot", DDSM_STATE_ROTATING);
    ddsm_asset ini = new_asset("drv-ini", DDSM_STATE_INITIALIZED);
    ddsm_asset ret = new_asset("drv-ret", DDSM_STATE_RETIRED);
    long long audit_before = table_rows("SELECT count(*) FROM custody_audit_log");
    uint64_t c = 77;
    ddsm_state s = DDSM_STATE__COUNT;
    ddsm_derive_req req = {.path = "m/44'/0'/0'/0/7", .requester = "erin", .instance = "inst-1"};

    req.asset = act.id;
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_OK);
    assert_int_equal(c, 0);
    assert_int_equal(s, DDSM_STATE_ACTIVE);
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, NULL), DDSM_OK); /* state may be NULL */

    req.asset = rot.id;
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_OK);
    assert_int_equal(c, 1);
    assert_int_equal(s, DDSM_STATE_ROTATING);

    c = 77;
    req.asset = ini.id;
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_E_STATE);
    assert_int_equal(s, DDSM_STATE_INITIALIZED);
    assert_int_equal(c, 77);
    assert_non_null(strstr(ddsm_store_errmsg(g_st), "is INITIALIZED; cannot derive"));

    req.asset = ret.id;
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_E_STATE);
    assert_int_equal(s, DDSM_STATE_RETIRED);
    assert_int_equal(c, 77);

    assert_int_equal(ddsm_uuid_random(&req.asset), DDSM_OK);
    s = DDSM_STATE__COUNT;
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_E_NOT_FOUND);
    assert_int_equal(s, DDSM_STATE__COUNT);

    /* Non-canonical or malformed paths never reach the log. */
    req.asset = act.id;
    req.path = "m/44h/0'/0'/0/7";
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_E_PATH);
    req.path = "m/007";
    ERR_EQ(ddsm_store_derive(g_st, &req, &c, &s), DDSM_E_PATH);
    assert_int_equal(c, 77);

    /* Exactly the three successes were written, with what they returned. */
    assert_int_equal(table_rows("SELECT count(*) FROM custody_audit_log"), audit_before + 3);
    assert_int_equal(audit_rows(&act.id, "DERIVE"), 2);
    assert_int_equal(audit_rows(&rot.id, "DERIVE"), 1);
    assert_int_equal(audit_rows(&ini.id, "DERIVE"), 0);
    assert_int_equal(audit_rows(&ret.id, "DERIVE"), 0);
    char idt[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&rot.id, idt);
    const char *p[] = {idt};
    char *row = pgs_text(g_pg, "SELECT derivation_path || ' ' || counter || ' ' ||"
                               " state_at_derivation || ' ' || requester || ' ' || instance_id"
                               " FROM custody_audit_log WHERE asset_id = $1::uuid"
                               " AND event = 'DERIVE'", 1, p);
    assert_string_equal(row, "m/44'/0'/0'/0/7 1 ROTATING erin inst-1");
    free(row);
}

/* The derivation statement takes no row lock: a transaction holding the registry row does not
 * delay it, while a lifecycle event waits for it and gives up at the statement timeout. */
static void test_store__derive_ignores_row_locks_and_events_time_out_cleanly(void **state)
{
    (void)state;
    ddsm_asset a = new_asset("lock", DDSM_STATE_ACTIVE), b;
    ddsm_store *st = NULL;
    ddsm_store_opts opts = {.statement_timeout_ms = 300};
    ERR_EQ(ddsm_store_open(pgs_conninfo(), &opts, &st), DDSM_OK);
    char idt[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&a.id, idt);
    const char *p[] = {idt};
    PGconn *holder = pgs_connect(pgs_conninfo());
    pgs_exec(holder, "BEGIN", 0, NULL);
    pgs_exec(holder, "SELECT 1 FROM custody_keys WHERE asset_id = $1::uuid FOR UPDATE", 1, p);
    char *before = snapshot(&a.id);

    uint64_t c = 9;
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    if (ddsm_store_derive(st, &req, &c, NULL) != DDSM_OK)
        fail_msg("derive: %s", ddsm_store_errmsg(st));
    /* It did not wait for the row lock: with a 300 ms statement timeout it would have failed. */
    assert_int_equal(c, 0);

    char *mid = snapshot(&a.id);
    long long t0 = pgs_now_ms();
    ddsm_err e = ddsm_store_asset_transition(st, &a.id, DDSM_EV_ROTATE, 0, NULL, &b);
    long long took = pgs_now_ms() - t0;
    if (e != DDSM_E_TIMEOUT)
        fail_msg("rotate under a row lock: %s (%s)", ddsm_err_str(e), ddsm_store_errmsg(st));
    assert_true(took >= 250); /* it waited for the statement timeout */
    char *after = snapshot(&a.id);
    assert_string_equal(mid, after);
    assert_string_not_equal(before, mid); /* the derive row */
    pgs_exec(holder, "ROLLBACK", 0, NULL);
    PQfinish(holder);

    /* The same store carries on. */
    if (ddsm_store_asset_transition(st, &a.id, DDSM_EV_ROTATE, 0, NULL, &b) != DDSM_OK)
        fail_msg("rotate after the lock: %s", ddsm_store_errmsg(st));
    assert_int_equal(b.counter, 1);
    ddsm_store_close(st);
    free(before);
    free(mid);
    free(after);
}

/* ------------------------------------------------------------------------------------------ */
/* The guard trigger */

static void test_store__trigger_refuses_raw_illegal_updates(void **state)
{
    (void)state;
    ddsm_asset ret = new_asset("trg-ret", DDSM_STATE_RETIRED);
    ddsm_asset ini = new_asset("trg-ini", DDSM_STATE_INITIALIZED);
    ddsm_asset act = new_asset("trg-act", DDSM_STATE_ACTIVE);
    char r[DDSM_UUID_TEXT_LEN + 1], i[DDSM_UUID_TEXT_LEN + 1], a[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&ret.id, r);
    uuid_text(&ini.id, i);
    uuid_text(&act.id, a);
    const char *pr[] = {r}, *pi[] = {i}, *pa[] = {a};
    char *before_r = snapshot(&ret.id), *before_i = snapshot(&ini.id);

    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET state = 'ACTIVE'"
                                             " WHERE asset_id = $1::uuid", 1, pr), "ZD001");
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET state = 'ROTATING',"
                                             " grace_until = now() + interval '1 h'"
                                             " WHERE asset_id = $1::uuid", 1, pi), "ZD001");
    /* ACTIVE -> ACTIVE with a new counter is a rotation, not an activation. */
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET"
                                             " derivation_counter = derivation_counter + 1"
                                             " WHERE asset_id = $1::uuid", 1, pi), "ZD001");
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET"
                                             " derivation_counter = derivation_counter + 1"
                                             " WHERE asset_id = $1::uuid", 1, pr), "ZD001");
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET asset_id = gen_random_uuid()"
                                             " WHERE asset_id = $1::uuid", 1, pi), "ZD003");
    char *after_r = snapshot(&ret.id), *after_i = snapshot(&ini.id);
    assert_string_equal(before_r, after_r);
    assert_string_equal(before_i, after_i);

    /* Counters never decrease and never jump. */
    pgs_exec(g_pg, "UPDATE custody_keys SET derivation_counter = derivation_counter + 1"
                   " WHERE asset_id = $1::uuid", 1, pa);
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET derivation_counter = 0"
                                             " WHERE asset_id = $1::uuid", 1, pa), "ZD002");
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET"
                                             " derivation_counter = derivation_counter + 2"
                                             " WHERE asset_id = $1::uuid", 1, pa), "ZD002");
    assert_string_equal(pgs_exec_fails(g_pg, "UPDATE custody_keys SET derivation_counter = -1"
                                             " WHERE asset_id = $1::uuid", 1, pa), "ZD002");
    /* A legal raw transition and a change that is no transition pass. */
    pgs_exec(g_pg, "UPDATE custody_keys SET state = 'ACTIVE' WHERE asset_id = $1::uuid", 1, pi);
    pgs_exec(g_pg, "UPDATE custody_keys SET label = label || '-renamed' WHERE asset_id = $1::uuid",
             1, pr);
    assert_int_equal(pgs_int(g_pg, "SELECT derivation_counter FROM custody_keys"
                                   " WHERE asset_id = $1::uuid", 1, pa), 1);
    free(before_r);
    free(before_i);
    free(after_r);
    free(after_i);
}

/* ------------------------------------------------------------------------------------------ */
/* NOTIFY */

struct heard {
    int n;
    ddsm_uuid id[8];
    uint64_t counter[8];
    ddsm_state state[8];
};

static void heard_cb(const ddsm_uuid *id, uint64_t counter, ddsm_state state, void *arg)
{
    struct heard *h = arg;
    if (h->n < 8) {
        h->id[h->n] = *id;
        h->counter[h->n] = counter;
        h->state[h->n] = state;
    }
    h->n++;
}

static void wait_for(ddsm_listener *l, struct heard *h, int want)
{
    long long deadline = pgs_now_ms() + 5000;
    while (h->n < want && pgs_now_ms() < deadline) {
        ddsm_err e = ddsm_listener_wait(l, 500, heard_cb, h);
        if (e != DDSM_OK)
            fail_msg("listener: %s: %s", ddsm_err_str(e), ddsm_listener_errmsg(l));
    }
}

static void test_store__listener_hears_rotations_and_ignores_malformed_payloads(void **state)
{
    (void)state;
    ddsm_listener *l = NULL;
    ERR_EQ(ddsm_listener_open(pgs_conninfo(), NULL, &l), DDSM_OK);
    assert_int_equal(ddsm_listener_generation(l), 1);
    ddsm_asset a = new_asset("notify", DDSM_STATE_ACTIVE), b; /* ACTIVATE notifies too */
    struct heard h = {0};
    wait_for(l, &h, 1);
    assert_int_equal(h.n, 1);
    assert_memory_equal(h.id[0].b, a.id.b, 16);
    assert_int_equal(h.counter[0], 0);
    assert_int_equal(h.state[0], DDSM_STATE_ACTIVE);

    memset(&h, 0, sizeof h);
    ERR_EQ(ddsm_store_asset_transition(g_st, &a.id, DDSM_EV_ROTATE_GRACE, 60, NULL, &b), DDSM_OK);
    wait_for(l, &h, 1);
    assert_int_equal(h.n, 1);
    assert_memory_equal(h.id[0].b, a.id.b, 16);
    assert_int_equal(h.counter[0], 1);
    assert_int_equal(h.state[0], DDSM_STATE_ROTATING);

    /* Garbage on the channel is dropped; what follows still arrives. Nothing on a quiet
     * channel: the wait returns OK at its timeout. */
    memset(&h, 0, sizeof h);
    const char *bad[] = {"", "not a payload", "6f9619ff-8b86-d011-b42d-00c04fc964ff 1",
                         "6f9619ff-8b86-d011-b42d-00c04fc964ff -1 ACTIVE",
                         "6f9619ff-8b86-d011-b42d-00c04fc964ff 01 ACTIVE",
                         "6f9619ff-8b86-d011-b42d-00c04fc964ff 1 SLEEPING",
                         "6f9619ff-8b86-d011-b42d-00c04fc964fz 1 ACTIVE"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p[] = {DDSM_NOTIFY_CHANNEL, bad[i]};
        pgs_exec(g_pg, "SELECT pg_notify($1, $2)", 2, p);
    }
    const char *good[] = {DDSM_NOTIFY_CHANNEL, "6f9619ff-8b86-d011-b42d-00c04fc964ff 42 RETIRED"};
    pgs_exec(g_pg, "SELECT pg_notify($1, $2)", 2, good);
    wait_for(l, &h, 1);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.counter[0], 42);
    assert_int_equal(h.state[0], DDSM_STATE_RETIRED);
    memset(&h, 0, sizeof h);
    long long t0 = pgs_now_ms();
    ERR_EQ(ddsm_listener_wait(l, 200, heard_cb, &h), DDSM_OK);
    assert_int_equal(h.n, 0);
    assert_true(pgs_now_ms() - t0 >= 150);
    assert_int_equal(ddsm_listener_generation(l), 1);
    ddsm_listener_close(l);
}

/* ------------------------------------------------------------------------------------------ */
/* Connection handling */

static void test_store__errors_never_echo_the_conninfo_password(void **state)
{
    (void)state;
    ddsm_store *st = NULL;
    ddsm_store_opts opts = {.connect_timeout_s = 2};
    ERR_EQ(ddsm_store_open("host=/nonexistent-ddsm-socket-dir port=1 user=nobody "
                           "password=Sup3rSecretPw dbname=nothing", &opts, &st), DDSM_OK);
    ddsm_derive_req req = {.path = "m/0"};
    uint64_t c;
    ddsm_err e = ddsm_store_derive(st, &req, &c, NULL);
    assert_int_equal(e, DDSM_E_STORE_DOWN);
    assert_non_null(strstr(ddsm_store_errmsg(st), "store unavailable"));
    assert_null(strstr(ddsm_store_errmsg(st), "Sup3rSecretPw"));
    assert_null(strchr(ddsm_store_errmsg(st), '\n'));
    unsigned applied;
    assert_int_equal(ddsm_store_migrate(st, &applied), DDSM_E_STORE_DOWN);
    assert_null(strstr(ddsm_store_errmsg(st), "Sup3rSecretPw"));
    ddsm_store_close(st);

    /* Malformed conninfo is refused at open, before any connection attempt. */
    st = NULL;
    assert_int_equal(ddsm_store_open("host=/tmp password Sup3rSecretPw", NULL, &st),
                     DDSM_E_INPUT);
    assert_null(st);
    ddsm_listener *l = NULL;
    assert_int_equal(ddsm_listener_open("dbname='unterminated", NULL, &l), DDSM_E_INPUT);
    assert_null(l);
}

/* A server-side terminated session (as after a restart) is noticed before the next statement,
 * which then runs on a new connection instead of failing. */
static void test_store__terminated_session_is_replaced_before_the_next_statement(void **state)
{
    (void)state;
    ddsm_asset a = new_asset("term", DDSM_STATE_ACTIVE);
    ddsm_store *st = NULL;
    ddsm_store_opts opts = {.application_name = "ddsm-term-victim"};
    ERR_EQ(ddsm_store_open(pgs_conninfo(), &opts, &st), DDSM_OK);
    ddsm_derive_req req = {.asset = a.id, .path = "m/0"};
    uint64_t c;
    if (ddsm_store_derive(st, &req, &c, NULL) != DDSM_OK)
        fail_msg("derive: %s", ddsm_store_errmsg(st));
    long long killed = pgs_int(g_pg, "SELECT count(pg_terminate_backend(pid))"
                                     " FROM pg_stat_activity"
                                     " WHERE application_name = 'ddsm-term-victim'", 0, NULL);
    assert_int_equal(killed, 1);
    while (pgs_int(g_pg, "SELECT count(*) FROM pg_stat_activity"
                         " WHERE application_name = 'ddsm-term-victim'", 0, NULL) != 0)
        usleep(10 * 1000); /* until the server process is gone (no deadline: ctest's timeout) */
    if (ddsm_store_derive(st, &req, &c, NULL) != DDSM_OK)
        fail_msg("derive after terminate: %s", ddsm_store_errmsg(st));
    assert_int_equal(audit_rows(&a.id, "DERIVE"), 2);
    ddsm_store_close(st);
}

/* ------------------------------------------------------------------------------------------ */
/* Concurrency: 8 deriving threads and 1 rotating thread */

#define DERIVERS 8
#define RUN_NS (2000LL * 1000000LL)

struct obs {
    long long t_ns;
    uint64_t counter;
};

struct worker {
    ddsm_uuid asset;
    atomic_int *stop;
    struct obs *obs;
    size_t n, cap;
    atomic_long pushed; /* n, readable by the main thread while the worker runs */
    int errors;
    char msg[256];
};

static void obs_push(struct worker *w, long long t, uint64_t c)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->obs = realloc(w->obs, w->cap * sizeof *w->obs);
        if (w->obs == NULL)
            abort();
    }
    w->obs[w->n].t_ns = t;
    w->obs[w->n].counter = c;
    w->n++;
    atomic_store(&w->pushed, (long)w->n);
}

static void *deriver(void *arg)
{
    struct worker *w = arg;
    ddsm_store *st = NULL;
    if (ddsm_store_open(pgs_conninfo(), NULL, &st) != DDSM_OK) {
        w->errors++;
        return NULL;
    }
    ddsm_derive_req req = {.asset = w->asset, .path = "m/44'/0'/0'/0/0", .requester = "conc"};
    while (!atomic_load(w->stop)) {
        uint64_t c;
        long long start = pgs_now_ns(); /* taken before the statement is sent */
        ddsm_err e = ddsm_store_derive(st, &req, &c, NULL);
        if (e != DDSM_OK) {
            if (w->errors++ == 0)
                snprintf(w->msg, sizeof w->msg, "%s", ddsm_store_errmsg(st));
            continue;
        }
        obs_push(w, start, c);
    }
    ddsm_store_close(st);
    return NULL;
}

static void *rotator(void *arg)
{
    struct worker *w = arg;
    ddsm_store *st = NULL;
    if (ddsm_store_open(pgs_conninfo(), NULL, &st) != DDSM_OK) {
        w->errors++;
        return NULL;
    }
    while (!atomic_load(w->stop)) {
        ddsm_asset a;
        ddsm_err e = ddsm_store_asset_transition(st, &w->asset, DDSM_EV_ROTATE, 0, "conc", &a);
        long long ret = pgs_now_ns(); /* taken after the commit was confirmed */
        if (e != DDSM_OK) {
            if (w->errors++ == 0)
                snprintf(w->msg, sizeof w->msg, "%s", ddsm_store_errmsg(st));
            continue;
        }
        obs_push(w, ret, a.counter);
        usleep(2000);
    }
    ddsm_store_close(st);
    return NULL;
}

static void test_store__derive_started_after_a_rotation_returned_never_uses_an_older_counter(
    void **state)
{
    (void)state;
    ddsm_asset a = new_asset("conc", DDSM_STATE_ACTIVE);
    atomic_int stop = 0;
    struct worker w[DERIVERS + 1];
    pthread_t th[DERIVERS + 1];
    memset(w, 0, sizeof w);
    for (int i = 0; i <= DERIVERS; i++) {
        w[i].asset = a.id;
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&th[i], NULL, i < DERIVERS ? deriver : rotator, &w[i]),
                         0);
    }
    struct timespec run = {.tv_sec = RUN_NS / 1000000000LL, .tv_nsec = RUN_NS % 1000000000LL};
    nanosleep(&run, NULL);
    /* And until the counts asserted below are reached: counted as well as timed, so that a slow
     * run (valgrind, a loaded machine) sees the same story. */
    for (;;) {
        long derived = 0;
        for (int i = 0; i < DERIVERS; i++)
            derived += atomic_load(&w[i].pushed);
        if (atomic_load(&w[DERIVERS].pushed) >= 20 && derived >= 200)
            break;
        usleep(10 * 1000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i <= DERIVERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i <= DERIVERS; i++)
        if (w[i].errors != 0)
            fail_msg("thread %d had %d errors, first: %s", i, w[i].errors, w[i].msg);

    struct worker *rot = &w[DERIVERS];
    size_t derives = 0, violations = 0;
    uint64_t max_seen = 0;
    for (int i = 0; i < DERIVERS; i++) {
        for (size_t j = 0; j < w[i].n; j++) {
            const struct obs *d = &w[i].obs[j];
            /* The last rotation that had returned when this derive started. */
            size_t lo = 0, hi = rot->n;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (rot->obs[mid].t_ns < d->t_ns)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo > 0 && d->counter < rot->obs[lo - 1].counter) {
                if (violations++ == 0)
                    print_error("derive started %lld ns after rotation to %llu used %llu\n",
                                d->t_ns - rot->obs[lo - 1].t_ns,
                                (unsigned long long)rot->obs[lo - 1].counter,
                                (unsigned long long)d->counter);
            }
            if (d->counter > max_seen)
                max_seen = d->counter;
            derives++;
        }
    }
    print_message("%zu derives, %zu rotations, counters up to %llu\n", derives, rot->n,
                  (unsigned long long)max_seen);
    assert_int_equal(violations, 0);
    assert_true(rot->n >= 20);
    assert_true(derives >= 200);
    assert_true(max_seen >= rot->n / 2); /* derivations did follow the rotations */
    assert_true(max_seen <= rot->n);
    for (size_t k = 1; k < rot->n; k++)
        assert_int_equal(rot->obs[k].counter, rot->obs[k - 1].counter + 1);

    /* One audit row per successful derive, with the very counters the callers got. */
    assert_int_equal(audit_rows(&a.id, "DERIVE"), (long long)derives);
    uint64_t *hist = calloc(rot->n + 1, sizeof *hist);
    assert_non_null(hist);
    for (int i = 0; i < DERIVERS; i++)
        for (size_t j = 0; j < w[i].n; j++)
            hist[w[i].obs[j].counter]++;
    char idt[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&a.id, idt);
    const char *p[] = {idt};
    PGresult *r = pgs_query(g_pg, "SELECT counter, count(*) FROM custody_audit_log"
                                  " WHERE asset_id = $1::uuid AND event = 'DERIVE'"
                                  " GROUP BY counter", 1, p);
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned long long c = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        unsigned long long n = strtoull(PQgetvalue(r, i, 1), NULL, 10);
        assert_true(c <= rot->n);
        assert_int_equal(hist[c], n);
        hist[c] = 0;
    }
    PQclear(r);
    for (size_t k = 0; k <= rot->n; k++)
        assert_int_equal(hist[k], 0);
    free(hist);
    for (int i = 0; i <= DERIVERS; i++)
        free(w[i].obs);
}

/* ------------------------------------------------------------------------------------------ */
/* Plans (last: it bulk-loads the registry) */

static void assert_plan_probes_pkey(PGconn *c, const char *mode, const char *id)
{
    const char *p[] = {mode};
    pgs_exec(c, "SELECT set_config('plan_cache_mode', $1, false)", 1, p);
    /* EXPLAIN EXECUTE takes no bind parameters: the values are literals of this test. */
    char sql[256];
    snprintf(sql, sizeof sql, "EXPLAIN EXECUTE plan_derive('%s', 'm/0', NULL, NULL)", id);
    PGresult *r = pgs_query(c, sql, 0, NULL);
    size_t cap = 8192, used = 0;
    char *plan = calloc(1, cap);
    assert_non_null(plan);
    for (int i = 0; i < PQntuples(r); i++)
        used += (size_t)snprintf(plan + used, used < cap ? cap - used : 0, "%s\n",
                                 PQgetvalue(r, i, 0));
    PQclear(r);
    if (strstr(plan, "custody_keys_pkey") == NULL || strstr(plan, "Seq Scan on custody_keys"))
        fail_msg("%s plan does not probe the primary key:\n%s", mode, plan);
    free(plan);
}

static void test_store__derive_plan_probes_the_primary_key(void **state)
{
    (void)state;
    pgs_exec(g_pg, "INSERT INTO custody_keys (asset_id, label, default_path, state)"
                   " SELECT gen_random_uuid(), 'bulk-' || g, 'm/0', 'ACTIVE'"
                   " FROM generate_series(1, 20000) g", 0, NULL);
    pgs_exec(g_pg, "ANALYZE custody_keys", 0, NULL);
    ddsm_asset a = new_asset("plan", DDSM_STATE_ACTIVE);
    char idt[DDSM_UUID_TEXT_LEN + 1];
    uuid_text(&a.id, idt);
    PGresult *r = PQprepare(g_pg, "plan_derive", ddsm_store_derive_sql, 4, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("prepare: %s", PQresultErrorMessage(r));
    PQclear(r);
    assert_plan_probes_pkey(g_pg, "force_custom_plan", idt);
    assert_plan_probes_pkey(g_pg, "force_generic_plan", idt);
    pgs_exec(g_pg, "DEALLOCATE plan_derive", 0, NULL);
    pgs_exec(g_pg, "RESET plan_cache_mode", 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store__migrate_applies_every_migration_once),
        cmocka_unit_test(test_store__concurrent_migrators_apply_each_migration_exactly_once),
        cmocka_unit_test(test_store__sql_lifecycle_table_matches_state_next),
        cmocka_unit_test(test_store__register_then_find_by_id_and_by_label),
        cmocka_unit_test(test_store__register_stores_hostile_label_verbatim),
        cmocka_unit_test(test_store__register_refuses_duplicate_label_or_id_and_writes_nothing),
        cmocka_unit_test(test_store__register_refuses_bad_labels_paths_and_key_types),
        cmocka_unit_test(test_store__find_unknown_asset_is_not_found),
        cmocka_unit_test(test_store__list_is_ordered_by_label_and_stops_when_asked),
        cmocka_unit_test(test_store__every_lifecycle_event_is_applied_or_refused_as_the_table_says),
        cmocka_unit_test(test_store__transition_refuses_unknown_asset_and_bad_grace),
        cmocka_unit_test(test_store__rotate_adds_exactly_one_and_records_the_rotation),
        cmocka_unit_test(test_store__grace_window_reads_rotating_then_active_once_it_passes),
        cmocka_unit_test(test_store__explicit_grace_end_returns_to_active),
        cmocka_unit_test(test_store__derive_follows_the_state_and_audits_only_successes),
        cmocka_unit_test(test_store__derive_ignores_row_locks_and_events_time_out_cleanly),
        cmocka_unit_test(test_store__trigger_refuses_raw_illegal_updates),
        cmocka_unit_test(test_store__listener_hears_rotations_and_ignores_malformed_payloads),
        cmocka_unit_test(test_store__errors_never_echo_the_conninfo_password),
        cmocka_unit_test(test_store__terminated_session_is_replaced_before_the_next_statement),
        cmocka_unit_test(
            test_store__derive_started_after_a_rotation_returned_never_uses_an_older_counter),
        cmocka_unit_test(test_store__derive_plan_probes_the_primary_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
