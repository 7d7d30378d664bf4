#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The module's [metrics] textfile (docs/policy.md "Metrics"): a live process (PyKCS11) derives,
# signs from the cache, is refused by policy and by an asset's state; its file, replaced every
# interval_ms, is valid Prometheus text exposition (a strict parser here, and promtool when
# Debian's prometheus package is installed) with HELP/TYPE for every family, counters named
# _total, histograms with cumulative le buckets ending in +Inf whose count is that bucket, and
# the numbers of what happened; "%p" names the file after the process; the file goes at
# C_Finalize and no temporary file is left. `ddsmctl metrics` passes the same checks.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL
PY=${DDSM_PYTHON:-/usr/bin/python3}
scratch_dir metrics
mkdir "$T/prom"

VEC_A=6f9619ff-8b86-d011-b42d-00c04fc964ff
GONE=22222222-3333-4444-8555-666666666666
import_design_root
asset_active vec-a --id $VEC_A --default-path "m/44'/0'/0'/0/0"
asset_active gone --id $GONE --default-path m/4
ctl asset retire gone >/dev/null

conf=$T/ddsm.conf
cat "$DDSM_CONF" >"$conf"
cat >>"$conf" <<EOF

[policy]
mechanism = CKM_SHA256_HMAC

[metrics]
textfile = $T/prom/ddsm-%p.prom
interval_ms = 150
EOF
chmod 600 "$conf"
export DDSM_CONF=$conf

# A strict reader of the text exposition format (version 0.0.4), for this file and for
# `ddsmctl metrics`: prints "name{labels} value" lines sorted, exits 1 with a reason otherwise.
cat >"$T/promcheck.py" <<'EOF'
import math, re, sys
NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*$')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*$')
def die(n, msg):
    sys.exit(f"line {n}: {msg}")
def value(n, text):
    if text in ('+Inf', '-Inf', 'NaN'):
        return float(text.replace('Inf', 'inf').replace('NaN', 'nan'))
    if not re.fullmatch(r'-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?', text):
        die(n, f"bad value {text!r}")
    return float(text)
def labels(n, text):
    out, i = {}, 0
    while i < len(text):
        m = re.match(r'([a-zA-Z_][a-zA-Z0-9_]*)="', text[i:])
        if not m:
            die(n, f"bad label at {text[i:]!r}")
        key, i, v = m.group(1), i + m.end(), ''
        while True:
            if i >= len(text):
                die(n, "unterminated label value")
            c = text[i]
            if c == '\\':
                if i + 1 >= len(text) or text[i + 1] not in '\\"n':
                    die(n, "bad escape in a label value")
                v += {'\\': '\\', '"': '"', 'n': '\n'}[text[i + 1]]
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                die(n, "newline in a label value")
            else:
                v += c
                i += 1
        if key in out:
            die(n, f"label {key} twice")
        out[key] = v
        if i < len(text):
            if text[i] != ',':
                die(n, "labels must be separated by ','")
            i += 1
    return out
text = open(sys.argv[1]).read()
if not text.endswith('\n'):
    sys.exit("the exposition does not end with a newline")
types, helps, samples, seen, order = {}, {}, [], set(), []
for n, line in enumerate(text.split('\n')[:-1], 1):
    if line == '':
        die(n, "empty line")
    if line.startswith('#'):
        m = re.match(r'# (HELP|TYPE) (\S+) (.*)$', line)
        if not m:
            die(n, "a comment other than HELP or TYPE")
        kind, name, rest = m.groups()
        if not NAME.match(name):
            die(n, f"bad metric name {name}")
        if kind == 'TYPE':
            if rest not in ('counter', 'gauge', 'histogram', 'summary', 'untyped'):
                die(n, f"bad type {rest}")
            if name in types:
                die(n, f"TYPE of {name} twice")
            if any(s[0] == name or s[0].startswith(name + '_') for s in samples if s[3] == name):
                die(n, "TYPE after samples")
            types[name] = rest
            order.append(name)
        else:
            if name in helps:
                die(n, f"HELP of {name} twice")
            if rest.strip() == '':
                die(n, "empty HELP")
            helps[name] = rest
        continue
    m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
    if not m:
        die(n, f"not a sample: {line!r}")
    name, lab, v = m.group(1), labels(n, m.group(3) or ''), value(n, m.group(4))
    fam = name
    for suffix in ('_bucket', '_sum', '_count'):
        if name.endswith(suffix) and name[:-len(suffix)] in types and \
                types[name[:-len(suffix)]] == 'histogram':
            fam = name[:-len(suffix)]
    if fam not in types:
        die(n, f"sample of {name} without a TYPE before it")
    if order[-1] != fam:
        die(n, f"samples of {fam} are not together")
    key = (name, tuple(sorted(lab.items())))
    if key in seen:
        die(n, f"sample {name}{lab} twice")
    seen.add(key)
    samples.append((name, lab, v, fam))
