#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The out-of-process deployment (docs/deployment-p11kit.md), run as the units in conf/ describe it,
# with three throwaway Unix users made here and removed at exit:
#   SRV  the custody user: runs p11-kit server (the unit's own ExecStart/ExecStartPost and
#        Environment lines, paths moved into this test's directory) with the module; alone reads
#        the configuration, the custody PIN file, the database password file and the HSM's tokens;
#   APP  an application user in the clients group: loads p11-kit-client.so and signs with derived
#        keys, and reads none of SRV's files;
#   STRANGER  a user outside the group: cannot connect.
# The socket's directory gets the owner and mode of conf/tmpfiles.d; the root lives on a custody
# token ("vault") whose PIN only SRV's PIN file holds. Through the RPC layer the test also shows
# what p11-kit 0.24 passes and what it does not (CKM_DDSM_DERIVE, vendor attributes,
# ulDeviceError) and which requester the audit rows name.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR

SERVER=/usr/libexec/p11-kit/p11-kit-server
CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
UNIT=$DDSM_SOURCE_DIR/conf/systemd/ddsm-p11-kit-server.service
TMPFILES=$DDSM_SOURCE_DIR/conf/tmpfiles.d/ddsm.conf
PY=/usr/bin/python3
[ -x "$SERVER" ] || fail "$SERVER is missing (Debian package p11-kit, scripts/lib/common.sh)"
[ -f "$CLIENT" ] || fail "$CLIENT is missing (Debian package p11-kit-modules)"
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: making the test's Unix users needs root" >&2
    exit 77
fi

ASSET=6f9619ff-8b86-d011-b42d-00c04fc964ff
PATH_A="m/44'/0'/0'/0/0"
KEY0=7d2fcaa0c736ca65b7610c465a197a7440b55fd6017280b2d7817a530c28d61c
VAULT_PIN=24682468
scratch_dir p11srv

# The accounts, as conf/sysusers.d makes ddsm and ddsm-clients, under names of this run.
SRV=ddsmt-srv$$ APP=ddsmt-app$$ STRANGER=ddsmt-out$$ CLI=ddsmt-cli$$
# The module's database login role (a member of ddsm_module), which needs its password.
DBROLE=ddsmt_mod$$ hba=
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    local u
    for u in "$SRV" "$APP" "$STRANGER"; do
        userdel "$u" 2>/dev/null || true
        groupdel "$u" 2>/dev/null || true
    done
    groupdel "$CLI" 2>/dev/null || true
    if [ -n "$hba" ] && [ -f "$hba.p11srv-$$" ]; then
        mv "$hba.p11srv-$$" "$hba"
        sql "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    fi
    sql "DROP ROLE IF EXISTS $DBROLE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
groupadd --system "$CLI"
nouser() { useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --user-group "$@"; }
nouser "$SRV"
nouser --groups "$CLI" "$APP"
nouser "$STRANGER"

