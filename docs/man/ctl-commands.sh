#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# ctl-commands.sh DDSMCTL: a help2man include section [COMMANDS] holding the --help of every
# ddsmctl command and subcommand, as the program prints it, so that ddsmctl(8) has one source:
# ddsmctl's own help text.
set -eu
ctl=$1
# roff: backslashes escaped, and no line may start with a control character.
lit() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
subs() {
    "$ctl" "$1" --help | awk '/Subcommands:/ { f = 1; next }
        f && /^  [a-z]+  / { print $1; next } f && !/^  / { f = 0 }'
}
echo "[COMMANDS]"
for cmd in db root asset audit reconcile zone status metrics; do
    s=$(subs "$cmd")
    if [ -z "$s" ]; then
        set -- "$cmd"
    else
        set -- $(for x in $s; do echo "$cmd:$x"; done)
    fi
    for c in "$@"; do
        words=$(echo "$c" | tr ':' ' ')
        echo ".SS \"ddsmctl $words\""
        echo ".nf"
        # shellcheck disable=SC2086
        "$ctl" $words --help | lit
        echo ".fi"
    done
done
