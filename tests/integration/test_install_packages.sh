#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Debian packages installed for real: builds them from the committed tree (scripts/package,
# lintian included), installs all four on this machine with apt, and then, through installed
# paths only, checks that p11-kit lists the module, that its token shows through p11-kit-proxy.so
# (in the programs the registration names),
# and runs the demo story against this test's throwaway PostgreSQL database and SoftHSM token
# (migrate, root create, register, activate, sign with pkcs11-tool, rotate, sign again, audit
# verify, reconcile). Then purges the packages and checks that nothing they installed is left,
# that /etc/ddsm and /var/lib/ddsm are gone, and that the set of installed packages is what it
# was. A trap purges and removes the ddsm user and group on any exit, so a failure midway leaves
# the machine as it found it. Skips (77) when not root or when any of the packages, /etc/ddsm or
# the user ddsm is already there: it never touches an installation it did not make.
# Label install; run alone (RUN_SERIAL): while installed, the module is registered in p11-kit for
# every program on the machine.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_SOURCE_DIR
scratch_dir installpkgs
pkgs=(libddsm-pkcs11 ddsm-tools libddsm-pkcs11-dev ddsm-bench)

[ "$(id -u)" = 0 ] || { echo "skip: installs packages: needs root"; exit 77; }
for p in "${pkgs[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed'; then
        echo "skip: $p is already installed here; this test only touches installs it makes"
        exit 77
    fi
done
for f in /etc/ddsm /var/lib/ddsm /run/ddsm; do
    [ -e "$f" ] && { echo "skip: $f exists; this test only touches installs it makes"; exit 77; }
done
getent passwd ddsm >/dev/null && { echo "skip: a user ddsm exists"; exit 77; }
had_group=0 had_clients=0
getent group ddsm >/dev/null && had_group=1
getent group ddsm-clients >/dev/null && had_clients=1

