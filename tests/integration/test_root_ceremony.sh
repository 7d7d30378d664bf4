#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The root seed ceremony: `root create --shares 5 --threshold 3` on the test token, then
# recovery into three fresh tokens from three different 3-share subsets. Every recovered token
# has the same fingerprint and derives the same keys (through the HSM, with the helper
# test_ceremony_derive). Refusals (exit 2 for bad shares, 1 for a token that has a root) name the
# offending file and write nothing to the HSM.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../support/testlib.sh"
require_env DDSM_CTL DDSM_BUILD_DIR
C=$DDSM_CTL
H=$DDSM_BUILD_DIR/tests/integration_test_ceremony_derive
[ -x "$H" ] || fail "helper $H is not built"
scratch_dir ceremony
export DDSM_PIN=$DDSM_TEST_PIN

# A fresh token labelled "custody" in its own SoftHSM token directory, with a configuration copy.
new_token() {
    local d=$T/$1
    mkdir -p "$d/tokens"
    printf '%s\n' "directories.tokendir = $d/tokens" "objectstore.backend = file" \
        "log.level = ERROR" "slots.removable = false" >"$d/softhsm2.conf"
    SOFTHSM2_CONF=$d/softhsm2.conf softhsm2-util --init-token --free --label custody \
        --pin "$DDSM_TEST_PIN" --so-pin "$DDSM_TEST_SO_PIN" >/dev/null
    cp "$DDSM_CONF" "$d/ddsm.conf"
    chmod 600 "$d/ddsm.conf"
}
# on TOKEN CMD...: run CMD against that token.
on() {
    local d=$T/$1
    shift
    SOFTHSM2_CONF=$d/softhsm2.conf DDSM_CONF=$d/ddsm.conf "$@"
}
# Objects on the token of the current SOFTHSM2_CONF (to prove that nothing was written).
objects() { softhsm_user --list-objects 2>/dev/null | grep -ci '^[a-z].* object' || true; }

echo "== root create --shares 5 --threshold 3"
S=$T/shares
expect 0 "$C" root create --shares 5 --threshold 3 --out "$S"
fp=$(fingerprint)
[[ "$fp" =~ ^[0-9a-f]{32}$ ]] || fail "no fingerprint printed: $OUT"
ceremony=$(awk '/^ceremony:/ {print $2}' <<<"$OUT")
[[ "$ceremony" =~ ^[0-9a-f]{16}$ ]] || fail "no ceremony id printed: $OUT"
same "$(stat -c %a "$S")" 700 "mode of the share directory"
for i in 1 2 3 4 5; do
    f=$S/ddsm-share-$i-of-5.txt
    [ -f "$f" ] || fail "missing share file $f"
    same "$(stat -c %a "$f")" 400 "mode of $f"
    grep -q "^DDSM-SHARE-V1$" "$f" || fail "$f has no DDSM-SHARE-V1 line"
    same "$(awk '$1 == "ceremony" {print $2, $3, $4, $5, $6, $7, $8}' "$f")" \
        "$ceremony threshold 3 shares 5 index $i" "header of $f"
    same "$(awk '$1 == "fingerprint" {print $2}' "$f")" "$fp" "fingerprint line of $f"
done
same "$(find "$S" -mindepth 1 | wc -l)" 5 "files in the share directory"
# Shares differ from one another (and none is the seed: the fingerprint is not that of a share).
same "$(grep -h '^[12]:' "$S"/*.txt | sort -u | wc -l)" 10 "distinct data lines"

echo "== root info on the original token shows the shares' fingerprint"
expect 0 "$C" root info
same "$(fingerprint)" "$fp" "root info fingerprint"
[[ "$OUT" == *"extractable:       false"* ]] || fail "root is extractable: $OUT"

echo "== refusals of root create --shares"
new_token spare
expect 1 on spare "$C" root create --shares 5 --threshold 3 --out "$S"
err_has "already exists: refusing to overwrite share files"
: >"$T/a-file"
expect 2 on spare "$C" root create --shares 2 --threshold 2 --out "$T/a-file"
err_has "is not a directory"
expect 2 on spare "$C" root create --shares 2 --threshold 2 --out "$T/no/such/parent/dir"
err_has "cannot create --out"
expect 1 on spare "$C" root info
err_has "holds no root key"

echo "== recover into three fresh tokens from different 3-share subsets"
subsets=("1 2 3" "3 4 5" "1 3 5")
for n in 0 1 2; do
    tok=rec$n
    new_token "$tok"
    args=()
    for i in ${subsets[$n]}; do args+=(--share "$S/ddsm-share-$i-of-5.txt"); done
    expect 0 on "$tok" "$C" root recover "${args[@]}"
    same "$(fingerprint)" "$fp" "fingerprint recovered into $tok from shares ${subsets[$n]}"
    [[ "$OUT" == *"from 3 shares of ceremony $ceremony"* ]] || fail "recover output: $OUT"
    expect 0 on "$tok" "$C" root info
    same "$(fingerprint)" "$fp" "root info fingerprint of $tok"
    [[ "$OUT" == *"extractable:       false"* && "$OUT" == *"sensitive:         true"* ]] ||
        fail "recovered root of $tok has the wrong flags: $OUT"