for fam, t in types.items():
    if fam not in helps:
        sys.exit(f"{fam} has no HELP")
    if t == 'counter' and not fam.endswith('_total'):
        sys.exit(f"counter {fam} is not named _total")
    if t == 'counter':
        for s in samples:
            if s[3] == fam and (s[2] < 0 or math.isnan(s[2])):
                sys.exit(f"counter {fam} is negative")
    if t == 'histogram':
        series = {}
        for s in samples:
            if s[3] != fam:
                continue
            rest = tuple(sorted((k, v) for k, v in s[1].items() if k != 'le'))
            series.setdefault(rest, []).append(s)
        for rest, ss in series.items():
            buckets = [(s[1]['le'], s[2]) for s in ss if s[0] == fam + '_bucket']
            count = [s[2] for s in ss if s[0] == fam + '_count']
            total = [s[2] for s in ss if s[0] == fam + '_sum']
            if not buckets or buckets[-1][0] != '+Inf' or len(count) != 1 or len(total) != 1:
                sys.exit(f"histogram {fam}{dict(rest)} lacks +Inf, _sum or _count")
            bounds = [float(b.replace('+Inf', 'inf')) for b, _ in buckets]
            if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                sys.exit(f"histogram {fam}: le not increasing")
            vals = [v for _, v in buckets]
            if vals != sorted(vals):
                sys.exit(f"histogram {fam}: buckets not cumulative")
            if vals[-1] != count[0]:
                sys.exit(f"histogram {fam}: _count is not the +Inf bucket")
for s in sorted(f"{s[0]}{{{','.join(k + '=' + v for k, v in sorted(s[1].items()))}}} {s[2]:g}"
                for s in samples):
    print(s)
EOF

check() {
    "$PY" "$T/promcheck.py" "$1" >"$1.flat" || fail "$1 is not valid text exposition"
    if command -v promtool >/dev/null; then
        promtool check metrics <"$1" >"$1.promtool" 2>&1 || {
            cat "$1.promtool" >&2
            fail "promtool rejects $1"
        }
    fi
}
val() { # val FILE.flat 'name{labels}' -> the value
    awk -v k="$2" '$1 == k { print $2 }' "$1"
}

echo "== a live process: derive, sign from the cache, refusals; its file while it runs"
cat >"$T/drive.py" <<EOF
import os, shutil, struct, sys, time, uuid
import PyKCS11
from PyKCS11 import LowLevel
lib = PyKCS11.PyKCS11Lib()
lib.load("$DDSM_MODULE")
s = lib.openSession(0, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
s.login("$DDSM_TEST_PIN")
pat = "$T/prom/ddsm-%d.prom" % os.getpid()
root = s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_LABEL, "ddsm-root")])[0]
def derive(asset, path):
    param = uuid.UUID(asset).bytes + path.encode()
    return s.deriveKey(root, [], PyKCS11.Mechanism(0xC4530001, param))
hmac = PyKCS11.Mechanism(PyKCS11.CKM_SHA256_HMAC, None)
k = derive("$VEC_A", "m/44'/0'/0'/0/0")
k2 = derive("$VEC_A", "m/44'/0'/0'/0/1")
found = s.findObjects([(PyKCS11.CKA_LABEL, "$VEC_A/m/44'/0'/0'/0/5")])[0]
s.sign(found, b"one", hmac)   # first use of a found key: a derivation (cache miss)
s.sign(found, b"two", hmac)   # from the cache
def refused(what, fn, want):
    try:
        fn()
    except PyKCS11.PyKCS11Error as e:
        if e.value != want:
            sys.exit("%s: got %s" % (what, e))
        return
    sys.exit(what + ": not refused")
general = PyKCS11.Mechanism(PyKCS11.CKM_SHA256_HMAC_GENERAL, struct.pack("=Q", 16))
refused("mechanism", lambda: s.sign(found, b"x", general), PyKCS11.CKR_FUNCTION_REJECTED)
refused("retired", lambda: derive("$GONE", "m/4"), PyKCS11.CKR_KEY_FUNCTION_NOT_PERMITTED)
# Until the file shows two writes more than when we first looked: the second of them began after
# every operation above had returned, so it holds them all (counted, not timed: a slow run waits
# longer; a module that stops writing runs into ctest's timeout).
import re
def writes():
    try:
        with open(pat) as f:
            m = re.search(r"^ddsm_metrics_writes_total\{[^}]*\} ([0-9]+)", f.read(), re.M)
            return int(m.group(1)) if m else 0
    except FileNotFoundError:
        return 0
first = writes()
while writes() < first + 2:
    time.sleep(0.05)
