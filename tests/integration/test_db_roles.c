/* SPDX-License-Identifier: Apache-2.0 */
/* Least privilege in PostgreSQL (sql/006_roles.sql, docs/audit.md "Database roles"), against the
 * real test cluster: what each role is refused when it connects on its own, that the allowed
 * paths work (the module .so connected as a ddsm_module member derives), that a module run with
 * the wrong role is refused before it writes anything (CKR_DEVICE_ERROR +
 * DDSM_DEVERR_STORE_PRIVILEGE), and that the module's sessions commit with synchronous_commit
 * "on" whatever the role's default says (read server-side, inside the module's own insert). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsm/store.h"
#include "ddsm/uuid.h"
#include "p11_support.h"
#include "pg_support.h"

/* Login roles of this test (cluster-wide: named after the test's own database). */
static char r_module[96], r_admin[96], r_auditor[96], r_lazy[96], r_none[96];
static PGconn *su; /* the superuser, as the other tests */

static void role_conninfo(const char *role, char *out, size_t cap)
{
    /* A later keyword wins in a libpq conninfo string. */
    snprintf(out, cap, "%s user=%s", pgs_conninfo(), role);
}

static PGconn *connect_as(const char *role)
{
    char ci[1024];
    role_conninfo(role, ci, sizeof ci);
    return pgs_connect(ci);
}

/* Several statements as the superuser (PQexec: a script, no parameters). */
static void su_script(const char *sql)
{
    PGresult *r = PQexec(su, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("script failed: %s: %.200s", PQresultErrorMessage(r), sql);
    PQclear(r);
}

static void make_role(const char *name, const char *group, const char *extra)
{
    const char *p[] = {name, group != NULL ? group : "", extra != NULL ? extra : ""};
    /* Identifiers cannot be parameters: quote_ident server-side. */
    char *sql = pgs_text(su,
                         "SELECT 'DROP ROLE IF EXISTS ' || quote_ident($1) || '; CREATE ROLE ' ||"
                         " quote_ident($1) || ' LOGIN' ||"
                         " CASE WHEN $2 <> '' THEN ' IN ROLE ' || quote_ident($2) ELSE '' END ||"
                         " '; ' || $3",
                         3, p);
    su_script(sql);
    free(sql);
}

static int group_setup(void **state)
{
    p11_load();
    p11_setup_store(); /* migrates as the superuser: the owner */
    su = pgs_connect(pgs_conninfo());
    char *db = pgs_text(su, "SELECT current_database()", 0, NULL);
    snprintf(r_module, sizeof r_module, "%.60s_module", db);
    snprintf(r_admin, sizeof r_admin, "%.60s_admin", db);
    snprintf(r_auditor, sizeof r_auditor, "%.60s_auditor", db);
    snprintf(r_lazy, sizeof r_lazy, "%.60s_lazy", db);
    snprintf(r_none, sizeof r_none, "%.60s_none", db);
    free(db);
    make_role(r_module, "ddsm_module", NULL);
    make_role(r_admin, "ddsm_admin", NULL);
    make_role(r_auditor, "ddsm_auditor", NULL);
    make_role(r_none, NULL, NULL);
    char lazy_default[256];
    snprintf(lazy_default, sizeof lazy_default, "ALTER ROLE \"%s\" SET synchronous_commit = off",
             r_lazy);
    make_role(r_lazy, "ddsm_module", lazy_default);
    return 0;
}

static int group_teardown(void **state)
{
    const char *roles[] = {r_module, r_admin, r_auditor, r_lazy, r_none};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        const char *p[] = {roles[i]};
        char *sql = pgs_text(su, "SELECT 'DROP ROLE IF EXISTS ' || quote_ident($1)", 1, p);
        PQclear(PQexec(su, sql));
        free(sql);
    }
    PQfinish(su);
    return 0;
}

/* The statement must fail with insufficient_privilege (42501). */
static void refused(PGconn *c, const char *who, const char *sql)
{
    const char *state = pgs_exec_fails(c, sql, 0, NULL);
    if (strcmp(state, "42501") != 0)
        fail_msg("%s: expected SQLSTATE 42501 for: %s; got %s", who, sql, state);
}

/* A lifecycle call with well-formed arguments whose prediction (counter 999) cannot hold, so even
 * a permitted call changes nothing. */
static const char transition_call[] =
    "SELECT * FROM ddsm_asset_transition('" VEC_A_ID "', 'ACTIVE', 'ACTIVE', 999, 'ACTIVE', 0,"
    " NULL, 'x', 'x', '{0}', '{ACTIVE}', '{2026-01-01}', '{ACTIVATE}', '{1}', '{NULL}',"
    " '{NULL}', 1, NULL)";