installed_set() { dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' | sort; }
installed_set >"$T/before.pkgs"

export DEBIAN_FRONTEND=noninteractive
apt_() { apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" </dev/null; }
cleanup() {
    local rc=$?
    set +e
    if [ -n "$(dpkg-query -W -f='${db:Status-Abbrev}\n' "${pkgs[@]}" 2>/dev/null | grep -v '^un')" ]
    then
        echo "cleanup: purging ${pkgs[*]}"
        dpkg --purge "${pkgs[@]}" >/dev/null 2>&1
    fi
    getent passwd ddsm >/dev/null && deluser --quiet --system ddsm >/dev/null 2>&1
    if [ "$had_group" = 0 ] && getent group ddsm >/dev/null; then
        delgroup --quiet --system ddsm >/dev/null 2>&1
    fi
    if [ "$had_clients" = 0 ] && getent group ddsm-clients >/dev/null; then
        delgroup --quiet --system ddsm-clients >/dev/null 2>&1
    fi
    rm -rf /etc/ddsm /var/lib/ddsm /run/ddsm
    exit $rc
}
trap cleanup EXIT

started=$SECONDS
if [ -n "${DDSM_TEST_DEBS:-}" ]; then
    # Developers re-running the test: the .debs scripts/package left in DDSM_TEST_DEBS.
    echo "== the packages in $DDSM_TEST_DEBS (DDSM_TEST_DEBS), not rebuilt"
    mkdir "$T/debs"
    cp "$DDSM_TEST_DEBS"/*.deb "$T/debs/"
else
    echo "== build the packages (scripts/package: dpkg-buildpackage and lintian)"
    "$DDSM_SOURCE_DIR/scripts/package" "$T/debs" >"$T/package.log" 2>&1 ||
        fail "scripts/package failed: $(tail -30 "$T/package.log")"
    echo "   built in $((SECONDS - started)) s"
fi
debs=()
for p in "${pkgs[@]}"; do
    f=$(ls "$T/debs/${p}"_*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ] || fail "no $p package in $T/debs"
    debs+=("$f")
done

echo "== install them with apt"
apt_ install --no-install-recommends "${debs[@]}" >"$T/apt.log" 2>&1 ||
    fail "apt-get install failed: $(tail -30 "$T/apt.log")"
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" | grep -q '^ii' || fail "$p not installed"
done
# Nothing else came with them: every dependency was already there.
installed_set | grep -Ev "^($(IFS='|'; echo "${pkgs[*]}")) " >"$T/during.pkgs"
same "$(diff "$T/before.pkgs" "$T/during.pkgs")" "" "packages changed by the install"
for p in "${pkgs[@]}"; do dpkg -L "$p"; done | sort -u >"$T/files"

echo "== what the packages set up"
getent passwd ddsm | grep -q ':/var/lib/ddsm:/usr/sbin/nologin$' || fail "user ddsm: $(getent passwd ddsm)"
getent group ddsm-clients >/dev/null || fail "no group ddsm-clients"
same "$(stat -c '%a %U %G' /etc/ddsm)" "750 root ddsm" "/etc/ddsm"
same "$(stat -c '%a %U %G' /etc/ddsm/ddsm.conf.example)" "640 root ddsm" "ddsm.conf.example"
if command -v systemd-tmpfiles >/dev/null; then
    same "$(stat -c '%a %U %G' /var/lib/ddsm/metrics)" "755 ddsm ddsm" "/var/lib/ddsm/metrics"
fi
for u in ddsm-maintain.timer ddsm-audit-verify.timer ddsm-reconcile.timer ddsm-metrics.timer; do
    [ -f "/lib/systemd/system/$u" ] || fail "$u not installed"
    ls /etc/systemd/system/*/"$u" >/dev/null 2>&1 && fail "$u was enabled by the install"
done
true

echo "== installed paths only from here"
module=$(pkg-config --variable=module ddsm-pkcs11)
same "$module" "$(pkg-config --variable=p11_module_path p11-kit-1)/libddsm-pkcs11.so" "module path"
[ -f "$module" ] || fail "$module missing"
ctl=/usr/sbin/ddsmctl
# The installed ddsmctl, also for testlib's helpers (ctl, asset_key).
DDSM_CTL=$ctl
ctl() { DDSM_PIN=$DDSM_TEST_PIN "$ctl" "$@"; }
version=$(pkg-config --modversion ddsm-pkcs11)
expect 0 "$ctl" --version
same "$OUT" "ddsmctl $version" "ddsmctl --version"
expect 0 /usr/bin/ddsm-bench --version
same "$OUT" "ddsm-bench $version" "ddsm-bench --version"
expect 0 man -w ddsmctl
expect 0 man -w 5 ddsm.conf
expect 0 man -w 7 ddsm-pkcs11
expect 0 man -w 1 ddsm-bench
expect 0 bash -c '. /usr/share/bash-completion/bash_completion
    _completion_loader ddsmctl; COMP_WORDS=(ddsmctl au); COMP_CWORD=1
    COMP_LINE="ddsmctl au"; COMP_POINT=${#COMP_LINE}; _ddsmctl
    printf "%s\n" "${COMPREPLY[@]}"'
same "$OUT" "audit" "installed completion of 'ddsmctl au'"

echo "== the story: migrate, root, asset"
expect 0 "$ctl" db migrate
expect 0 ctl root create
expect 0 ctl asset register --label btc-hot-wallet --default-path "m/44'/0'/0'/0/0"
expect 0 ctl asset activate btc-hot-wallet
keyid=$("$ctl" asset show btc-hot-wallet --json | json_get key id)
[ -n "$keyid" ] || fail "no key id"

echo "== p11-kit lists the module; its token shows through p11-kit-proxy.so"
expect 0 p11-kit list-modules
awk '/^ddsm-pkcs11: /{f = 1; print; next} /^[^ ]/{f = 0} f' "$T/out" >"$T/ours"
grep -q '^ddsm-pkcs11: libddsm-pkcs11.so' "$T/ours" || fail "p11-kit list-modules lacks it: $OUT"
grep -q "library-manufacturer: ddsm-pkcs11" "$T/ours" || fail "not our module: $(cat "$T/ours")"
grep -q "token: custody" "$T/ours" || fail "no token custody under the module: $(cat "$T/ours")"
proxy=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
[ -f "$proxy" ] || fail "no $proxy"
# p11-kit (0.24) checks enable-in against the program's own name also when it loads modules for
# p11-kit-proxy.so: a program the registration names (here pkcs11-tool run under the name p11tool)
# sees the module's slot through the proxy, any other program does not. Ours is the slot whose
# token "custody" (passed through from SoftHSM) offers CKM_DDSM_DERIVE (0xc4530001).
mkdir "$T/bin"
ln -s "$(command -v pkcs11-tool)" "$T/bin/p11tool"
ddsm_slots() { # ddsm_slots PROGRAM: the proxy's slots that offer CKM_DDSM_DERIVE, as seen by it
    local s n=0
    expect 0 "$1" --module "$proxy" -L
    for s in $(sed -n 's/^Slot [0-9]* (\(0x[0-9a-f]*\)).*/\1/p' "$T/out"); do
        "$1" --module "$proxy" --slot "$s" -M 2>/dev/null | grep -qi '0xc4530001' && n=$((n + 1))
    done
    echo "$n"
}
same "$(ddsm_slots "$T/bin/p11tool")" 1 "ddsm slots through p11-kit-proxy.so in p11tool"
same "$(ddsm_slots pkcs11-tool)" 0 "ddsm slots through p11-kit-proxy.so in pkcs11-tool (not named)"

echo "== sign with pkcs11-tool, rotate, sign again"
printf 'transfer 1.5 BTC' >"$T/msg"
sign() {
    expect 0 pkcs11-tool --module "$module" --login --pin "$DDSM_TEST_PIN" --sign \
        -m SHA256-HMAC --id "$keyid" -i "$T/msg" -o "$T/$1"
}
sign sig0
expect 0 ctl asset rotate btc-hot-wallet
sign sig1
[ -s "$T/sig0" ] && [ -s "$T/sig1" ] || fail "empty signature"
cmp -s "$T/sig0" "$T/sig1" && fail "rotation did not change the key"

echo "== audit verify and reconcile"
expect 0 ctl audit verify
out_has "everything verifies"
expect 0 "$ctl" reconcile
out_has "0 findings"
rows=$(sql "SELECT count(*) FROM custody_audit_log WHERE event = 'DERIVE'")
[ "$rows" -ge 2 ] || fail "expected the two derivations audited, got $rows"

echo "== purge: nothing left"
dpkg --purge "${pkgs[@]}" >"$T/purge.log" 2>&1 || fail "dpkg --purge: $(cat "$T/purge.log")"
left=()
while IFS= read -r f; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    if [ -d "$f" ]; then
        # A directory may stay when another package owns it too or it holds others' files; an
        # empty one of ours alone is left behind (/lib is a symlink to usr/lib here: not ours).
        if [ ! -L "$f" ] && [ -z "$(ls -A "$f")" ] && ! dpkg-query -S "$f" >/dev/null 2>&1; then
            left+=("$f/")
        fi
    else
        left+=("$f")
    fi
done <"$T/files"
same "${left[*]:-}" "" "files left after purge"
for f in /etc/ddsm /var/lib/ddsm /run/ddsm; do
    if [ -e "$f" ]; then fail "$f left after purge: $(ls -la "$f")"; fi
done
ls /var/lib/systemd/deb-systemd-helper-enabled/ 2>/dev/null | grep -q ddsm &&
    fail "systemd state of the units left after purge"
p11-kit list-modules 2>/dev/null | grep -q '^ddsm-pkcs11:' && fail "p11-kit still lists the module"
installed_set >"$T/after.pkgs"
same "$(diff "$T/before.pkgs" "$T/after.pkgs")" "" "installed packages after purge"
echo "ok: built, installed, used through installed paths, purged clean in $((SECONDS - started)) s"
