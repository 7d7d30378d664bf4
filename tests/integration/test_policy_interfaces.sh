#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The PKCS#11 3.0 interface as a client sees it: pkcs11-tool --list-interfaces shows both
# interfaces named "PKCS 11" (3.0 first, then 2.40), and pkcs11-tool — which takes the default
# interface through C_GetInterface, i.e. the 3.0 list — still lists, logs in and finds the
# virtual key. C_LoginUser itself is exercised in test_policy.c.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_MODULE DDSM_CTL
import_design_root
asset_active vec-b --id 00000000-0000-4000-8000-000000000001

out=$(p11 --list-interfaces 2>&1)
echo "$out"
[ "$(grep -c "^Interface 'PKCS 11'" <<<"$out")" -eq 2 ] || fail "not two PKCS 11 interfaces"
versions=$(sed -n 's/^ *version: //p' <<<"$out" | tr '\n' ' ')
[ "$versions" = "3.0 2.40 " ] || fail "interface versions: $versions"
grep -q 'flags=0x0' <<<"$out" || fail "interface flags"

out=$(p11_user -O 2>&1)
grep -q "label: *00000000-0000-4000-8000-000000000001/m/0" <<<"$out" ||
    fail "pkcs11-tool over the 3.0 list does not find the virtual key: $out"
echo ok
