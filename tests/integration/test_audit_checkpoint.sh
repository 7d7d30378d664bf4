#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checkpoints outside the database (docs/audit.md): `ddsmctl audit checkpoint` writes the chain
# heads MACed under the HSM-derived checkpoint key; `audit verify --checkpoint FILE` then detects,
# against the real server, (a) a chain's tail rolled back together with its in-database
# checkpoint, (b) a whole chain deleted with its checkpoint, (c) an edited or forged file, none of
# which the in-database walk alone can see. Also the file's MAC checked independently (Python
# hmac under the key docs/design.md specifies), --out, bad input and exit codes.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR DDSM_BUILD_DIR
FORGE=$DDSM_SOURCE_DIR/tests/support/audit_forge.py
# The uninstrumented interpreter: it loads no module, and in the sanitizer pass the python3 on
# PATH preloads the runtimes, which hang the psql it runs at exit (tests/CMakeLists.txt).
PY=/usr/bin/python3
scratch_dir audit_checkpoint
export DDSM_PIN=$DDSM_TEST_PIN

echo "== help and usage errors"
expect 0 "$DDSM_CTL" audit checkpoint --help
out_has "Usage: ddsmctl audit checkpoint [--out FILE]"
out_has "Exit status"
expect 0 "$DDSM_CTL" audit verify --help
out_has "--checkpoint FILE"
expect 2 "$DDSM_CTL" audit checkpoint extra
expect 2 "$DDSM_CTL" audit checkpoint --out
expect 2 ctl audit verify --checkpoint "$T/nonexistent"
err_has "$T/nonexistent"

