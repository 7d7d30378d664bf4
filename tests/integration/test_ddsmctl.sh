#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ddsmctl end to end on a fresh database and token (scripts/lib/run-integration): help, usage
# errors and bad input (exit 2), migrations, PIN sources, the root key, the asset lifecycle with
# every illegal transition refused (exit 1) and nothing changed, listing, and an unreachable
# PostgreSQL or HSM (exit 3). Wrong PIN is exit 1 ("operation refused": the HSM said no).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL
C=$DDSM_CTL
scratch_dir ctl
unset DDSM_PIN

echo "== help for every command"
for args in "" "db" "db migrate" "root" "root create" "root import" "root recover" "root info" \
    "root pin" "asset" "asset register" "asset activate" "asset rotate" "asset retire" "asset show" \
    "asset list"; do
    # shellcheck disable=SC2086
    expect 0 "$C" $args --help
    out_has "Usage: ddsmctl ${args}"
    out_has "Options:"
    [ -z "$ERR" ] || fail "--help of '$args' wrote to stderr: $ERR"
done
expect 0 "$C" help root
out_has "DDSM-SHARE-V1"
expect 0 "$C" -h
out_has "Exit status:"
expect 0 "$C" --version
out_has "ddsmctl "

echo "== usage errors and bad input: exit 2, nothing written"
expect 2 "$C"
err_has "missing command"
expect 2 "$C" frobnicate
err_has "unknown command 'frobnicate'"
expect 2 "$C" --bogus asset list
err_has "unknown option '--bogus'"
expect 2 "$C" asset
err_has "missing subcommand"
expect 2 "$C" asset frob
err_has "unknown subcommand 'asset frob'"
expect 2 "$C" root frob
expect 2 "$C" db frob
expect 2 "$C" asset list --bogus
err_has "unknown option '--bogus'"
expect 2 "$C" asset show
err_has "missing argument"
expect 2 "$C" asset activate
expect 2 "$C" asset rotate
expect 2 "$C" asset retire
expect 2 "$C" asset show a b
err_has "unexpected argument 'b'"
expect 2 "$C" asset register
err_has "--label is required"
expect 2 "$C" asset register --label
err_has "needs a value"
expect 2 "$C" asset register --label x --label y
err_has "given twice"
expect 2 "$C" asset list --json=yes
err_has "takes no value"
expect 2 "$C" asset register --label x --id not-a-uuid
err_has "is not a UUID"
expect 2 "$C" asset register --label x --id 6f9619ff-8b86-d011-b42d-00c04fc964f
expect 2 "$C" asset register --label x --id 00000000-0000-0000-0000-000000000000
err_has "nil UUID is reserved"
expect 2 "$C" asset register --label x --default-path "m/01"
err_has "--default-path 'm/01'"
expect 2 "$C" asset register --label x --default-path "m/2147483648"
expect 2 "$C" asset register --label x --default-path "44/0"
expect 2 "$C" asset register --label x --default-path "m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17"
expect 2 "$C" asset register --label x --type rsa
err_has "--type must be hmac, aes, secp256k1, ed25519 or p256"
expect 2 "$C" asset register --label "a/b"
err_has "must not hold '/'"
expect 2 "$C" asset register --label ""
expect 2 "$C" asset register --label "$(printf 'x%.0s' $(seq 129))"
expect 2 "$C" asset register --label 6f9619ff-8b86-d011-b42d-00c04fc964ff
err_has "must not look like a UUID"
for d in 5x 5 0s -5m 05m m 1.5h 367d 99999999999d; do
    expect 2 "$C" asset rotate anything --grace "$d"
    err_has "--grace '$d'"
