#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `cmake --install` of this build, into a staging directory (DESTDIR), lays out what a PKCS#11
# module on Debian installs and nothing else: the module in p11-kit's module directory with its
# p11-kit registration, the vendor header alone with a pkg-config file, ddsmctl in sbin, the
# example configuration under /etc/ddsm (0640); ddsm-bench only as its own component. Then, from
# the staged files only: the header compiles alone and through pkg-config, every program reports
# the project's version (C_GetInfo through pkcs11-tool), no binary links a library it does not
# use, and the hardening the build claims is in the binaries.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_BUILD_DIR DDSM_SOURCE_DIR

scratch_dir install
stage=$T/stage
cache() { sed -n "s/^$1:[A-Z]*=//p" "$DDSM_BUILD_DIR/CMakeCache.txt"; }
prefix=$(cache CMAKE_INSTALL_PREFIX)
libdir=$(cache CMAKE_INSTALL_LIBDIR)
moddir=$(cache DDSM_P11_MODULE_DIR)
cfgdir=$(cache DDSM_P11_CONFIGS_DIR)
sanitize=$(cache DDSM_SANITIZE)
unitdir=$(cache DDSM_SYSTEMD_UNIT_DIR)
sysusersdir=$(cache DDSM_SYSUSERS_DIR)
tmpfilesdir=$(cache DDSM_TMPFILES_DIR)
compldir=$(cache DDSM_BASH_COMPLETION_DIR)
hardening=$(cache DDSM_HARDENING)
version=$(sed -n 's/^project(ddsm-pkcs11 VERSION \([0-9.]*\) .*/\1/p' "$DDSM_SOURCE_DIR/CMakeLists.txt")
[ -n "$version" ] || fail "no project(VERSION) in CMakeLists.txt"

# p11-kit's own directories, relative to its prefix, are where the module and registration go.
p11prefix=$(pkg-config --variable=prefix p11-kit-1)
p11modpath=$(pkg-config --variable=p11_module_path p11-kit-1)
p11configs=$(pkg-config --variable=p11_module_configs p11-kit-1)
same "$moddir" "${p11modpath#"$p11prefix"/}" "module directory"
same "$cfgdir" "${p11configs#"$p11prefix"/}" "registration directory"

expect 0 env DESTDIR="$stage" cmake --install "$DDSM_BUILD_DIR"

# Exactly these files, nothing else (no internal header, no bench, nothing in plain lib/).
got=$(cd "$stage" && find . -type f -o -type l | sed 's|^\.||' | sort)
want=$(sed '/^$/d' <<EOF | sort
$prefix/$moddir/libddsm-pkcs11.so
$prefix/$cfgdir/ddsm-pkcs11.module
$prefix/include/ddsm/pkcs11-ddsm.h
$prefix/$libdir/pkgconfig/ddsm-pkcs11.pc
$prefix/sbin/ddsmctl
/etc/ddsm/ddsm.conf.example
/etc/ddsm/openssl-pkcs11.cnf
$sysusersdir/ddsm.conf
$tmpfilesdir/ddsm.conf
$compldir/ddsmctl
$(cd "$DDSM_SOURCE_DIR/conf/systemd" && for u in *; do echo "$unitdir/$u"; done)
$(if [ "$sanitize" = OFF ]; then
    echo "$prefix/share/man/man8/ddsmctl.8"
    echo "$prefix/share/man/man5/ddsm.conf.5"
    echo "$prefix/share/man/man7/ddsm-pkcs11.7"
fi)
EOF
)
same "$got" "$want" "installed files"
for f in ddsm.conf.example openssl-pkcs11.cnf; do
    same "$(stat -c %a "$stage/etc/ddsm/$f")" 640 "mode of /etc/ddsm/$f"
done

# ddsm-bench creates and drops tables: installed only when asked for, beside no admin tool.
bench_stage=$T/bench
expect 0 env DESTDIR="$bench_stage" cmake --install "$DDSM_BUILD_DIR" --component bench
want=$prefix/bin/ddsm-bench
[ "$sanitize" = OFF ] && want=$(printf '%s\n' "$want" "$prefix/share/man/man1/ddsm-bench.1" | sort)
same "$(cd "$bench_stage" && find . -type f | sed 's|^\.||' | sort)" "$want" "bench component"

module=$stage$prefix/$moddir/libddsm-pkcs11.so
ctl=$stage$prefix/sbin/ddsmctl
bench=$bench_stage$prefix/bin/ddsm-bench

# The registration: pkcs11.conf(5) keys, loaded only in the programs it names.
reg=$stage$prefix/$cfgdir/ddsm-pkcs11.module
grep -qx 'enable-in: p11-kit, p11-kit-proxy, p11tool' "$reg" || fail "enable-in missing: $(cat "$reg")"
if [ "$prefix/$moddir" = "$p11modpath" ]; then
    grep -qx 'module: libddsm-pkcs11.so' "$reg" || fail "module: not by name: $(cat "$reg")"
else
    grep -qx "module: $prefix/$moddir/libddsm-pkcs11.so" "$reg" || fail "module: path: $(cat "$reg")"
fi

