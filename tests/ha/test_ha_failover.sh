#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The database dies under load and nothing acknowledged is lost (docs/deployment.md).
# A pg_auto_failover formation of this test's own (scripts/lib/formation: monitor, node1 primary,
# node2 synchronous standby); three application processes (tests/ha/ha_load.c, 6 + 5 + 5 threads,
# one per simulated host, each with its own audit chains) derive through the module with the
# multi-host conninfo (target_session_attrs=read-write), never restarted:
#   1. kill -9 of the primary's pg_autoctl and postgres: derivations are refused with
#      CKR_DEVICE_ERROR while no node accepts writes, then succeed again by themselves on the
#      promoted node2; the window (first refusal to the first success of a derivation started
#      after it) is measured and printed, never asserted;
#      the old primary rejoins as the standby (DDSM_HA_WINDOW_RUNS=N repeats this N times);
#   2. kill -9 of the standby: writes go on (number_sync_standbys = 0, pg_auto_failover's
#      default with one standby, lets the primary drop synchronous replication);
#   3. it rejoins again.
# Then, on the primary: every derivation the application was told succeeded has exactly one
# DERIVE row (client log against table, row by row); nothing but CKR_DEVICE_ERROR or a policy
# refusal was ever returned; the disabled zone refused its asset in every process before and
# after the failover, never handed it out; the rate limit shared by the three processes still
# refused after the failover, and the DERIVE rows of each asset stay within one budget;
# `ddsmctl audit verify` and `ddsmctl reconcile` pass.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR DDSM_HA_LOAD
F=$DDSM_SOURCE_DIR/scripts/lib/formation
fdir=$DDSM_TEST_DIR/formation
scratch_dir ha
stop=$T/stop
pids=()