done
expect 2 "$C" asset activate anything --grace 5m
err_has "unknown option '--grace'"
expect 2 "$C" root create --shares 3
err_has "go together"
expect 2 "$C" root create --shares 0 --threshold 1 --out "$T/s"
err_has "--shares must be a number 1..255"
expect 2 "$C" root create --shares 256 --threshold 1 --out "$T/s"
expect 2 "$C" root create --shares 3 --threshold 4 --out "$T/s"
err_has "--threshold must be a number 1..3"
expect 2 "$C" root create --shares 3 --threshold 0 --out "$T/s"
[ ! -e "$T/s" ] || fail "a refused root create made its output directory"
expect 2 "$C" root recover
err_has "--share FILE"
expect 2 "$C" root import
err_has "--hex-file is required"
expect 2 "$C" --conf "$T/nonexistent.conf" asset list
err_has "configuration"
printf '[backend]\nmodule = /x.so\nbogus_key = 1\n' >"$T/bad.conf"
chmod 600 "$T/bad.conf"
expect 2 "$C" --conf "$T/bad.conf" asset list
err_has "bad.conf"

echo "== db migrate (twice)"
expect 0 "$C" db migrate
out_has "applied 001_init"
same "$(sql "SELECT count(*) FROM ddsm_schema_migrations WHERE name = '001_init'")" 1 \
    "migration row"
expect 0 "$C" db migrate
out_has "up to date"
[[ "$OUT" != *"applied 0"* && "$OUT" != *"applied 001"* ]] ||
    fail "second migrate applied again: $OUT"
same "$(sql "SELECT count(*) FROM custody_keys")" 0 "assets after the bad-input commands"

echo "== the PIN: --pin-file, DDSM_PIN, none, wrong"
expect 2 "$C" root info
err_has "no HSM PIN"
err_has "not a terminal"
printf '%s\n' "$DDSM_TEST_PIN" >"$T/pin"
chmod 600 "$T/pin"
expect 1 "$C" --pin-file "$T/pin" root info
err_has "holds no root key"
[[ "$ERR" != *warning* ]] || fail "a 0600 PIN file drew a warning: $ERR"
[[ "$ERR$OUT" != *"$DDSM_TEST_PIN"* ]] || fail "the PIN was printed"
chmod 644 "$T/pin"
expect 1 "$C" --pin-file "$T/pin" root info
err_has "may be read by group or others"
chmod 600 "$T/pin"
printf '%s\r\nsecond line\n' "$DDSM_TEST_PIN" >"$T/pin-crlf"
chmod 600 "$T/pin-crlf"
expect 1 "$C" root info --pin-file "$T/pin-crlf"
err_has "holds no root key"
expect 1 with_pin "$C" root info
err_has "holds no root key"
# --pin-file wins over DDSM_PIN.
DDSM_PIN=999999 expect 1 "$C" --pin-file "$T/pin" root info
err_has "holds no root key"
DDSM_PIN=999999 expect 1 "$C" root info
err_has "the HSM rejected the PIN"
err_has "CKR_PIN_INCORRECT"
[[ "$ERR" != *999999* ]] || fail "the wrong PIN was printed: $ERR"
: >"$T/pin-empty"
chmod 600 "$T/pin-empty"
expect 2 "$C" --pin-file "$T/pin-empty" root info
err_has "first line is empty"
expect 2 "$C" --pin-file "$T/no-such-pin" root info
err_has "cannot open PIN file"
DDSM_PIN="" expect 2 "$C" root info
err_has "DDSM_PIN is set but empty"
# On a terminal (a pty from script(1)) it prompts, with echo off.
# shellcheck disable=SC2016 # expanded by the inner bash
# The PIN is typed once the prompt is shown and echo is off (read from the pty), never after a
# guessed delay: typed earlier, the prompt's TCSAFLUSH would discard it.
cat >"$T/type_pin.py" <<'PYEOF'
import os, pty, sys, termios
pin, prog = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(prog, [prog, "root", "info"])
seen = b""
while b"PIN for token" not in seen:
    seen += os.read(fd, 4096)
while termios.tcgetattr(fd)[3] & termios.ECHO:
    os.sched_yield()
os.write(fd, pin.encode() + b"\n")
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
PYEOF
expect 1 timeout 30 /usr/bin/python3 "$T/type_pin.py" "$DDSM_TEST_PIN" "$C"
out_has 'HSM user PIN for token "custody": '
out_has "holds no root key"
[[ "$OUT" != *"$DDSM_TEST_PIN"* ]] || fail "the PIN typed at the prompt was echoed: $OUT"