# as USER CMD...: CMD as USER (with USER's groups), in an environment that holds nothing but PATH
# and what the caller passes as NAME=VALUE words before CMD.
as() {
    local u=$1
    shift
    setpriv --reuid "$u" --regid "$u" --init-groups --inh-caps=-all \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# The directories, each as the deployment has it: ETC for /etc/ddsm (tmpfiles.d: root, the
# service's group), LIB for the HSM's tokens (SRV's own), RUN for /run/ddsm (tmpfiles.d).
ETC=$T/etc LIB=$T/lib RUN=$T/run APPDIR=$T/app
mkdir -p "$ETC" "$LIB/tokens" "$RUN" "$APPDIR"
tmpfiles_line() { awk -v p="$1" '$1 !~ /^#/ && $2 == p' "$TMPFILES"; }
read -r _ _ run_mode run_owner run_group _ <<<"$(tmpfiles_line /run/ddsm)"
read -r _ _ etc_mode etc_owner etc_group _ <<<"$(tmpfiles_line /etc/ddsm)"
same "$run_owner:$run_group:$etc_owner:$etc_group" "ddsm:ddsm-clients:root:ddsm" \
    "tmpfiles.d owners of /run/ddsm and /etc/ddsm"
chown "$SRV:$CLI" "$RUN" && chmod "$run_mode" "$RUN"
chown "root:$SRV" "$ETC" && chmod "$etc_mode" "$ETC"
chown "$APP:$APP" "$APPDIR" && chmod 0700 "$APPDIR"

# The HSM: the applications' token "custody" (its user PIN is the application's) and the custody
# token "vault" holding the root (its PIN is in the PIN file only).
printf '%s\n' "directories.tokendir = $LIB/tokens" "objectstore.backend = file" \
    "log.level = ERROR" "slots.removable = false" >"$LIB/softhsm2.conf"
export SOFTHSM2_CONF=$LIB/softhsm2.conf
softhsm2-util --init-token --free --label custody --pin "$DDSM_TEST_PIN" \
    --so-pin "$DDSM_TEST_SO_PIN" >/dev/null
softhsm2-util --init-token --free --label vault --pin "$VAULT_PIN" \
    --so-pin "$DDSM_TEST_SO_PIN" >/dev/null
printf '%s\n' "$VAULT_PIN" >"$ETC/custody.pin"
# The database password file (PGPASSFILE of the unit), with the password of the module's role.
DBPASS=$(openssl rand -hex 24)
printf '*:*:*:%s:%s\n' "$DBROLE" "$DBPASS" >"$ETC/pgpass"
sed -e "/^root_key_label/a root_token_label = vault\nroot_pin_file = $ETC/custody.pin" \
    "$DDSM_CONF" >"$ETC/ddsm.conf"
# The custody user owns them all, alone (conf/tmpfiles.d: /etc/ddsm root:ddsm 0750).
chown "$SRV:$SRV" "$ETC/ddsm.conf" "$ETC/custody.pin" "$ETC/pgpass"
chmod 0600 "$ETC/ddsm.conf" "$ETC/custody.pin" "$ETC/pgpass"

# The unit's own lines, with /run/ddsm, /etc/ddsm and the installed module's path moved here.
unit_lines() {
    sed -n "s/^$1=//p" "$UNIT" | sed -e "s#/run/ddsm#$RUN#g" -e "s#/etc/ddsm#$ETC#g" \
        -e "s#/usr/lib/x86_64-linux-gnu/pkcs11/libddsm-pkcs11.so#$DDSM_MODULE#g"
}
mapfile -t unit_env < <(unit_lines Environment)
[ "${#unit_env[@]}" -ge 2 ] || fail "the unit sets no DDSM_CONF and PGPASSFILE"
# srv CMD...: CMD as SRV with the unit's environment (plus the HSM's own configuration variable).
srv() { as "$SRV" "${unit_env[@]}" "SOFTHSM2_CONF=$SOFTHSM2_CONF" "$@"; }
# unit_argv LINE: ARGV becomes the words of one Exec line of the unit (systemd's quoting of
# these lines is the shell's; no $ or % in them); unit_cmd LINE runs it as SRV.
unit_argv() {
    [[ "$1" != *'$'* && "$1" != *%* ]] || fail "unit line needs systemd expansion: $1"
    eval "ARGV=($1)"
}
unit_cmd() { unit_argv "$1" && srv "${ARGV[@]}"; }
# The custody administrator's steps, as the custody user (ddsmctl holds the files to the
# module's rule: owned by the user it runs as): the docs/design.md root into the vault, one asset.
chown -R "$SRV:$SRV" "$LIB" && chmod 0700 "$LIB"
printf '%s\n' "$DESIGN_ROOT_SEED" >"$LIB/design-root.hex"
chown "$SRV" "$LIB/design-root.hex" && chmod 0600 "$LIB/design-root.hex"
srv_ctl() { srv "DDSM_PIN=$DDSM_TEST_PIN" "$DDSM_CTL" "$@"; }
expect 0 srv_ctl db migrate
expect 0 srv_ctl root import --hex-file "$LIB/design-root.hex"
rm -f "$LIB/design-root.hex"
expect 0 srv_ctl asset register --label vec-a --id "$ASSET" --default-path "$PATH_A"
expect 0 srv_ctl asset activate vec-a
ASSET_B=00000000-0000-4000-8000-0000000000bb
expect 0 srv_ctl asset register --label vec-b --id "$ASSET_B" --default-path "$PATH_A" --zone frozen
expect 0 srv_ctl asset activate vec-b
expect 0 srv_ctl zone disable frozen

# From here on the module connects as its own login role, which must give its password: this
# fixture's cluster trusts every local connection, so pg_hba.conf gets a rule for this role
# alone (kept until exit; other tests' roles are untouched). The administrator's steps above ran
# as the fixture's superuser.
sql "CREATE ROLE $DBROLE LOGIN PASSWORD '$DBPASS' IN ROLE ddsm_module" >/dev/null
hba=$DDSM_PG_ROOT/data/pg_hba.conf
cp -p "$hba" "$hba.p11srv-$$"
{
    printf 'local all %s scram-sha-256\nhost all %s 127.0.0.1/32 scram-sha-256\n' "$DBROLE" "$DBROLE"
    cat "$hba.p11srv-$$"
} >"$hba"
sql "SELECT pg_reload_conf()" >/dev/null
role_conninfo="host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=$DBROLE"
# The postmaster reads the rules on its own time after the reload signal: wait (bounded) until a
# connection of the role without the password is refused.
for i in $(seq 1 300); do
    if ! PGPASSWORD= PGPASSFILE=/dev/null "$DDSM_TEST_PGBIN/psql" -XAtq -w -d "$role_conninfo" \
        -c 'SELECT 1' >/dev/null 2>&1; then
        break
    fi
    [ "$i" -lt 300 ] || fail "pg_hba.conf's rule for $DBROLE did not take effect"
    sleep 0.1
done
sed -i "s#^conninfo = .*#conninfo = $role_conninfo#" "$ETC/ddsm.conf"
grep -q "^conninfo = .*user=$DBROLE\$" "$ETC/ddsm.conf" || fail "conninfo not switched"

mapfile -t starts < <(unit_lines ExecStart)
mapfile -t posts < <(unit_lines ExecStartPost)
[ "${#starts[@]}" -eq 1 ] && [ "${#posts[@]}" -eq 2 ] || fail "unexpected Exec lines in $UNIT"
[[ "${starts[0]}" == "$SERVER "* ]] || fail "ExecStart does not run $SERVER: ${starts[0]}"
SOCK=$RUN/pkcs11
[[ "${starts[0]}" == *" -n $SOCK "* ]] || fail "ExecStart's socket is not /run/ddsm/pkcs11"

# Started directly (not through a function), so that $! is the server itself: setpriv and env
# exec it.
unit_argv "${starts[0]}"
setpriv --reuid "$SRV" --regid "$SRV" --init-groups --inh-caps=-all env -i PATH=/usr/bin:/bin \
    "${unit_env[@]}" "SOFTHSM2_CONF=$SOFTHSM2_CONF" "${ARGV[@]}" >"$T/server.out" 2>"$T/server.err" &
server_pid=$!
unit_cmd "${posts[0]}" || fail "the socket did not appear: $(cat "$T/server.err")"
# As p11-kit makes it: owned by SRV, in the clients' group (the setgid directory), 0711, and so
# closed to the group, which has no write permission on it.
same "$(stat -c '%U:%G %a' "$SOCK")" "$SRV:$CLI 711" "the socket as p11-kit server made it"
can_connect() {
    as "$1" "$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(e.strerror)
    sys.exit(1)' "$SOCK"
}
if out=$(can_connect "$APP"); then fail "APP connected before the unit opened the socket"; fi
same "$out" "Permission denied" "APP connecting to the socket as p11-kit server made it"
unit_cmd "${posts[1]}"
same "$(stat -c '%U:%G %a' "$SOCK")" "$SRV:$CLI 660" "the socket after ExecStartPost"
same "$(stat -c '%U:%G %a' "$RUN")" "$SRV:$CLI 2750" "the socket's directory"

# Who may connect: APP (a supplementary member of the group) yes, STRANGER no.
can_connect "$APP" >/dev/null || fail "APP cannot connect"
if out=$(can_connect "$STRANGER"); then fail "STRANGER connected"; fi
same "$out" "Permission denied" "STRANGER connecting"
# app ARGS / out ARGS: pkcs11-tool through p11-kit-client.so, as that user.
ADDR="P11_KIT_SERVER_ADDRESS=unix:path=$SOCK"
app() { as "$APP" "$ADDR" pkcs11-tool --module "$CLIENT" "$@"; }
expect 0 app -L
out_has "token label        : custody"
[ "$(grep -c '^Slot ' <<<"$OUT")" -eq 1 ] || fail "expected exactly one slot: $OUT"
run as "$STRANGER" "$ADDR" pkcs11-tool --module "$CLIENT" -L
out_lacks "custody"

# APP cannot read what only the custody service may: the configuration, the PIN file, the database
# password file, the HSM's tokens.
for f in "$ETC/ddsm.conf" "$ETC/custody.pin" "$ETC/pgpass" "$LIB/softhsm2.conf"; do
    run as "$APP" cat "$f"
    [ "$RC" -ne 0 ] || fail "APP read $f"
    err_has "Permission denied"
done
run as "$APP" ls "$LIB/tokens"
[ "$RC" -ne 0 ] || fail "APP listed the HSM's token directory"
# Nor can it connect to the database as the module's role: it lacks the password.
run as "$APP" "$DDSM_TEST_PGBIN/psql" -XAtq -w -d "$role_conninfo" -c 'SELECT 1'
[ "$RC" -ne 0 ] || fail "APP connected to the database as $DBROLE"
err_has "no password supplied"

# By id (pkcs11-tool 0.23 --sign selects its key by CKA_ID only): the docs/design.md key.
derives() { sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'"; }
denies() { sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DENY'"; }
same "$(derives)" 0 "DERIVE rows before any use"
printf 'signed through p11-kit server' >"$APPDIR/data"
chown "$APP" "$APPDIR/data"
id=$(cka_id "$ASSET" "$PATH_A")
expect 0 app --login --pin "$DDSM_TEST_PIN" --sign -m SHA256-HMAC --id "$id" \
    -i "$APPDIR/data" -o "$APPDIR/sig"
want=$(openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY0" -r "$APPDIR/data" | cut -d' ' -f1)
same "$(xxd -p -c 64 "$APPDIR/sig")" "$want" "HMAC by id through p11-kit server"
same "$(derives)" 1 "DERIVE rows after the first use"
# The requester of audit rows in this mode: the module's process is p11-kit-remote, forked by the
# server for each connection and running as SRV, and p11-kit passes nothing of its client; the
# module reads the connection's peer credentials itself (the kernel's, from connect time) and
# names the client's uid, never the server's.
app_uid=$(id -u "$APP")
[ "$app_uid" != "$(id -u "$SRV")" ] || fail "APP and SRV share a uid"
same "$(sql "SELECT requester FROM custody_audit_log WHERE event = 'DERIVE'")" \
    "p11-kit-remote/uid=$app_uid" "requester of the DERIVE row"

# A refused request still leaves its DENY row: a key of an asset whose zone is disabled (found,
# and refused at its use: docs/policy.md).
id_b=$(cka_id "$ASSET_B" "$PATH_A")
deny0=$(denies)
run app --login --pin "$DDSM_TEST_PIN" --sign -m SHA256-HMAC --id "$id_b" \
    -i "$APPDIR/data" -o "$APPDIR/sigb"
[ "$RC" -ne 0 ] || fail "a key of a disabled zone signed: $OUT"
# CKR_FUNCTION_REJECTED, which pkcs11-tool 0.23 prints by number only.
[[ "$ERR" == *"C_SignInit failed: rv = "*"(0x200)"* ]] || fail "refusal is not CKR_FUNCTION_REJECTED: $ERR"
same "$(denies)" "$((deny0 + 1))" "DENY rows after the refused use"
same "$(sql "SELECT requester FROM custody_audit_log WHERE event = 'DENY' ORDER BY id DESC LIMIT 1")" \
    "p11-kit-remote/uid=$app_uid" "requester of the DENY row"

# By label (PyKCS11 finds the key by CKA_LABEL alone), and what the RPC layer carries.
cat >"$APPDIR/probe.py" <<'EOF'
import os, struct, sys
import PyKCS11 as P
lib = P.PyKCS11Lib()
lib.load(sys.argv[1])
label, asset, data = sys.argv[2], bytes.fromhex(sys.argv[3]), open(sys.argv[4], "rb").read()
slot = lib.getSlotList(tokenPresent=True)[0]
mechs = lib.getMechanismList(slot)
print("mech_ddsm_derive_listed", any(P.CKM.get(m) == 0xC4530001 for m in mechs))
print("mech_hmac_listed", "CKM_SHA256_HMAC" in mechs)
s = lib.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
s.login(os.environ["PIN"])
keys = s.findObjects([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_LABEL, label)])
print("found_by_label", len(keys))
sig = bytes(s.sign(keys[0], data, P.Mechanism(P.CKM_SHA256_HMAC)))
print("sig", sig.hex())
a = s.getAttributeValue(keys[0], [0xC4530101, 0xC4530102, 0xC4530103], allAsBinary=True)
print("vattr_asset", bytes(a[0]).hex())
print("vattr_path", bytes(a[1]).decode())
print("vattr_counter", struct.unpack("=Q", bytes(a[2]))[0])
refused = s.findObjects([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_LABEL, sys.argv[5])])
print("found_refused", len(refused))
try:
    s.sign(refused[0], data, P.Mechanism(P.CKM_SHA256_HMAC))
    print("refused_rv OK")
except P.PyKCS11Error as e:
    print("refused_rv", P.CKR[e.value])
print("device_error 0x%x" % s.getSessionInfo().ulDeviceError)
m = P.Mechanism(0xC4530001, asset + b"m/7'/1")
try:
    root = P.CK_OBJECT_HANDLE(s)
    root.assign(0xFFFFFFFF)  # CK_DDSM_ROOT_HANDLE
    s.deriveKey(root, [(P.CKA_CLASS, P.CKO_SECRET_KEY)], m)
    print("derive_rv OK")
except P.PyKCS11Error as e:
    print("derive_rv", P.CKR[e.value])
s.logout()
EOF
chmod 0644 "$APPDIR/probe.py"
derive_rows=$(derives) deny0=$(denies)
expect 0 as "$APP" "$ADDR" "PIN=$DDSM_TEST_PIN" "$PY" "$APPDIR/probe.py" "$CLIENT" \
    "$ASSET/$PATH_A" "${ASSET//-/}" "$APPDIR/data" "$ASSET_B/$PATH_A"
PROBE=$OUT
echo "$PROBE"
val() { awk -v k="$1" '$1 == k { print $2 }' <<<"$PROBE"; }
same "$(val found_by_label)" 1 "keys found by label through p11-kit server"
same "$(val sig)" "$want" "HMAC by label through p11-kit server"
# Vendor attributes pass (p11-kit sends unknown attribute types as byte arrays).
same "$(val vattr_asset)" "${ASSET//-/}" "CKA_DDSM_ASSET_ID through RPC"
same "$(val vattr_path)" "$PATH_A" "CKA_DDSM_PATH through RPC"
same "$(val vattr_counter)" 0 "CKA_DDSM_COUNTER through RPC"
# ulDeviceError passes: the policy refusal's detail code (DDSM_DEVERR_POLICY_ZONE).
same "$(val found_refused)" 1 "keys of the disabled zone found by label"
same "$(val refused_rv)" CKR_FUNCTION_REJECTED "signing in a disabled zone through RPC"
same "$(val device_error)" 0x44530043 "ulDeviceError through RPC"
same "$(denies)" "$((deny0 + 1))" "DENY rows after the probe's refused use"
# CKM_DDSM_DERIVE does not pass: p11-kit 0.24 sends only mechanisms whose parameters it knows how
# to serialise, so the client library drops it from the mechanism list and refuses it itself.
same "$(val mech_hmac_listed)" True "CKM_SHA256_HMAC listed through RPC"
# ... while the module itself, loaded in-process by the custody user, lists it.
expect 0 srv "$PY" -c 'import os, sys
import PyKCS11 as P
lib = P.PyKCS11Lib()
lib.load(sys.argv[1])
mechs = lib.getMechanismList(lib.getSlotList(tokenPresent=True)[0])
print(any(P.CKM.get(m) == 0xC4530001 for m in mechs), flush=True)
os._exit(0)' "$DDSM_MODULE"
same "$OUT" True "CKM_DDSM_DERIVE listed by the module in-process"
same "$(val mech_ddsm_derive_listed)" False "CKM_DDSM_DERIVE listed through RPC"
same "$(val derive_rv)" CKR_MECHANISM_INVALID "C_DeriveKey(CKM_DDSM_DERIVE) through RPC"
# The find by label reused the key derived for the first signature or derived it again; either
# way each derivation has its row, and the refused derive wrote none.
[ "$(derives)" -ge "$derive_rows" ] || fail "DERIVE rows went away"

# The server runs as SRV, its per-connection processes too.
same "$(stat -c %U "/proc/$server_pid")" "$SRV" "the server's user"
echo "PASS"
