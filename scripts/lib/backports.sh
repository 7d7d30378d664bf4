# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Sourced by common.sh: Debian's bookworm-backports suite, the one extra apt suite the project
# uses, for the packages Debian 12 has only there (pkcs11-provider 1.0, the OpenSSL 3 provider).
# The suite is added as an apt source next to the machine's own Debian source, with that source's
# mirror (URIs) and keyring (Signed-By), so a machine that reaches Debian through a mirror or a
# snapshot keeps doing so. Nothing is pinned: apt never prefers backports on its own (the suite is
# NotAutomatic), only for the packages installed with -t bookworm-backports.

# Installed from bookworm-backports (apt-get -t); DDSM_DEBS holds the rest.
DDSM_BACKPORTS_DEBS=(pkcs11-provider)
DDSM_BACKPORTS_LIST=/etc/apt/sources.list.d/ddsm-bookworm-backports.sources

# ddsm_debian_source: "URIS<TAB>SIGNED-BY" of the machine's main Debian source, the one whose
# suites include bookworm itself (not -security, not -updates). Reads the deb822 file
# /etc/apt/sources.list.d/debian.sources, else one-line "deb [signed-by=...] URI bookworm ..."
# entries in /etc/apt/sources.list. Empty when there is none.
ddsm_debian_source() {
    local f=/etc/apt/sources.list.d/debian.sources
    if [ -r "$f" ]; then
        # deb822: stanzas separated by blank lines; fields "Name: value".
        awk 'function flush() { if (deb && main && uris != "") { print uris "\t" sig; found = 1; exit } }
             BEGIN { RS = ""; FS = "\n" }
             { deb = 0; main = 0; uris = ""; sig = ""
               for (i = 1; i <= NF; i++) {
                   line = $i; if (line ~ /^#/) continue
                   split(line, kv, ":"); key = tolower(kv[1]); val = substr(line, length(kv[1]) + 2)
                   gsub(/^[ \t]+|[ \t]+$/, "", val)
                   if (key == "types" && (" " val " ") ~ / deb /) deb = 1
                   if (key == "suites" && (" " val " ") ~ / bookworm /) main = 1
                   if (key == "uris") uris = val
                   if (key == "signed-by") sig = val
               }
               flush() }' "$f"
        return 0
    fi
    [ -r /etc/apt/sources.list ] || return 0
    # One-line format: deb [opt=val ...] URI SUITE COMPONENT...
    awk '$1 == "deb" {
             sig = ""; i = 2
             if ($2 ~ /^\[/) {
                 for (; i <= NF; i++) {
                     o = $i; gsub(/[\[\]]/, "", o)
                     if (o ~ /^signed-by=/) { sub(/^signed-by=/, "", o); sig = o }
                     if ($i ~ /\]$/) { i++; break }
                 }
             }
             if ($(i + 1) == "bookworm") { print $i "\t" sig; exit }
         }' /etc/apt/sources.list
}

# ddsm_backports_source: writes $DDSM_BACKPORTS_LIST unless some apt source already names
# bookworm-backports. Returns 0 when the suite is (now) configured.
ddsm_backports_source() {
    local src uris sig
    if grep -rqsE '(^|[[:space:]])bookworm-backports([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    src=$(ddsm_debian_source)
    [ -n "$src" ] || ddsm_die "no Debian bookworm apt source found to copy for bookworm-backports"
    uris=${src%%$'\t'*}
    sig=${src#*$'\t'}
    ddsm_say "adding Debian's bookworm-backports suite ($uris) for: ${DDSM_BACKPORTS_DEBS[*]}"
    {
        echo "# Added by ddsm-pkcs11's install step, for ${DDSM_BACKPORTS_DEBS[*]}."
        echo "Types: deb"
        echo "URIs: $uris"
        echo "Suites: bookworm-backports"
        echo "Components: main"
        [ -z "$sig" ] || echo "Signed-By: $sig"
    } > "$DDSM_BACKPORTS_LIST"
}

# ddsm_install_backports: installs the missing DDSM_BACKPORTS_DEBS from bookworm-backports.
ddsm_install_backports() {
    local missing=() p
    for p in "${DDSM_BACKPORTS_DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || ddsm_die "missing Debian packages (${missing[*]}, from bookworm-backports); run as root to install them"
    ddsm_backports_source
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends -t bookworm-backports "${missing[@]}" </dev/null >/dev/null
}