# The public header compiles alone, with nothing but the C library, as C99 and C++, and beside
# p11-kit's pkcs11.h in either order.
hdr_inc=$stage$prefix/include
cat >"$T/alone.c" <<'EOF'
#include <ddsm/pkcs11-ddsm.h>
int main(void)
{
    unsigned char buf[DDSM_DERIVE_PARAM_MAX];
    const unsigned char id[16] = {0};
    return ddsm_derive_param(buf, sizeof(buf), id, "m/0") == 19 && CKA_DDSM_STATE != 0 ? 0 : 1;
}
EOF
for std in c99 c11 gnu17; do
    expect 0 cc -std=$std -Wall -Wextra -Werror -pedantic -Wmissing-prototypes -Wstrict-prototypes \
        -I"$hdr_inc" -o "$T/alone" "$T/alone.c"
done
expect 0 "$T/alone"
if command -v c++ >/dev/null; then
    expect 0 c++ -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ -I"$hdr_inc" "$T/alone.c"
fi
for order in before after; do
    {
        [ $order = before ] && echo '#include <p11-kit/pkcs11.h>'
        echo '#include <ddsm/pkcs11-ddsm.h>'
        [ $order = after ] && echo '#include <p11-kit/pkcs11.h>'
        echo '_Static_assert(CKM_DDSM_DERIVE >= CKM_VENDOR_DEFINED, "vendor range");'
        echo '_Static_assert(CKA_DDSM_PATH >= CKA_VENDOR_DEFINED, "vendor range");'
        echo 'static const CK_MECHANISM_TYPE m = CKM_DDSM_DERIVE;'
        echo 'int main(void) { return m == CKM_DDSM_DERIVE ? 0 : 1; }'
    } >"$T/with_p11kit_$order.c"
    expect 0 cc -std=c11 -Wall -Wextra -Werror -pedantic -I"$hdr_inc" \
        $(pkg-config --cflags p11-kit-1) -o "$T/with_$order" "$T/with_p11kit_$order.c"
done

# pkg-config, from the staged .pc with its prefix moved to the stage (PKG_CONFIG_SYSROOT_DIR would
# move p11-kit's flags too): version, module path, and its flags alone build a program.
mkdir -p "$T/pc"
sed "s|^prefix=$prefix\$|prefix=$stage$prefix|" "$stage$prefix/$libdir/pkgconfig/ddsm-pkcs11.pc" \
    >"$T/pc/ddsm-pkcs11.pc"
export PKG_CONFIG_PATH=$T/pc
same "$(pkg-config --modversion ddsm-pkcs11)" "$version" "pkg-config --modversion"
same "$(pkg-config --variable=module ddsm-pkcs11)" "$module" "pkg-config --variable=module"
same "$(pkg-config --libs ddsm-pkcs11)" "" "pkg-config --libs (the module is loaded, not linked)"
# shellcheck disable=SC2046
expect 0 cc -std=c11 -Wall -Werror $(pkg-config --cflags ddsm-pkcs11) -o "$T/pc/prog" \
    "$T/with_p11kit_before.c"
unset PKG_CONFIG_PATH

# One version, everywhere: the tools and C_GetInfo's libraryVersion.
expect 0 "$ctl" --version
same "$OUT" "ddsmctl $version" "ddsmctl --version"
expect 0 "$bench" --version
same "$OUT" "ddsm-bench $version" "ddsm-bench --version"
expect 0 pkcs11-tool --module "$module" --show-info
major_minor=${version%.*}
out_has "(ver $major_minor)"

# Tracing every call with OpenSC's pkcs11-spy in front of the installed module (docs/logging.md).
spy=/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so
expect 0 env PKCS11SPY="$module" PKCS11SPY_OUTPUT="$T/spy.log" pkcs11-tool --module "$spy" -L
out_has "token label        : custody"
grep -q '^[0-9]*: C_GetSlotList' "$T/spy.log" || fail "no C_GetSlotList in the spy's trace"
grep -q 'Returned:  0 CKR_OK' "$T/spy.log" || fail "no results in the spy's trace"

if [ "$sanitize" = ON ]; then
    echo "note: sanitizer build: link and hardening checks are for the build that is installed"
    exit 0
fi

# Nothing linked that is not used (libssl was: only libcrypto is), for every installed binary.
for bin in "$module" "$ctl" "$bench"; do
    run ldd -u -r "$bin"
    unused=$(grep -v '^Unused direct dependencies:' <<<"$OUT" | sed '/^[[:space:]]*$/d' || true)
    same "$unused" "" "unused direct dependencies of ${bin##*/}"
    readelf -d "$bin" | grep -q 'NEEDED.*libssl' && fail "${bin##*/} links libssl"
done

# Hardening: full RELRO and BIND_NOW always; stack protector and _FORTIFY_SOURCE when the build
# added them (DDSM_HARDENING) or the packager's flags did (then they are theirs to check).
for bin in "$module" "$ctl" "$bench"; do
    readelf -lW "$bin" | grep -q GNU_RELRO || fail "${bin##*/}: no RELRO segment"
    readelf -dW "$bin" | grep -Eq 'BIND_NOW|FLAGS.*NOW' || fail "${bin##*/}: not linked with -z now"
done
if [ "$hardening" = ON ]; then
    for bin in "$module" "$ctl"; do
        syms=$(readelf -sW --dyn-syms "$bin")
        grep -q '__stack_chk_fail' <<<"$syms" || fail "${bin##*/}: no stack protector"
        grep -Eq '__[a-z]+_chk@' <<<"$syms" || fail "${bin##*/}: no _FORTIFY_SOURCE checks"
    done
fi
echo "ok: install layout, header, pkg-config, version, links and hardening"
