#!/bin/sh
# The command-line contract of brisk-train. Usage: cli_test.sh PATH/TO/brisk-train CASE
# Each case runs the program, then checks its exit status and what it printed.
set -u
bin=$1
case_name=$2
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

run() { "$bin" "$@" >"$out" 2>"$err"; status=$?; }
fail() { echo "FAIL [$case_name]: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
expect_status() { [ "$status" -eq "$1" ] || fail "exit status $status, expected $1"; }
expect_in() { grep -q -- "$2" "$1" || fail "'$2' not in $(basename "$1")"; }

syn="--data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500"
case $case_name in
help)
    run --help
    expect_status 0
    # Every long option the parser knows is documented, with its default.
    for f in $(sed -n 's/^ *{"\([a-z-]*\)", [a-z_]*_argument.*/\1/p' "$3"); do
        expect_in "$out" "--$f"
    done
    expect_in "$out" "default"
    expect_in "$out" "Exit status"
    ;;
bad-values)
    for args in "--lr abc:--lr" "--lr -1:--lr" "--epochs 0:--epochs" "--batch 1.5:--batch" \
                "--act swish:--act" "--optimizer adagrad:--optimizer" "--loss hinge:--loss" \
                "--schedule linear:--schedule" "--model 784-x-10:--model" "--val-split 1:--val-split" \
                "--bogus:--bogus" "--seed:--seed" "extra:extra"; do
        flag=${args##*:}
        # shellcheck disable=SC2086
        run $syn ${args%:*}
        expect_status 2
        expect_in "$err" "$flag"
        expect_in "$err" "brisk-train --help"
    done
    ;;
missing-data)
    run --data /nonexistent/brisk-data
    expect_status 1
    expect_in "$err" "/nonexistent/brisk-data"
    expect_in "$err" "train-images-idx3-ubyte"
    ;;
wrong-width)
    # Needs IDX data of 784 features: Fashion-MNIST as Debian installs it.
    [ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: no Fashion-MNIST"; exit 0; }
    run --model 100-10
    expect_status 2
    expect_in "$err" "--model"
    expect_in "$err" "784 features"
    run --model 784-5
    expect_status 2
    expect_in "$err" "10 classes"
    ;;
json)
    run $syn --epochs 2 --json
    expect_status 0
    [ "$(wc -l <"$out")" -eq 3 ] || fail "expected 2 epoch lines and 1 test line"
    for k in '"epoch": 1' '"epoch": 2' train_loss train_accuracy val_loss val_accuracy \
             samples_per_second test_loss test_accuracy; do
        expect_in "$out" "$k"
    done
    ;;
text)
    run $syn --epochs 2
    expect_status 0
    expect_in "$out" "OpenBLAS kernel"
    expect_in "$out" "epoch 2/2"
    expect_in "$out" "samples/s"
    expect_in "$out" "test  loss"
    ;;
threads)
    # Any thread count gives identical metrics and bitwise-identical final weights.
    strip_times() { sed 's/"samples_per_second": [0-9.]*, "elapsed_seconds": [0-9.]*//; s/, "elapsed_seconds": [0-9.]*//' "$1"; }
    run $syn --epochs 2 --batch 96 --micro-batch 16 --threads 1 --json
    expect_status 0
    expect_in "$out" params_checksum
    strip_times "$out" >"$out.t1"
    for t in 2 3; do
        run $syn --epochs 2 --batch 96 --micro-batch 16 --threads $t --json
        expect_status 0
        strip_times "$out" | diff "$out.t1" - >/dev/null || { rm -f "$out.t1"; fail "--threads $t differs from --threads 1"; }
    done
    # A different micro-batch is different arithmetic: the checksum changes.
    run $syn --epochs 2 --batch 96 --micro-batch 32 --threads 1 --json
    strip_times "$out" | diff "$out.t1" - >/dev/null && { rm -f "$out.t1"; fail "checksum blind to the micro-batch"; }
    rm -f "$out.t1"
    ;;
diverge)
    run $syn --epochs 3 --optimizer sgd --lr 1e6 --momentum 0.99
    expect_status 3
    expect_in "$err" "diverged"
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok [$case_name]"
