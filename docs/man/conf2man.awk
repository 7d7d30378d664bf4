# SPDX-License-Identifier: Apache-2.0
# conf2man.awk: ddsm.conf(5) from the example configuration, its one source. The comment block
# before the first section is the description; each [section] a subsection; each key (set or
# commented out) with the comments above it an indented paragraph headed by the key as the
# example sets it. Lines starting "- " are list items.
#   awk -v version=V -f conf2man.awk ddsm.conf.example > ddsm.conf.5
function esc(s) {
    gsub(/\\/, "\\e", s)
    sub(/^[.']/, "\\\\\\&&", s)
    return s
}
function flush_text(   i) {
    for (i = 1; i <= n; i++) {
        if (text[i] == "") {
            print ".PP"
        } else if (text[i] ~ /^- /) {
            print ".IP \\(bu 2"
            print esc(substr(text[i], 3))
        } else {
            print esc(text[i])
        }
    }
    n = 0
}
BEGIN {
    print ".TH DDSM.CONF 5 \"\" \"ddsm-pkcs11 " version "\" \"File formats\""
    print ".SH NAME"
    print "ddsm.conf \\- configuration of the ddsm-pkcs11 module and its tools"
    print ".SH SYNOPSIS"
    print "/etc/ddsm/ddsm.conf, or the file \\fB$DDSM_CONF\\fR names"
    print ".SH DESCRIPTION"
    n = 0
    insection = 0
}
/^; SPDX-License-Identifier/ { next }
/^\[[a-z_]+\]/ {
    if (!insection) flush_text()
    insection = 1
    n = 0
    if (!options) { print ".SH OPTIONS"; options = 1 }
    print ".SS \"" $0 "\""
    next
}
/^[;#] ?[a-z_]+ = / && insection {
    # A commented-out key: an optional setting, shown as the example would set it.
    line = $0
    sub(/^[;#] ?/, "", line)
    print ".TP"
    print "\\fB" esc(line) "\\fR (commented out in the example)"
    flush_text()
    next
}
/^[;#]/ {
    line = $0
    sub(/^[;#] */, "", line)
    text[++n] = line
    next
}
/^[a-z_]+ *=/ {
    print ".TP"
    print "\\fB" esc($0) "\\fR"
    flush_text()
    next
}
/^[ \t]*$/ {
    if (!insection) { text[++n] = ""; next }
    # Comments not followed by a key describe the section.
    if (n > 0) { print ".PP"; flush_text() }
    next
}
END {
    if (n > 0) { print ".PP"; flush_text() }
    print ".SH FILES"
    print ".TP"
    print "/etc/ddsm/ddsm.conf.example"
    print "this file's source, installed with the comments"
    print ".SH SEE ALSO"
    print "ddsmctl(8), ddsm-pkcs11(7), ddsm-bench(1)"
}
