#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The manual pages the build generates render with man(1) and groff without a warning, carry
# what their one source says (every ddsmctl command and subcommand's --help, every key of the
# example configuration), and the bash completion of ddsmctl completes commands, subcommands and
# options from the built ddsmctl.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL DDSM_BUILD_DIR DDSM_SOURCE_DIR
scratch_dir manuals
man=$DDSM_BUILD_DIR/docs/man
if [ "$(sed -n 's/^DDSM_SANITIZE:[A-Z]*=//p' "$DDSM_BUILD_DIR/CMakeCache.txt")" != OFF ]; then
    echo "skip: sanitizer builds generate no manual pages (they are never installed)"
    exit 77
fi

echo "== each page renders without a warning"
for page in ddsmctl.8 ddsm.conf.5 ddsm-bench.1 ddsm-pkcs11.7; do
    [ -s "$man/$page" ] || fail "$man/$page was not generated"
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all -l "$man/$page" >"$T/$page.txt" 2>"$T/$page.err" ||
        fail "man -l $page failed: $(cat "$T/$page.err")"
    [ -s "$T/$page.err" ] && fail "man -l $page warns: $(cat "$T/$page.err")"
    [ "$(wc -l <"$T/$page.txt")" -gt 20 ] || fail "$page renders almost nothing"
    name=${page%.*}
    grep -q "^NAME" "$T/$page.txt" || fail "$page has no NAME section"
    grep -qi "^ *$name" "$T/$page.txt" || fail "$page does not name $name"
done
# The roff a page is made of, checked by groff itself too (what lintian runs).
for page in ddsmctl.8 ddsm.conf.5 ddsm-bench.1 ddsm-pkcs11.7; do
    LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 "$man/$page" 2>"$T/groff.err" ||
        fail "groff $page failed"
    [ -s "$T/groff.err" ] && fail "groff warns on $page: $(cat "$T/groff.err")"
done

echo "== ddsmctl(8) is ddsmctl's help: every command and subcommand"
flat() { tr -s ' \n' ' ' <"$1"; }
page=$(flat "$T/ddsmctl.8.txt")
for words in "db migrate" "db maintain" "root create" "root info" "asset register" "asset show" \
    "audit verify" "reconcile" "zone disable" "status" "metrics"; do
    [[ "$page" == *"ddsmctl $words"* ]] || fail "ddsmctl(8) lacks the section ddsmctl $words"
    # shellcheck disable=SC2086
    expect 0 "$DDSM_CTL" $words --help
    first=$(sed -n '3p' "$T/out" | tr -s ' ')
    [[ "$page" == *"$first"* ]] || fail "ddsmctl(8) lacks the help of $words: '$first'"
done
[[ "$page" == *"status [--reconcile-since DURATION] [--json]"* ]] || fail "ddsmctl(8): status --json"

echo "== ddsm.conf(5) names every key of the example configuration"
conf=$(flat "$T/ddsm.conf.5.txt")
keys=$(sed -n 's/^[;#]\{0,1\} \{0,1\}\([a-z_]*\) = .*/\1/p' "$DDSM_SOURCE_DIR/conf/ddsm.conf.example" | sort -u)
[ "$(wc -l <<<"$keys")" -gt 20 ] || fail "too few keys found in the example: $keys"
for k in $keys; do
    [[ "$conf" == *"$k = "* ]] || fail "ddsm.conf(5) lacks the key $k"
done
for s in $(sed -n 's/^\(\[[a-z_]*\]\)$/\1/p' "$DDSM_SOURCE_DIR/conf/ddsm.conf.example"); do
    [[ "$conf" == *"$s"* ]] || fail "ddsm.conf(5) lacks the section $s"
done

echo "== ddsm-bench(1) is ddsm-bench's help"
[[ "$(flat "$T/ddsm-bench.1.txt")" == *"--scenario NAME"* ]] || fail "ddsm-bench(1) lacks its options"

echo "== bash completion of ddsmctl"
comp=$DDSM_SOURCE_DIR/conf/bash-completion/ddsmctl
cat >"$T/complete.sh" <<'SH'
. /usr/share/bash-completion/bash_completion
. "$1"
ctl=$2
shift 2
COMP_WORDS=("$ctl" "$@")
COMP_CWORD=$(($# ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
_ddsmctl
printf '%s\n' "${COMPREPLY[@]}"
SH
complete_() { run bash "$T/complete.sh" "$comp" "$DDSM_CTL" "$@"; [ "$RC" = 0 ] || fail "completion: $ERR"; }
complete_ ""
for c in db root asset audit reconcile zone status metrics; do
    grep -qx "$c" "$T/out" || fail "completion of '' lacks $c: $OUT"
done
complete_ r
same "$(sort "$T/out" | tr '\n' ' ')" "reconcile root " "completion of 'r'"
complete_ root ""
same "$(sort "$T/out" | tr '\n' ' ')" "create import info pin recover " "completion of 'root '"
complete_ --conf /dev/null asset re
same "$(sort "$T/out" | tr '\n' ' ')" "register retire " "completion of 'asset re'"
complete_ audit verify --
for o in --since --instance --allow-pre-chain --json --pin-file; do
    grep -qx -- "$o" "$T/out" || fail "completion of 'audit verify --' lacks $o: $OUT"
done
complete_ status --j
same "$OUT" "--json" "completion of 'status --j'"
complete_ nosuchcommand ""
same "$OUT" "" "completion after an unknown command"
echo "ok: manual pages render and carry their sources; completion completes"
