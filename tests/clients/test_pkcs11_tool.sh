#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenSC's pkcs11-tool drives the module as any application would: slots, mechanisms, objects
# (virtual ones included), login, and an HMAC signature checked against openssl with the
# docs/design.md vector key.
#
# pkcs11-tool 0.23 (Debian 12) selects the signing key by CKA_ID only (--label does not reach its
# key lookup) and otherwise takes the first secret key, which is the root: the module refuses that
# (checked below). So the sign step passes --id, the key's CKA_ID (the 16 uuid bytes then the
# canonical path), computed here by hand, next to --label. The id names its key, so --id alone
# reaches a key at any path: one at a non-default path signs by the id `ddsmctl asset show --path`
# prints, checked against the key `openssl kdf` computes from the docs/design.md root.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL

ASSET=6f9619ff-8b86-d011-b42d-00c04fc964ff
PATH_A="m/44'/0'/0'/0/0"
KEY0=7d2fcaa0c736ca65b7610c465a197a7440b55fd6017280b2d7817a530c28d61c
dir=$DDSM_TEST_DIR
export DDSM_PIN=$DDSM_TEST_PIN

import_design_root
asset_active vec-a --id "$ASSET" --default-path "$PATH_A"

# -L: exactly one slot, numbered 0, with the backend token's label.
out=$(p11 -L)
echo "$out"
[ "$(grep -c '^Slot ' <<<"$out")" -eq 1 ] || fail "expected exactly one slot"
grep -q '^Slot 0 (0x0)' <<<"$out" || fail "slot 0 missing"
grep -Eq 'token label +: custody$' <<<"$out" || fail "token label custody missing"

# -M: the backend's mechanisms plus ours (CKM_DDSM_DERIVE = 0xC4530001), for derive.
out=$(p11 -M)
grep -Eqi 'mechtype-0xC4530001.*derive' <<<"$out" || fail "CKM_DDSM_DERIVE not listed: $out"
grep -q 'SHA256-HMAC' <<<"$out" || fail "SHA256-HMAC not listed"

# -O without login: no virtual objects (no PIN, no derivation).
out=$(p11 -O 2>&1 || true)
grep -q "$ASSET" <<<"$out" && fail "virtual object listed without login"

# -O with login: the root and the virtual key of the ACTIVE asset at its default path.
out=$(p11_user -O 2>&1)
echo "$out"
grep -q "label: *ddsm-root" <<<"$out" || fail "root key not listed"
grep -q "label: *$ASSET/m/44'/0'/0'/0/0" <<<"$out" || fail "virtual key not listed"
grep -q "Unique ID: *$ASSET/m/44'/0'/0'/0/0#0" <<<"$out" || fail "unique id missing"
audit_before=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'")
[ "$audit_before" -eq 0 ] || fail "listing objects derived something"

# The key's CKA_ID, computed independently.
id=$(cka_id "$ASSET" "$PATH_A")
grep -q "ID: *$id" <<<"$out" || fail "CKA_ID $id not listed"

printf 'pkcs11-tool says hello' > "$dir/data"
p11_user --sign -m SHA256-HMAC --label "$ASSET/$PATH_A" --id "$id" \
    -i "$dir/data" -o "$dir/sig"
got=$(xxd -p -c 64 "$dir/sig")
want=$(openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY0" -r "$dir/data" | cut -d' ' -f1)
echo "module: $got"
echo "openssl: $want"
[ "$got" = "$want" ] || fail "HMAC differs from the docs/design.md vector"
[ "$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'")" -eq 1 ] ||
    fail "first use did not write exactly one DERIVE audit row"

# A key at a path that is not the asset's default, by the id ddsmctl prints (in another hardening
# spelling: it reports the canonical one), checked against the KBKDF computed by openssl.
P=m/7h/1/2H
show=$("$DDSM_CTL" asset show vec-a --path "$P" --json)
printed=$(json_get key id <<<"$show")
[ "$printed" = "$(cka_id "$ASSET" "m/7'/1/2'")" ] || fail "asset show printed id $printed"
p11_user --sign -m SHA256-HMAC --id "$printed" -i "$dir/data" -o "$dir/sig2"
# The SP 800-108 Context: uuid || depth || indices (hardened | 0x80000000) || counter 0.
context="${ASSET//-/}03""80000007""00000001""80000002""0000000000000000"
root=$DESIGN_ROOT_SEED
key=$(openssl kdf -keylen 32 -kdfopt mac:HMAC -kdfopt digest:SHA256 -kdfopt mode:COUNTER \
    -kdfopt "hexkey:$root" -kdfopt hexsalt:4444534d2d7631 -kdfopt "hexinfo:$context" KBKDF |
    tr -d ':\n' | tr 'A-F' 'a-f')
want=$(openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -r "$dir/data" | cut -d' ' -f1)
got=$(xxd -p -c 64 "$dir/sig2")
[ "$got" = "$want" ] || fail "HMAC by id at $P: module $got, openssl KBKDF $want"
# An id that names nothing (a path the grammar refuses) finds no key and writes no audit row.
rows=$(sql "SELECT count(*) FROM custody_audit_log")
bad=$(cka_id "$ASSET" "m/7x")
if p11_user --sign -m SHA256-HMAC --id "$bad" -i "$dir/data" -o "$dir/sig3" 2>/dev/null; then
    fail "an id with a malformed path signed"
fi
[ "$(sql "SELECT count(*) FROM custody_audit_log")" -eq "$rows" ] || fail "a bad id wrote audit rows"

# Without --id pkcs11-tool takes the first secret key: the root, which only derives.
if out=$(p11_user --sign -m SHA256-HMAC -i "$dir/data" 2>&1); then
    fail "signing with the root succeeded"
fi
grep -q CKR_KEY_FUNCTION_NOT_PERMITTED <<<"$out" || fail "root refusal not reported: $out"
echo "PASS"
