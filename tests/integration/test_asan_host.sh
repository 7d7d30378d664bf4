#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The sanitizer pass's wrapper for foreign hosts (scripts/lib/asan-host) fails a host that hits
# an AddressSanitizer error in our module, and lets one whose report holds no frame of ours go on.
# Meaningful only in that pass (DDSM_ASAN_PRELOAD set, the module instrumented): skipped elsewhere.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE
if [ -z "${DDSM_ASAN_PRELOAD:-}" ]; then
    echo "skipped: not the sanitizer pass"
    exit 77
fi
scratch_dir asan-host

# A host bug (a heap overflow in Python's own ctypes call, no module involved) is kept, not counted.
cat > "$T/host_bug.py" <<'PY'
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(4)
ctypes.memset(p + 8, 0, 1)
print("host went on")
PY
out=$(python3 "$T/host_bug.py" 2>"$T/host.err") || fail "a host-only report failed the host: $(cat "$T/host.err")"
[ "$out" = "host went on" ] || fail "host output: $out"
grep -q "heap-buffer-overflow" "$DDSM_TEST_DIR/asan-foreign.log" || fail "the host's report was not kept"
rm -f "$DDSM_TEST_DIR/asan-foreign.log"

# Our bug (the module writes a pointer into a 1-byte buffer) fails the host with exit 99.
cat > "$T/module_bug.py" <<'PY'
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
m = ctypes.CDLL(sys.argv[1])
m.C_GetFunctionList(ctypes.c_void_p(libc.malloc(1)))
PY
rc=0
python3 "$T/module_bug.py" "$DDSM_MODULE" 2>"$T/module.err" || rc=$?
[ "$rc" = 99 ] || fail "a report in our module gave exit $rc, want 99"
grep -q "C_GetFunctionList" "$T/module.err" || fail "the report does not name our function"
echo "asan-host: host-only reports kept, reports in our module fail the host"
