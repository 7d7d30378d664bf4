# SPDX-License-Identifier: Apache-2.0
"""Demo step: an application holds a derived key while an operator rotates the asset.

usage: demo_rotate.py MODULE PIN LABEL DDSMCTL ASSET
Signs with the key found by LABEL, runs `DDSMCTL asset rotate ASSET` in another process, shows that
the held handle is refused once the module hears of the rotation, and that a fresh find signs with
the new counter's key.
"""
import subprocess
import sys
import time

import PyKCS11
from PyKCS11.LowLevel import CKA_LABEL, CKM_SHA256_HMAC, CKO_SECRET_KEY, CKA_CLASS

module, pin, label, ctl, asset = sys.argv[1:6]
COUNTER = 0x80000000 | 0x44530103  # CKA_DDSM_COUNTER

lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slot = lib.getSlotList(tokenPresent=True)[0]
session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
session.login(pin)


def find():
    found = session.findObjects([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, label)])
    if len(found) != 1:
        sys.exit(f"expected one object labelled {label}, found {len(found)}")
    return found[0]


def counter(key):
    raw = session.getAttributeValue(key, [COUNTER], allAsBinary=True)[0]
    return int.from_bytes(bytes(raw), sys.byteorder)


def sign(key):
    return bytes(session.sign(key, b"transfer 1.5 BTC to bc1q...", PyKCS11.Mechanism(CKM_SHA256_HMAC)))


old = find()
print(f"  held handle {old.value():#x}, counter {counter(old)}, HMAC {sign(old).hex()}")
print(f"  $ {ctl} asset rotate {asset}   (another process)")
subprocess.run([ctl, "asset", "rotate", asset], check=True)
deadline = time.monotonic() + 5
while True:
    try:
        sign(old)
    except PyKCS11.PyKCS11Error as e:
        print(f"  held handle now refused: {e}")
        break
    if time.monotonic() > deadline:
        sys.exit("the old handle still signs 5 s after the rotation")
    time.sleep(0.05)
new = find()
print(f"  fresh find: handle {new.value():#x}, counter {counter(new)}, HMAC {sign(new).hex()}")
session.logout()
session.closeSession()
