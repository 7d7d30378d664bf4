/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl: the administration tool of ddsm-pkcs11. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ddsm/log.h"
#include "ddsm/ossl.h"
#include "ddsm/version.h"

static const ctl_help top_help = {
    "",
    "ddsmctl [--conf FILE] [--pin-file FILE] <command> <subcommand> [options]",
    "Administer ddsm-pkcs11: the PostgreSQL schema, the root seed in the backend HSM (with its\n"
    "Shamir-shared backup ceremony) and the asset registry with its lifecycle.\n"
    "\n"
    "Commands (each takes --help):\n"
    "  db migrate                          apply pending database migrations\n"
    "  root create|import|recover|info|pin the root seed key in the HSM, and its pin in the store\n"
    "  asset register|activate|rotate|retire|show|list|uri|xpub\n"
    "                                      the asset registry\n"
    "  audit verify|checkpoint             check the audit log's MAC chains, or anchor their heads\n"
    "                                      in a file kept outside the database (needs the PIN)\n"
    "  reconcile                           compare registry counters with the audit log\n"
    "  db maintain                         create the audit log's monthly partitions\n"
    "  zone list|enable|disable|assign|of  compliance zones (disable stops derivation at once)\n"
    "  status                              one screen: store, HSM, assets, chains, findings\n"
    "  metrics                             the database's view as Prometheus text\n"
    "\n"
    "The configuration comes from --conf, else $DDSM_CONF, else " DDSM_CONF_DEFAULT ".\n"
    "Commands that use the HSM need the user PIN: from --pin-file (first line; a warning when\n"
    "group or others may read the file), else $DDSM_PIN, else a prompt with echo off when stdin\n"
    "is a terminal (otherwise exit 2). When [backend] root_token_label is set, root commands use\n"
    "that token with the PIN in root_pin_file instead.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  operation refused: illegal lifecycle transition, duplicate label or id, unknown asset,\n"
    "     root key already present (or absent for `root info`), policy, wrong or locked PIN\n"
    "  2  usage error or bad input: unknown command or option, missing argument, malformed\n"
    "     UUID, path, duration, share or seed file, invalid configuration, no PIN available\n"
    "  3  backend or store unavailable: PostgreSQL unreachable or failing, the HSM module does\n"
    "     not load, the token is not found, the HSM fails an operation",
    "  --version            print the version\n",
};

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* The commands, with the help `ddsmctl help <command>` prints. */
static const struct command {
    const char *name;
    int (*run)(ctl *c, int argc, char **argv);
    const ctl_help *help;
} commands[] = {
    {"db", cmd_db, &cmd_db_help},
    {"root", cmd_root, &cmd_root_help},
    {"asset", cmd_asset, &cmd_asset_help},
    {"audit", cmd_audit, &cmd_audit_help},
    {"reconcile", cmd_reconcile, &cmd_reconcile_help},
    {"zone", cmd_zone, &cmd_zone_help},
    {"status", cmd_status, &cmd_status_help},
    {"metrics", cmd_metrics, &cmd_metrics_help},
};

static const struct command *find_command(const char *name)
{
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(name, commands[k].name) == 0)
            return &commands[k];
    return NULL;
}

int main(int argc, char **argv)
{
    ctl c = {NULL, NULL, NULL, DDSM_ROLE_ANY};
    int i = 1;
    int rc;

    ddsm_log_setup(DDSM_LOG_WARN, 0, "ddsmctl");
    if (!ddsm_ossl_ready()) { /* ddsm/ossl.h: never the default OpenSSL context */
        fprintf(stderr, "ddsmctl: error: OpenSSL: cannot create a private library context\n");
        return CTL_EXIT_REFUSED;
    }
    /* Global options before the command. */
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        const char **dst = NULL;
        size_t nl;
        if (is_help(a)) {
            ctl_help_print(stdout, &top_help);
            return CTL_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("ddsmctl %s\n", DDSM_VERSION);
            return CTL_EXIT_OK;
        }
        if (strncmp(a, "--conf", 6) == 0 && (a[6] == '\0' || a[6] == '=')) {
            dst = &c.conf_path;
            nl = 6;
        } else if (strncmp(a, "--pin-file", 10) == 0 && (a[10] == '\0' || a[10] == '=')) {
            dst = &c.pin_file;
            nl = 10;
        } else {
            return ctl_usage_error(&top_help, "unknown option '%s'", a);
        }
        if (a[nl] == '=') {
            *dst = a + nl + 1;
        } else if (i + 1 < argc) {
            *dst = argv[++i];
        } else {
            return ctl_usage_error(&top_help, "option %s needs a value", a);
        }
        i++;
    }
    if (i == argc)
        return ctl_usage_error(&top_help, "missing command");
    const char *cmd = argv[i];
    if (strcmp(cmd, "help") == 0) {
        /* `ddsmctl help [command]` is `ddsmctl [command] --help`. */
        const ctl_help *h = &top_help;
        if (i + 1 < argc) {
            const struct command *topic = find_command(argv[i + 1]);
            if (topic == NULL)
                return ctl_usage_error(&top_help, "unknown command '%s'", argv[i + 1]);
            h = topic->help;
        }
        ctl_help_print(stdout, h);
        return CTL_EXIT_OK;
    }
    const struct command *command = find_command(cmd);
    if (command != NULL)
        rc = command->run(&c, argc - i, argv + i);
    else
        rc = ctl_usage_error(&top_help, "unknown command '%s'", cmd);
    ddsm_config_free(c.cfg);
    fflush(stdout);
    return rc;
}