echo "== root create / create again / info"
count_roots() {
    softhsm_user --list-objects --type secrkey 2>/dev/null | grep -c 'label: *ddsm-root' || true
}
same "$(count_roots)" 0 "root keys before create"
expect 0 with_pin "$C" root create
out_has "generated root key \"ddsm-root\" on token \"custody\""
fp_create=$(fingerprint)
[[ "$fp_create" =~ ^[0-9a-f]{32}$ ]] || fail "root create printed no fingerprint: $OUT"
same "$(count_roots)" 1 "root keys after create"
expect 1 with_pin "$C" root create
err_has "already holds a root key labelled \"ddsm-root\""
printf '%064d\n' 0 >"$T/seed.hex"
expect 1 with_pin "$C" root import --hex-file "$T/seed.hex"
err_has "already holds a root key"
expect 1 with_pin "$C" root create --shares 3 --threshold 2 --out "$T/shares"
err_has "already holds a root key"
[ ! -e "$T/shares" ] || fail "a refused ceremony created $T/shares"
same "$(count_roots)" 1 "root keys after the refused creations"
expect 0 with_pin "$C" root info
out_has "label:             ddsm-root"
out_has "key type:          CKK_GENERIC_SECRET"
out_has "value length:      32"
out_has "sensitive:         true"
out_has "extractable:       false"
out_has "never extractable: true"
out_has "modifiable:        false"
out_has "copyable:          false"
out_has "mechanisms:        CKM_SHA256_HMAC"
[[ "$OUT" == *$'usage:             sign\n'* ]] || fail "the root has usages besides sign: $OUT"
out_has "pinned:            yes"
same "$(fingerprint)" "$fp_create" "root info fingerprint"
# The key must really be unreadable: the HSM refuses to reveal CKA_VALUE.
if softhsm_user --read-object --type secrkey --label ddsm-root >/dev/null 2>&1; then
    fail "the root key's value could be read"
fi

echo "== a separate custody token: root_token_label with root_pin_file, no user PIN needed"
softhsm2-util --init-token --free --label vault --pin 654321 --so-pin "$DDSM_TEST_SO_PIN" >/dev/null
printf '654321\n' >"$T/vault.pin"
chmod 600 "$T/vault.pin"
conf_variant "$T/vault.conf" \
    "s|^root_key_label = .*|&\nroot_token_label = vault\nroot_pin_file = $T/vault.pin|"
expect 1 "$C" --conf "$T/vault.conf" root info
err_has "token \"vault\" holds no root key"
expect 0 "$C" --conf "$T/vault.conf" root create
out_has "on token \"vault\""
fp_vault=$(fingerprint)
[ "$fp_vault" != "$fp_create" ] || fail "the vault's new root has the custody token's fingerprint"
expect 0 "$C" --conf "$T/vault.conf" root info
out_has "token:             vault"
same "$(fingerprint)" "$fp_vault" "vault root info fingerprint"
same "$(count_roots)" 1 "root keys on the custody token after creating the vault's"
printf '000000\n' >"$T/vault.pin"
expect 1 "$C" --conf "$T/vault.conf" root info
err_has "cannot log in on token \"vault\": the HSM rejected the PIN"

echo "== seed file bad input (checked before the HSM): exit 2"
printf '%063d\n' 0 >"$T/short.hex"
expect 2 with_pin "$C" root import --hex-file "$T/short.hex"
err_has "63 hex digits, expected 64"
printf '%065d\n' 0 >"$T/long.hex"
expect 2 with_pin "$C" root import --hex-file "$T/long.hex"
err_has "more than 64 hex digits"
printf '%063dg\n' 0 >"$T/bad.hex"
expect 2 with_pin "$C" root import --hex-file "$T/bad.hex"
err_has "byte 64 is not a hex digit"
expect 2 with_pin "$C" root import --hex-file "$T/missing.hex"
err_has "cannot open seed file"

