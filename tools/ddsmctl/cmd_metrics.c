/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl metrics: the database-side view as Prometheus text exposition, for a scrape (e.g. a
 * node_exporter textfile written from cron, or a script exporter). The module's own metrics
 * (latencies, cache, batches) come from each process's [metrics] textfile. */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ddsm/opsview.h"

const ctl_help cmd_metrics_help = {
    "metrics",
    "ddsmctl metrics [--interval DURATION] [--reconcile-since DURATION]",
    "Print the database's view as Prometheus text exposition (HELP and TYPE lines, one sample per\n"
    "line): assets by state, zones, derivations by state and denials by reason in the last\n"
    "DURATION (default 60s), lifecycle events and writers in it, reconcile findings by kind and\n"
    "the drift ratio (assets with a finding over derivable assets; audit rows since the\n"
    "reconcile window, default 1h), audit chains and partitions (rows in the default partition,\n"
    "months present ahead), rotations and migrations. When the store is unreachable it prints\n"
    "ddsm_db_up 0 and exits 3; the other exits are 0, and 2 for a usage error. Needs no PIN.",
    "  --interval DURATION         window of the activity counts (30s, 5m, 2h; default 60s)\n"
    "  --reconcile-since DURATION  audit rows reconcile reads (default 1h)\n",
};

