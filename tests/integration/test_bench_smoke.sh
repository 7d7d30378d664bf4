#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ddsm-bench keeps working (scripts/lib/run-integration): on a fresh database and token with a
# known root, every scenario runs for one second at 1 and 2 threads and the JSON is well formed:
# each scenario present with ops > 0, numeric ordered percentiles, the ratios and the machine
# facts; the module wrote exactly one DERIVE audit row per derivation the bench counted; the
# seed-design baseline left nothing behind; the table form prints; bad input is refused.
# Never asserts a speed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_BENCH DDSM_CTL
scratch_dir bench
unset DDSM_PIN

echo "== set-up with ddsmctl: migrate, the docs/design.md root, two of the bench's assets"
import_design_root
# bench-0 exists, ACTIVE, counter 1: reused as it is. bench-1 is INITIALIZED: the bench activates
# it. bench-2 does not exist: the bench registers it.
asset_active bench-0
ctl asset rotate bench-0 >/dev/null
ctl asset register --label bench-1 >/dev/null

echo "== usage errors: exit 2, nothing run"
for args in "--threads 0" "--threads 1,,2" "--threads 2,2" "--seconds 0" "--seconds x" \
    "--assets 0" "--scenario nope" "--bogus" "extra" "--hsm-latency-us x" \
    "--hsm-latency-us 1000001" "--hsm-concurrency 2" "--hsm-latency-us 5 --hsm-concurrency 0"; do
    # shellcheck disable=SC2086
    run "$DDSM_BENCH" $args
    [ "$RC" = 2 ] || fail "ddsm-bench $args exited $RC, expected 2: $ERR"
    grep -q "ddsm-bench: " "$T/err" || fail "ddsm-bench $args: no message: $ERR"
    [ ! -s "$T/out" ] || fail "ddsm-bench $args wrote to stdout"
done
run "$DDSM_BENCH" --seconds 1 --scenario derive
[ "$RC" = 2 ] || fail "no PIN: exit $RC, expected 2"
grep -q "no HSM PIN" "$T/err" || fail "no PIN: $ERR"
"$DDSM_BENCH" --help >"$T/help" || fail "--help exited $?"
for sc in openssl hsm-direct seed-design store-only derive sign find-sign rotate-storm ec-sign soak \
    --hsm-latency-us --hsm-concurrency "Exit status"; do
    grep -q -- "$sc" "$T/help" || fail "--help lacks $sc"
done

echo "== every scenario, 1 second, threads 1 and 2, JSON"
# Rows written from here on are the bench's and the module's: every one must carry a MAC.
pre_max=$(sql "SELECT coalesce(max(id), 0) FROM custody_audit_log")
DDSM_PIN=$DDSM_TEST_PIN "$DDSM_BENCH" --seconds 1 --threads 1,2 --assets 3 --json \
    </dev/null >"$T/bench.json" 2>"$T/bench.err" || {
    cat "$T/bench.err" >&2
    fail "ddsm-bench exited $?"
}
# Progress is for terminals only: stderr is not one here.
if grep -q $'\033' "$T/bench.err" || grep -q " ops$" "$T/bench.err"; then
    fail "progress written to a non-terminal: $(cat -v "$T/bench.err")"
fi

derive_rows=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'")
seed_table=$(sql "SELECT coalesce(to_regclass('custody_audit_log_seed')::text, 'none')")
[ "$seed_table" = none ] || fail "custody_audit_log_seed was left behind"

unauth_after=$(sql "SELECT count(*) FROM custody_audit_log WHERE mac IS NULL AND id > $pre_max")
[ "$unauth_after" = 0 ] || fail "$unauth_after audit rows written by the bench or module lack a MAC"

python3 - "$T/bench.json" "$derive_rows" <<'EOF'
import json, math, sys

doc = json.load(open(sys.argv[1]))
derive_rows = int(sys.argv[2])
errors = []

def check(cond, msg):
    if not cond:
        errors.append(msg)

def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