echo "== asset register"
# Writing commands chain their audit rows under the HSM-derived audit key: no PIN, no write.
expect 2 "$C" asset register --label nopin
err_has "no HSM PIN"
same "$(sql "SELECT count(*) FROM custody_keys")" 0 "assets after a register without PIN"
export DDSM_PIN=$DDSM_TEST_PIN
user="ddsmctl:$(logname 2>/dev/null || id -un)"
expect 0 "$C" asset register --label alpha --default-path "m/44h/0H/0'/0/5" --type hmac
out_has "registered asset alpha"
alpha=$(sql "SELECT asset_id FROM custody_keys WHERE label = 'alpha'")
same "$(sql "SELECT state || ' ' || derivation_counter || ' ' || default_path || ' ' || key_type
             FROM custody_keys WHERE label = 'alpha'")" "INITIALIZED 0 m/44'/0'/0'/0/5 hmac" \
    "alpha row"
same "$(sql "SELECT requester FROM custody_audit_log
             WHERE asset_id = '$alpha' AND event = 'REGISTER'")" \
    "$user" "requester of the REGISTER row"
beta=6f9619ff-8b86-d011-b42d-00c04fc964ff
expect 0 "$C" asset register --label beta --id "${beta^^}" --type aes
same "$(sql "SELECT label || ' ' || key_type || ' ' || default_path
             FROM custody_keys WHERE asset_id = '$beta'")" \
    "beta aes m/0" "beta row"
expect 1 "$C" asset register --label alpha
err_has "already exists"
expect 1 "$C" asset register --label gamma --id "$beta"
err_has "already exists"
same "$(sql "SELECT count(*) FROM custody_keys")" 2 "assets after duplicate registrations"
expect 2 "$C" asset register --label $'tab\there'
err_has "must be printable ASCII (byte 4 is 0x09)"
expect 2 "$C" asset register --label $'caf\xc3\xa9'
err_has "must be printable ASCII (byte 4 is 0xc3)"
weird='we"ird\ label {<&>}'
expect 0 "$C" asset register --label "$weird" --default-path "m/7'/1"

# Refused by policy: a configuration that allows only BIP-44 shapes.
cp "$DDSM_CONF" "$T/policy.conf"
printf "\n[policy]\npath_pattern = m/44'/*'/*'/*/*\n" >>"$T/policy.conf"
chmod 600 "$T/policy.conf"
expect 1 "$C" --conf "$T/policy.conf" asset register --label delta --default-path m/1
err_has "not allowed by the [policy] path patterns"
expect 0 "$C" --conf "$T/policy.conf" asset register --label delta --default-path "m/44'/1'/2'/3/4"

state_of() {
    sql "SELECT state || ' ' || derivation_counter FROM custody_keys WHERE asset_id = '$1'"
}
# Refusals are audited as DENY rows; everything else must stay as it was.
audit_rows() {
    sql "SELECT count(*) FROM custody_audit_log WHERE asset_id = '$1' AND event <> 'DENY'"
}
deny_rows() { sql "SELECT count(*) FROM custody_audit_log WHERE asset_id = '$1' AND event = 'DENY'"; }

echo "== illegal transitions from INITIALIZED: exit 1, nothing changes"
rows=$(audit_rows "$beta")
for cmd in "rotate" "rotate --grace 5m" "retire"; do
    # shellcheck disable=SC2086
    expect 1 "$C" asset $cmd beta
    err_has "it is INITIALIZED"
    err_has "nothing changed"
done
same "$(state_of "$beta")" "INITIALIZED 0" "beta after refused transitions"
same "$(audit_rows "$beta")" "$rows" "beta's audit rows after refused transitions"
same "$(deny_rows "$beta")" 3 "beta's DENY rows after three refused transitions"