static void family(const char *name, const char *type, const char *help)
{
    printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

struct drift {
    uint64_t by_kind[3];
    ddsm_uuid assets[1024];
    size_t n_assets; /* distinct assets with a finding (counted up to 1024, then all) */
    uint64_t more;
};

static int on_finding(const ddsm_reconcile_finding *f, void *arg)
{
    static const char *const kinds[3] = {"COUNTER_DRIFT", "MISSING_AUDIT_ENTRY",
                                         "ROTATED_COUNTER_DERIVED"};
    struct drift *d = arg;
    for (int i = 0; i < 3; i++)
        if (strcmp(f->kind, kinds[i]) == 0)
            d->by_kind[i]++;
    for (size_t i = 0; i < d->n_assets; i++)
        if (memcmp(d->assets[i].b, f->asset.b, 16) == 0)
            return 0;
    if (d->n_assets < sizeof(d->assets) / sizeof(d->assets[0]))
        d->assets[d->n_assets++] = f->asset;
    else
        d->more++;
    return 0;
}

int cmd_metrics(ctl *c, int argc, char **argv)
{
    const char *interval_text = NULL, *since_text = NULL;
    const ctl_opt opts[] = {{"--interval", &interval_text, NULL, NULL, 0, NULL},
                            {"--reconcile-since", &since_text, NULL, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    int64_t interval_s = 60, since_s = 3600;
    ddsm_store *st = NULL;
    ddsm_overview o;
    ddsm_activity a;
    struct drift *d = NULL;
    uint64_t nfind = 0;

    int rc = ctl_parse(c, &cmd_metrics_help, argc, argv, opts, 2, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    const char *why = NULL;
    if (interval_text != NULL && !ctl_parse_duration(interval_text, &interval_s, &why))
        return ctl_usage_error(&cmd_metrics_help, "--interval '%s': %s", interval_text, why);
    if (since_text != NULL && !ctl_parse_duration(since_text, &since_s, &why))
        return ctl_usage_error(&cmd_metrics_help, "--reconcile-since '%s': %s", since_text, why);
    c->store_role = DDSM_ROLE_AUDITOR; /* read only: ddsm_auditor suffices */
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        return rc;
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        ctl_err("out of memory");
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    ddsm_err e = ddsm_overview_get(st, &o);
    if (e == DDSM_OK)
        e = ddsm_overview_activity(st, (unsigned)interval_s, &a);
    ddsm_reconcile_opts ro = {true, 0};
    if (e == DDSM_OK) {
        ro.since_us = o.now_us - since_s * 1000000;
        e = ddsm_audit_reconcile(st, &ro, on_finding, d, &nfind);
    }
    family("ddsm_db_up", "gauge", "1 when the store answered every query of this scrape.");
    if (e != DDSM_OK) {
        printf("ddsm_db_up 0\n");
        rc = ctl_store_fail(st, e, "metrics");
        goto out;
    }
    printf("ddsm_db_up 1\n");

    family("ddsm_db_migrations_applied", "gauge", "Migrations recorded in the database.");
    printf("ddsm_db_migrations_applied %u\n", o.migrations_applied);
    family("ddsm_db_migrations_pending", "gauge",
           "Migrations this ddsmctl knows that the database lacks.");
    printf("ddsm_db_migrations_pending %u\n", o.migrations_applied < ddsm_migrations_count
                                                  ? ddsm_migrations_count - o.migrations_applied
                                                  : 0);
    family("ddsm_db_assets", "gauge", "Assets in the registry by their effective state.");
    for (int s = 0; s < DDSM_STATE__COUNT; s++)
        printf("ddsm_db_assets{state=\"%s\"} %llu\n", ddsm_state_name((ddsm_state)s),
               (unsigned long long)o.assets[s]);
    family("ddsm_db_zones", "gauge", "Compliance zones by state.");
    printf("ddsm_db_zones{state=\"enabled\"} %llu\n",
           (unsigned long long)(o.zones - o.zones_disabled));
    printf("ddsm_db_zones{state=\"disabled\"} %llu\n", (unsigned long long)o.zones_disabled);
    family("ddsm_db_assets_in_disabled_zones", "gauge",
           "Assets whose zone is disabled: nothing derives them.");
    printf("ddsm_db_assets_in_disabled_zones %llu\n",
           (unsigned long long)o.assets_in_disabled_zones);

    family("ddsm_db_window_seconds", "gauge", "Length of the window the ddsm_db_window_* count.");
    printf("ddsm_db_window_seconds %u\n", a.window_s);
    family("ddsm_db_window_derivations", "gauge",
           "DERIVE audit rows written in the window, by the asset's state.");
    for (int s = 0; s < DDSM_STATE__COUNT; s++)
        printf("ddsm_db_window_derivations{state=\"%s\"} %llu\n", ddsm_state_name((ddsm_state)s),
               (unsigned long long)a.derivations[s]);
    family("ddsm_db_window_denials", "gauge", "DENY audit rows written in the window, by reason.");
    for (unsigned r = 0; r < DDSM_ACTIVITY_REASONS; r++)
        printf("ddsm_db_window_denials{reason=\"%s\"} %llu\n", ddsm_activity_reason_name(r),
               (unsigned long long)a.denials[r]);
    family("ddsm_db_window_lifecycle_events", "gauge",
           "Lifecycle and zone audit rows (REGISTER, ACTIVATE, ROTATE, GRACE_END, RETIRE, ZONE_*) "
           "written in the window.");
    printf("ddsm_db_window_lifecycle_events %llu\n", (unsigned long long)a.lifecycle);
    family("ddsm_db_window_writers", "gauge",
           "Distinct audit chains (module connections, ddsmctl runs) that wrote in the window.");
    printf("ddsm_db_window_writers %llu\n", (unsigned long long)a.writers);

    uint64_t derivable = o.assets[DDSM_STATE_ACTIVE] + o.assets[DDSM_STATE_ROTATING];
    uint64_t drifting = d->n_assets + d->more;
    static const char *const kinds[3] = {"COUNTER_DRIFT", "MISSING_AUDIT_ENTRY",
                                         "ROTATED_COUNTER_DERIVED"};
    family("ddsm_db_reconcile_findings", "gauge",
           "Findings of `ddsmctl reconcile` over the reconcile window, by kind.");
    for (int k = 0; k < 3; k++)
        printf("ddsm_db_reconcile_findings{kind=\"%s\"} %llu\n", kinds[k],
               (unsigned long long)d->by_kind[k]);
    family("ddsm_db_reconcile_drift_ratio", "gauge",
           "Assets with a reconcile finding over ACTIVE and ROTATING assets (0 when there are "
           "none).");
    printf("ddsm_db_reconcile_drift_ratio %.6f\n",
           derivable > 0 ? (double)drifting / (double)derivable : 0.0);

    family("ddsm_db_audit_chains", "gauge", "Audit chain checkpoints (writer instances).");
    printf("ddsm_db_audit_chains %llu\n", (unsigned long long)o.chains);
    family("ddsm_db_audit_chain_newest_age_seconds", "gauge",
           "Seconds since the most recently moved chain checkpoint.");
    printf("ddsm_db_audit_chain_newest_age_seconds %.3f\n",
           o.chains > 0 ? (double)(o.now_us - o.chain_newest_us) / 1e6 : 0.0);
    family("ddsm_db_audit_default_partition_rows", "gauge",
           "Audit rows in the default partition (0 when `ddsmctl db maintain` runs daily).");
    printf("ddsm_db_audit_default_partition_rows %lld\n", (long long)o.default_partition_rows);
    family("ddsm_db_audit_current_partition", "gauge",
           "1 when the current month (UTC) has its audit partition.");
    printf("ddsm_db_audit_current_partition %d\n", o.current_partition ? 1 : 0);
    family("ddsm_db_audit_future_partitions", "gauge",
           "Audit partitions of months after the current one.");
    printf("ddsm_db_audit_future_partitions %u\n", o.future_partitions);
    family("ddsm_db_rotations_total", "counter", "Rotations recorded.");
    printf("ddsm_db_rotations_total %llu\n", (unsigned long long)o.rotations);
    if (o.has_rotation) {
        family("ddsm_db_last_rotation_timestamp_seconds", "gauge",
               "When the newest rotation was recorded (unix time).");
        printf("ddsm_db_last_rotation_timestamp_seconds %.6f\n", (double)o.last_rotation_us / 1e6);
    }
    rc = CTL_EXIT_OK;
out:
    free(d);
    ddsm_store_close(st);
    return rc;
}
