#!/bin/sh
# The hot loops' CPU-specific versions (GCC target_clones, core_internal.h) run fused
# multiply-adds as instructions: no version for a CPU with FMA may call libm's fmaf (an AVX2
# version built without FMA did, for every element, and trained a CNN 4.8x slower).
# Usage: multiversion.sh BINARY   (skips, exit 77, without objdump or on a build without clones)
set -u
bin=$1
command -v objdump >/dev/null 2>&1 || { echo "SKIP: no objdump"; exit 77; }
objdump -d --no-show-raw-insn "$bin" >"${TMPDIR:-/tmp}/mv.$$" 2>/dev/null || { echo "SKIP: objdump cannot read $bin"; exit 77; }
trap 'rm -f "${TMPDIR:-/tmp}/mv.$$"' EXIT
# Functions with a version per CPU: <name>.default beside <name>.<target>.
clones=$(grep -E '^[0-9a-f]+ <[^>]+\.(avx2|avx512f|arch_x86_64_v[34])>:$' "${TMPDIR:-/tmp}/mv.$$" | wc -l)
[ "$clones" -gt 0 ] || { echo "SKIP: no multi-versioned functions in $bin (not GCC on x86-64, or TSan)"; exit 77; }
bad=$(awk '
    /^[0-9a-f]+ <[^>]+>:$/ { fn = $2; gsub(/[<>:]/, "", fn); fast = fn ~ /\.(avx2|avx512f|arch_x86_64_v[34])$/ }
    fast && /call/ && /fmaf/ { print fn; }
' "${TMPDIR:-/tmp}/mv.$$" | sort -u)
if [ -n "$bad" ]; then
    echo "FAIL: these versions for CPUs with FMA call libm's fmaf instead of fusing:"
    echo "$bad"
    exit 1
fi
avx2=$(grep -c -E '^[0-9a-f]+ <[^>]+\.arch_x86_64_v3>:$' "${TMPDIR:-/tmp}/mv.$$")
[ "$avx2" -gt 0 ] || { echo "FAIL: no x86-64-v3 (AVX2 with FMA) versions among the $clones clones"; exit 1; }
echo "ok: $clones CPU-specific versions, $avx2 for x86-64-v3, none calls fmaf"
