#!/bin/sh
# From the same llm.c model file and the same token batches, Brisk's per-step losses match
# PyTorch's (llm.c's training step in PyTorch, ../shared/anchors/llmc/torch_gpt2.py) over 20
# steps within 1e-4 relative: the tiny shape (L 2, C 64, 4 heads, T 32, B 4) and the small one
# (L 4, C 256, 4 heads, T 128, B 8), byte-level tokens of this repository's docs. Brisk starts
# from the file (brisk_llmc_load) and runs on 2 threads with micro-shards shared by a team.
# With the argument 'gpt2' it checks GPT-2 small's shape instead (L 12, C 768, 12 heads,
# vocabulary 50257 padded to 50304, T 64, B 4, uniform random tokens): about 3 minutes and
# 3 GiB, so the default suite leaves it out (test gpt_llmc_gpt2, run when BRISK_SLOW_TESTS=1).
# Skips (77), saying why, without Debian's python3-torch or the anchor (it comes with
# ../shared beside the repository, and is not copied into the project).
# Usage: gpt_llmc.sh BENCH_GPT SOURCE_DIR [tiny-small|gpt2] [ANCHOR_DIR]
set -eu
bench=$1
src=$2
shapes=${3:-tiny-small}
anchor=${4:-$src/../shared/anchors/llmc}
if [ "$shapes" = gpt2 ] && [ "${BRISK_SLOW_TESTS:-0}" != 1 ]; then
    echo "SKIP: the GPT-2 shape (minutes) runs when BRISK_SLOW_TESTS=1"
    exit 77
fi
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import torch, numpy' 2>/dev/null || { echo "SKIP: needs Debian's python3-torch and numpy"; exit 77; }
[ -f "$anchor/torch_gpt2.py" ] && [ -f "$anchor/make_gpt2.py" ] ||
    { echo "SKIP: needs llm.c's PyTorch anchor $anchor (from ../shared, beside the repository)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$anchor/torch_gpt2.py" "$anchor/make_gpt2.py" "$tmp/"
cat "$src"/README.md "$src"/docs/*.md > "$tmp/text.txt"
status=0
check() { # name L C NH maxT B T [V Vp]
    "$py" "$tmp/make_gpt2.py" model "$tmp/$1.bin" --L "$2" --C "$3" --NH "$4" --V "${8:-256}" \
        --Vp "${9:-256}" --maxT "$5" --seed 3 >/dev/null
    "$py" "$tmp/torch_gpt2.py" "$tmp/$1.bin" "$tmp/tokens.bin" --B "$6" --T "$7" --steps 20 \
        --threads 1 > "$tmp/$1.torch"
    "$bench" "$tmp/$1.bin" "$tmp/tokens.bin" --B "$6" --T "$7" --steps 20 --threads 2 \
        --micro-batch $(($6 / 2 + 1)) > "$tmp/$1.brisk"
    "$py" - "$tmp/$1.torch" "$tmp/$1.brisk" "$1" <<'PY' || status=1
import re, sys
def losses(path):
    return [float(m.group(1)) for m in re.finditer(r"^step \d+: train loss (\S+)", open(path).read(), re.M)]
t, b = losses(sys.argv[1]), losses(sys.argv[2])
if len(t) != 20 or len(b) != 20:
    sys.exit("%s: %d PyTorch and %d Brisk losses, expected 20 each" % (sys.argv[3], len(t), len(b)))
worst = max(abs(x - y) / abs(x) for x, y in zip(t, b))
print("%s: 20 steps, losses %.7f .. %.7f, largest relative difference %.2e" % (sys.argv[3], b[0], b[-1], worst))
if worst > 1e-4:
    for i, (x, y) in enumerate(zip(t, b)):
        print("  step %2d  torch %.7f  brisk %.7f" % (i, x, y))
    sys.exit("%s: Brisk and PyTorch differ by more than 1e-4" % sys.argv[3])
PY
}
if [ "$shapes" = gpt2 ]; then
    "$py" "$tmp/make_gpt2.py" tokens "$tmp/tokens.bin" --random 50257 --n 65536 >/dev/null
    check gpt2 12 768 12 1024 4 64 50257 50304
else
    "$py" "$tmp/make_gpt2.py" tokens "$tmp/tokens.bin" --text "$tmp/text.txt" >/dev/null
    check tiny 2 64 4 32 4 32
    check small 4 256 4 128 8 128
fi
exit $status
