# SPDX-License-Identifier: Apache-2.0
# Shared by scripts/test, scripts/demo and the test wrappers: dependencies and the build.
# Source it; it defines functions only (plus DDSM_ROOT).

DDSM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$DDSM_ROOT/scripts/lib/backports.sh"

# Every Debian package the build, the tests and the demo need. Nothing else may be assumed.
DDSM_DEBS=(
    build-essential cmake pkg-config git ca-certificates
    libssl-dev openssl libpq-dev postgresql postgresql-client libinih-dev libcmocka-dev
    libp11-kit-dev libgfshare-dev libsecp256k1-dev
    softhsm2 opensc gnutls-bin p11-kit openssh-client openssh-server nodejs npm
    pgbouncer postgresql-15-auto-failover pg-auto-failover-cli
    valgrind clang python3 python3-pykcs11 xxd procps iproute2 util-linux faketime
    libengine-pkcs11-openssl python3-ecdsa
    prometheus
    p11-kit p11-kit-modules passwd systemd help2man man-db bash-completion
)

ddsm_say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
ddsm_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ddsm_install_deps() {
    local missing=() p provided
    provided=$(dpkg-query -W -f='${Provides}\n' 2>/dev/null)
    for p in "${DDSM_DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' && continue
        # Provided by an installed package (NodeSource's nodejs provides npm): present too.
        grep -qE "(^|, )$p( |,|$)" <<<"$provided" && continue
        missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && { ddsm_install_backports; return 0; }
    [ "$(id -u)" -eq 0 ] || ddsm_die "missing Debian packages (${missing[*]}); run as root to install them"
    ddsm_say "installing: ${missing[*]}"
    # We never use the system-wide cluster: keep the postgresql package from creating one.
    mkdir -p /etc/postgresql-common/createcluster.d
    [ -f /etc/postgresql-common/createcluster.d/ddsm.conf ] ||
        echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/ddsm.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
    ddsm_install_backports
}

# ddsm_build BUILD_DIR [cmake args...]
ddsm_build() {
    local dir=$1; shift
    ddsm_say "building into ${dir#$DDSM_ROOT/}"
    # Warnings are errors here and in CI; a packager's build leaves DDSM_WERROR off.
    cmake -S "$DDSM_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDDSM_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)" -- --no-print-directory >/dev/null ||
        { cmake --build "$dir" -j1 2>&1 | tail -40; ddsm_die "build failed"; }
}

ddsm_pgbin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] || ddsm_die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    echo "$d"
}
