#!/bin/sh
# Runs an example that reads data files twice, at 1 and at 2 threads, and checks that it
# succeeds both times (it checks its own result) with the same weights (its checksum line).
#   example_runs.sh regress_csv BINARY SOURCE_DIR
#   example_runs.sh fit_npy BINARY      (makes Fashion-MNIST .npy files with NumPy; exit 77,
#                                        skipped, without NumPy or the data set)
#   example_runs.sh resume_predict BINARY BRISK_TRAIN   (brisk-train starts a run; the example
#                                        resumes it and predicts, bitwise as brisk-train does)
#   example_runs.sh char_lm BINARY SOURCE_DIR   (a GPT on the docs' text, 1 and 2 threads)
set -u
name=$1 bin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $name: $*"; exit 1; }
case $name in
regress_csv) set -- "$3/examples/data/friedman1.csv" ;;
fit_npy)
    d=/usr/share/datasets/fashion-mnist
    [ -f "$d/train-images-idx3-ubyte.gz" ] || { echo "SKIP: no Fashion-MNIST in $d"; exit 77; }
    /usr/bin/python3 - "$d" "$tmp" <<'PY' || { echo "SKIP: no NumPy"; exit 77; }
import gzip, sys
try:
    import numpy as np
except ImportError:
    sys.exit(1)
d, out = sys.argv[1] + "/", sys.argv[2] + "/"
for s, p in (("train", "train"), ("test", "t10k")):
    x = np.frombuffer(gzip.open(d + p + "-images-idx3-ubyte.gz").read()[16:], np.uint8)
    y = np.frombuffer(gzip.open(d + p + "-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    np.save(out + s + "_x.npy", (x.reshape(-1, 784) / 255).astype(np.float32))
    np.save(out + s + "_y.npy", y.astype(np.int64))
PY
    set -- "$tmp/train_x.npy" "$tmp/train_y.npy" "$tmp/test_x.npy" "$tmp/test_y.npy" ;;
resume_predict)
    train=$3
    "$train" --data synthetic --model 32-16-4 --synthetic-n 1000 --synthetic-test-n 200 \
        --epochs 2 --logdir "$tmp/run" --quiet >/dev/null || fail "brisk-train could not start the run"
    /usr/bin/python3 -c "import numpy as np; np.save('$tmp/new.npy', np.random.default_rng(1).integers(0, 256, (50, 32)).astype(np.float32))" ||
        { echo "SKIP: no NumPy"; exit 77; }
    "$bin" "$tmp/run" 4 "$tmp/new.npy" "$tmp/mine.npy" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "failed"; }
    cat "$tmp/log"
    grep -q "^trained to epoch 4: test loss" "$tmp/log" || fail "not trained to epoch 4"
    grep -q "^50 predictions written" "$tmp/log" || fail "no predictions"
    ck=$(sed -n 's/.*checkpoint \(.*\)$/\1/p' "$tmp/log")
    "$train" --predict "$ck" --input "$tmp/new.npy" --out "$tmp/cli.npy" --quiet || fail "brisk-train --predict"
    cmp -s "$tmp/mine.npy" "$tmp/cli.npy" || fail "the example's predictions differ from brisk-train's"
    echo "resume_predict: resumed to epoch 4; predictions bitwise as brisk-train --predict --input"
    exit 0 ;;
char_lm)
    # A small GPT on this repository's docs for one epoch, at 1 and at 2 threads: the same
    # validation loss, checkpoint weights and sample (the sample follows its prompt).
    cat "$3"/README.md "$3"/docs/*.md >"$tmp/text.txt"
    for T in 1 2; do
        "$bin" "$tmp/text.txt" "$tmp/run$T" 1 model=gpt:1:32:4 seq-len=32 threads=$T \
            samples=1 sample-tokens=20 >"$tmp/log$T" 2>&1 || { cat "$tmp/log$T"; fail "failed at $T threads"; }
        grep -q "^validation loss .* bits per byte) after 1 epochs" "$tmp/log$T" || { cat "$tmp/log$T"; fail "no validation line"; }
        grep -q "^The " "$tmp/log$T" || fail "the sample does not start with its prompt"
        sed 's/checkpoint .*//' "$tmp/log$T" >"$tmp/result$T"
    done
    cat "$tmp/log2"
    cmp -s "$tmp/result1" "$tmp/result2" || fail "1 and 2 threads differ"
    echo "char_lm: the same loss and sample at 1 and 2 threads"
    exit 0 ;;
*) fail "unknown example" ;;
esac
for T in 1 2; do
    "$bin" "$@" "$tmp/out$T" "$T" >"$tmp/log$T" 2>&1 || { cat "$tmp/log$T"; fail "failed at $T threads"; }
    grep -o 'test .*checksum [0-9a-f]*' "$tmp/log$T" >"$tmp/result$T" || fail "no result line"
done
cat "$tmp/log2"
cmp -s "$tmp/result1" "$tmp/result2" || { cat "$tmp/result1" "$tmp/result2"; fail "1 and 2 threads differ"; }
echo "$name: the same result and weights at 1 and 2 threads"