shutil.copy(pat, "$T/live.prom")
print(pat, flush=True)
lib.closeAllSessions(0)
# C_Finalize removes the file; then leave without unloading the module (an unload at exit races
# the module's detached HSM worker threads, module/src/hsmcall.c: not what this test is about).
lib.lib.C_Finalize()
os._exit(0)
EOF
"$PY" "$T/drive.py" >"$T/drive.out" 2>"$T/drive.err" || {
    cat "$T/drive.err" >&2
    fail "the driving process failed"
}
written=$(cat "$T/drive.out")
case "$written" in
"$T"/prom/ddsm-[0-9]*.prom) ;;
*) fail "the file name does not carry the pid: $written" ;;
esac
[ ! -e "$written" ] || fail "the file outlived C_Finalize"
[ -z "$(ls "$T/prom")" ] || fail "left behind in the textfile directory: $(ls "$T/prom")"

check "$T/live.prom"
F=$T/live.prom.flat
inst=$(sed -n 's/.*ddsm_instance=\([^,}]*\).*/\1/p' "$F" | sort -u)
[ "$(wc -l <<<"$inst")" -eq 1 ] || fail "more than one ddsm_instance: $inst"
case "$inst" in */[0-9]*/*) ;; *) fail "ddsm_instance is not <host>/<pid>/<random>: $inst" ;; esac
L="ddsm_instance=$inst"
[ "$(val "$F" "ddsm_derivations_total{$L,state=ACTIVE}")" = 3 ] ||
    fail "3 derivations expected: $(grep derivations_total "$F")"
[ "$(val "$F" "ddsm_denials_total{$L,reason=mechanism,state=unknown}")" = 1 ] ||
    fail "the mechanism refusal is not counted: $(grep denials_total "$F")"
[ "$(val "$F" "ddsm_denials_total{$L,reason=state,state=RETIRED}")" = 1 ] ||
    fail "the refusal of the retired asset is not counted: $(grep denials_total "$F")"
[ "$(val "$F" "ddsm_key_cache_hits_total{$L}")" -ge 1 ] || fail "no cache hit counted"
[ "$(val "$F" "ddsm_key_cache_misses_total{$L}")" -ge 1 ] || fail "no cache miss counted"
for phase in store hsm total; do
    [ "$(val "$F" "ddsm_derive_duration_seconds_count{$L,phase=$phase}")" = 3 ] ||
        fail "the $phase latency histogram does not hold the 3 derivations"
done
# Every audit row of the process went through a batch: 3 DERIVE and 2 DENY rows.
[ "$(val "$F" "ddsm_audit_batch_size_sum{$L}")" = 5 ] ||
    fail "audit batches: $(grep batch_size "$F")"
[ "$(val "$F" "ddsm_store_listen_up{$L}")" = 1 ] || fail "the LISTEN link is not reported up"
[ "$(val "$F" "ddsm_metrics_writes_total{$L}")" -ge 2 ] || fail "written once only"
ls "$T/prom"/*.tmp 2>/dev/null && fail "a temporary file is left"

echo "== ddsmctl metrics: the database's view, same checks"
"$DDSM_CTL" metrics --interval 1h >"$T/db.prom"
check "$T/db.prom"
D=$T/db.prom.flat
[ "$(val "$D" "ddsm_db_up{}")" = 1 ] || fail "ddsm_db_up is not 1"
[ "$(val "$D" "ddsm_db_window_derivations{state=ACTIVE}")" = 3 ] || fail "DERIVE rows: $(cat "$D")"
[ "$(val "$D" "ddsm_db_window_denials{reason=mechanism}")" = 1 ] || fail "mechanism DENY rows"
[ "$(val "$D" "ddsm_db_window_denials{reason=state}")" = 1 ] || fail "state DENY rows"
[ "$(val "$D" "ddsm_db_assets{state=RETIRED}")" = 1 ] || fail "assets by state"
[ "$(val "$D" "ddsm_db_audit_future_partitions{}")" -ge 1 ] || fail "future partitions"
[ "$(val "$D" "ddsm_db_reconcile_drift_ratio{}")" = 0 ] || fail "drift on a clean log"
# A counter bumped behind the module's back is drift: the ratio says one asset of one.
sql "UPDATE custody_keys SET derivation_counter = derivation_counter + 1
     WHERE asset_id = '$VEC_A'"
"$DDSM_CTL" metrics >"$T/drift.prom"
check "$T/drift.prom"
[ "$(val "$T/drift.prom.flat" "ddsm_db_reconcile_drift_ratio{}")" = 1 ] ||
    fail "drift ratio: $(grep reconcile "$T/drift.prom.flat")"
[ "$(val "$T/drift.prom.flat" "ddsm_db_reconcile_findings{kind=COUNTER_DRIFT}")" -ge 1 ] ||
    fail "COUNTER_DRIFT not counted"
# Unreachable store: ddsm_db_up 0, exit 3, still valid exposition.
conf_store_unreachable "$T/down.conf"
run "$DDSM_CTL" --conf "$T/down.conf" metrics
[ "$RC" -eq 3 ] || fail "unreachable store: exit $RC, expected 3"
check "$T/out"
[ "$(val "$T/out.flat" "ddsm_db_up{}")" = 0 ] || fail "ddsm_db_up is not 0"
echo "ok"