static void test_db_roles__module_role_cannot_rewrite_history(void **state)
{
    long rows = p11_audit_count();
    PGconn *c = connect_as(r_module);
    refused(c, "module", "UPDATE custody_audit_log SET detail = 'edited'");
    refused(c, "module", "DELETE FROM custody_audit_log");
    refused(c, "module", "TRUNCATE custody_audit_log");
    refused(c, "module", "UPDATE custody_keys SET derivation_counter = derivation_counter + 1");
    refused(c, "module", "UPDATE custody_keys SET state = 'RETIRED'");
    refused(c, "module",
            "INSERT INTO custody_keys (asset_id, label, default_path)"
            " VALUES ('44444444-4444-4444-8444-444444444444', 'm', 'm/0')");
    refused(c, "module", "UPDATE custody_zones SET enabled = false");
    refused(c, "module", "DELETE FROM custody_audit_chain_heads");
    refused(c, "module", "CREATE TABLE module_was_here (x int)");
    refused(c, "module", "CREATE TEMP TABLE module_was_here (x int)");
    refused(c, "module", "CREATE FUNCTION module_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    refused(c, "module", transition_call);
    refused(c, "module", "SELECT ddsm_audit_ensure_partition('2030-01-01')");
    PQfinish(c);
    assert_int_equal(p11_audit_count(), rows);
}

static void test_db_roles__auditor_only_reads(void **state)
{
    long rows = p11_audit_count();
    PGconn *c = connect_as(r_auditor);
    assert_int_equal(pgs_int(c, "SELECT count(*) FROM custody_audit_log", 0, NULL), rows);
    assert_true(pgs_int(c, "SELECT count(*) FROM custody_keys", 0, NULL) > 0);
    refused(c, "auditor", "INSERT INTO custody_audit_log (event, detail) VALUES ('DENY', 'x')");
    refused(c, "auditor", "UPDATE custody_audit_log SET detail = 'edited'");
    refused(c, "auditor", "UPDATE custody_audit_chain_heads SET seq = 1");
    refused(c, "auditor", "UPDATE custody_keys SET derivation_counter = derivation_counter + 1");
    refused(c, "auditor", transition_call);
    refused(c, "auditor",
            "SELECT * FROM ddsm_zone_set('default', false, 'x', false, now(),"
            " 'ZONE_DISABLE', 'x', 'x', 1, NULL)");
    refused(c, "auditor", "SELECT ddsm_rotation_committed(1)");
    refused(c, "auditor", "SELECT * FROM ddsm_rate_lease('x', NULL, 1, 1, 0, 0)");
    refused(c, "auditor", "CREATE TABLE auditor_was_here (x int)");
    PQfinish(c);
    assert_int_equal(p11_audit_count(), rows);
}

static void test_db_roles__admin_writes_only_through_the_lifecycle_functions(void **state)
{
    long rows = p11_audit_count();
    PGconn *c = connect_as(r_admin);
    refused(c, "admin", "UPDATE custody_audit_log SET detail = 'edited'");
    refused(c, "admin", "DELETE FROM custody_audit_log");
    refused(c, "admin", "INSERT INTO custody_audit_log (event, detail) VALUES ('DENY', 'x')");
    refused(c, "admin", "UPDATE custody_keys SET derivation_counter = derivation_counter + 1");
    refused(c, "admin", "DELETE FROM custody_keys");
    refused(c, "admin", "UPDATE custody_audit_chain_heads SET seq = 1");
    refused(c, "admin", "CREATE TABLE admin_was_here (x int)");
    /* The functions write lifecycle rows only: a forged DERIVE row is refused. */
    const char *forged = pgs_exec_fails(
        c,
        "SELECT * FROM ddsm_asset_transition('" VEC_A_ID "', 'ACTIVE', 'ACTIVE', 0, NULL, 0,"
        " NULL, 'x', 'x', '{0}', '{ACTIVE}', '{2026-01-01}', '{DERIVE}', '{1}', '{NULL}',"
        " '{NULL}', 1, NULL)",
        0, NULL);
    assert_string_equal(forged, "22023");
    /* A wrong prediction is allowed to run and changes nothing. */
    PGresult *r = pgs_query(c, transition_call, 0, NULL);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 3), "0"); /* o_ok: the prediction did not hold */
    PQclear(r);
    PQfinish(c);
    assert_int_equal(p11_audit_count(), rows);
}

