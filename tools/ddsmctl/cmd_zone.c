/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl zone ...: compliance zones (docs/policy.md "Zones"). */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ddsm/policy.h"
#include "ddsm/uuid.h"
#include "tool.h"

const ctl_help cmd_zone_help = {
    "zone",
    "ddsmctl zone <subcommand> [options]",
    "Compliance zones. Every asset belongs to one zone (\"default\" unless registered with\n"
    "`asset register --zone`). While a zone is disabled, no module instance derives a key of its\n"
    "assets, nor signs, verifies, encrypts or decrypts with keys it derived before: each process\n"
    "hears of the change at once (the same LISTEN channel as rotations) and the derivation\n"
    "statement checks the zone itself. Every change is an audit row (needs the PIN).\n"
    "Subcommands:\n"
    "  list       every zone: enabled or not, its assets\n"
    "  enable     enable a zone (creating it when it does not exist)\n"
    "  disable    disable a zone\n"
    "  assign     move an asset to a zone (creating the zone when it does not exist)\n"
    "  of         the zone of an asset",
    NULL,
};

static const ctl_help list_help = {
    "zone list",
    "ddsmctl zone list [--json]",
    "Every zone ordered by name: enabled or disabled, its assets (of them ACTIVE or ROTATING),\n"
    "when and by whom it last changed.",
    "  --json               a JSON array instead of a table\n",
};

static const ctl_help enable_help = {
    "zone enable",
    "ddsmctl zone enable ZONE",
    "Enable ZONE, creating it when it does not exist. Its assets derive again at once in every\n"
    "module instance. A zone name is 1..63 characters of A-Z a-z 0-9 . _ -, starting with a\n"
    "letter or digit.",
    NULL,
};

static const ctl_help disable_help = {
    "zone disable",
    "ddsmctl zone disable ZONE",
    "Disable ZONE: from the moment this command returns no derivation of its assets is\n"
    "committed anywhere, and every module instance that is listening stops using keys of them\n"
    "(CKR_FUNCTION_REJECTED, audited as DENY rows). Instances whose LISTEN link is down stop\n"
    "within [cache] staleness_ms. Exit 1 when there is no such zone.",
    NULL,
};

static const ctl_help assign_help = {
    "zone assign",
    "ddsmctl zone assign ID|LABEL ZONE",
    "Move an asset to ZONE (created, enabled, when it does not exist), with a ZONE_ASSIGN audit\n"
    "row naming both zones. Exit 1 when there is no such asset.",
    NULL,
};

static const ctl_help of_help = {
    "zone of",
    "ddsmctl zone of ID|LABEL",
    "Print the zone of an asset and whether it is enabled. Exit 1 when there is no such asset.",
    NULL,
};

static int check_zone(const ctl_help *h, const char *zone)
{
    if (!ddsm_zone_name_valid(zone))
        return ctl_usage_error(h,
                               "zone name '%s' is malformed: 1..%d characters of A-Z a-z 0-9 . "
                               "_ -, starting with a letter or digit",
                               zone, DDSM_ZONE_NAME_MAX);
    return CTL_EXIT_OK;
}

static int collect_zone(const ddsm_zone_info *z, void *vec)
{
    return ctl_vec_push(vec, z) ? 0 : 1;
}

static int zone_list(ctl *c, int argc, char **argv)
{
    bool json = false;
    ddsm_store *st = NULL;
    ctl_vec vec = {sizeof(ddsm_zone_info), NULL, 0, 0, false};

    int rc = ctl_list_open(c, &list_help, argc, argv, &json, &st);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    ddsm_err e = ddsm_zone_list(st, collect_zone, &vec);
    const ddsm_zone_info *zones = vec.items;
    if (e == DDSM_OK && vec.oom)
        e = DDSM_E_NOMEM;
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, "cannot list zones");
        goto out;
    }
    if (json) {
        printf("[");
        for (size_t i = 0; i < vec.n; i++) {
            const ddsm_zone_info *z = &zones[i];
            char t[40];
            ctl_format_time(z->updated_us, t);
            printf("%s\n  {\"zone\": ", i == 0 ? "" : ",");
            tool_json_str(stdout, z->zone);
            printf(", \"enabled\": %s, \"assets\": %llu, \"derivable\": %llu, \"updated\": \"%s\", "
                   "\"updated_by\": ",
                   z->enabled ? "true" : "false", (unsigned long long)z->assets,
                   (unsigned long long)z->derivable, t);
            if (z->updated_by[0] != '\0')
                tool_json_str(stdout, z->updated_by);
            else
                printf("null");
            printf("}");
        }
        printf(vec.n == 0 ? "]\n" : "\n]\n");
    } else {
        size_t w = strlen("ZONE");
        for (size_t i = 0; i < vec.n; i++)
            w = strlen(zones[i].zone) > w ? strlen(zones[i].zone) : w;
        printf("%-*s  %-8s  %7s  %9s  %-27s  %s\n", (int)w, "ZONE", "STATE", "ASSETS", "DERIVABLE",
               "UPDATED", "BY");
        for (size_t i = 0; i < vec.n; i++) {
            const ddsm_zone_info *z = &zones[i];
            char t[40];
            ctl_format_time(z->updated_us, t);
            printf("%-*s  %-8s  %7llu  %9llu  %-27s  %s\n", (int)w, z->zone,
                   z->enabled ? "enabled" : "disabled", (unsigned long long)z->assets,
                   (unsigned long long)z->derivable, t,
                   z->updated_by[0] != '\0' ? z->updated_by : "-");
        }
    }
    rc = CTL_EXIT_OK;