done
# More than K shares work too (all five, in another order).
new_token rec_all
expect 0 on rec_all "$C" root recover --share "$S/ddsm-share-5-of-5.txt" \
    --share "$S/ddsm-share-2-of-5.txt" --share "$S/ddsm-share-4-of-5.txt" \
    --share "$S/ddsm-share-1-of-5.txt" --share "$S/ddsm-share-3-of-5.txt"
same "$(fingerprint)" "$fp" "fingerprint recovered from all five shares"

echo "== the same derivations on the original and every recovered token"
vectors=("6f9619ff-8b86-d011-b42d-00c04fc964ff m/44'/0'/0'/0/0 0"
    "6f9619ff-8b86-d011-b42d-00c04fc964ff m/44'/0'/0'/0/0 1"
    "00000000-0000-4000-8000-000000000001 m/0 0"
    "$(python3 -c 'import uuid; print(uuid.uuid4())') m/7'/1/2/3 42")
for v in "${vectors[@]}"; do
    read -r asset path counter <<<"$v"
    want=$("$H" derive "$asset" "$path" "$counter") || fail "helper failed on the original token"
    [[ "$want" =~ ^[0-9a-f]{64}$ ]] || fail "helper printed '$want'"
    for tok in rec0 rec1 rec2 rec_all; do
        got=$(on "$tok" "$H" derive "$asset" "$path" "$counter") || fail "helper failed on $tok"
        same "$got" "$want" "HMAC(key($asset, $path, $counter), data) on $tok"
    done
done
# The helper is not constant: another root gives other keys, another counter another key.
new_token other
expect 0 on other "$C" root create
read -r asset path counter <<<"${vectors[0]}"
k0=$("$H" derive "$asset" "$path" 0)
[ "$(on other "$H" derive "$asset" "$path" 0)" != "$k0" ] ||
    fail "another root derived the same key"
