/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl db ...: the PostgreSQL schema. */
#include <string.h>

#include "ctl.h"

const ctl_help cmd_db_help = {
    "db",
    "ddsmctl db <subcommand> [options]",
    "Database administration. Subcommands:\n"
    "  migrate    apply the SQL migrations built into ddsmctl that the database lacks\n"
    "  maintain   create the audit log's monthly partitions ahead (safe from cron)",
    NULL,
};

static const ctl_help migrate_help = {
    "db migrate",
    "ddsmctl db migrate",
    "Apply, in order and each in its own transaction, the schema migrations built into this\n"
    "ddsmctl that the database named by [store] conninfo has not recorded yet, and print their\n"
    "names, then every privilege the roles ddsm_module, ddsm_admin and ddsm_auditor hold in\n"
    "this database (\"granted ROLE PRIVILEGE on KIND OBJECT\"). Run it as the role that owns\n"
    "the schema. Running it again applies nothing and says so. Exit status 3 when PostgreSQL is\n"
    "unreachable or a migration fails.",
    NULL,
};

static int print_grant(const char *role, const char *privilege, const char *kind,
                       const char *object, void *arg)
{
    (void)arg;
    printf("granted %s %s on %s %s\n", role, privilege, kind, object);
    return 0;
}

static int db_migrate(ctl *c, int argc, char **argv)
{
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    unsigned applied = 0;
    int rc = ctl_parse(c, &migrate_help, argc, argv, NULL, 0, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    ddsm_err e = ddsm_store_migrate(st, &applied);
    if (e != DDSM_OK) {
        ctl_err("migration failed: %s: %s", ddsm_err_str(e), ddsm_store_errmsg(st));
        /* A bad migration is a store failure, not bad input from the caller. */
        rc = e == DDSM_E_STORE_DOWN ? CTL_EXIT_UNAVAILABLE : ctl_exit_for(e);
        if (rc == CTL_EXIT_USAGE)
            rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    if (applied > ddsm_migrations_count) {
        ctl_err("the store reports %u migrations applied, but only %u exist", applied,
                ddsm_migrations_count);
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    if (applied == 0) {
        printf("database is up to date (%u migrations)\n", ddsm_migrations_count);
    } else {
        /* Migrations apply in order, so the ones just applied are the last `applied`. */
        for (unsigned i = ddsm_migrations_count - applied; i < ddsm_migrations_count; i++)
            printf("applied %s\n", ddsm_migrations[i].name);
        printf("applied %u migration%s; database is up to date (%u migrations)\n", applied,
               applied == 1 ? "" : "s", ddsm_migrations_count);
        /* What the roles may now do, from the catalog (docs/audit.md "Database roles"). */
        e = ddsm_store_role_grants(st, print_grant, NULL);
        if (e != DDSM_OK) {
            ctl_err("migrated, but cannot list the grants: %s", ddsm_store_errmsg(st));
            rc = CTL_EXIT_UNAVAILABLE;
            goto out;
        }
    }
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}

int cmd_db(ctl *c, int argc, char **argv)
{
    static const ctl_sub subs[] = {{"migrate", db_migrate}, {"maintain", cmd_db_maintain}};
    return ctl_run_sub(c, &cmd_db_help, subs, sizeof(subs) / sizeof(subs[0]), argc, argv);
}
