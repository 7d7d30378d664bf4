#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# PyKCS11 (Debian's python3-pykcs11) with the store going down and coming back. PyKCS11's
# findObjects calls C_FindObjectsInit, C_FindObjects until it returns nothing, then
# C_FindObjectsFinal, and raises at the first error without ever calling C_FindObjectsFinal. A find
# that needs the store while it is down must therefore fail at C_FindObjectsInit and leave no
# operation active: once the store is back, the same session finds again (never
# CKR_OPERATION_ACTIVE), without the application restarting anything.
# The store is a private cluster of this test's own (scripts/lib/services on $DDSM_TEST_DIR/pg),
# halted and restarted on the same port, so that nothing else is disturbed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL DDSM_SOURCE_DIR
PY=${DDSM_PYTHON:-/usr/bin/python3}
$PY -c 'import PyKCS11' 2>/dev/null ||
    fail "python3-pykcs11 is not installed (scripts/lib/common.sh installs it)"

svc=$DDSM_SOURCE_DIR/scripts/lib/services
pg=$DDSM_TEST_DIR/pg
trap '"$svc" stop "$pg" >/dev/null 2>&1 || true' EXIT
"$svc" start "$pg" >/dev/null
conninfo="$(cat "$pg/conninfo") dbname=postgres connect_timeout=2"
conf_variant "$DDSM_TEST_DIR/pg.conf" "s|^conninfo = .*|conninfo = $conninfo|"
export DDSM_CONF=$DDSM_TEST_DIR/pg.conf

import_design_root
asset_active vec-a --id 6f9619ff-8b86-d011-b42d-00c04fc964ff --default-path "m/44'/0'/0'/0/0"

$PY - "$DDSM_MODULE" "$DDSM_TEST_PIN" "$svc" "$pg" <<'EOF'
import os, subprocess, sys, time
# The cluster's tools run without this host's preloads: under the sanitizer pass the runtime is
# preloaded here (scripts/lib/asan-host), and pg_ctl hangs with it.
clean = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
import PyKCS11
from PyKCS11 import LowLevel

module, pin, svc, pg = sys.argv[1:5]
STORE_DOWN = 0x44530000 | 0x01  # DDSM_DEVERR_STORE_DOWN (pkcs11-ddsm.h)

def fail(msg):
    sys.exit("FAIL: " + msg)

lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slot = lib.getSlotList(tokenPresent=True)[0]
s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
s.login(pin)
# A class-only template lists every asset: it always needs the store.
template = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY)]
label = "6f9619ff-8b86-d011-b42d-00c04fc964ff/m/44'/0'/0'/0/0"

def virtual_labels():
    out = []
    for h in s.findObjects(template):
        if h.value() >= 0x80000000:
            out.append(s.getAttributeValue(h, [PyKCS11.CKA_LABEL])[0])
    return out

def labels_text(vals):
    return ["".join(map(chr, v)) if isinstance(v, (list, tuple)) else v for v in vals]

if labels_text(virtual_labels()) != [label]:
    fail("the asset is not listed while the store is up")

subprocess.run([svc, "halt", pg], check=True, stdout=subprocess.DEVNULL, env=clean)
for attempt in range(2):
    try:
        s.findObjects(template)
        fail("a find that needs the store succeeded while it was down")
    except PyKCS11.PyKCS11Error as e:
        if e.value == PyKCS11.CKR_OPERATION_ACTIVE:
            fail("find %d while the store is down: CKR_OPERATION_ACTIVE (the session is wedged)"
                 % (attempt + 1))
        if e.value != PyKCS11.CKR_DEVICE_ERROR:
            fail("find while the store is down: %s, expected CKR_DEVICE_ERROR" % e)
    info = s.getSessionInfo()
    if info.ulDeviceError != STORE_DOWN:
        fail("ulDeviceError 0x%x, expected DDSM_DEVERR_STORE_DOWN" % info.ulDeviceError)
# Nothing is active in the session: a C_FindObjects now has no operation to continue.
rv = s.lib.C_FindObjects(s.session, LowLevel.ckobjlist(10))
if rv != PyKCS11.CKR_OPERATION_NOT_INITIALIZED:
    fail("C_FindObjects after the failed init: %s, expected CKR_OPERATION_NOT_INITIALIZED"
         % PyKCS11.CKR[rv])

subprocess.run([svc, "start", pg], check=True, stdout=subprocess.DEVNULL, env=clean)
# The module reconnects by itself; until it has, a find may still report the store down (never
# anything else). The bound is generous: no assertion depends on how soon.
for attempt in range(240):
    try:
        found = labels_text(virtual_labels())
        break
    except PyKCS11.PyKCS11Error as e:
        if e.value != PyKCS11.CKR_DEVICE_ERROR:
            fail("find after the store came back: %s" % e)
        time.sleep(0.5)
else:
    fail("the store never came back for the module")
if found != [label]:
    fail("after the store came back the find listed %r" % found)
s.logout()
s.closeSession()
print("PASS")
EOF