out:
    free(vec.items);
    ddsm_store_close(st);
    return rc;
}

static int zone_set(ctl *c, int argc, char **argv, const ctl_help *h, bool enabled)
{
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    char requester[300];
    uint64_t n = 0;

    int rc = ctl_parse(c, h, argc, argv, NULL, 0, pos, 1, 1, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if ((rc = check_zone(h, pos[0])) != CTL_EXIT_OK)
        return rc;
    rc = ctl_store_open(c, true, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    ctl_requester(requester, sizeof(requester));
    ddsm_err e = ddsm_zone_set_enabled(st, pos[0], enabled, requester, &n);
    if (e == DDSM_E_NOT_FOUND) {
        ctl_err("no zone \"%s\"", pos[0]);
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, enabled ? "cannot enable the zone" : "cannot disable the zone");
        goto out;
    }
    printf("zone %s %s (%llu asset%s): %s\n", pos[0], enabled ? "enabled" : "disabled",
           (unsigned long long)n, n == 1 ? "" : "s",
           enabled ? "its keys are derived and used again"
                   : "its keys are neither derived nor used, in every module instance");
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}

static int zone_enable(ctl *c, int argc, char **argv)
{
    return zone_set(c, argc, argv, &enable_help, true);
}

static int zone_disable(ctl *c, int argc, char **argv)
{
    return zone_set(c, argc, argv, &disable_help, false);
}

static int zone_assign(ctl *c, int argc, char **argv)
{
    const char *pos[2];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_asset a;
    char requester[300];
    char old[DDSM_ZONE_NAME_MAX + 1];
    char id[DDSM_UUID_TEXT_LEN + 1];

    int rc = ctl_parse(c, &assign_help, argc, argv, NULL, 0, pos, 2, 2, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (pos[0][0] == '\0')
        return ctl_usage_error(&assign_help, "empty asset id or label");
    if ((rc = check_zone(&assign_help, pos[1])) != CTL_EXIT_OK)
        return rc;
    rc = ctl_store_open(c, true, &st);
    if (rc == CTL_EXIT_OK)
        rc = ctl_asset_find(st, pos[0], &a);
    if (rc != CTL_EXIT_OK)
        goto out;
    ctl_requester(requester, sizeof(requester));
    ddsm_uuid_format(&a.id, id);
    ddsm_err e = ddsm_zone_assign(st, &a.id, pos[1], requester, old);
    if (e == DDSM_E_NOT_FOUND) {
        ctl_err("asset %s (%s) disappeared", a.label, id);
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, "cannot move the asset");
        goto out;
    }
    printf("asset %s (%s): zone %s -> %s\n", a.label, id, old, pos[1]);
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}

static int zone_of(ctl *c, int argc, char **argv)
{
    const char *pos[1];
    size_t npos = 0;
    ddsm_store *st = NULL;
    ddsm_asset a;
    char zone[DDSM_ZONE_NAME_MAX + 1];
    bool enabled = false;

    int rc = ctl_parse(c, &of_help, argc, argv, NULL, 0, pos, 1, 1, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    rc = ctl_store_open(c, false, &st);
    if (rc == CTL_EXIT_OK)
        rc = ctl_asset_find(st, pos[0], &a);
    if (rc != CTL_EXIT_OK)
        goto out;
    ddsm_err e = ddsm_zone_of_asset(st, &a.id, zone, &enabled);
    if (e != DDSM_OK) {
        rc = e == DDSM_E_NOT_FOUND ? CTL_EXIT_REFUSED : ctl_store_fail(st, e, "cannot read");
        goto out;
    }
    printf("%s %s\n", zone, enabled ? "enabled" : "disabled");
    rc = CTL_EXIT_OK;
out:
    ddsm_store_close(st);
    return rc;
}

int cmd_zone(ctl *c, int argc, char **argv)
{
    static const ctl_sub subs[] = {{"list", zone_list},
                                   {"enable", zone_enable},
                                   {"disable", zone_disable},
                                   {"assign", zone_assign},
                                   {"of", zone_of}};
    return ctl_run_sub(c, &cmd_zone_help, subs, sizeof(subs) / sizeof(subs[0]), argc, argv);
}
