#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The audit log's keys and row MACs computed from docs/audit.md and docs/design.md alone (not
from our C code), for the shell tests that play an attacker or check the spec independently.

  audit_forge.py legacy-key SEED              the shared audit key of before migration 007
  audit_forge.py writer-key SEED WRITER       a writer's audit key
  audit_forge.py checkpoint-key SEED          the key of checkpoint files
  audit_forge.py key-of SEED INSTANCE         the key (hex) under which that chain's first row
                                              verifies, among the two a writer process can hold:
                                              the legacy key and its own writer key; exit 1: none
  audit_forge.py rewrite KEY INSTANCE WHO     every row of the chain gets requester WHO and is
                                              MACed again under KEY (hex), and so is its checkpoint

SEED is the root seed in hex (the tests' root is the docs/design.md seed). Rows are read and
written with psql ($DDSM_TEST_PGBIN/psql, the test's database) as a database administrator.
"""
import hashlib
import hmac
import os
import re
import subprocess
import sys

SEP = "\x1f"
NULL = "\\N"


def kdf(seed, label, context):
    """SP 800-108 counter mode, HMAC-SHA256, one iteration, L = 256, with the 0x00 separator."""
    msg = (1).to_bytes(4, "big") + label + b"\x00" + context + (256).to_bytes(4, "big")
    return hmac.new(seed, msg, hashlib.sha256).digest()


def legacy_key(seed):
    # (nil UUID, depth 0, counter 0) under the asset label "DDSM-v1".
    return kdf(seed, b"DDSM-v1", bytes(16) + b"\x00" + bytes(8))


def writer_key(seed, writer):
    return kdf(seed, b"DDSM-audit-writer-v1", writer.encode("ascii"))


def checkpoint_key(seed):
    return kdf(seed, b"DDSM-audit-checkpoint-v1", b"")


def writer_of(instance):
    """The writer of a chain: its instance id without "#<n>", then without "/c<n>"."""
    m = re.fullmatch(r"(.+)/c(0|[1-9][0-9]*)(#[1-9][0-9]*)?", instance)
    return m.group(1) if m and "#" not in m.group(1) else None


def field(v):
    return b"\x00" if v is None else b"\x01" + len(v).to_bytes(4, "big") + v


def i64(v):
    return int(v).to_bytes(8, "big", signed=True)


def encode(r):
    text = lambda k: None if r[k] is None else r[k].encode("utf-8")
    out = b"DDSMAUD1"
    out += field(text("event"))
    out += field(None if r["asset_id"] is None else bytes.fromhex(r["asset_id"].replace("-", "")))
    out += field(text("derivation_path"))
    out += field(None if r["counter"] is None else i64(r["counter"]))
    out += field(text("state_at_derivation"))
    out += field(i64(r["ts_us"]))
    out += field(text("requester"))
    out += field(text("instance_id"))
    out += field(i64(r["seq"]))
    out += field(text("detail"))
    return out


def row_mac(key, prev, r):
    return hmac.new(key, prev + encode(r), hashlib.sha256).digest()


COLS = ["id", "event", "asset_id", "derivation_path", "counter", "state_at_derivation", "ts_us",
        "requester", "instance_id", "seq", "detail", "mac"]


def psql(sql):
    exe = os.path.join(os.environ["DDSM_TEST_PGBIN"], "psql")
    out = subprocess.run([exe, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", SEP, "-P", "null=" + NULL,
                          "-c", sql], check=True, capture_output=True, text=True).stdout
    return out


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def chain_rows(instance):
    out = psql("SELECT id, event, asset_id::text, derivation_path, counter, state_at_derivation,"
               " (extract(epoch FROM ts) * 1000000)::bigint, requester, instance_id, seq, detail,"
               " encode(mac, 'hex') FROM custody_audit_log WHERE instance_id = " + quote(instance)
               + " ORDER BY seq")
    rows = []
    for line in out.splitlines():
        vals = [None if v == NULL else v for v in line.split(SEP)]
        rows.append(dict(zip(COLS, vals)))
    return rows


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "legacy-key" and len(argv) == 3:
        print(legacy_key(bytes.fromhex(argv[2])).hex())
    elif cmd == "writer-key" and len(argv) == 4:
        print(writer_key(bytes.fromhex(argv[2]), argv[3]).hex())
    elif cmd == "checkpoint-key" and len(argv) == 3:
        print(checkpoint_key(bytes.fromhex(argv[2])).hex())
    elif cmd == "key-of" and len(argv) == 4:
        seed, inst = bytes.fromhex(argv[2]), argv[3]
        rows = chain_rows(inst)
        if not rows or int(rows[0]["seq"]) != 1:
            sys.exit("no first row of chain " + inst)
        cands = [legacy_key(seed)]
        if writer_of(inst) is not None:
            cands.append(writer_key(seed, writer_of(inst)))
        for k in cands:
            if row_mac(k, bytes(32), rows[0]).hex() == rows[0]["mac"]:
                print(k.hex())
                return
        sys.exit(1)
    elif cmd == "rewrite" and len(argv) == 5:
        key, inst, who = bytes.fromhex(argv[2]), argv[3], argv[4]
        prev = bytes(32)
        sql = []
        rows = chain_rows(inst)
        for r in rows:
            r["requester"] = who
            mac = row_mac(key, prev, r)
            sql.append("UPDATE custody_audit_log SET requester = %s, mac = '\\x%s' WHERE id = %s;"
                       % (quote(who), mac.hex(), r["id"]))
            prev = mac
        sql.append("UPDATE custody_audit_chain_heads SET mac = '\\x%s' WHERE instance_id = %s"
                   " AND seq = %s;" % (prev.hex(), quote(inst), rows[-1]["seq"]))
        psql("\n".join(sql))
        print(len(rows))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
