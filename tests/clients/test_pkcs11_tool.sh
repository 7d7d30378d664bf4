#!/usr/bin/env bash
# OpenSC's pkcs11-tool drives the module as any application would: slots, mechanisms, objects
# (virtual ones included), login, and an HMAC signature checked against openssl with the
# DESIGN.md vector key.
#
# pkcs11-tool 0.23 (Debian 12) selects the signing key by CKA_ID only (--label does not reach its
# key lookup) and otherwise takes the first secret key, which is the root: the module refuses that
# (checked below). So the sign step passes --id, the key's CKA_ID (the first 16 bytes of
# SHA-256("DDSM-v1 id" || uuid || canonical path)), computed here with openssl, next to --label.
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
[ "$got" = "$want" ] || fail "HMAC differs from the DESIGN.md vector"
[ "$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'")" -eq 1 ] ||
    fail "first use did not write exactly one DERIVE audit row"

# Without --id pkcs11-tool takes the first secret key: the root, which only derives.
if out=$(p11_user --sign -m SHA256-HMAC -i "$dir/data" 2>&1); then
    fail "signing with the root succeeded"
fi
grep -q CKR_KEY_FUNCTION_NOT_PERMITTED <<<"$out" || fail "root refusal not reported: $out"
echo "PASS"