echo "== activate, rotate, rotate --grace, retire"
expect 0 "$C" asset activate alpha
out_has "INITIALIZED -> ACTIVE"
same "$(state_of "$alpha")" "ACTIVE 0" "alpha after activate"
expect 1 "$C" asset activate alpha
err_has "cannot activate asset alpha"
err_has "it is ACTIVE"
expect 0 "$C" asset rotate "$alpha"
out_has "ACTIVE -> ACTIVE, counter 0 -> 1"
same "$(state_of "$alpha")" "ACTIVE 1" "alpha after rotate"
same "$(sql "SELECT count(*) FROM custody_rotations WHERE asset_id = '$alpha'")" 1 "rotation rows"
expect 0 "$C" asset rotate alpha --grace 2h
out_has "ACTIVE -> ROTATING, counter 1 -> 2"
out_has "grace until"
same "$(state_of "$alpha")" "ROTATING 2" "alpha after rotate --grace"
grace=$(sql "SELECT round(extract(epoch FROM grace_until - now()))
              FROM custody_keys WHERE asset_id = '$alpha'")
((grace > 7100 && grace <= 7200)) || fail "grace window is $grace s, expected about 7200"
same "$(sql "SELECT count(*) FROM custody_rotations
             WHERE asset_id = '$alpha' AND grace_until IS NOT NULL")" \
    1 "rotation rows with a grace window"
rows=$(audit_rows "$alpha")
for cmd in "activate" "rotate" "rotate --grace 1m"; do
    # shellcheck disable=SC2086
    expect 1 "$C" asset $cmd alpha
    err_has "it is ROTATING"
done
same "$(state_of "$alpha")" "ROTATING 2" "alpha after refused transitions while ROTATING"
same "$(audit_rows "$alpha")" "$rows" "alpha's audit rows after refused transitions"
expect 0 "$C" asset retire alpha
out_has "ROTATING -> RETIRED"
same "$(state_of "$alpha")" "RETIRED 2" "alpha after retire"
rows=$(audit_rows "$alpha")
for cmd in "activate" "rotate" "rotate --grace 1m" "retire"; do
    # shellcheck disable=SC2086
    expect 1 "$C" asset $cmd alpha
    err_has "it is RETIRED"
done
same "$(state_of "$alpha")" "RETIRED 2" "alpha after refused transitions while RETIRED"
same "$(audit_rows "$alpha")" "$rows" "alpha's audit rows after refused transitions"
same "$(sql "SELECT string_agg(event, ',' ORDER BY id)
             FROM custody_audit_log WHERE asset_id = '$alpha'")" \
    "REGISTER,ACTIVATE,DENY,ROTATE,ROTATE,DENY,DENY,DENY,RETIRE,DENY,DENY,DENY,DENY" \
    "alpha's audit trail (every refused transition is a DENY row)"
same "$(sql "SELECT count(*) FROM custody_audit_log WHERE asset_id = '$alpha' AND event = 'DENY'
             AND detail NOT LIKE '% refused: the asset is %'")" 0 \
    "DENY rows that do not say what was refused"
same "$(sql "SELECT count(DISTINCT requester) || ' ' || min(requester)
             FROM custody_audit_log WHERE asset_id = '$alpha'")" \
    "1 $user" "requesters of alpha's audit rows"
expect 0 "$C" asset activate "$beta"
expect 0 "$C" asset retire beta
same "$(state_of "$beta")" "RETIRED 0" "beta after activate and retire by id and label"

echo "== unknown assets: exit 1"
expect 1 "$C" asset show nosuch
err_has "no asset with id or label \"nosuch\""
expect 1 "$C" asset rotate 11111111-2222-4333-8444-555555555555
err_has "no asset"

echo "== show and list, text and JSON"
expect 0 "$C" asset show alpha
out_has "id:           $alpha"
out_has "state:        RETIRED"
out_has "counter:      2"
out_has "default path: m/44'/0'/0'/0/5"
# The key's PKCS#11 names: label "<uuid>/<canonical path>" and CKA_ID, computed independently.
out_has "key label:    $alpha/m/44'/0'/0'/0/5"
out_has "key id:       $(cka_id "$alpha" "m/44'/0'/0'/0/5")"
expect 0 "$C" asset show alpha --path "m/7h/1"
out_has "key label:    $alpha/m/7'/1"
out_has "key id:       $(cka_id "$alpha" "m/7'/1")"
expect 2 "$C" asset show alpha --path "m/01"
err_has "--path 'm/01'"

echo "== PKCS#11 URIs (RFC 7512), decoded here independently of p11-kit"
# check_uri URI UUID CANONICAL-PATH TYPE: the module's C_GetInfo fields, the token, and the
# object's id (uuid bytes then path), label and class.
check_uri() {
    python3 -c '
import sys, urllib.parse
uri, uuid, path, typ = sys.argv[1:5]
assert uri.startswith("pkcs11:") and "?" not in uri, uri
f = {}
for part in uri[len("pkcs11:"):].split(";"):
    k, v = part.split("=", 1)
    assert k not in f, (k, uri)
    f[k] = urllib.parse.unquote_to_bytes(v)
want = {"library-manufacturer": b"ddsm-pkcs11",
        "library-description": b"DDSM derived keys over an HSM",
        "token": b"custody",
        "id": bytes.fromhex(uuid.replace("-", "")) + path.encode(),
        "object": (uuid + "/" + path).encode(),
        "type": typ.encode()}
assert f == want, (f, want)
' "$@" || fail "URI $1 does not name $2/$3 ($4)"
}
expect 0 "$C" asset show alpha --path "m/7h/1"
uri=$(sed -n 's/^key uri: *//p' <<<"$OUT")
check_uri "$uri" "$alpha" "m/7'/1" secret-key
expect 0 "$C" asset uri alpha --path "m/7'/1"
same "$OUT" "$uri" "asset uri and asset show"
expect 0 "$C" asset uri alpha --path "m/7H/1" --type secret-key
same "$OUT" "$uri" "asset uri --type secret-key"
expect 0 "$C" asset show alpha --json --path "m/7h/1"
same "$(json_get key uris secret-key <<<"$OUT")" "$uri" "asset show --json uris"
expect 0 "$C" asset uri "$alpha"
check_uri "$OUT" "$alpha" "m/44'/0'/0'/0/5" secret-key
# EC assets have a private and a public object; an ed25519 path with a normal index has none.
expect 0 "$C" asset register --label ec-uri --type secp256k1 --default-path "m/44'/0'/0'/0/0"
ec=$(sed -n 's/^id: *//p' <<<"$("$C" asset show ec-uri)")
expect 0 "$C" asset show ec-uri --path m/1/2
check_uri "$(sed -n 's/^private uri: *//p' <<<"$OUT")" "$ec" m/1/2 private
check_uri "$(sed -n 's/^public uri: *//p' <<<"$OUT")" "$ec" m/1/2 public
out_lacks "key uri:"
expect 0 "$C" asset uri ec-uri --path m/1/2
check_uri "$OUT" "$ec" m/1/2 private
expect 0 "$C" asset uri ec-uri --path m/1/2 --type public
check_uri "$OUT" "$ec" m/1/2 public
expect 2 "$C" asset uri ec-uri --type secret-key
err_has "no secret-key object"
expect 2 "$C" asset uri alpha --type private
err_has "no private object"
expect 2 "$C" asset uri alpha --type cert
err_has "--type 'cert'"
expect 2 "$C" asset uri alpha --path m/x
err_has "--path 'm/x'"
expect 1 "$C" asset uri nosuch
err_has "no asset"
expect 0 "$C" asset register --label ed-uri --type ed25519 --default-path "m/44'/501'/0'"
expect 2 "$C" asset uri ed-uri --path "m/44'/501'/0"
err_has "has no PKCS#11 object"
expect 0 "$C" asset show ed-uri --path "m/44'/501'/0" --json
same "$(json_get key uris <<<"$OUT")" "{}" "ed25519 normal path URIs"
expect 0 "$C" asset list --json
python3 -c '
import json, sys
rows = {r["label"]: r for r in json.loads(sys.argv[1])}
assert rows["ec-uri"]["key"]["path"] == "m/44'"'"'/0'"'"'/0'"'"'/0/0", rows["ec-uri"]
assert sorted(rows["ec-uri"]["key"]["uris"]) == ["private", "public"], rows["ec-uri"]
assert sorted(rows["alpha"]["key"]["uris"]) == ["secret-key"], rows["alpha"]
' "$OUT" || fail "asset list --json URIs: $OUT"
expect 0 "$C" asset uri ec-uri
ec_uri=$OUT
expect 0 "$C" asset list
out_has "$ec_uri"
expect 0 "$C" asset show "$alpha" --json
python3 -c '
import json, sys
a = json.loads(sys.argv[1])
want = {"id": sys.argv[2], "label": "alpha", "key_type": "hmac", "state": "RETIRED",
        "counter": 2, "default_path": "m/44'"'"'/0'"'"'/0'"'"'/0/5", "grace_until": None}
for k, v in want.items():
    assert a[k] == v, (k, a[k], v)
assert a["created"].endswith("Z") and a["updated"] >= a["created"], a
' "$OUT" "$alpha" || fail "asset show --json: $OUT"
expect 0 "$C" asset list --json
python3 -c '
import json, sys
rows = json.loads(sys.argv[1])
labels = [r["label"] for r in rows]
assert labels == sorted(labels), labels
assert set(labels) == {"alpha", "beta", "delta", "ec-uri", "ed-uri", sys.argv[2]}, labels
w = [r for r in rows if r["label"] == sys.argv[2]][0]
assert w["default_path"] == "m/7'"'"'/1" and w["state"] == "INITIALIZED", w
b = [r for r in rows if r["label"] == "beta"][0]
assert b["id"] == "6f9619ff-8b86-d011-b42d-00c04fc964ff" and b["key_type"] == "aes", b
' "$OUT" "$weird" || fail "asset list --json: $OUT"
same "$(sql "SELECT count(*) FROM custody_keys")" 6 "asset count"
expect 0 "$C" asset list
python3 -c '
import sys
lines = sys.argv[1].split("\n")
head = lines[0]
assert head.split() == ["ID", "LABEL", "TYPE", "STATE", "COUNTER", "DEFAULT", "PATH", "URI"], head
assert len(lines) == 7, lines
cols = [head.index(c) for c in ("LABEL", "TYPE", "STATE", "COUNTER", "DEFAULT PATH", "URI")]
for l in lines[1:]:
    for c in cols:
        assert l[c - 2:c] == "  " and l[c] != " ", (l, c)
assert any("alpha" in l and "RETIRED" in l and " 2 " in l for l in lines), lines
' "$OUT" || fail "asset list table is not aligned:
$OUT"
# An empty registry lists as an empty array.
sql "TRUNCATE custody_rotations, custody_keys"
expect 0 "$C" asset list --json
python3 -c 'import json, sys; assert json.loads(sys.argv[1]) == []' "$OUT" ||
    fail "empty list: $OUT"

echo "== PostgreSQL or HSM unreachable: exit 3"
dead=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
deadinfo="host=127.0.0.1 port=$dead dbname=nope user=postgres connect_timeout=3"
conf_variant "$T/deadpg.conf" "s|^conninfo = .*|conninfo = $deadinfo|"
expect 3 "$C" --conf "$T/deadpg.conf" asset list
err_has "PostgreSQL is unavailable"
expect 3 "$C" --conf "$T/deadpg.conf" asset show alpha
expect 3 "$C" --conf "$T/deadpg.conf" asset register --label z
expect 3 "$C" --conf "$T/deadpg.conf" asset rotate alpha
expect 3 "$C" --conf "$T/deadpg.conf" db migrate
conf_variant "$T/deadhsm.conf" "s|^module = .*|module = $T/no-such-module.so|"
expect 3 with_pin "$C" --conf "$T/deadhsm.conf" root info
err_has "cannot load backend module"
conf_variant "$T/notoken.conf" "s|^token_label = .*|token_label = elsewhere|"
expect 3 with_pin "$C" --conf "$T/notoken.conf" root info
err_has "no token labelled \"elsewhere\""

echo "== every audit row ddsmctl wrote is chained and verifies"
expect 0 "$C" audit verify

echo "PASS: test_ddsmctl"