cleanup() {
    touch "$stop"
    local p
    for p in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    "$F" stop "$fdir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

RATE=20 # derivations per second per requester and asset, shared by the three processes
LOAD_ASSETS=00000000-0000-4000-8000-0000000000a1,00000000-0000-4000-8000-0000000000a2,00000000-0000-4000-8000-0000000000a3,00000000-0000-4000-8000-0000000000a4
ZONE_ASSET=00000000-0000-4000-8000-0000000000b1
DEVICE_ERROR=0x30 FUNCTION_REJECTED=0x200
DEVERR_RATE=0x44530041 DEVERR_ZONE=0x44530043

echo "== formation: monitor, node1 primary, node2 synchronous standby"
started=$SECONDS
"$F" start "$fdir"
. "$fdir/env.sh"
echo "formation up in $((SECONDS - started)) s"
# The owner (ddsmctl) and the module's role ddsm, through the multi-host conninfo.
conf_variant "$T/admin.conf" "s|^conninfo = .*|conninfo = $FORMATION_CONNINFO user=postgres|"
conf_variant "$T/module.conf" "s|^conninfo = .*|conninfo = $FORMATION_CONNINFO user=ddsm\\nconnect_timeout_s = 2|"
cat >>"$T/module.conf" <<EOT

[policy]
requester = ha-load
rate_per_requester_asset = $RATE/s
EOT
export DDSM_CONF=$T/admin.conf
import_design_root
for a in ${LOAD_ASSETS//,/ }; do asset_active "load-${a: -2}" --id "$a"; done
asset_active zoned --id "$ZONE_ASSET" --zone zoff
ctl zone disable zoff >/dev/null
psql_primary() { "$DDSM_TEST_PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 "$FORMATION_CONNINFO user=postgres" "$@"; }

echo "== three application processes, 16 threads"
n=0
for threads in 6 5 5; do
    n=$((n + 1))
    DDSM_CONF=$T/module.conf "$DDSM_HA_LOAD" "$DDSM_MODULE" "$DDSM_TEST_PIN" "$T/load$n.log" \
        "$stop" "$threads" "$n" "$LOAD_ASSETS" "$ZONE_ASSET" >"$T/load$n.out" 2>"$T/load$n.err" &
    pids+=($!)
    # One at a time through C_Initialize and C_Login: SoftHSM's file token, shared here by the
    # three "hosts", reports CKR_TOKEN_NOT_PRESENT to a process that opens it while another does.
    for _ in $(seq 1 600); do
        grep -q '^ready$' "$T/load$n.out" && break
        kill -0 "${pids[-1]}" 2>/dev/null || fail "load process $n: $(cat "$T/load$n.err")"
        sleep 0.1
    done
    grep -q '^ready$' "$T/load$n.out" || fail "load process $n never got ready"
done
logs() { cat "$T"/load[123].log; }
# until WHAT CMD...: CMD must come true; the bound (180 s) only keeps a broken run from hanging.
until_true() {
    local what=$1 i
    shift
    for i in $(seq 1 360); do
        "$@" && return 0
        for p in "${pids[@]}"; do
            kill -0 "$p" 2>/dev/null || fail "a load process died while waiting for $what: $(cat "$T"/load*.err)"
        done
        sleep 0.5
    done
    fail "$what never happened"
}
# every_process_ok_after MS: each process has a load derivation started at or after MS that succeeded.
every_process_ok_after() {
    local f
    for f in "$T"/load[123].log; do
        awk -v t="$1" '$1 == "OK" && $4 == "L" && $7 >= t { found = 1; exit } END { exit !found }' "$f" ||
            return 1
    done
}
until_true "the load starting" every_process_ok_after 0

first_refusal() { # first_refusal MS: start time of the first CKR_DEVICE_ERROR at or after MS
    logs | awk -v t="$1" -v e="$DEVICE_ERROR" '$2 == e && $7 >= t && (m == "" || $7 < m) { m = $7 }
        END { if (m != "") print m }'
}
has_refusal() { [ -n "$(first_refusal "$1")" ]; }
other() { if [ "$1" = node1 ]; then echo node2; else echo node1; fi; }
windows=()
# crash_primary: kill -9 the primary, wait until every process derives again on the promoted node;
# sets t_resumed, measures the window; then the old primary rejoins as the standby.
crash_primary() {
    local old new t_kill t_refused t_promoted t_last
    old=$("$F" primary "$fdir")
    new=$(other "$old")
    [ -n "$old" ] || fail "no primary before the crash"
    t_kill=$(date +%s%3N)
    "$F" kill "$fdir" "$old"
    until_true "a refusal after the kill" has_refusal "$t_kill"
    t_refused=$(first_refusal "$t_kill")
    # Backends of the killed postmaster may still commit (replicated) for a moment after the first
    # refusal: the outage ends only with the promotion, so wait for the monitor to report it.
    is_primary() { [ "$("$F" primary "$fdir")" = "$1" ]; }
    until_true "the promotion of $new" is_primary "$new"
    t_promoted=$(date +%s%3N)
    until_true "the load resuming on the promoted node" every_process_ok_after "$t_promoted"
    # The window: first refusal to the first success of a derivation started after the last
    # refusal before the promotion was seen.
    t_last=$(logs | awk -v a="$t_kill" -v b="$t_promoted" -v e="$DEVICE_ERROR" \
        '$2 == e && $7 >= a && $7 <= b && $7 > m { m = $7 } END { print m }')
    t_resumed=$(logs | awk -v t="$t_last" '$1 == "OK" && $4 == "L" && $7 > t && (m == "" || $8 < m) { m = $8 }
        END { print m }')
    windows+=($((t_resumed - t_refused)))
    echo "failover window (first refusal to first success): $((t_resumed - t_refused)) ms"
    echo "== the old primary ($old) rejoins as the standby"
    "$F" run "$fdir" "$old"
    "$F" wait "$fdir" "$old:secondary $new:primary"
}

echo "== 1. kill -9 the primary (its pg_autoctl and postgres)"
same "$("$F" primary "$fdir")" node1 "primary before the crash"
crash_primary
t_failover=$t_resumed
# DDSM_HA_WINDOW_RUNS=N (by hand, docs/benchmark.md): N crashes in all, for the window's spread.
for _ in $(seq 2 "${DDSM_HA_WINDOW_RUNS:-1}"); do crash_primary; done
if [ ${#windows[@]} -gt 1 ]; then
    printf '%s\n' "${windows[@]}" | sort -n | awk '{ w[NR] = $1 }
        END { printf "failover windows over %d crashes: p50 %d ms, max %d ms\n", NR, w[int((NR + 1) / 2)], w[NR] }'
fi

standby=$(other "$("$F" primary "$fdir")")
echo "== 2. kill -9 the standby ($standby): writes go on"
t_kill2=$(date +%s%3N)
"$F" kill "$fdir" "$standby"
# Successes of derivations started after the standby died, in every process.
until_true "the load going on without the standby" every_process_ok_after "$((t_kill2 + 1))"
# What the commits waited for meanwhile (the primary stops waiting for the standby once the
# monitor has seen it die): measured, not asserted.
logs | awk -v t="$t_kill2" '$7 >= t && $7 < t + 30000 { d = $8 - $7; if (d > m) m = d }
    END { printf "longest derivation in the 30 s after the standby died: %d ms\n", m }'

echo "== 3. the standby rejoins"
"$F" run "$fdir" "$standby"
"$F" wait "$fdir" "$standby:secondary $(other "$standby"):primary"
t_end=$(date +%s%3N)
until_true "the load going on after the rejoin" every_process_ok_after "$t_end"

touch "$stop"
for i in 0 1 2; do
    wait "${pids[$i]}" || fail "load process $((i + 1)) exited $?: $(cat "$T/load$((i + 1)).err")"
done
pids=()
echo "derivations acknowledged: $(logs | grep -c '^OK ')," \
    "refused with CKR_DEVICE_ERROR: $(logs | awk -v e="$DEVICE_ERROR" '$2 == e' | wc -l)," \
    "refused by the rate limit: $(logs | awk -v d="$DEVERR_RATE" '$3 == d' | wc -l)"

echo "== nothing but CKR_DEVICE_ERROR or a policy refusal was returned"
bad=$(logs | awk -v e="$DEVICE_ERROR" -v r="$FUNCTION_REJECTED" -v dr="$DEVERR_RATE" -v dz="$DEVERR_ZONE" '
    $1 == "OK" && $4 == "Z" { print; next }             # a key of a disabled zone handed out
    $1 == "OK" { next }
    $2 == e { next }
    $2 == r && $4 == "L" && $3 == dr { next }
    $2 == r && $4 == "Z" && ($3 == dz || $3 == dr) { next }
    { if (++n <= 5) print }')
[ -z "$bad" ] || fail "unexpected outcomes: $bad"

echo "== every acknowledged derivation has its one DERIVE row on the primary, row by row"
logs | awk '$1 == "OK" { print $5 "\t" $6 }' >"$T/acked.tsv"
psql_primary >"$T/compare" <<EOT
CREATE TEMP TABLE acked (asset uuid, path text);
\\copy acked FROM '$T/acked.tsv'
SELECT 'missing', count(*) FROM acked a WHERE NOT EXISTS (
    SELECT 1 FROM custody_audit_log l
    WHERE l.event = 'DERIVE' AND l.asset_id = a.asset AND l.derivation_path = a.path);
SELECT 'duplicated', count(*) FROM (
    SELECT asset_id, derivation_path FROM custody_audit_log WHERE event = 'DERIVE'
    GROUP BY 1, 2 HAVING count(*) > 1) d;
SELECT 'acked', count(*) FROM acked;
EOT
grep -q '^acked|[1-9]' "$T/compare" || fail "no acknowledged derivation to compare: $(cat "$T/compare")"
grep -q '^missing|0$' "$T/compare" ||
    fail "acknowledged derivations without an audit row on the promoted node: $(cat "$T/compare")"
grep -q '^duplicated|0$' "$T/compare" || fail "derivations with two DERIVE rows: $(cat "$T/compare")"
cat "$T/compare"

echo "== zones and rate limits held through the failover, in every process"
for f in "$T"/load[123].log; do
    awk -v t="$t_failover" -v r="$FUNCTION_REJECTED" -v d="$DEVERR_ZONE" \
        '$4 == "Z" && $2 == r && $3 == d && $7 >= t { found = 1 } END { exit !found }' "$f" ||
        fail "${f##*/}: no zone refusal after the failover"
    awk -v t="$t_failover" -v r="$FUNCTION_REJECTED" -v d="$DEVERR_RATE" \
        '$4 == "L" && $2 == r && $3 == d && $7 >= t { found = 1 } END { exit !found }' "$f" ||
        fail "${f##*/}: no rate-limit refusal after the failover"
done
# One budget of RATE per second window for the three processes together (one each would allow
# three times as many): each asset's DERIVE rows stay within RATE per second of the time they
# span, plus one window.
over=$(psql_primary -c "
    SELECT asset_id || ': ' || count(*) || ' rows in '
           || ceil(extract(epoch FROM max(ts) - min(ts))) || ' s'
    FROM custody_audit_log WHERE event = 'DERIVE' AND asset_id IS NOT NULL
    GROUP BY asset_id
    HAVING count(*) > $RATE * (ceil(extract(epoch FROM max(ts) - min(ts))) + 1)")
[ -z "$over" ] || fail "the shared rate limit was exceeded: $over"

echo "== each process kept its own audit chains through the failover"
# Instance ids are "<host>/<pid>/<random>/c<n>" (a chain per audit connection, "#<n>" after a
# write of unknown outcome): three processes, three pids, each writing after the failover.
procs=$(psql_primary -c "
    SELECT count(DISTINCT split_part(instance_id, '/', 2)) FROM custody_audit_log
    WHERE event = 'DERIVE' AND ts >= to_timestamp($t_failover / 1000.0)")
same "$procs" 3 "processes with DERIVE rows after the failover"
expect 0 ctl --conf "$T/admin.conf" audit verify
expect 0 ctl --conf "$T/admin.conf" reconcile
echo "PASS"