[ "$("$H" derive "$asset" "$path" 1)" != "$k0" ] || fail "another counter derived the same key"
# And it computes what docs/design.md says: a token holding the vector seed 00..1f.
new_token vec
python3 -c 'print(bytes(range(32)).hex())' >"$T/vector.hex"
expect 0 on vec "$C" root import --hex-file "$T/vector.hex"
want=$(python3 -c 'import hmac, hashlib
k = bytes.fromhex("7d2fcaa0c736ca65b7610c465a197a7440b55fd6017280b2d7817a530c28d61c")
print(hmac.new(k, b"data", hashlib.sha256).hexdigest())')
same "$(on vec "$H" derive 6f9619ff-8b86-d011-b42d-00c04fc964ff "m/44'/0'/0'/0/0" 0)" "$want" \
    "the first docs/design.md vector through the HSM"

# Through the module as an application would use it, when it is built: C_DeriveKey with
# CKM_DDSM_DERIVE on each token gives the key that the HSM computes directly (counter 0 of an
# ACTIVE asset in the store).
if [ -f "${DDSM_MODULE:-}" ]; then
    echo "== the same keys through the module (C_DeriveKey CKM_DDSM_DERIVE) on every token"
    expect 0 "$C" db migrate
    # The ceremony ran before the store was migrated: its root is not pinned yet, and the module
    # refuses an unpinned root. One pin covers every token it was recovered into.
    expect 0 "$C" root pin
    same "$(awk '/^pinned:/ {print $3}' <<<"$OUT")" "$fp" "pinned fingerprint"
    asset=$(python3 -c 'import uuid; print(uuid.uuid4())')
    expect 0 "$C" asset register --label ceremony-check --id "$asset" \
        --default-path "m/44'/0'/0'/0/0"
    expect 0 "$C" asset activate "$asset"
    for tok in "" rec0 rec1 rec2; do
        want=$(${tok:+on $tok} "$H" derive "$asset" "m/44'/0'/0'/0/0" 0) ||
            fail "helper failed on ${tok:-the original token}"
        got=$(${tok:+on $tok} "$H" derive-module "$asset" "m/44'/0'/0'/0/0") ||
            fail "C_DeriveKey through $DDSM_MODULE failed on ${tok:-the original token}"
        same "$got" "$want" "module-derived key on ${tok:-the original token}"
    done
else
    echo "(the module is not built: C_DeriveKey part skipped)"
fi

echo "== refused recoveries write nothing"
new_token target
before=$(on target objects)
same "$before" 0 "objects on a fresh token"
s1=$S/ddsm-share-1-of-5.txt s2=$S/ddsm-share-2-of-5.txt s3=$S/ddsm-share-3-of-5.txt
s4=$S/ddsm-share-4-of-5.txt s5=$S/ddsm-share-5-of-5.txt

# Two shares of a 3-of-5 ceremony.
expect 2 on target "$C" root recover --share "$s1" --share "$s2"
err_has "too few shares: 2 given, ceremony $ceremony needs 3"

# One changed hex digit in data line 1 (line 5 of the file) is named with its file and line.
cp "$s2" "$T/corrupt.txt"
chmod 600 "$T/corrupt.txt"
python3 - "$T/corrupt.txt" <<'EOF'
import sys
p = sys.argv[1]
lines = open(p).read().split("\n")
assert lines[4].startswith("1: "), lines[4]
c = lines[4][3]
lines[4] = lines[4][:3] + ("0" if c != "0" else "1") + lines[4][4:]
open(p, "w").write("\n".join(lines))
EOF
expect 2 on target "$C" root recover --share "$s1" --share "$T/corrupt.txt" --share "$s3"
err_has "share file $T/corrupt.txt: line 5:"
err_has "data line 1"

# A share of another ceremony (the spare token's 3-of-3 ceremony).
expect 0 on spare "$C" root create --shares 3 --threshold 2 --out "$T/other-shares"
other_ceremony=$(awk '/^ceremony:/ {print $2}' <<<"$OUT")
foreign=$T/other-shares/ddsm-share-2-of-3.txt
expect 2 on target "$C" root recover --share "$s1" --share "$foreign" --share "$s3"
err_has "share file $foreign is from another ceremony ($other_ceremony)"

# The same share twice, by the same name and by a copy.
expect 2 on target "$C" root recover --share "$s1" --share "$s2" --share "$s2"
err_has "share file $s2: duplicate of share 2, already given by $s2"
cp "$s1" "$T/copy-of-1.txt"
expect 2 on target "$C" root recover --share "$s1" --share "$s2" --share "$T/copy-of-1.txt"
err_has "share file $T/copy-of-1.txt: duplicate of share 1, already given by $s1"

# A share relabelled to another index with every check recomputed (as a careful forger would):
# it passes every line check, but the combined seed's fingerprint differs, so nothing is imported.
python3 - "$s1" "$T/forged-4.txt" <<'EOF'
import hashlib, sys
src, dst = sys.argv[1], sys.argv[2]
def chk(s):  # the documented line check: CRC-8, poly 0x07, init 0
    c = 0
    for x in s.encode():
        c ^= x
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xff if c & 0x80 else (c << 1) & 0xff
    return "%02x" % c
canon, out = [], []
for line in open(src).read().split("\n"):
    f = line.split()
    if f and f[0] == "ceremony":
        f[8 - 1] = "4"
        c = " ".join(f[:8]); canon.append(c); out.append(c + "  " + chk(c))
    elif f and f[0] == "fingerprint":
        c = " ".join(f[:2]); canon.append(c); out.append(line)
        assert f[2] == chk(c), "the documented line check disagrees with ddsmctl's"
    elif f and f[0] in ("1:", "2:"):
        c = f[0] + " " + "".join(f[1:-1]); canon.append(c); out.append(line)
        assert f[-1] == chk(c), "the documented line check disagrees with ddsmctl's"
    elif f and f[0] == "check":
        whole = "".join(c + "\n" for c in canon)
        out.append("check " + hashlib.sha256(whole.encode()).hexdigest()[:8])
    else:
        out.append(line)
open(dst, "w").write("\n".join(out))
EOF
expect 2 on target "$C" root recover --share "$s2" --share "$s3" --share "$T/forged-4.txt"
err_has "the combined seed has fingerprint"
err_has "a share is wrong; nothing written"

# Unreadable and garbage files.
expect 2 on target "$C" root recover --share "$T/no-such-share.txt" --share "$s1" \
    --share "$s2"
err_has "cannot open share file $T/no-such-share.txt"
echo "not a share" >"$T/garbage.txt"
expect 2 on target "$C" root recover --share "$s1" --share "$T/garbage.txt" --share "$s2"
err_has "share file $T/garbage.txt: line 1: not a DDSM share"

same "$(on target objects)" "$before" "objects on the target token after refused recoveries"
expect 1 on target "$C" root info
err_has "holds no root key"

# A token that already holds a root: refused, its root untouched.
before=$(on rec0 objects)
same "$before" 1 "objects on rec0 (its root key)"
expect 1 on rec0 "$C" root recover --share "$s1" --share "$s2" --share "$s4"
err_has "already holds a root key labelled \"ddsm-root\""
same "$(on rec0 objects)" "$before" "objects on rec0 after the refused recovery"
expect 1 on other "$C" root recover --share "$s1" --share "$s2" --share "$s4"
expect 0 on other "$C" root info
[ "$(fingerprint)" != "$fp" ] || fail "the refused recovery replaced the other token's root"

# Finally the target does recover from a good subset.
expect 0 on target "$C" root recover --share "$s2" --share "$s4" --share "$s5"
same "$(fingerprint)" "$fp" "fingerprint recovered into the target"

echo "PASS: test_root_ceremony"