static void test_db_roles__public_cannot_connect(void **state)
{
    char ci[1024];
    role_conninfo(r_none, ci, sizeof ci);
    PGconn *c = PQconnectdb(ci);
    assert_int_not_equal(PQstatus(c), CONNECTION_OK);
    if (strstr(PQerrorMessage(c), "CONNECT") == NULL)
        fail_msg("expected a CONNECT refusal: %s", PQerrorMessage(c));
    PQfinish(c);
}

static CK_ULONG device_error(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.ulDeviceError;
}

static void test_db_roles__module_derives_as_a_module_role(void **state)
{
    char ci[1024];
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h = 0;
    uint8_t got[32], want[32];
    const uint8_t msg[] = "least privilege";
    long rows = p11_audit_count();
    role_conninfo(r_module, ci, sizeof ci);
    p11_write_conf("module-role", ci, NULL);
    assert_int_equal(p11_start_user_session(&s), 0);
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_rv(CKR_OK, p11_hmac_sign(s, h, msg, sizeof msg - 1, got));
    p11_hmac_expected(VEC_A_KEY0, msg, sizeof msg - 1, want);
    assert_memory_equal(got, want, 32);
    assert_int_equal(p11_end_session(s), 0);
    assert_int_equal(p11_audit_count(), rows + 1);
}

