#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The grace window of a rotation is measured against the server's clock only: a module host whose
# wall clock is off (libfaketime, from Debian's faketime, shifts the application's CLOCK_REALTIME
# and leaves its monotonic clock alone) neither closes the window early nor keeps it open late.
#  - clock 2 h ahead, grace 1 h: the previous key still verifies (and never signs);
#  - clock 2 h behind, grace 3 s: once the server's own clock is past the window's end by a
#    second, the previous key no longer verifies.
# PyKCS11 is the application; rotations go through ddsmctl, on the real clock.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL
PY=${DDSM_PYTHON:-/usr/bin/python3}
$PY -c 'import PyKCS11' 2>/dev/null ||
    fail "python3-pykcs11 is not installed (scripts/lib/common.sh installs it)"
FT=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
[ -e "$FT" ] || fail "libfaketime is not installed (scripts/lib/common.sh installs faketime)"

import_design_root
asset_active ahead --id 7a000000-0000-4000-8000-0000000000a1 --default-path m/0
asset_active behind --id 7a000000-0000-4000-8000-0000000000b1 --default-path m/0

# skewed OFFSET ARGS...: the application under a shifted wall clock. In the sanitizer pass the
# host is asan-host, which owns LD_PRELOAD: libfaketime goes after the sanitizer runtimes.
skewed() {
    local offset=$1
    shift
    # Only the wall clock moves; the module's monotonic waits stay as they are.
    export FAKETIME=$offset FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_FORCE_MONOTONIC_FIX=0
    if [ -n "${DDSM_ASAN_PRELOAD:-}" ]; then
        DDSM_ASAN_PRELOAD="$DDSM_ASAN_PRELOAD $FT" "$PY" "$@"
    else
        LD_PRELOAD=$FT "$PY" "$@"
    fi
    unset FAKETIME FAKETIME_DONT_FAKE_MONOTONIC FAKETIME_FORCE_MONOTONIC_FIX
}

script=$DDSM_TEST_DIR/grace.py
cat >"$script" <<'EOF'
import os, subprocess, sys, time
import PyKCS11

module, pin, ctl, psql, label, grace, expect = sys.argv[1:8]

def fail(msg):
    sys.exit("FAIL: " + msg)

# Helpers run on the real clock.
clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "FAKETIME")}
clean["DDSM_PIN"] = pin
def pause():
    # Not time.sleep: its clock_nanosleep is interposed by libfaketime (EINVAL when behind).
    subprocess.run(["sleep", "0.1"], env=clean, check=True)
def server(sql):
    return subprocess.run([psql, "-XAtq", "-c", sql], env=clean, check=True,
                          capture_output=True, text=True).stdout.strip()

lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slot = lib.getSlotList(tokenPresent=True)[0]
s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
s.login(pin)
asset_id = server("SELECT asset_id FROM custody_keys WHERE label = '%s'" % label)
key = s.findObjects([(PyKCS11.CKA_LABEL, asset_id + "/m/0")])[0]
hmac = PyKCS11.Mechanism(PyKCS11.CKM_SHA256_HMAC, None)
data = b"signed before the rotation"
sig = bytes(s.sign(key, data, hmac))
if abs(float(server("SELECT extract(epoch FROM clock_timestamp())")) - time.time()) < 3000:
    fail("the application's wall clock is not shifted: libfaketime had no effect")

subprocess.run([ctl, "asset", "rotate", label, "--grace", grace], env=clean, check=True,
               stdout=subprocess.DEVNULL)
# Wait until the module has heard of the rotation: the old key stops signing (a condition, with
# a generous bound; nothing asserts how soon).
refusal = None
for attempt in range(300):
    try:
        s.sign(key, data, hmac)
        pause()
    except PyKCS11.PyKCS11Error as e:
        refusal = e.value
        break
if refusal is None:
    fail("the old key still signs after the rotation")

def verifies():
    try:
        return s.verify(key, data, sig, hmac)
    except PyKCS11.PyKCS11Error as e:
        return PyKCS11.CKR[e.value]

if expect == "open":
    if refusal != PyKCS11.CKR_KEY_FUNCTION_NOT_PERMITTED:
        fail("inside the grace window the old key's signing was refused with %s, expected "
             "CKR_KEY_FUNCTION_NOT_PERMITTED" % PyKCS11.CKR[refusal])
    got = verifies()
    if got is not True:
        fail("inside the grace window (by the server's clock) the old key does not verify: %s"
             % got)
else:
    # Wait, on the server's clock, for the window's end plus a second.
    for attempt in range(600):
        if server("SELECT clock_timestamp() > max(r.grace_until) + interval '1 second' "
                  "FROM custody_rotations r JOIN custody_keys k USING (asset_id) "
                  "WHERE k.label = '%s'" % label) == "t":
            break
        pause()
    else:
        fail("the server never saw the window end")
    got = verifies()
    if got != "CKR_KEY_HANDLE_INVALID":
        fail("after the grace window ended (by the server's clock) the old key gives %s, "
             "expected CKR_KEY_HANDLE_INVALID" % got)
s.logout()
s.closeSession()
print("PASS", label)
EOF

psql_bin=$DDSM_TEST_PGBIN/psql
skewed +2h "$script" "$DDSM_MODULE" "$DDSM_TEST_PIN" "$DDSM_CTL" "$psql_bin" ahead 1h open
skewed -2h "$script" "$DDSM_MODULE" "$DDSM_TEST_PIN" "$DDSM_CTL" "$psql_bin" behind 3s closed
echo "PASS"