echo "== setup: three writers, each with its own chain"
ASSET=6f9619ff-8b86-d011-b42d-00c04fc964ff
KEYPATH="m/44'/0'/0'/0/0"
import_design_root
asset_active ckpt --id "$ASSET" --default-path "$KEYPATH"
printf 'data' >"$T/data"
# Writer A: ddsm-core's batcher as the module drives it, 12 DERIVE rows in one chain.
helper_asset=$("$DDSM_BUILD_DIR/tests/integration_test_batch" write-chain 12)
A=$(sql "SELECT DISTINCT instance_id FROM custody_audit_log WHERE asset_id = '$helper_asset'
         AND event = 'DERIVE'")
# Writers B and C: module processes (pkcs11-tool signing with a derived key).
chains() { sql "SELECT DISTINCT instance_id FROM custody_audit_log WHERE event = 'DERIVE' ORDER BY 1"; }
sign() {
    p11_user --sign -m SHA256-HMAC --id "$(cka_id "$ASSET" "$KEYPATH")" -i "$T/data" -o "$T/sig" \
        >/dev/null 2>&1 || fail "signing"
}
sign
B=$(chains | grep -vxF "$A")
sign
C=$(chains | grep -vxF -e "$A" -e "$B")
[ -n "$A" ] && [ -n "$B" ] && [ -n "$C" ] || fail "expected three writer chains: $(chains)"
seqA=$(sql "SELECT seq FROM custody_audit_chain_heads WHERE instance_id = '$A'")
[ "$seqA" = 12 ] || fail "chain $A: expected its checkpoint at seq 12, got '$seqA'"
expect 0 ctl audit verify
out_has "everything verifies"

echo "== a checkpoint, to stdout and to a file"
expect 0 ctl audit checkpoint
out_has "DDSM-AUDIT-CHECKPOINT 1"
out_has "chain $seqA "
printf '%s\n' "$OUT" >"$T/stdout.ckpt"
expect 0 ctl audit checkpoint --out "$T/c1.ckpt"
err_has "written to $T/c1.ckpt"
[ -z "$OUT" ] || fail "--out wrote to stdout: $OUT"
ls "$T" | grep -q 'tmp-' && fail "a temporary file was left: $(ls "$T")"
for chain in "$A" "$B" "$C"; do
    grep -qxF "$(grep -F " $chain" "$T/c1.ckpt" | grep -E "^chain [0-9]+ [0-9a-f]{64} [0-9T:.-]+Z ")" \
        "$T/c1.ckpt" || fail "no line for chain $chain: $(cat "$T/c1.ckpt")"
done
[ "$(grep -c '^chain ' "$T/c1.ckpt")" = "$(sql "SELECT count(*) FROM custody_audit_chain_heads")" ] ||
    fail "not every chain head is in the file"
grep -q '^writer-keys-from-id [0-9]*$' "$T/c1.ckpt" || fail "no key boundary line"
expect 2 ctl audit checkpoint --out "$T/nodir/c.ckpt"
err_has "$T/nodir/c.ckpt"

echo "== its MAC, checked independently: HMAC-SHA256 under the spec's checkpoint key"
ck=$("$PY" "$FORGE" checkpoint-key "$DESIGN_ROOT_SEED")
"$PY" - "$T/c1.ckpt" "$ck" <<'PY'
import hashlib, hmac, sys
data = open(sys.argv[1], "rb").read()
body, _, last = data[:-1].rpartition(b"\n")
assert last.startswith(b"mac "), last
want = hmac.new(bytes.fromhex(sys.argv[2]), body + b"\n", hashlib.sha256).hexdigest()
assert last[4:].decode() == want, (last, want)
PY

echo "== a clean log verifies against it; so do later rows"
expect 0 ctl audit verify --checkpoint "$T/c1.ckpt"
out_has "and the checkpoint file: everything verifies"
sign # a fourth writer, after the checkpoint
expect 0 ctl audit verify --checkpoint "$T/c1.ckpt"

echo "== (c) an edited or forged file"
sed '4s/^chain [0-9]* /chain 999 /' "$T/c1.ckpt" >"$T/edited.ckpt"
cmp -s "$T/c1.ckpt" "$T/edited.ckpt" && fail "the edit did not take"
expect 1 ctl audit verify --checkpoint "$T/edited.ckpt"
out_has "ANCHOR"
out_has "the checkpoint file's MAC does not verify"
# A file made under another key (here: the legacy shared audit key, as a writer could hold it).
legacy=$("$PY" "$FORGE" legacy-key "$DESIGN_ROOT_SEED")
"$PY" - "$T/c1.ckpt" "$legacy" "$T/forged.ckpt" <<'PY'
import hashlib, hmac, sys
data = open(sys.argv[1], "rb").read()
body = data[: data.rindex(b"\nmac ") + 1]
mac = hmac.new(bytes.fromhex(sys.argv[2]), body, hashlib.sha256).hexdigest()
open(sys.argv[3], "wb").write(body + b"mac " + mac.encode() + b"\n")
PY
expect 1 ctl audit verify --checkpoint "$T/forged.ckpt"
out_has "the checkpoint file's MAC does not verify"
# Not a checkpoint file at all: bad input.
printf 'hello\n' >"$T/junk.ckpt"
expect 2 ctl audit verify --checkpoint "$T/junk.ckpt"
err_has "not a checkpoint file"
head -n 3 "$T/c1.ckpt" >"$T/short.ckpt"
expect 2 ctl audit verify --checkpoint "$T/short.ckpt"
err_has "not a checkpoint file"

echo "== (a) chain A's tail rolled back together with its in-database checkpoint"
# The attacker deletes A's last three rows and moves its checkpoint back onto seq 9: the chain
# is consistent inside the database (every MAC, every link, the checkpoint).
sql "DELETE FROM custody_audit_log WHERE instance_id = '$A' AND seq > 9"
sql "UPDATE custody_audit_chain_heads h SET seq = l.seq, mac = l.mac
     FROM custody_audit_log l WHERE h.instance_id = '$A' AND l.instance_id = '$A' AND l.seq = 9"
expect 0 ctl audit verify # the database alone cannot tell
out_has "everything verifies"
expect 1 ctl audit verify --checkpoint "$T/c1.ckpt"
out_has "ROLLED_BACK"
out_has "chain $A: the checkpoint file anchors it at seq 12"
out_has "it now ends at seq 9: its tail was rolled back"
out_lacks "chain $B:"

echo "== (b) chain B deleted whole, with its checkpoint"
sql "DELETE FROM custody_audit_log WHERE instance_id = '$B'"
sql "DELETE FROM custody_audit_chain_heads WHERE instance_id = '$B'"
expect 0 ctl audit verify
expect 1 ctl audit verify --checkpoint "$T/c1.ckpt"
out_has "CHAIN_GONE"
out_has "chain $B: the checkpoint file anchors it at seq"
out_has "the whole chain was deleted"
out_lacks "chain $C:"

echo "== a moved key boundary"
sql "UPDATE custody_audit_meta SET writer_keys_from_id = writer_keys_from_id + 1000"
expect 1 ctl audit verify --checkpoint "$T/stdout.ckpt"
out_has "ANCHOR"
out_has "per-writer keys began at row id"

echo "== store and HSM unavailable"
conf_store_unreachable "$T/down.conf"
expect 3 ctl --conf "$T/down.conf" audit checkpoint
expect 3 ctl --conf "$T/down.conf" audit verify --checkpoint "$T/c1.ckpt"
expect 1 env DDSM_PIN=999999 "$DDSM_CTL" audit checkpoint
err_has "PIN"

echo "OK"