scenarios = ["openssl", "hsm-direct", "seed-design", "store-only", "derive", "sign",
             "find-sign", "rotate-storm", "ec-sign"]
m = doc["machine"]
check(isinstance(m["cores"], int) and m["cores"] > 0, "machine.cores")
for k in ("cpu", "kernel", "date", "load_before", "load_after"):
    check(isinstance(m[k], str) and m[k], "machine." + k)
check(num(m["memory_bytes"]) and m["memory_bytes"] > 0, "machine.memory_bytes")
pg = m["postgresql"]
check(pg["version"].startswith("PostgreSQL"), "postgresql.version")
check(pg["fsync"] in ("on", "off"), "postgresql.fsync")
check(pg["synchronous_commit"] in ("on", "off", "local", "remote_write", "remote_apply"),
      "postgresql.synchronous_commit")
for k in ("wal_sync_method", "shared_buffers"):
    check(pg[k], "postgresql." + k)
check(m["backend"]["path"].endswith("libsofthsm2.so"), "backend.path")
check("SoftHSM" in m["backend"]["info"], "backend.info: " + m["backend"]["info"])
check(m["module"]["path"].endswith("libddsm-pkcs11.so"), "module.path")
check(doc["config"]["threads"] == [1, 2], "config.threads")
check(doc["config"]["assets"] == 3, "config.assets")

results = {(r["scenario"], r["threads"]): r for r in doc["results"]}
check(len(doc["results"]) == len(scenarios) * 2, "%d results" % len(doc["results"]))
derivations = 0
for sc in scenarios:
    for th in (1, 2):
        r = results.get((sc, th))
        if r is None:
            errors.append("%s/%d missing" % (sc, th))
            continue
        name = "%s/%d" % (sc, th)
        check(r["error"] is None, name + " error: %s" % r["error"])
        check(isinstance(r["ops"], int) and r["ops"] > 0, name + " ops")
        check(num(r["ops_per_s"]) and r["ops_per_s"] > 0, name + " ops_per_s")
        check(num(r["seconds"]) and r["seconds"] > 0, name + " seconds")
        lat = r["latency_us"]
        for k in ("p50", "p99", "p99_9", "min", "max", "mean"):
            check(num(lat[k]) and lat[k] > 0, name + " latency " + k)
        check(lat["min"] <= lat["p50"] <= lat["p99"] <= lat["p99_9"] <= lat["max"],
              name + " percentiles out of order: %s" % lat)
        check(num(r["scale"]), name + " scale")
        for k in ("serialization_retries", "key_handle_invalid", "rotations"):
            check(isinstance(r[k], int) and r[k] >= 0, name + " " + k)
        if sc in ("derive", "rotate-storm"):
            derivations += r["ops"] + r["key_handle_invalid"]
        if sc == "store-only":
            derivations += r["ops"]  # the batcher's rows alone, requester ddsm-bench:store-only
        if sc in ("sign", "find-sign"):
            derivations += th  # one key per thread, derived before the clock starts
        if sc == "ec-sign":
            derivations += 2 * th  # a secp256k1 and an Ed25519 key per thread, likewise
        if sc == "rotate-storm":
            check(r["rotations"] > 0, name + " rotations")
        else:
            check(r["rotations"] == 0 and r["key_handle_invalid"] == 0, name + " storm counters")
        want = {"derive": ["seed-design", "hsm-direct", "store-only", "roofline"],
                "sign": ["openssl"],
                "find-sign": ["sign"], "rotate-storm": ["derive"]}.get(sc, [])
        check(sorted(r["ratios"]) == sorted(want), name + " ratios %s" % r["ratios"])
        for k, v in r["ratios"].items():
            check(num(v) and v > 0, name + " ratio " + k)
check(derivations == derive_rows,
      "the module wrote %d DERIVE rows, the bench counted %d derivations"
      % (derive_rows, derivations))

