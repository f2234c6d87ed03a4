#!/bin/sh
# tb_check.sh BRISK_TRAIN TB_DEMO TB_READ: TensorBoard's own reader and server (tb_read.py
# --serve, on loopback) read what Brisk wrote, with train and validation overlaid, and find
# no problem (damaged records, curves that fold back, images that are not PNG, empty hparams,
# custom_scalars charts that match nothing) in:
#   1. a default run (synthetic data);
#   2. a run interrupted with Ctrl-C in the middle of an epoch and resumed;
#   3. a run resumed from an older checkpoint than its newest (its later logs abandoned);
#   4. a run with another loss and activation;
#   5. every summary kind of the logging library (tests/tb_demo).
# Skipped (exit 77) where TensorBoard or the reader is missing, unless
# BRISK_REQUIRE_TENSORBOARD=1 (CI sets it): then that is a failure.
set -u
bin=$1
demo=$2
reader=$3
. "$(dirname "$0")/tb_reader.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL [tb_check]: $*"; exit 1; }
check() {
    "$py" "$reader" "$1" --serve --overlay epoch_loss --overlay epoch_accuracy >"$tmp/read.txt" 2>&1 ||
        { tail -n 40 "$tmp/read.txt"; fail "$2: TensorBoard reported problems"; }
    echo "ok: $2 ($(tail -n 1 "$tmp/read.txt"))"
}
syn="--data synthetic --model 64-32-4 --synthetic-n 3000 --synthetic-test-n 300 --quiet"

"$bin" $syn --epochs 3 --logdir "$tmp/default" >/dev/null || fail "default run"
check "$tmp/default" "a default run"

# Slow enough (about a second an epoch) that the signal lands inside an epoch.
slow="--data synthetic --model 64-512-512-4 --synthetic-n 50000 --synthetic-test-n 500 --batch 64 --json"
"$bin" $slow --epochs 3 --logdir "$tmp/int" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 600); do
    [ -s "$tmp/out" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/err"; fail "the run ended before its first epoch"; }
    sleep 0.1
done
sleep 0.3
kill -INT "$pid"
wait "$pid"
[ $? -eq 130 ] || { cat "$tmp/err"; fail "the interrupted run did not exit 130"; }
"$bin" --resume="$tmp/int/checkpoints" --quiet >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "resume"; }
check "$tmp/int" "a run interrupted and resumed"

"$bin" $syn --epochs 4 --keep 4 --logdir "$tmp/older" >/dev/null || fail "run to resume"
older=$(ls "$tmp/older/checkpoints"/ckpt-*.safetensors | head -n 2 | tail -n 1)
"$bin" --resume="$older" --quiet >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "resume from $older"; }
check "$tmp/older" "a run resumed from an older checkpoint"

"$bin" $syn --epochs 2 --loss mse --act tanh --logdir "$tmp/mse" >/dev/null || fail "mse run"
check "$tmp/mse" "an MLP with mean squared error and tanh"

"$demo" "$tmp/demo" || fail "tb_demo"
"$py" "$reader" "$tmp/demo" --serve >"$tmp/read.txt" 2>&1 || { tail -n 40 "$tmp/read.txt"; fail "tb_demo: problems"; }
echo "ok: every summary kind of the logging library"