static void test_db_roles__module_as_the_auditor_is_refused_before_writing(void **state)
{
    char ci[1024];
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h = 0;
    long rows = p11_audit_count();
    role_conninfo(r_auditor, ci, sizeof ci);
    p11_write_conf("auditor-role", ci, NULL);
    assert_int_equal(p11_start_user_session(&s), 0);
    assert_rv(CKR_DEVICE_ERROR, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(device_error(s), DDSM_DEVERR_STORE_PRIVILEGE);
    assert_int_equal(p11_end_session(s), 0);
    assert_int_equal(p11_audit_count(), rows);

    /* The message names the role and the first privilege it lacks. */
    ddsm_store *st = NULL;
    ddsm_store_opts o = {.role = DDSM_ROLE_MODULE};
    ddsm_asset a;
    assert_int_equal(ddsm_store_open(ci, &o, &st), DDSM_OK);
    assert_int_equal(ddsm_store_asset_find(st, "vec-a", &a), DDSM_E_PRIVILEGE);
    char want[256];
    snprintf(want, sizeof want, "role \"%s\" lacks INSERT on table custody_audit_log", r_auditor);
    if (strstr(ddsm_store_errmsg(st), want) == NULL)
        fail_msg("message lacks '%s': %s", want, ddsm_store_errmsg(st));
    ddsm_store_close(st);

    /* Without the check at connect, PostgreSQL's refusal is mapped the same way, with the role. */
    ddsm_store_opts any = {.role = DDSM_ROLE_ANY};
    assert_int_equal(ddsm_store_open(ci, &any, &st), DDSM_OK);
    assert_int_equal(ddsm_store_asset_register(st, NULL, "by-the-auditor", NULL, NULL, "t", &a),
                     DDSM_E_PRIVILEGE);
    snprintf(want, sizeof want, "role \"%s\" lacks a privilege: permission denied for table",
             r_auditor);
    if (strstr(ddsm_store_errmsg(st), want) == NULL)
        fail_msg("message lacks '%s': %s", want, ddsm_store_errmsg(st));
    ddsm_store_close(st);
    assert_int_equal(p11_audit_count(), rows);
}

/* A probe, written by the superuser: every audit row records, from inside the session that
 * inserts it, that session's synchronous_commit and application_name. */
static void probe_install(void)
{
    su_script("CREATE TABLE roles_probe (setting text, app text);"
              "CREATE FUNCTION roles_probe_fn() RETURNS trigger LANGUAGE plpgsql"
              " SECURITY DEFINER SET search_path = public AS $$ BEGIN"
              " INSERT INTO roles_probe VALUES (current_setting('synchronous_commit'),"
              " current_setting('application_name')); RETURN NULL; END $$;"
              "CREATE TRIGGER roles_probe AFTER INSERT ON custody_audit_log"
              " FOR EACH ROW EXECUTE FUNCTION roles_probe_fn()");
}

static void probe_remove(void)
{
    su_script("DROP TRIGGER IF EXISTS roles_probe ON custody_audit_log;"
              "DROP FUNCTION IF EXISTS roles_probe_fn(); DROP TABLE IF EXISTS roles_probe");
}

static void
test_db_roles__module_sessions_commit_synchronously_whatever_the_role_default(void **state)
{
    /* The role's default is in force for its sessions... */
    PGconn *c = connect_as(r_lazy);
    char *v = pgs_text(c, "SHOW synchronous_commit", 0, NULL);
    assert_string_equal(v, "off");
    free(v);
    PQfinish(c);

    /* ...but not for the module's. */
    char ci[1024];
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h = 0;
    probe_install();
    role_conninfo(r_lazy, ci, sizeof ci);
    p11_write_conf("lazy-role", ci, NULL);
    assert_int_equal(p11_start_user_session(&s), 0);
    CK_RV rv = p11_derive(s, VEC_B_ID, VEC_B_PATH, NULL, 0, &h);
    assert_int_equal(p11_end_session(s), 0);
    long probes = pgs_int(su, "SELECT count(*) FROM roles_probe", 0, NULL);
    long off = pgs_int(su, "SELECT count(*) FROM roles_probe WHERE setting <> 'on'", 0, NULL);
    char *app = probes > 0 ? pgs_text(su, "SELECT min(app) FROM roles_probe", 0, NULL) : NULL;
    probe_remove();
    assert_rv(CKR_OK, rv);
    assert_int_equal(probes, 1);
    assert_int_equal(off, 0);
    assert_string_equal(app, "ddsm-pkcs11");
    free(app);

    /* A default stronger than "on" is kept (the same session set-up, through ddsm-core). */
    char sql[256];
    snprintf(sql, sizeof sql, "ALTER ROLE \"%s\" SET synchronous_commit = remote_apply", r_lazy);
    su_script(sql);
    probe_install();
    ddsm_store *st = NULL;
    ddsm_store_opts o = {.role = DDSM_ROLE_MODULE, .application_name = "roles-apply"};
    ddsm_derive_req req = {.path = VEC_B_PATH, .requester = "t"};
    assert_int_equal(ddsm_uuid_parse(VEC_B_ID, strlen(VEC_B_ID), &req.asset), DDSM_OK);
    assert_int_equal(ddsm_store_open(ci, &o, &st), DDSM_OK);
    ddsm_err e = ddsm_store_deny(st, &req, "probe");
    ddsm_store_close(st);
    char *setting =
        pgs_text(su, "SELECT string_agg(setting || ' ' || app, ',') FROM roles_probe", 0, NULL);
    probe_remove();
    snprintf(sql, sizeof sql, "ALTER ROLE \"%s\" SET synchronous_commit = off", r_lazy);
    su_script(sql);
    assert_int_equal(e, DDSM_OK);
    assert_string_equal(setting, "remote_apply roles-apply");
    free(setting);
}

static void test_db_roles__pooled_session_with_a_weak_default_releases_no_key(void **state)
{
    /* Behind a transaction pooler the module makes no session setting: the role's default has
     * to be durable, and this one is not. (PgBouncer itself is not needed to show that.) */
    char ci[1024];
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h = 0;
    long rows = p11_audit_count();
    role_conninfo(r_lazy, ci, sizeof ci);
    p11_write_conf("lazy-pooled", ci, "transaction_pooler = true");
    assert_int_equal(p11_start_user_session(&s), 0);
    assert_rv(CKR_DEVICE_ERROR, p11_derive(s, VEC_A_ID, VEC_A_PATH, NULL, 0, &h));
    assert_int_equal(h, 0);
    assert_int_equal(device_error(s), DDSM_DEVERR_STORE_DURABILITY);
    assert_int_equal(p11_end_session(s), 0);
    assert_int_equal(p11_audit_count(), rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_db_roles__module_role_cannot_rewrite_history),
        cmocka_unit_test(test_db_roles__auditor_only_reads),
        cmocka_unit_test(test_db_roles__admin_writes_only_through_the_lifecycle_functions),
        cmocka_unit_test(test_db_roles__public_cannot_connect),
        cmocka_unit_test_teardown(test_db_roles__module_derives_as_a_module_role,
                                  p11_finalize_teardown),
        cmocka_unit_test_teardown(test_db_roles__module_as_the_auditor_is_refused_before_writing,
                                  p11_finalize_teardown),
        cmocka_unit_test_teardown(
            test_db_roles__module_sessions_commit_synchronously_whatever_the_role_default,
            p11_finalize_teardown),
        cmocka_unit_test_teardown(test_db_roles__pooled_session_with_a_weak_default_releases_no_key,
                                  p11_finalize_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