# ddsmctl, the module and the bench all chain their rows: the whole log verifies and reconciles.
av = doc["audit_verify"]
check(av["status"] == "passed", "audit verify: %s" % av)
check(doc["reconcile"]["status"] == "passed", "reconcile: %s" % doc["reconcile"])
t = doc["targets"]
check(t["threads"] == 2 and len(t["items"]) == 7, "targets")
for it in t["items"]:
    check(num(it["value"]) and isinstance(it["met"], bool), "target %s" % it)

if errors:
    print("\n".join("FAIL: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print("json ok: %d results, %d derivations audited, audit verify %s"
      % (len(doc["results"]), derivations, av["status"]))
EOF

echo "== the assets were reused, activated and registered as needed"
states=$(sql "SELECT string_agg(label || ':' || state, ',' ORDER BY label) FROM custody_keys")
want="bench-0:ACTIVE,bench-1:ACTIVE,bench-2:ACTIVE,bench-ec-ed25519:ACTIVE,bench-ec-secp256k1:ACTIVE"
[ "$states" = "$want" ] || fail "assets: $states"

echo "== the table form"
DDSM_PIN=$DDSM_TEST_PIN "$DDSM_BENCH" --seconds 0.3 --threads 1 --scenario openssl,derive \
    --scenario seed-design,hsm-direct </dev/null >"$T/table.txt" 2>"$T/table.err" || {
    cat "$T/table.err" >&2
    fail "table run failed"
}
for want in "synchronous_commit=" "fsync=" "openssl" "hsm-direct" "seed-design" \
    "x seed-design" "x hsm-direct" "targets at 1 threads" "derive p99"; do
    grep -q -- "$want" "$T/table.txt" || fail "table lacks \"$want\": $(cat "$T/table.txt")"
done
if grep -Eq '^ +1  (sign|find-sign|rotate-storm|ec-sign) ' "$T/table.txt"; then
    fail "a scenario that was not selected ran: $(cat "$T/table.txt")"
fi
echo "== soak: ten times a 32-slot handle table, in one process, no failure"
cp "$DDSM_CONF" "$T/soak.conf"
printf '\n[cache]\nhandles = 32\n' >>"$T/soak.conf"
DDSM_PIN=$DDSM_TEST_PIN "$DDSM_BENCH" --conf "$T/soak.conf" --threads 2 --scenario soak --json \
    </dev/null >"$T/soak.json" 2>"$T/soak.err" || {
    cat "$T/soak.err" >&2
    fail "soak run failed"
}
python3 - "$T/soak.json" <<'EOF' || fail "soak: $(cat "$T/soak.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
rs = doc["results"]
assert [r["scenario"] for r in rs] == ["soak"], rs
r = rs[0]
assert r["error"] is None, r
assert r["ops"] == 320, r
assert r["soak"]["failures"] == 0, r
assert r["soak"]["rss_after_warmup_kb"] > 0 and r["soak"]["rss_end_kb"] > 0, r
names = [t["name"] for t in doc["targets"]["items"]]
assert "soak failures" in names, names
EOF

echo "== a networked HSM: every backend call waits in the fault wrapper"
DDSM_PIN=$DDSM_TEST_PIN "$DDSM_BENCH" --threads 2 --seconds 0.5 --scenario hsm-direct,derive \
    --hsm-latency-us 300 --hsm-concurrency 2 --json </dev/null >"$T/net.json" 2>"$T/net.err" || {
    cat "$T/net.err" >&2
    fail "--hsm-latency-us run failed"
}
python3 - "$T/net.json" <<'EOF' || fail "networked HSM: $(cat "$T/net.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["config"]["hsm_model"] == {"latency_us": 300, "concurrency": 2}, doc["config"]
rs = {r["scenario"]: r for r in doc["results"]}
for sc in ("hsm-direct", "derive"):
    assert rs[sc]["error"] is None and rs[sc]["ops"] > 0, rs[sc]
# A floor that the wrapper's sleep guarantees whatever the load: C_SignInit and C_Sign each wait
# at least 300 us before the backend answers them.
assert rs["hsm-direct"]["latency_us"]["min"] >= 600, rs["hsm-direct"]
EOF
echo "PASS"
