# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Sourced by the shell tests (tests/integration/*.sh, tests/clients/*.sh), which run through
# scripts/lib/run-integration: what they all need, written once. Defines variables and functions
# only; checks the environment run-integration exports and exits 1 when it is missing.
#   . "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"

# require_env VAR...: each must be set and non-empty, or the test exits 1 saying how to run it.
require_env() {
    local v
    for v in "$@"; do
        if [ -z "${!v:-}" ]; then
            echo "${0##*/}: $v is not set: run through scripts/lib/run-integration via ctest" >&2
            exit 1
        fi
    done
}
require_env DDSM_CONF DDSM_TEST_DIR DDSM_TEST_PIN DDSM_TEST_SO_PIN DDSM_TEST_PGBIN

# The root seed of the docs/design.md test vectors (00 01 .. 1f).
DESIGN_ROOT_SEED=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
# The backend HSM the tests' configurations name.
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# scratch_dir NAME: T becomes an empty directory of this test's own, $DDSM_TEST_DIR/NAME.
scratch_dir() {
    T=$DDSM_TEST_DIR/$1
    rm -rf "$T"
    mkdir -p "$T"
}

# run CMD...: stdout in $OUT (and $T/out), stderr in $ERR (and $T/err), exit code in $RC; stdin
# is never a terminal. Needs scratch_dir first.
run() {
    set +e
    "$@" </dev/null >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}
# expect RC CMD...: run it; any other exit code fails the test, showing both outputs.
expect() {
    local want=$1
    shift
    run "$@"
    [ "$RC" = "$want" ] || fail "'$*' exited $RC, expected $want
--- stdout:
$OUT
--- stderr:
$ERR"
}
err_has() { [[ "$ERR" == *"$1"* ]] || fail "stderr lacks \"$1\": $ERR"; }
out_has() { [[ "$OUT" == *"$1"* ]] || fail "stdout lacks \"$1\": $OUT"; }
out_lacks() { [[ "$OUT" != *"$1"* ]] || fail "stdout has \"$1\": $OUT"; }
# same GOT WANT WHAT
same() { [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"; }
# The fingerprint line of $OUT (root create, import, recover, info).
fingerprint() { awk '/^fingerprint:/ {print $2}' <<<"$OUT"; }

# sql QUERY: one statement on this test's database, unaligned, tuples only.
sql() { "$DDSM_TEST_PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
# json_get KEY... <JSON: the value at that path.
json_get() { /usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin)
for k in sys.argv[1:]: d = d[k]
print(d)' "$@"; }

with_pin() { DDSM_PIN=$DDSM_TEST_PIN "$@"; }
# ctl ARGS...: ddsmctl with the user PIN.
ctl() { with_pin "$DDSM_CTL" "$@"; }
# The docs/design.md root imported into the test token, on a migrated database.
import_design_root() {
    printf '%s\n' "$DESIGN_ROOT_SEED" >"$DDSM_TEST_DIR/design-root.hex"
    ctl db migrate >/dev/null
    ctl root import --hex-file "$DDSM_TEST_DIR/design-root.hex" >/dev/null
}
# asset_active LABEL [REGISTER-OPTIONS...]: a registered and activated asset.
asset_active() {
    ctl asset register --label "$1" "${@:2}" >/dev/null
    ctl asset activate "$1" >/dev/null
}
# asset_key ASSET FIELD: a field of the asset's key (label, id) from `asset show --json`.
asset_key() { "$DDSM_CTL" asset show "$1" --json | json_get key "$2"; }
# cka_id UUID PATH: a virtual key's CKA_ID, computed independently of the module: the 16 uuid
# bytes then the path's UTF-8 bytes (pass the canonical path for the id the module reports), in hex.
cka_id() {
    { printf '%s' "${1//-/}" | xxd -r -p; printf '%s' "$2"; } | od -An -tx1 -v | tr -d ' \n'
}

# p11 ARGS...: pkcs11-tool on the module; p11_user: logged in with the user PIN.
p11() { pkcs11-tool --module "$DDSM_MODULE" "$@"; }
p11_user() { p11 --login --pin "$DDSM_TEST_PIN" "$@"; }
# softhsm_user ARGS...: pkcs11-tool on the backend token "custody" (of the current
# SOFTHSM2_CONF) itself, logged in with the user PIN.
softhsm_user() {
    pkcs11-tool --module "$SOFTHSM_MODULE" --token-label custody --login --pin "$DDSM_TEST_PIN" "$@"
}

# conf_variant FILE SED-SCRIPT: $DDSM_CONF edited by the script, as a 0600 configuration FILE.
conf_variant() {
    sed -e "$2" "$DDSM_CONF" >"$1"
    chmod 600 "$1"
}
# conf_store_unreachable FILE: $DDSM_CONF with a store nobody listens on.
conf_store_unreachable() {
    conf_variant "$1" \
        's/^conninfo = .*/conninfo = host=127.0.0.1 port=1 dbname=nope connect_timeout=2/'
}
