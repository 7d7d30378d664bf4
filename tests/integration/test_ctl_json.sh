#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `--json` of ddsmctl status, audit verify and root info: each prints one JSON document that
# python3's json module parses, with the fields the help names, the same verdict and exit status
# as the text, on a healthy installation and on a tampered audit log.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL DDSM_BUILD_DIR
C=$DDSM_CTL
HELPER=$DDSM_BUILD_DIR/tests/integration_test_batch
PY=${DDSM_PYTHON:-/usr/bin/python3}
scratch_dir ctljson
unset DDSM_PIN

# check WHAT PYTHON: $OUT parsed as JSON into d, then the assertions in PYTHON.
check() {
    "$PY" -c 'import json, sys
d = json.loads(sys.argv[1])
exec(sys.argv[2])' "$OUT" "$2" || fail "$1: $OUT"
}

echo "== an unmigrated store: status --json reports it, exit 1 like the screen"
expect 1 "$C" status --json
check "status, unmigrated" '
assert d["exit"] == 1, d
assert d["assets"] is None, d
store = [c for c in d["checks"] if c["check"] == "store"][0]
assert store["status"] == "fail" and "ddsmctl db migrate" in store["detail"], store'
printf '%s\n' "$OUT" >"$T/doc.json"
expect 0 python3 -m json.tool "$T/doc.json"

echo "== setup: schema, root key, partitions, chained rows"
expect 0 "$C" db migrate
expect 0 with_pin "$C" root create
fp=$(fingerprint)
expect 0 "$C" db maintain
asset=$(with_pin "$HELPER" write-chain 6)
[[ "$asset" =~ ^[0-9a-f-]{36}$ ]] || fail "helper printed no asset id: $asset"

echo "== root info --json"
expect 0 with_pin "$C" root info --json
check "root info" '
assert len(d["fingerprint"]) > 0, d
assert d["token"] == "custody" and d["sensitive"] is True and d["extractable"] is False, d
assert d["allowed_mechanisms"] == ["CKM_SHA256_HMAC"], d'
"$PY" -c 'import json, sys; assert json.loads(sys.argv[1])["fingerprint"] == sys.argv[2]' \
    "$OUT" "$fp" || fail "root info --json fingerprint is not $fp: $OUT"

echo "== status --json on a healthy installation, with the PIN"
expect 0 with_pin "$C" status --json
check "status, healthy" '
assert d["exit"] == 0, d
assert d["config"].endswith("ddsm.conf"), d
names = [c["check"] for c in d["checks"]]
for n in ("store", "hsm", "assets", "zones", "rotation", "audit", "partitions", "reconcile"):
    assert n in names, (n, names)
assert all(c["status"] in ("ok", None) for c in d["checks"]), d["checks"]
assert sum(d["assets"].values()) == 1 and d["assets"]["ACTIVE"] == 1, d["assets"]
assert len(d["chain_heads"]) >= 1, d
for h in d["chain_heads"]:
    assert h["seq"] >= 1 and h["updated"].endswith("Z"), h'
hsm=$("$PY" -c 'import json, sys
print([c for c in json.loads(sys.argv[1])["checks"] if c["check"] == "hsm"][0]["detail"])' "$OUT")
[[ "$hsm" == *"$fp"* ]] || fail "status --json hsm check lacks the fingerprint: $hsm"
expect 0 "$C" status --json --reconcile-since 2h
expect 2 "$C" status --json --reconcile-since 3x
[ -z "$OUT" ] || fail "usage error printed JSON: $OUT"

echo "== audit verify --json: clean, then tampered"
expect 0 with_pin "$C" audit verify --json
check "verify, clean" '
assert d == {"findings": [], "rows": d["rows"], "chains": d["chains"], "counts": {},
             "verified": True, "complete": True}, d
assert d["rows"] >= 6 and d["chains"] >= 1, d'
row=$(sql "SELECT id FROM custody_audit_log WHERE asset_id = '$asset' AND event = 'DERIVE'
           ORDER BY id LIMIT 1 OFFSET 2")
sql "UPDATE custody_audit_log SET counter = 1, requester = 'a \"quoted\"
line' WHERE id = $row"
expect 1 with_pin "$C" audit verify --json
check "verify, tampered" '
assert d["verified"] is False and d["complete"] is True, d
assert d["counts"].get("EDITED", 0) >= 1, d
assert all(set(x) == {"kind", "row_id", "detail", "accepted"} for x in d["findings"]), d
assert sum(d["counts"].values()) == len(d["findings"]), d'
"$PY" -c 'import json, sys
d = json.loads(sys.argv[1])
assert any(f["kind"] == "EDITED" and f["row_id"] == int(sys.argv[2]) and not f["accepted"]
           for f in d["findings"]), d' "$OUT" "$row" || fail "row $row not EDITED: $OUT"
printf '%s\n' "$OUT" >"$T/doc.json"
expect 0 python3 -m json.tool "$T/doc.json"
# The text says the same.
expect 1 with_pin "$C" audit verify
out_has "EDITED           row $row "

echo "== status --json with the store down: exit 3, assets null, still one JSON object"
conf_store_unreachable "$T/down.conf"
expect 3 "$C" --conf "$T/down.conf" status --json
check "status, store down" '
assert d["exit"] == 3 and d["assets"] is None, d
assert [c for c in d["checks"] if c["check"] == "store"][0]["status"] == "fail", d'
echo "ok: status, audit verify and root info --json"
