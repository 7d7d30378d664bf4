#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One compromised writer rewrites another writer's audit chain (docs/audit.md "The audit keys").
# Two module processes (pkcs11-tool signing with a derived key) each write their own chain. The
# attacker holds what writer B's process holds, its audit key: the test takes the key under which
# B's own first row verifies, among the keys a writer process can hold (the legacy shared key and
# B's writer key, both computed from the spec with the test's known root). With database
# administrator rights, it rewrites every row of writer A's chain (requester "mallory") and A's
# checkpoint, consistently MACed under B's key. `ddsmctl audit verify` must report A's rows. Then
# the same with the legacy shared key, which every writer held before per-writer keys.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
FORGE=$DDSM_SOURCE_DIR/tests/support/audit_forge.py
# The uninstrumented interpreter: it loads no module, and in the sanitizer pass the python3 on
# PATH preloads the runtimes, which hang the psql it runs at exit (tests/CMakeLists.txt).
PY=/usr/bin/python3
scratch_dir attack_audit_writer
export DDSM_PIN=$DDSM_TEST_PIN

ASSET=6f9619ff-8b86-d011-b42d-00c04fc964ff
KEYPATH="m/44'/0'/0'/0/0"
import_design_root
asset_active writer-attack --id "$ASSET" --default-path "$KEYPATH"
id=$(cka_id "$ASSET" "$KEYPATH")
printf 'to be signed' >"$T/data"

echo "== two writers: two module processes, each signs (a DERIVE row in its own chain)"
chains() {
    sql "SELECT DISTINCT instance_id FROM custody_audit_log WHERE event = 'DERIVE'
         ORDER BY instance_id"
}
p11_user --sign -m SHA256-HMAC --id "$id" -i "$T/data" -o "$T/sig1" >/dev/null 2>&1
first=$(chains)
p11_user --sign -m SHA256-HMAC --id "$id" -i "$T/data" -o "$T/sig2" >/dev/null 2>&1
A=$first
B=$(chains | grep -vxF "$A")
[ "$(chains | wc -l)" = 2 ] && [ -n "$A" ] && [ -n "$B" ] || fail "expected two writer chains: $(chains)"
echo "writer A: $A; writer B: $B"
expect 0 ctl audit verify
out_has "everything verifies"

echo "== the attacker's key: what writer B's process holds"
kb=$("$PY" "$FORGE" key-of "$DESIGN_ROOT_SEED" "$B") || fail "no key a writer can hold verifies B's chain"
ka=$("$PY" "$FORGE" key-of "$DESIGN_ROOT_SEED" "$A") || fail "no key a writer can hold verifies A's chain"
if [ "$ka" = "$kb" ]; then
    echo "writers A and B hold the same audit key"
fi

echo "== B rewrites A's chain and checkpoint under its own key"
n=$("$PY" "$FORGE" rewrite "$kb" "$A" mallory)
[ "$n" -ge 1 ] || fail "no row of A rewritten"
[ "$(sql "SELECT count(*) FROM custody_audit_log WHERE instance_id = '$A' AND requester = 'mallory'")" = "$n" ] ||
    fail "the rewrite did not take"
expect 1 ctl audit verify
out_has "EDITED"
out_has "chain $A: row id "
out_has "does not match its MAC"
out_lacks "chain $B:"

echo "== the same under the legacy shared key"
legacy=$("$PY" "$FORGE" legacy-key "$DESIGN_ROOT_SEED")
"$PY" "$FORGE" rewrite "$legacy" "$A" mallory >/dev/null
expect 1 ctl audit verify
out_has "LEGACY_KEY"
out_has "chain $A: row id "
out_has "is MACed under the legacy shared key"
out_lacks "chain $B:"

echo "== each writer's key is the one docs/design.md specifies for its writer id"
for chain in "$A" "$B"; do
    writer=${chain%/c0}
    [ "$writer" != "$chain" ] || fail "chain $chain is not named <writer>/c0"
    [ "$("$PY" "$FORGE" writer-key "$DESIGN_ROOT_SEED" "$writer")" = "$([ "$chain" = "$A" ] && echo "$ka" || echo "$kb")" ] ||
        fail "chain $chain is not MACed under the spec's key of writer $writer"
done

echo "OK"
