#!/bin/sh
# The command-line contract of brisk-train.
# Usage: cli_test.sh BRISK_TRAIN CASE BRISK_TRAIN_SOURCE BRISK_EVENTS TESTS_DIR
# Each case runs the program, then checks its exit status, what it printed and what it wrote.
set -u
bin=$1
case_name=$2
events=${4:-}
tests_dir=${5:-}
out=$(mktemp)
err=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$out" "$err" "$tmp"' EXIT

run() { "$bin" "$@" >"$out" 2>"$err"; status=$?; }
fail() { echo "FAIL [$case_name]: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
expect_status() { [ "$status" -eq "$1" ] || fail "exit status $status, expected $1"; }
expect_in() { grep -q -- "$2" "$1" || fail "'$2' not in $(basename "$1")"; }

syn="--data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500 --logdir none"
# Slower: about 1 s per epoch here, so that a signal lands in the middle of an epoch.
slow="--data synthetic --model 64-512-512-4 --synthetic-n 50000 --synthetic-test-n 500 --batch 64"
strip_times() { sed 's/"threads_in_use": [0-9.]*, //; s/"samples_per_second": [0-9.]*, "elapsed_seconds": [0-9.]*//; s/, "elapsed_seconds": [0-9.]*//; s/, "logging_cpu_seconds": [0-9.]*//' "$1"; }
# Trains ARGS for 2 epochs at 2 threads into DIR, resumes it to 3 epochs at 1 thread, and
# checks that the resumed epoch and test lines are the last two of STRAIGHT (the 3-epoch run's
# --json output, times stripped).
resume_matches() {
    straight=$1 dir=$2
    shift 2
    run "$@" --epochs 2 --threads 2 --logdir "$dir"
    expect_status 0
    run --resume="$dir" --epochs 3 --threads 1 --json
    expect_status 0
    strip_times "$out" >"$tmp/resumed.txt"
    tail -n 2 "$straight" | diff - "$tmp/resumed.txt" || fail "the resumed run differs from the straight one"
}
# Runs ARGS at each thread count of LIST (--logdir none) and checks that the output (times
# stripped) is REF's, which ran the same ARGS at 1 thread.
threads_match() {
    ref=$1 list=$2
    shift 2
    for t in $list; do
        run "$@" --threads "$t" --logdir none
        expect_status 0
        strip_times "$out" | diff "$ref" - >/dev/null || fail "--threads $t differs from --threads 1 ($*)"
    done
}
# For each K:B:T in LIST, trains ARGS for 3 epochs with --accumulate K --batch B --threads T
# and checks that the output (times stripped) is STRAIGHT's: K batches of B are one of K B.
accumulations_match() {
    straight=$1 list=$2
    shift 2
    for kbt in $list; do
        k=${kbt%%:*} rest=${kbt#*:}
        b=${rest%%:*} t=${rest#*:}
        run "$@" --batch "$b" --accumulate "$k" --epochs 3 --threads "$t" --logdir none
        expect_status 0
        strip_times "$out" | diff "$straight" - >/dev/null ||
            fail "--accumulate $k --batch $b --threads $t differs from $straight"
    done
}
# Starts brisk-train in the background; waits until its stdout has $1 lines.
start_bg() {
    want=$1
    shift
    "$bin" "$@" >"$out" 2>"$err" &
    pid=$!
    for _ in $(seq 1 600); do
        [ "$(wc -l <"$out")" -ge "$want" ] && return 0
        kill -0 "$pid" 2>/dev/null || fail "brisk-train ended before printing $want lines"
        sleep 0.1
    done
    fail "no progress after 60 s"
}
events_ok() { "$events" "$1" >"$tmp/events.txt" 2>&1 || { cat "$tmp/events.txt"; fail "event files in $1 do not read cleanly"; }; }
expect_tag() { grep -E -q "^$1 +$2 +$3 " "$tmp/events.txt" || { cat "$tmp/events.txt"; fail "no $3 tag '$2' in run $1"; }; }
case $case_name in
help)
    run --help
    expect_status 0
    # Every long option the parser knows is documented: the run's settings (but its id) and
    # brisk-train's own options.
    settings=$(dirname "$3")/../parallel/src/runconfig.c
    n=0
    for f in $(sed -n 's/^ *[A-Z]*("\([a-z-]*\)".*/\1/p; s/^ *{{"\([a-z-]*\)".*/\1/p' "$settings") \
             $(grep -o '{"[a-z-]*", [a-z_]*_argument' "$3" | sed 's/{"\([a-z-]*\)".*/\1/'); do
        [ "$f" = run ] && continue
        expect_in "$out" "--$f"
        n=$((n + 1))
    done
    [ "$n" -ge 45 ] || fail "found only $n options to look for"
    expect_in "$out" "default"
    expect_in "$out" "Exit status"
    ;;
cnn-recipe)
    # The cnn preset trains 15 epochs with AdamW and weight decay 0.05 unless --epochs,
    # --optimizer or --weight-decay say otherwise; --weight-decay alone keeps AdamW.
    cnn="--data synthetic --model cnn --synthetic-n 200 --synthetic-test-n 50 --epochs 1 --logdir none --checkpoint-dir none"
    for args in ":adamw lr 0.001 weight decay 0.05," "--optimizer adam:adam lr 0.001," \
                "--weight-decay 0.1:adamw lr 0.001 weight decay 0.1," \
                "--optimizer adamw:adamw lr 0.001 weight decay 0.05," \
                "--optimizer sgd:sgd lr 0.001,"; do
        # shellcheck disable=SC2086
        run $cnn ${args%%:*}
        expect_status 0
        expect_in "$out" "model cnn (421642 parameters), ${args#*:} batch"
    done
    # 15 epochs unless --epochs says otherwise.
    run --data synthetic --model cnn --synthetic-n 64 --synthetic-test-n 16 --logdir none --checkpoint-dir none
    expect_status 0
    expect_in "$out" "epoch 15/15"
    # The resnet preset's recipe: AdamW with weight decay 0.05 at 3e-3, batch 256 in
    # micro-batches of 128, crop:2,flip,erase:0.25, a moving average, label smoothing 0.1;
    # each part yields to its own flag; on a small data set its warmup takes a tenth of the
    # steps (here 0: 1 step an epoch), the same run as --warmup 0 gives.
    res="--data synthetic --model resnet --synthetic-n 40 --synthetic-test-n 8 --logdir none --checkpoint-dir none --threads 1"
    run $res --epochs 1 --summary
    expect_status 0
    expect_in "$out" "with 1 thread, batch 256, micro-batch 128"
    expect_in "$out" "augmentation: crop:2,flip,erase:0.25"
    expect_in "$out" "label smoothing: 0.1"
    expect_in "$out" "moving average of the weights: decay 0.995"
    run $res --epochs 1 --json
    expect_status 0
    strip_times "$out" >"$tmp/resnet.txt"
    grep -q '"ema_val_loss"' "$tmp/resnet.txt" || fail "resnet: no moving average"
    run $res --epochs 1 --json --optimizer adamw --weight-decay 0.05 --lr 3e-3 --warmup 0 \
        --batch 256 --micro-batch 128 --augment crop:2,flip,erase:0.25 --ema 0.995 \
        --label-smoothing 0.1
    expect_status 0
    strip_times "$out" | diff "$tmp/resnet.txt" - >/dev/null || fail "resnet: the recipe is not its flags"
    for flag in "--label-smoothing 0" "--augment none" "--lr 1e-3" "--micro-batch 64"; do
        # shellcheck disable=SC2086
        run $res --epochs 1 --json $flag
        expect_status 0
        strip_times "$out" | diff "$tmp/resnet.txt" - >/dev/null && fail "resnet: $flag changed nothing"
    done
    run $res --epochs 1 --ema 0 --batch 64
    expect_status 0
    expect_in "$out" "batch 64 (micro-batch 64)"
    grep -q "ema loss" "$out" && fail "resnet: --ema 0 kept a moving average"
    # So does the gpt preset's (100 steps) on a text of a few windows (it failed before).
    for i in 1 2 3 4 5 6 7 8; do echo "a short text for a short run, line $i"; done >"$tmp/short.txt"
    run --model gpt:1:32:2 --seq-len 16 --data "$tmp/short.txt" --epochs 1 --samples 0 --logdir none
    expect_status 0
    expect_in "$out" "epoch 1/1"
    # The shorthand MLP keeps plain Adam and 10 epochs.
    run $syn
    expect_status 0
    expect_in "$out" "relu, adam lr 0.001, batch"
    expect_in "$out" "epoch 10/10"
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
    [ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: no Fashion-MNIST"; exit 77; }
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
    expect_in "$out" "kernels"
    expect_in "$out" "each batch: "
    expect_in "$out" "epoch 2/2"
    expect_in "$out" "samples/s"
    expect_in "$out" "test  loss"
    ;;
threads)
    # Any thread count gives identical metrics and bitwise-identical final weights.
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
lr-find)
    # The range test: rates rising exponentially, a suggestion below the lowest loss's rate,
    # the curve in the logs, no weights kept; the same at any thread count; refusals.
    c="--data synthetic --model 32-64-4 --synthetic-n 4000 --synthetic-test-n 100 --batch 64"
    run $c --lr-find=1e-5:1:60 --logdir "$tmp/lf" --json
    expect_status 0
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" - "$out" <<'PY' || fail "the lr-find JSON does not check out"
import json, sys
r = json.load(open(sys.argv[1]))["lr_find"]
lrs = [p[0] for p in r["curve"]]
assert 10 <= r["steps"] == len(lrs) <= 60, r["steps"]
assert abs(lrs[0] - 1e-5) < 1e-9 and all(b > a for a, b in zip(lrs, lrs[1:]))
assert 1e-5 <= r["suggested_lr"] <= r["lowest_loss_lr"] <= 1, r
PY
    [ ! -d "$tmp/lf/checkpoints" ] || fail "--lr-find wrote checkpoints"
    "$events" "$tmp/lf" >"$tmp/events.txt" 2>&1 || fail "brisk-events on the lr-find logs"
    grep -E -q "^train +lr_find/smoothed_loss +scalar +[0-9]+ +1\.\." "$tmp/events.txt" || fail "no lr_find/smoothed_loss in the logs"
    grep -E -q "^train +lr_find +text" "$tmp/events.txt" || fail "no lr_find text in the logs"
    strip_times "$out" >"$tmp/lf1.txt"
    run $c --lr-find=1e-5:1:60 --logdir none --json --threads 2
    strip_times "$out" | diff "$tmp/lf1.txt" - >/dev/null || fail "--threads 2 gives another curve"
    run $c --lr-find --lr 0.1 --logdir none
    expect_status 2
    expect_in "$err" "--lr-find: sweeps the rate itself: leave out --lr"
    run $c --lr-find=1:0.1 --logdir none
    expect_status 2
    expect_in "$err" "--lr-find"
    run $c --lr-find=1e-5:1:3 --logdir none
    expect_status 2
    expect_in "$err" "5..100000"
    run $c --lr-find --resume="$tmp/lf"
    expect_status 2
    expect_in "$err" "starts a new run"
    ;;
label-smoothing)
    # Bitwise the same at any thread count; not the plain loss; kept by checkpoints (an exact
    # resume, and --eval gives the training's test line); refused where it means nothing.
    c="--data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500 --schedule constant --json --label-smoothing 0.1"
    run $c --epochs 4 --threads 1 --logdir "$tmp/ls1"
    expect_status 0
    strip_times "$out" >"$tmp/ls1.txt"
    threads_match "$tmp/ls1.txt" "2 3" $c --epochs 4
    run --data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500 --schedule constant --json --epochs 4 --logdir none
    strip_times "$out" | diff "$tmp/ls1.txt" - >/dev/null && fail "--label-smoothing 0.1 changed nothing"
    run $c --epochs 2 --logdir "$tmp/ls2"
    expect_status 0
    run --resume="$tmp/ls2" --epochs 4 --json
    expect_status 0
    strip_times "$out" >"$tmp/ls2.txt"
    tail -n 3 "$tmp/ls1.txt" | diff - "$tmp/ls2.txt" || fail "the resumed run differs from the straight one"
    ck=$(ls "$tmp/ls2/checkpoints"/ckpt-*.safetensors | tail -n 1)
    run --eval "$ck" --json
    expect_status 0
    grep -o '"test_loss": [0-9.]*, "test_accuracy": [0-9.]*, "params_checksum": "[0-9a-f]*"' "$out" >"$tmp/eval.txt"
    grep -q -F "$(cat "$tmp/eval.txt")" "$tmp/ls2.txt" || fail "--eval differs from the training's test line"
    run --resume="$tmp/ls2" --label-smoothing 0.2
    expect_status 2
    expect_in "$err" "--label-smoothing"
    run $c --loss mse --logdir none
    expect_status 2
    expect_in "$err" "--label-smoothing: only the ce loss"
    run --data synthetic --label-smoothing 1 --logdir none
    expect_status 2
    expect_in "$err" "--label-smoothing"
    ;;
precision)
    # --precision bf16: the same bits at any thread count, for an MLP and a CNN (Winograd,
    # strided and first-layer convolutions); not the fp32 training; kept by checkpoints
    # (brisk.precision: an exact resume, --eval gives the training's test line, --predict
    # its accuracy); no changing it on resume; a clear error for an unknown value.
    mlp="--data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500 --schedule constant --json --precision bf16"
    cnn="--data synthetic --model conv:8:3:pad1,relu,conv:8:3:pad1,relu,conv:4:3:s2,flatten,dense:4 --synthetic-n 400 --synthetic-test-n 100 --micro-batch 16 --batch 48 --precision bf16 --json"
    for net in mlp cnn; do
        eval "args=\$$net"
        run $args --epochs 3 --threads 1 --logdir "$tmp/p-$net"
        expect_status 0
        strip_times "$out" >"$tmp/p-$net.txt"
        threads_match "$tmp/p-$net.txt" "2 3" $args --epochs 3
        run $(echo "$args" | sed 's/--precision bf16//') --epochs 3 --threads 1 --logdir none
        expect_status 0
        strip_times "$out" | diff "$tmp/p-$net.txt" - >/dev/null && fail "$net: --precision bf16 changed nothing"
        # The portable C kernels (--kernel) give the vector kernels' bits in bf16 too.
        run $args --epochs 3 --threads 2 --kernel portable --logdir none
        expect_status 0
        strip_times "$out" | sed 's/, "gemm_kernel": "[a-z0-9]*"//' >"$tmp/portable.txt"
        strip_times "$tmp/p-$net.txt" | sed 's/, "gemm_kernel": "[a-z0-9]*"//' | diff - "$tmp/portable.txt" >/dev/null || fail "$net: --kernel portable differs"
        grep -q '"gemm_kernel": "portable"' "$out" || fail "$net: --kernel portable did not run the portable kernels"
    done
    # The first line says how the bf16 products run: emulated by fp32 fmas on a kernel
    # without vdpbf16ps, on vdpbf16ps where the CPU has it.
    quick="--data synthetic --model 32-16-4 --synthetic-n 200 --synthetic-test-n 50 --epochs 1 --precision bf16 --logdir none"
    run $quick --kernel portable
    expect_status 0
    expect_in "$out" "portable kernels, bfloat16 operands (emulated: fp32 fmas)"
    run $quick
    expect_status 0
    if grep -q "avx512bf16 kernels" "$out"; then
        expect_in "$out" "avx512bf16 kernels, bfloat16 operands (products on vdpbf16ps)"
    fi
    run --data synthetic --kernel sse9 --logdir none
    expect_status 2
    expect_in "$err" "'sse9' is not a kernel (avx512bf16, avx512, avx2 or portable)"
    resume_matches "$tmp/p-mlp.txt" "$tmp/pr" $mlp
    ck=$(ls "$tmp/p-mlp/checkpoints"/ckpt-*.safetensors | tail -n 1)
    grep -a -q '"brisk.precision":"bf16"' "$ck" || fail "no brisk.precision in $ck"
    run --eval "$ck" --json
    expect_status 0
    grep -o '"test_loss": [0-9.]*, "test_accuracy": [0-9.]*, "params_checksum": "[0-9a-f]*"' "$out" >"$tmp/eval.txt"
    grep -q -F "$(cat "$tmp/eval.txt")" "$tmp/p-mlp.txt" || fail "--eval differs from the training's test line"
    acc=$(sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p' "$out")
    run --predict "$ck" --out "$tmp/p.npy"
    expect_status 0
    expect_in "$out" "accuracy against the labels $(awk -v a="$acc" 'BEGIN { printf "%.2f", 100 * a }')%"
    run --resume="$tmp/p-mlp" --precision fp32
    expect_status 2
    expect_in "$err" "--precision"
    run --data synthetic --precision fp16 --logdir none
    expect_status 2
    expect_in "$err" "precision: unknown value 'fp16' (choose fp32 or bf16)"
    # Edited checkpoints (header CRC fixed up): a precision that is no precision, and settings
    # that disagree with the model's: the file and the field are named.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" "$tests_dir/edit_checkpoint.py" "$ck" "$tmp/edited.safetensors" meta:brisk.precision=bf17 || fail "edit_checkpoint.py failed"
    run --eval "$tmp/edited.safetensors"
    expect_status 1
    expect_in "$err" "edited.safetensors: metadata brisk.precision 'bf17' is not fp32 or bf16"
    "$py" "$tests_dir/edit_checkpoint.py" "$ck" "$tmp/edited.safetensors" 'config:precision="fp32"' || fail "edit_checkpoint.py failed"
    run --resume="$tmp/edited.safetensors"
    expect_status 1
    expect_in "$err" "edited.safetensors holds another model (dense:16,relu,dense:4, loss ce, bf16) than the settings give (dense:16,relu,dense:4, loss ce, fp32)"
    ;;
mixup)
    # --mixup A: the same bits at any thread count, with --accumulate (partners come from the
    # whole step's batch) and across a resume; not the run without it; refused without class
    # labels and the ce loss.
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:4 --synthetic-n 600 --val-split 0.1 --synthetic-test-n 100 --micro-batch 8 --schedule constant --mixup 0.4 --json"
    run $cnn --batch 64 --epochs 3 --threads 1 --logdir none
    expect_status 0
    strip_times "$out" >"$tmp/mix1.txt"
    accumulations_match "$tmp/mix1.txt" "1:64:2 1:64:3 4:16:2" $cnn
    run $(echo "$cnn" | sed 's/--mixup 0.4//') --batch 64 --epochs 3 --threads 1 --logdir none
    strip_times "$out" | diff "$tmp/mix1.txt" - >/dev/null && fail "--mixup changed nothing"
    resume_matches "$tmp/mix1.txt" "$tmp/mx" $cnn --batch 64
    run --resume="$tmp/mx" --mixup 0.2
    expect_status 2
    expect_in "$err" "--mixup"
    run $cnn --summary --logdir none
    expect_in "$out" "mixup: alpha 0.4"
    run $cnn --loss mse --logdir none
    expect_status 2
    expect_in "$err" "--mixup: it mixes class labels"
    run $cnn --mixup -1 --logdir none
    expect_status 2
    expect_in "$err" "--mixup"
    # --cutmix A: likewise the same bits at any thread count and with --accumulate.
    cut=$(echo "$cnn" | sed 's/--mixup 0.4/--cutmix 1/')
    run $cut --batch 64 --epochs 2 --threads 1 --logdir none
    expect_status 0
    strip_times "$out" >"$tmp/cut1.txt"
    run $cut --batch 16 --accumulate 4 --epochs 2 --threads 2 --logdir none
    expect_status 0
    strip_times "$out" | diff "$tmp/cut1.txt" - >/dev/null || fail "cutmix: --accumulate 4 --threads 2 differs"
    head -n 2 "$tmp/mix1.txt" | diff - "$tmp/cut1.txt" >/dev/null && fail "--cutmix trained as --mixup"
    run $cut --summary --logdir none
    expect_in "$out" "cutmix: alpha 1"
    run $cnn --cutmix 1 --logdir none
    expect_status 2
    expect_in "$err" "choose one"
    run --data synthetic --model 32-16-4 --cutmix 1 --logdir none
    expect_status 2
    expect_in "$err" "--cutmix: it pastes a box"
    ;;
ema)
    # --ema D: the moving average never changes training (the same weights as without it),
    # is the same at any thread count and across a resume, has its own validation run in the
    # logs, and is what --eval and --predict use; kept by checkpoints, refused when changed.
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:16,relu,dense:4 --synthetic-n 600 --val-split 0.1 --synthetic-test-n 100 --batch 32 --micro-batch 8 --schedule constant --json"
    run $cnn --ema 0.9 --epochs 3 --threads 1 --logdir "$tmp/e1"
    expect_status 0
    strip_times "$out" >"$tmp/ema1.txt"
    expect_in "$tmp/ema1.txt" '"ema_val_loss"'
    expect_in "$tmp/ema1.txt" '"ema_checksum"'
    run $cnn --ema 0.9 --epochs 3 --threads 2 --logdir none
    expect_status 0
    strip_times "$out" | diff "$tmp/ema1.txt" - >/dev/null || fail "--threads 2 differs from --threads 1"
    run $cnn --epochs 3 --threads 1 --logdir none
    expect_status 0
    plain=$(grep -o '"params_checksum": "[0-9a-f]*"' "$out")
    [ "$plain" = "$(grep -o '"params_checksum": "[0-9a-f]*"' "$tmp/ema1.txt")" ] || fail "--ema changed the trained weights"
    ema=$(grep -o '"ema_checksum": "[0-9a-f]*"' "$tmp/ema1.txt" | grep -o '[0-9a-f]\{16\}')
    [ -n "$ema" ] && [ "\"params_checksum\": \"$ema\"" != "$plain" ] || fail "the average is the weights"
    events_ok "$tmp/e1"
    expect_tag validation_ema epoch_loss scalar
    expect_tag validation_ema test_accuracy scalar
    run --eval "$tmp/e1" --json
    expect_status 0
    expect_in "$out" '"weights": "ema"'
    want=$(grep -o '"ema_test_loss": [0-9.]*, "ema_test_accuracy": [0-9.]*' "$tmp/ema1.txt" | sed 's/ema_//g')
    grep -q -F "$want" "$out" || fail "--eval is not the average's test line ($want)"
    expect_in "$out" "\"params_checksum\": \"$ema\""
    run --predict "$tmp/e1" --out "$tmp/p.csv"
    expect_status 0
    resume_matches "$tmp/ema1.txt" "$tmp/e2" $cnn --ema 0.9
    run --resume="$tmp/e2" --ema 0.5
    expect_status 2
    expect_in "$err" "--ema"
    for bad in 1 -0.1 x; do
        run $cnn --ema "$bad" --logdir none
        expect_status 2
        expect_in "$err" "--ema"
    done
    ;;
augment)
    # --augment: the same bits at any thread count and across a resume; not the run without
    # it; shown by --summary and kept by checkpoints; refused for vectors and bad grammar.
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:16,relu,dense:4 --synthetic-n 600 --val-split 0.1 --synthetic-test-n 100 --batch 32 --micro-batch 8 --schedule constant --json"
    run $cnn --augment crop:3,flip,erase:0.5 --epochs 3 --threads 1 --logdir none
    expect_status 0
    strip_times "$out" >"$tmp/aug1.txt"
    for t in 2 3; do
        run $cnn --augment crop:3,flip,erase:0.5 --epochs 3 --threads $t --logdir none
        expect_status 0
        strip_times "$out" | diff "$tmp/aug1.txt" - >/dev/null || fail "--threads $t differs from --threads 1"
    done
    run $cnn --epochs 3 --threads 1 --logdir none
    strip_times "$out" | diff "$tmp/aug1.txt" - >/dev/null && fail "--augment changed nothing"
    resume_matches "$tmp/aug1.txt" "$tmp/aug" $cnn --augment crop:3,flip,erase:0.5
    run --resume="$tmp/aug" --augment flip
    expect_status 2
    expect_in "$err" "--augment"
    run $cnn --augment flip,crop:2 --summary --logdir none
    expect_status 0
    expect_in "$out" "augmentation: crop:2,flip"
    run $cnn --augment crop:2,rotate:5 --logdir none
    expect_status 2
    expect_in "$err" "--augment: in 'crop:2,rotate:5', unknown 'rotate'"
    run --data synthetic --model 32-16-4 --augment flip --logdir none
    expect_status 2
    expect_in "$err" "--augment: crop, flip and erase need images"
    ;;
accumulate)
    # --accumulate K: K batches of B per step are bitwise one batch of K x B with the same
    # micro-batch (a CNN with batchnorm and dropout; the epoch's short last step included),
    # at any thread count; kept by checkpoints; refused where the micro-shards would differ.
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,flatten,dense:16,relu,dropout:0.3,dense:4 --synthetic-n 700 --val-split 0.1 --synthetic-test-n 100 --micro-batch 8 --schedule constant --json"
    run $cnn --batch 64 --epochs 3 --threads 1 --logdir none
    expect_status 0
    strip_times "$out" >"$tmp/one.txt"
    accumulations_match "$tmp/one.txt" "4:16:1 4:16:2 2:32:3 8:8:2" $cnn
    run $cnn --batch 16 --epochs 3 --threads 1 --logdir none
    strip_times "$out" | diff "$tmp/one.txt" - >/dev/null && fail "--batch 16 alone trained the same as --batch 64"
    # The plan is in --summary, a step of 64 in 4 passes.
    run $cnn --batch 16 --accumulate 4 --summary --logdir none
    expect_status 0
    expect_in "$out" "4 passes of 16 samples"
    # Resumed at another thread count, the same weights as the straight run.
    resume_matches "$tmp/one.txt" "$tmp/acc" $cnn --batch 16 --accumulate 4
    run --resume="$tmp/acc" --accumulate 2
    expect_status 2
    expect_in "$err" "--accumulate"
    run $cnn --batch 100 --accumulate 3 --micro-batch 16 --logdir none
    expect_status 2
    expect_in "$err" "--accumulate: a batch of 100 is not a whole number of micro-batches of 16"
    run $cnn --accumulate 0 --logdir none
    expect_status 2
    expect_in "$err" "--accumulate"
    run $cnn --batch 65536 --accumulate 4096 --logdir none
    expect_status 2
    expect_in "$err" "--accumulate"
    ;;
diverge)
    # At once: no checkpoint yet.
    run $syn --epochs 3 --optimizer sgd --lr 1e6 --momentum 0.99
    expect_status 3
    expect_in "$err" "diverged in epoch 1: step [0-9]"
    expect_in "$err" "no checkpoint"
    # In epoch 4: the message names the step and the layer; the checkpoints stay.
    run $syn --epochs 8 --loss mse --optimizer sgd --momentum 0.99 --lr 0.3 --logdir "$tmp/logs"
    expect_status 3
    expect_in "$err" "diverged in epoch 4: step [0-9]*:"
    expect_in "$err" "[0-9]*\.weight"
    expect_in "$err" "last good checkpoint is $tmp/logs/checkpoints/ckpt-"
    # The logs are flushed and closed: every file reads, the session ended in failure.
    events_ok "$tmp/logs"
    expect_tag . _hparams_/session_end_info hparams
    ;;
logs)
    # Train and validation carry the same epoch tags, so TensorBoard overlays them; plus
    # batch scalars, histograms, activations, images, text, hparams and the chart layout.
    run $syn --epochs 2 --log-every 5 --logdir "$tmp/logs"
    expect_status 0
    expect_in "$out" "TensorBoard logs in $tmp/logs"
    events_ok "$tmp/logs"
    for r in train validation; do
        expect_tag $r epoch_loss scalar
        expect_tag $r epoch_accuracy scalar
    done
    for t in batch_loss batch_accuracy learning_rate grad_global_norm samples_per_second \
             activations/0.dense/mean activations/1.relu/std activations/2.dense/mean; do
        expect_tag train "$t" scalar
    done
    expect_tag train weights/0.weight histogram
    expect_tag train gradients/2.bias histogram
    expect_tag train config text
    expect_tag validation confusion_matrix image
    expect_tag validation test_accuracy scalar
    expect_tag . _hparams_/experiment hparams
    expect_tag . _hparams_/session_start_info hparams
    expect_tag . custom_scalars__config__ custom_scalars
    # Epoch-level series at the global step that ends the epoch (15 steps of 128 per epoch).
    grep -E -q "^train +epoch_loss +scalar +2 +15\.\.30 " "$tmp/events.txt" || fail "epoch_loss: 2 points at steps 15..30"
    grep -E -q "^train +epoch +scalar +2 +15\.\.30 " "$tmp/events.txt" || fail "epoch: 2 points at steps 15..30"
    grep -E -q "^train +batch_loss +scalar +6 +5\.\.30 " "$tmp/events.txt" || fail "batch_loss: every 5 steps"
    # Three checkpoints kept by default; two epochs wrote two.
    [ "$(ls "$tmp/logs/checkpoints" | wc -l)" -eq 2 ] || fail "expected 2 checkpoints"
    # The logging thread's CPU time is reported; without logs there is none.
    run $syn --epochs 1 --logdir "$tmp/cpu" --json
    expect_status 0
    grep -q '"logging_cpu_seconds": 0.000' "$out" && fail "no CPU time for the logging thread"
    expect_in "$out" '"logging_cpu_seconds": [0-9]'
    # --logdir none writes nothing.
    run $syn --epochs 1 --logdir none --json
    expect_status 0
    expect_in "$out" '"logging_cpu_seconds": 0.000'
    # Directories that cannot be made: a clear error naming the path, exit 1.
    echo x >"$tmp/file"
    run $syn --epochs 1 --logdir "$tmp/file/logs"
    expect_status 1
    expect_in "$err" "$tmp/file"
    expect_in "$err" "not a directory"
    run $syn --epochs 1 --logdir "$tmp/ok" --checkpoint-dir "$tmp/file/ck"
    expect_status 1
    expect_in "$err" "cannot create directory $tmp/file"
    events_ok "$tmp/ok"
    ;;
resume)
    # 2 epochs, then --resume for 2 more == 4 epochs straight: metrics and weights.
    c="--data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500 --schedule constant --json"
    run $c --epochs 4 --logdir "$tmp/straight"
    expect_status 0
    strip_times "$out" >"$tmp/straight.txt"
    run $c --epochs 2 --logdir "$tmp/split" --keep 1
    expect_status 0
    [ "$(ls "$tmp/split/checkpoints" | wc -l)" -eq 1 ] || fail "--keep 1 kept more"
    run --resume "$tmp/split/checkpoints" --epochs 4 --json
    expect_status 0
    strip_times "$out" >"$tmp/resumed.txt"
    tail -n 3 "$tmp/straight.txt" | diff - "$tmp/resumed.txt" || fail "resumed run differs from the straight one"
    # The logs continue in new files that start at the resume step; nothing folds back.
    events_ok "$tmp/split"
    grep -q "START at step 31" "$tmp/events.txt" || fail "no START at the first step after the checkpoint"
    grep -E -q "^train +epoch_loss +scalar +4 +15\.\.60 " "$tmp/events.txt" || fail "epoch_loss at steps 15..60 over two files"
    # A setting that would change the arithmetic is refused on resume.
    run --resume="$tmp/split/checkpoints" --lr 0.5
    expect_status 2
    expect_in "$err" "--lr"
    # --eval reproduces the final test metrics from the checkpoint alone.
    ck=$(ls "$tmp/split/checkpoints"/ckpt-*.safetensors | tail -n 1)
    run --eval "$ck" --json
    expect_status 0
    grep -o '"test_loss": [0-9.]*, "test_accuracy": [0-9.]*, "params_checksum": "[0-9a-f]*"' "$out" >"$tmp/eval.txt"
    grep -q -F "$(cat "$tmp/eval.txt")" "$tmp/resumed.txt" || fail "--eval differs from the training's test line"
    # Resuming a run that already finished trains nothing, reports the test metrics again,
    # and does not log them a second time at the same step (TensorBoard's steps must rise).
    run --resume="$tmp/split/checkpoints"
    expect_status 0
    expect_in "$out" "already finished 4 epochs"
    expect_in "$out" "test  loss"
    events_ok "$tmp/split"
    grep -E -q "^validation +test_accuracy +scalar +2 +30\.\.60 " "$tmp/events.txt" ||
        { cat "$tmp/events.txt"; fail "test_accuracy not once at step 30 and once at step 60"; }
    ;;
sigint)
    # Ctrl-C in the middle of epoch 2 (cosine schedule): exit 130, a checkpoint, the resume
    # command, complete logs; resuming gives the weights of an uninterrupted run.
    run $slow --epochs 3 --json --logdir "$tmp/straight"
    expect_status 0
    tail -n 1 "$out" | grep -o '"params_checksum": "[0-9a-f]*"' >"$tmp/want.txt"
    start_bg 1 $slow --epochs 3 --json --logdir "$tmp/int"
    kill -INT "$pid"
    wait "$pid"
    status=$?
    expect_status 130
    expect_in "$err" "resume with: brisk-train --resume="
    expect_in "$out" '"interrupted": true'
    events_ok "$tmp/int"
    expect_tag train epoch_loss scalar
    ck=$(sed -n 's/.*"checkpoint": "\([^"]*\)".*/\1/p' "$out")
    [ -f "$ck" ] || fail "no checkpoint file '$ck'"
    run --eval "$ck"
    expect_status 0
    run --resume="$ck" --json
    expect_status 0
    grep -q -F "$(cat "$tmp/want.txt")" "$out" || fail "interrupted + resumed weights differ from a straight run"
    ;;
sigint-twice)
    # A second Ctrl-C quits at once; the logs are still drained and read cleanly.
    start_bg 1 $slow --epochs 50 --json --logdir "$tmp/int"
    # Two different signals, so that both are pending at once (two SIGINTs would merge).
    kill -INT "$pid"
    kill -TERM "$pid"
    wait "$pid"
    status=$?
    expect_status 130
    expect_in "$err" "quitting now"
    events_ok "$tmp/int"
    expect_tag train epoch_loss scalar
    ;;
bad-checkpoint)
    run $syn --epochs 1 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    size=$(wc -c <"$ck")
    head -c $((size / 2)) "$ck" >"$tmp/truncated.safetensors"
    run --resume="$tmp/truncated.safetensors"
    expect_status 1
    expect_in "$err" "$tmp/truncated.safetensors"
    expect_in "$err" "truncated"
    printf 'not a checkpoint at all' >"$tmp/garbage.safetensors"
    run --eval "$tmp/garbage.safetensors"
    expect_status 1
    expect_in "$err" "garbage.safetensors"
    expect_in "$err" "header size"
    cp "$ck" "$tmp/flipped.safetensors"
    printf '\377' | dd of="$tmp/flipped.safetensors" bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
    run --resume="$tmp/flipped.safetensors"
    expect_status 1
    expect_in "$err" "corrupted"
    run --resume="$ck" --model 32-8-4
    expect_status 2
    expect_in "$err" "--model"
    run --resume="$tmp/empty-dir-that-does-not-exist"
    expect_status 1
    expect_in "$err" "empty-dir-that-does-not-exist"
    mkdir "$tmp/empty"
    run --resume="$tmp/empty"
    expect_status 1
    expect_in "$err" "no checkpoint"
    ;;
safetensors)
    # A checkpoint parses with numpy from the published layout alone (no Brisk code).
    # Debian's python3-numpy belongs to /usr/bin/python3, whatever else is on PATH.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import numpy' 2>/dev/null || { echo "skip: no python3-numpy"; exit 77; }
    run $syn --epochs 1 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    "$py" "$tests_dir/check_safetensors.py" "$ck" >"$out" 2>"$err" || fail "check_safetensors.py failed"
    expect_in "$out" "0.weight F32 (16, 32)"
    expect_in "$out" "optim.v.2.bias F32 (4,)"
    expect_in "$out" "crc32c ok"
    ;;
test-labels)
    # Every split's labels are checked against the model's outputs when the data is loaded:
    # a test label of 200 with 10 outputs is refused at once, naming the file.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" - "$tmp/data" <<'PY' || fail "cannot write the IDX files"
import gzip, os, struct, sys
d = sys.argv[1]
os.makedirs(d)
def write(name, magic, dims, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", x) for x in dims) + bytes(data))
for split, n, bad in (("train", 200, None), ("t10k", 50, 7)):
    write(split + "-images-idx3-ubyte", 0x803, (n, 4, 4), [(i * 37) % 256 for i in range(n * 16)])
    labels = [i % 10 for i in range(n)]
    if bad is not None:
        labels[bad] = 200
    write(split + "-labels-idx1-ubyte", 0x801, (n,), labels)
PY
    run --data "$tmp/data" --model 16-8-10 --epochs 1 --logdir none
    expect_status 1
    expect_in "$err" "t10k-labels-idx1-ubyte"
    expect_in "$err" "200"
    expect_in "$err" "10 outputs"
    ;;
edited-checkpoint)
    # Every value read from a checkpoint is validated with the range of the flag it came from
    # (exit 1, the file and the setting named), even when its header CRC was fixed up; the
    # position must agree with the settings; an edit without the CRC fixed is refused for it.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    run $syn --epochs 2 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | head -n 1)
    "$py" "$tests_dir/edit_checkpoint.py" "$ck" "$tmp/same.safetensors" || fail "edit_checkpoint.py failed"
    run --eval "$tmp/same.safetensors"
    expect_status 0
    for edit in config:log-every=0:log-every config:batch=0:batch config:step-size=0:step-size \
                config:keep=0:keep config:lr=-1:lr config:epochs=1e18:epochs \
                'config:seed="99999999999999999999":seed' config:micro-batch=0:micro-batch \
                config:histogram-every=-1:histogram-every config:val-split=2:val-split \
                config:warmup=-5:warmup 'config:act="swish":act' 'config:model="32-x-4":model' \
                config:batch=64:step config:log-every=2.5:log-every \
                meta:brisk.epoch=9223372036854775000:brisk.epoch meta:brisk.steps_done=5:step \
                meta:brisk.seed=7:seed meta:brisk.batch=3:step; do
        field=${edit##*:}
        "$py" "$tests_dir/edit_checkpoint.py" "$ck" "$tmp/edited.safetensors" "${edit%:*}" || fail "edit $edit"
        run --resume="$tmp/edited.safetensors"
        expect_status 1
        expect_in "$err" "edited.safetensors"
        expect_in "$err" "$field"
    done
    "$py" "$tests_dir/edit_checkpoint.py" "$ck" "$tmp/edited.safetensors" --no-fix config:keep=5
    run --resume="$tmp/edited.safetensors"
    expect_status 1
    expect_in "$err" "header CRC-32C"
    ;;
runs)
    # A checkpoint belongs to its run: pruning removes only this run's older checkpoints,
    # never another run's and never the one just written; --resume=DIR refuses a directory of
    # several runs; stray temporary files of dead processes go; default log directories are
    # unique even for runs started in the same second; an explicit --logdir that holds
    # another run's logs is refused.
    big="--data synthetic --model 32-16-4 --synthetic-n 4000 --synthetic-test-n 200 --logdir none"
    run $big --epochs 3 --checkpoint-dir "$tmp/ck"
    expect_status 0
    ls "$tmp/ck" >"$tmp/run-a.txt"
    [ "$(wc -l <"$tmp/run-a.txt")" -eq 3 ] || fail "run A: 3 checkpoints expected"
    # A temporary file of a dead process on this host, and one of a live process.
    host=$(hostname | tr -c 'A-Za-z0-9._\n-' _)
    dead=999999
    while kill -0 "$dead" 2>/dev/null; do dead=$((dead - 1)); done
    echo x >"$tmp/ck/ckpt-x-step0000000001.safetensors.tmp.$host.$dead"
    echo x >"$tmp/ck/ckpt-x-step0000000002.safetensors.tmp.$host.$$"
    run $syn --epochs 1 --keep 1 --checkpoint-dir "$tmp/ck"
    expect_status 0
    while read -r f; do [ -f "$tmp/ck/$f" ] || fail "run B removed run A's $f"; done <"$tmp/run-a.txt"
    [ "$(ls "$tmp/ck" | grep -v -F -f "$tmp/run-a.txt" | grep -c 'safetensors$')" -eq 1 ] || fail "run B's checkpoint is missing"
    [ -e "$tmp/ck/ckpt-x-step0000000001.safetensors.tmp.$host.$dead" ] && fail "a dead process's temporary file is still there"
    [ -e "$tmp/ck/ckpt-x-step0000000002.safetensors.tmp.$host.$$" ] || fail "a live process's temporary file was removed"
    rm -f "$tmp/ck/ckpt-x-step0000000002.safetensors.tmp.$host.$$"
    run --resume="$tmp/ck"
    expect_status 1
    expect_in "$err" "2 runs"
    expect_in "$err" "--resume=$tmp/ck/ckpt-"
    run --resume="$tmp/ck/$(tail -n 1 "$tmp/run-a.txt")" --epochs 4
    expect_status 0
    # Three runs started in the same second from one shell loop: three directories.
    mkdir "$tmp/cwd"
    ( cd "$tmp/cwd" && for i in 1 2 3; do
        "$bin" --data synthetic --model 32-16-4 --synthetic-n 500 --synthetic-test-n 100 --epochs 1 --quiet &
      done; wait )
    [ "$(ls "$tmp/cwd/logs" | wc -l)" -eq 3 ] || { ls -l "$tmp/cwd/logs"; fail "3 runs did not get 3 log directories"; }
    # An explicit --logdir that holds another run's logs is refused; its own run resumes.
    d=$(ls -d "$tmp/cwd/logs"/* | head -n 1)
    run --data synthetic --model 32-16-4 --synthetic-n 500 --synthetic-test-n 100 --epochs 1 --logdir "$d"
    expect_status 1
    expect_in "$err" "$d"
    expect_in "$err" "another run"
    run --resume="$d/checkpoints" --epochs 2
    expect_status 0
    ;;
too-big)
    # A model that cannot fit in memory is refused before anything is allocated, with the
    # estimate and what the machine has (not killed by the OOM killer after minutes of swap).
    start=$(date +%s)
    run --data synthetic --model 784-65536-65536-10 --synthetic-n 1000 --synthetic-test-n 100 --logdir none
    expect_status 1
    expect_in "$err" "GB"
    expect_in "$err" "available"
    [ $(( $(date +%s) - start )) -le 20 ] || fail "took more than 20 s to refuse"
    ;;
sigint-eval)
    # Ctrl-C during the final test evaluation: training is complete; the message says so
    # (not "finishing the step"), the evaluation finishes, the last checkpoint is written, exit
    # 130. The process stops itself where the evaluation begins (a failpoint), takes the
    # signal there and is continued.
    BRISK_FAILPOINT=fit-test-begin:stop "$bin" --data synthetic --model 64-512-512-4 \
        --synthetic-n 2000 --synthetic-test-n 4000 --epochs 1 --json --logdir "$tmp/logs" \
        >"$out" 2>"$err" &
    pid=$!
    for _ in $(seq 1 600); do
        [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = T ] && break
        kill -0 "$pid" 2>/dev/null || fail "brisk-train ended before the test evaluation"
        sleep 0.1
    done
    kill -INT "$pid"
    kill -CONT "$pid"
    wait "$pid"
    status=$?
    expect_status 130
    expect_in "$err" "final test evaluation"
    grep -q "finishing the step" "$err" && fail "said it would finish a step"
    expect_in "$out" '"test_loss"'
    ck=$(sed -n 's/.*trained model is in \(.*\)$/\1/p' "$err")
    [ -f "$ck" ] || fail "no checkpoint file '$ck'"
    ;;
predict)
    # --predict writes one row per test sample: probabilities that sum to 1, whose argmax is
    # right as often as --eval says; .npy and CSV agree; the checkpoint records the
    # normalisation. Bad uses are usage errors; an unwritable --out leaves no file.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import numpy' 2>/dev/null || { echo "skip: no python3-numpy"; exit 77; }
    run $syn --epochs 2 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    grep -a -q '"brisk.normalize":"' "$ck" || fail "the checkpoint does not record the normalisation"
    run --eval "$ck" --json
    expect_status 0
    acc=$(sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p' "$out")
    # A run directory or a checkpoint directory: its newest checkpoint.
    for d in "$tmp/logs" "$tmp/logs/checkpoints"; do
        run --eval "$d" --json
        expect_status 0
        expect_in "$out" "\"test_accuracy\": $acc"
        run --predict "$d" --out "$tmp/pd.npy"
        expect_status 0
        expect_in "$out" "500 predictions of 4 outputs"
    done
    rm -f "$tmp/pd.npy"
    run --predict "$ck" --out "$tmp/p.npy"
    expect_status 0
    expect_in "$out" "500 predictions of 4 outputs"
    pct=$(awk -v a="$acc" 'BEGIN { printf "%.2f", 100 * a }')
    expect_in "$out" "accuracy against the labels $pct%"
    run --predict "$ck" --out "$tmp/p.csv"
    expect_status 0
    "$py" - "$tmp/p.npy" "$tmp/p.csv" "$acc" <<'PY' || fail "the predictions do not check out"
import sys
import numpy as np
p = np.load(sys.argv[1])
c = np.loadtxt(sys.argv[2], delimiter=",", skiprows=1, dtype=np.float32)
assert p.shape == (500, 4) and p.dtype == np.float32, (p.shape, p.dtype)
assert np.allclose(p.sum(axis=1), 1, atol=1e-5)
assert np.allclose(p, c, rtol=1e-6, atol=1e-8)
assert open(sys.argv[2]).readline().strip() == "p0,p1,p2,p3"
PY
    run --predict "$ck"
    expect_status 2
    expect_in "$err" "--out"
    run $syn --out "$tmp/x.csv"
    expect_status 2
    expect_in "$err" "--out"
    run --predict "$ck" --out "$tmp/no/such/dir/p.csv"
    expect_status 1
    expect_in "$err" "$tmp/no/such/dir/p.csv"
    ;;
predict-input)
    # --predict --input: new samples without labels, from .npy or CSV, normalised as the
    # checkpoint says. On a small IDX data set, predicting for its test images given as a
    # float .npy file and as CSV gives bitwise what --predict gives on the test set itself.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import numpy' 2>/dev/null || { echo "skip: no python3-numpy"; exit 77; }
    mkdir -p "$tmp/idx"
    "$py" - "$tmp/idx" <<'PY' || fail "could not write the data"
import gzip, struct, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(5)
for prefix, n in (("train", 300), ("t10k", 40)):
    y = rng.integers(0, 3, n).astype(np.uint8)
    x = (rng.integers(0, 90, (n, 6, 5)) + 80 * y[:, None, None]).astype(np.uint8)
    with gzip.open("%s/%s-images-idx3-ubyte.gz" % (d, prefix), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 6, 5) + x.tobytes())
    with gzip.open("%s/%s-labels-idx1-ubyte.gz" % (d, prefix), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + y.tobytes())
    if prefix == "t10k":
        np.save(d + "/new.npy", x.reshape(n, 30).astype(np.float32))
        np.save(d + "/new_img.npy", x.reshape(n, 1, 6, 5))
        np.savetxt(d + "/new.csv", x.reshape(n, 30), fmt="%d", delimiter=",",
                   header=",".join("px%d" % i for i in range(30)), comments="")
PY
    run --data "$tmp/idx" --model 30-8-3 --epochs 2 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    run --predict "$ck" --out "$tmp/ref.npy"
    expect_status 0
    for f in new.npy new_img.npy new.csv; do
        run --predict "$ck" --input "$tmp/idx/$f" --out "$tmp/$f.out.npy"
        expect_status 0
        expect_in "$out" "40 predictions of 3 outputs for $tmp/idx/$f"
        cmp -s "$tmp/ref.npy" "$tmp/$f.out.npy" || fail "--input $f does not give the test set's predictions"
    done
    # A wrong width, a file that is not data, --input alone.
    "$py" -c "import numpy as np; np.save('$tmp/w.npy', np.zeros((4, 7), np.float32))"
    run --predict "$ck" --input "$tmp/w.npy" --out "$tmp/w.out.npy"
    expect_status 1
    expect_in "$err" "w.npy: 7 features per sample, but the model of"
    echo "a,b" >"$tmp/bad.csv"
    echo "1,x" >>"$tmp/bad.csv"
    run --predict "$ck" --input "$tmp/bad.csv" --out "$tmp/b.csv"
    expect_status 1
    expect_in "$err" "bad.csv: line 2, column 2 ('b'): 'x' is not a finite number"
    [ ! -e "$tmp/b.csv" ] || fail "a failed prediction wrote its output"
    run --predict "$ck" --input "$tmp/idx/t10k-labels-idx1-ubyte.gz" --out "$tmp/b.csv"
    expect_status 1
    expect_in "$err" "neither a .npy nor a .csv"
    run $syn --input "$tmp/idx/new.npy"
    expect_status 2
    expect_in "$err" "--input"
    ;;
image-shape)
    # A convolution's checkpoint for (1, 28, 28) images predicts on arrays of that shape, and
    # on flat (N, 784) rows (documented: a vector stands for an image of its size), but not on
    # other images whose sizes multiply out the same: (N, 4, 14, 14) and (N, 56, 14).
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import numpy' 2>/dev/null || { echo "skip: no python3-numpy"; exit 77; }
    run --data synthetic --model conv:4:3,relu,flatten,dense:4 --synthetic-n 300 \
        --synthetic-test-n 20 --epochs 1 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    "$py" - "$tmp" <<'PY' || fail "could not write the arrays"
import sys
import numpy as np
d = sys.argv[1]
x = np.random.default_rng(1).integers(0, 256, (5, 1, 28, 28)).astype(np.uint8)
np.save(d + "/img.npy", x)
np.save(d + "/img3.npy", x.reshape(5, 28, 28))
np.save(d + "/flat.npy", x.reshape(5, 784))
np.save(d + "/c4.npy", x.reshape(5, 4, 14, 14))
np.save(d + "/tall.npy", x.reshape(5, 56, 14))
PY
    for f in img img3 flat; do
        run --predict "$ck" --input "$tmp/$f.npy" --out "$tmp/$f.out.npy"
        expect_status 0
    done
    cmp -s "$tmp/img.out.npy" "$tmp/img3.out.npy" || fail "(N, 28, 28) predicts otherwise than (N, 1, 28, 28)"
    cmp -s "$tmp/img.out.npy" "$tmp/flat.out.npy" || fail "(N, 784) predicts otherwise than (N, 1, 28, 28)"
    run --predict "$ck" --input "$tmp/c4.npy" --out "$tmp/c4.out.npy"
    expect_status 1
    expect_in "$err" "c4.npy"
    expect_in "$err" "images of (channels 4, height 14, width 14), the model's input is (1, 28, 28)"
    run --predict "$ck" --input "$tmp/tall.npy" --out "$tmp/tall.out.npy"
    expect_status 1
    expect_in "$err" "images of (channels 1, height 56, width 14)"
    [ ! -e "$tmp/c4.out.npy" ] && [ ! -e "$tmp/tall.out.npy" ] || fail "a refused prediction wrote its output"
    ;;
eval-other-data)
    # --eval and --predict on another valid data set than the one trained on (same image
    # size, another number of samples) evaluate and predict on it.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import numpy' 2>/dev/null || { echo "skip: no python3-numpy"; exit 77; }
    "$py" - "$tmp" <<'PY' || fail "could not write the data"
import gzip, struct, sys
import numpy as np
for name, n_train, n_test, seed in (("a", 600, 50, 1), ("b", 200, 30, 2)):
    d = "%s/%s" % (sys.argv[1], name)
    import os
    os.makedirs(d)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 3, n).astype(np.uint8)
        x = (rng.integers(0, 90, (n, 6, 5)) + 80 * y[:, None, None]).astype(np.uint8)
        with gzip.open("%s/%s-images-idx3-ubyte.gz" % (d, prefix), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 6, 5) + x.tobytes())
        with gzip.open("%s/%s-labels-idx1-ubyte.gz" % (d, prefix), "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + y.tobytes())
PY
    run --data "$tmp/a" --model 30-8-3 --epochs 2 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    run --eval "$ck" --data "$tmp/b"
    expect_status 0
    expect_in "$out" "on 30 samples"
    run --predict "$ck" --data "$tmp/b" --out "$tmp/b.npy"
    expect_status 0
    expect_in "$out" "30 predictions of 3 outputs"
    # A resume, though, must fit the checkpoint's position: another data set is refused.
    run --resume="$ck" --data "$tmp/b" --epochs 3
    expect_status 1
    expect_in "$err" "does not fit its settings"
    ;;
special-files)
    # Special files as inputs: a FIFO or a link to /dev/zero given as data or as a checkpoint
    # is refused at once (exit 1, naming the file and what it is), never read without end;
    # as --out, a FIFO, a link to a device, a directory or a device node is refused and left
    # as it was. Each command runs under a timeout and a memory limit, so that a reader that
    # blocks or grows fails the test instead of hanging it.
    run $syn --epochs 1 --logdir "$tmp/logs"
    expect_status 0
    ck=$(ls "$tmp/logs/checkpoints"/ckpt-*.safetensors | tail -n 1)
    mkfifo "$tmp/f.npy" "$tmp/f.csv" "$tmp/f.safetensors"
    ln -s /dev/zero "$tmp/zero.csv"
    ln -s /dev/zero "$tmp/zero.safetensors"
    # (No address-space limit for a sanitizer build: its shadow memory alone passes it.)
    limit="ulimit -v 4000000"
    ldd "$bin" 2>/dev/null | grep -qE 'lib[at]san' && limit=:
    bounded() { (eval "$limit"; timeout 30 "$bin" "$@") >"$out" 2>"$err"; status=$?; }
    for args in "--predict $ck --input $tmp/f.npy --out $tmp/o.npy:$tmp/f.npy:a FIFO" \
                "--predict $ck --input $tmp/f.csv --out $tmp/o.npy:$tmp/f.csv:a FIFO" \
                "--predict $ck --input $tmp/zero.csv --out $tmp/o.npy:$tmp/zero.csv:a character device" \
                "--eval $tmp/f.safetensors:$tmp/f.safetensors:a FIFO" \
                "--predict $tmp/f.safetensors --out $tmp/o.npy:$tmp/f.safetensors:a FIFO" \
                "--resume=$tmp/f.safetensors:$tmp/f.safetensors:a FIFO" \
                "--eval $tmp/zero.safetensors:$tmp/zero.safetensors:a character device"; do
        # shellcheck disable=SC2086
        bounded ${args%%:*}
        [ "$status" -ne 124 ] || fail "${args%%:*}: still running after 30 s"
        expect_status 1
        rest=${args#*:}
        expect_in "$err" "${rest%%:*}"
        expect_in "$err" "${rest#*:}, not a regular file"
    done
    [ ! -e "$tmp/o.npy" ] || fail "a refused command wrote its output"
    # Outputs.
    mkfifo "$tmp/out.fifo"
    ln -s /dev/null "$tmp/null-link.csv"
    mkdir "$tmp/outdir.npy"
    targets="$tmp/out.fifo $tmp/null-link.csv $tmp/outdir.npy"
    if [ "$(id -u)" -eq 0 ] && mknod "$tmp/nulldev.csv" c 1 3 2>/dev/null; then
        targets="$targets $tmp/nulldev.csv"
    fi
    for t in $targets; do
        bounded --predict "$ck" --out "$t"
        [ "$status" -ne 124 ] || fail "--out $t: still running after 30 s"
        expect_status 1
        expect_in "$err" "$t"
        expect_in "$err" "not a regular file"
    done
    [ -p "$tmp/out.fifo" ] || fail "--out replaced the FIFO"
    [ -L "$tmp/null-link.csv" ] && [ "$(readlink "$tmp/null-link.csv")" = /dev/null ] ||
        fail "--out replaced the link to /dev/null"
    [ -c /dev/null ] || fail "/dev/null is no longer a character device"
    [ -d "$tmp/outdir.npy" ] || fail "--out replaced the directory"
    [ ! -e "$tmp/nulldev.csv" ] || [ -c "$tmp/nulldev.csv" ] || fail "--out replaced the device node"
    # A link to a regular file: the file is written, the link kept.
    : >"$tmp/real.csv"
    ln -s real.csv "$tmp/link.csv"
    run --predict "$ck" --out "$tmp/link.csv"
    expect_status 0
    [ -L "$tmp/link.csv" ] || fail "--out replaced the link to a regular file"
    [ "$(wc -l <"$tmp/real.csv")" -eq 501 ] || fail "--out through a link did not write its target"
    ;;
run-lock)
    # A run has one live writer: while a run trains, a second process resuming it (into the
    # same log directory, or its checkpoints into a checkpoint directory of their own) is
    # refused, naming the first's pid and host; once the first has ended, the resume works.
    start_bg 1 $slow --epochs 3 --json --logdir "$tmp/logs"
    first=$pid
    "$bin" --resume="$tmp/logs/checkpoints" --epochs 4 >"$tmp/o2" 2>"$tmp/e2"
    second=$?
    "$bin" $syn --epochs 1 --logdir "$tmp/logs" >"$tmp/o3" 2>"$tmp/e3"
    third=$?
    kill -INT "$first"
    wait "$first"
    [ "$second" -eq 1 ] || { cat "$tmp/e2"; fail "a second resume of a running run exited $second"; }
    grep -q "another process is writing this run: process $first on host .* holds the lock $tmp/logs/brisk.lock" "$tmp/e2" ||
        { cat "$tmp/e2"; fail "the refusal does not name the first process and the lock"; }
    [ "$third" -eq 1 ] && grep -q "process $first on host" "$tmp/e3" ||
        { cat "$tmp/e3"; fail "a new run into the running run's log directory was not refused"; }
    run --resume="$tmp/logs/checkpoints" --quiet
    expect_status 0
    # A checkpoint directory of its own: the run's lock there.
    start_bg 1 $slow --epochs 3 --json --logdir none --checkpoint-dir "$tmp/ck"
    first=$pid
    "$bin" --resume="$tmp/ck" --epochs 4 --logdir none >"$tmp/o2" 2>"$tmp/e2"
    second=$?
    kill -INT "$first"
    wait "$first"
    [ "$second" -eq 1 ] && grep -q "process $first on host .* holds the lock $tmp/ck/ckpt-.*\.lock" "$tmp/e2" ||
        { cat "$tmp/e2"; fail "a second writer of the run's checkpoints was not refused"; }
    ;;
disk-full)
    # The disk fills up while logging (RLIMIT_FSIZE: writes past 100 KB fail like a full
    # disk): the run fails (exit 1) naming the event file, the last step it keeps and the
    # checkpoint to resume from; no event file ends in a torn record; no checkpoint claims
    # work the logs lack. Once there is room, the resume completes the logs. A torn tail left
    # by a process killed in a write is cut at the next resume, which says so.
    (trap '' XFSZ; ulimit -f 200; exec "$bin" --data synthetic --model 64-8-4 \
        --synthetic-n 4000 --synthetic-test-n 200 --epochs 4 --batch 16 --log-every 1 \
        --logdir "$tmp/logs") >"$out" 2>"$err"
    status=$?
    expect_status 1
    expect_in "$err" "TensorBoard logs could not be written"
    expect_in "$err" "events.out.tfevents"
    expect_in "$err" "File too large"
    expect_in "$err" "keeps the records up to step"
    expect_in "$err" "resume with: brisk-train --resume="
    "$events" "$tmp/logs" >"$tmp/events.txt" 2>&1 || { cat "$tmp/events.txt"; fail "an event file does not read cleanly"; }
    grep -q "torn" "$tmp/events.txt" && { cat "$tmp/events.txt"; fail "an event file ends in a torn record"; }
    run --resume="$tmp/logs/checkpoints" --quiet
    expect_status 0
    events_ok "$tmp/logs"
    [ "$(grep -E '^validation +test_loss ' "$tmp/events.txt" | awk '{print $4}')" = 1 ] ||
        { cat "$tmp/events.txt"; fail "test_loss is not logged once"; }
    # A torn tail: the resume cuts it and says which file.
    f=$(ls "$tmp/logs/train"/events.out.tfevents.* | tail -n 1)
    printf '\001\002\003' >>"$f"
    run --resume="$tmp/logs/checkpoints" --epochs 5 --quiet
    expect_status 0
    expect_in "$err" "$f: cut a torn last record (3 bytes"
    events_ok "$tmp/logs"
    grep -q "torn" "$tmp/events.txt" && fail "the torn record is still there"
    ;;
run-dirs)
    # #19: a run is resumed from its log directory; every command a message suggests works;
    # a resume refused for a changed setting names the old and the new value; --threads past
    # the CPUs warns; the checkpoints' directory is printed at the start; a refused run is
    # refused before it loads data or allocates (little memory).
    run $syn --epochs 2 --logdir "$tmp/a"
    expect_status 0
    expect_in "$out" "checkpoints in $tmp/a/checkpoints (resume with --resume=$tmp/a)"
    run --resume="$tmp/a" --epochs 3
    expect_status 0
    expect_in "$out" "resuming $tmp/a/checkpoints/ckpt-"
    expect_in "$out" "epoch 3/3"
    # A new run into the used directory: refused, with a command that continues it.
    run $syn --epochs 4 --logdir "$tmp/a"
    expect_status 1
    expect_in "$err" "holds the logs of another run"
    suggested=$(sed -n 's/.*to continue that run: brisk-train \(.*\)$/\1/p' "$err")
    [ -n "$suggested" ] || fail "no command suggested"
    # shellcheck disable=SC2086
    run $suggested --epochs 4 --quiet
    expect_status 0
    # A resume that changes what was trained.
    run --resume="$tmp/a" --lr 0.5
    expect_status 2
    expect_in "$err" "--lr: cannot change when resuming"
    expect_in "$err" "was trained with lr 0.001"
    expect_in "$err" "not 0.5"
    run --resume="$tmp/a" --model 32-8-4
    expect_status 2
    expect_in "$err" "model 32-16-4, not 32-8-4"
    # More threads than CPUs: a warning, same results.
    cpus=$(nproc)
    run $syn --epochs 1 --threads $((cpus + 3)) --json
    expect_status 0
    expect_in "$err" "more than the $cpus CPUs"
    # Refused before loading: a run into a directory another process writes uses little
    # memory (the data and workspaces of this one would take hundreds of MB).
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    run --data synthetic --model 784-4096-4096-10 --synthetic-n 30000 --logdir "$tmp/a"
    expect_status 1
    rss=$("$py" -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$bin" --data synthetic \
        --model 784-4096-4096-10 --synthetic-n 30000 --logdir "$tmp/a")
    [ "$rss" -lt 60000 ] || fail "a refused run grew to $rss KB before refusing"
    ;;
data-kinds)
    # --data takes a CSV file with --label, and a .npy pair with --labels, with --test for a
    # separate test set of the same kind; a resume of such a run; errors name the flag.
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import numpy' 2>/dev/null || { echo "skip: no python3-numpy"; exit 77; }
    "$py" - "$tmp" <<'PY' || fail "could not write the data"
import sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
for name, n in (("train", 600), ("test", 100)):
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 5)) + 2.0 * y[:, None] + np.array([0, 10, 100, -5, 1e3])
    np.save("%s/%s_x.npy" % (d, name), x.astype(np.float32))
    np.save("%s/%s_y.npy" % (d, name), y.astype(np.int64))
    np.savetxt("%s/%s.csv" % (d, name), np.column_stack([x, y]), delimiter=",",
               header="a,b,c,d,e,kind", comments="", fmt="%.6g")
PY
    run --data "$tmp/train.csv" --label kind --test "$tmp/test.csv" --model 5-16-3 --epochs 20 \
        --lr 0.01 --logdir "$tmp/csv"
    expect_status 0
    expect_in "$out" "data $tmp/train.csv: 540 train, 60 validation, 100 test samples"
    acc=$(sed -n 's/^test  loss [0-9.]* acc *\([0-9.]*\)%.*/\1/p' "$out")
    awk -v a="$acc" 'BEGIN { exit !(a > 80) }' || fail "CSV run: test accuracy $acc%"
    run --data "$tmp/train_x.npy" --labels "$tmp/train_y.npy" --test "$tmp/test_x.npy" \
        --test-labels "$tmp/test_y.npy" --model 5-16-3 --epochs 3 --logdir "$tmp/npy"
    expect_status 0
    expect_in "$out" "540 train, 60 validation, 100 test samples"
    run --resume="$tmp/npy" --epochs 4 --quiet
    expect_status 0
    run --data "$tmp/train.csv" --model 5-16-3 --logdir none
    expect_status 2
    expect_in "$err" "--label: a CSV data set needs its label column"
    run --data "$tmp/train_x.npy" --model 5-16-3 --logdir none
    expect_status 2
    expect_in "$err" "--labels"
    run --data "$tmp/train.csv" --label kind --model 5-16-3 --epochs 1 --logdir none
    expect_status 0
    expect_in "$out" "no test set (give --test)"
    ;;
policies)
    # --early-stop, --keep-best and --plateau (brisk_fit's policies): no epoch after the first
    # improves val_loss by 10, so the rate halves after epoch 2 and training stops there; the
    # best checkpoint is epoch 1's; the test set is still evaluated.
    run --data synthetic --model 32-16-4 --synthetic-n 2000 --synthetic-test-n 500 --epochs 6 \
        --early-stop 1 --min-delta 10 --keep-best --plateau 1 --plateau-factor 0.5 --json \
        --logdir "$tmp/logs"
    expect_status 0
    [ "$(grep -c '"epoch":' "$out")" -eq 2 ] || fail "expected 2 epochs before the early stop"
    expect_in "$out" '"early_stop": true'
    grep '"epoch": 1,' "$out" | grep -q '"lr_factor": 1,' || fail "epoch 1's rate factor is not 1"
    grep '"epoch": 2,' "$out" | grep -q '"lr_factor": 0.5,' || fail "epoch 2 did not halve the rate"
    best=$(ls "$tmp/logs/checkpoints"/ckpt-*-best.safetensors 2>/dev/null)
    [ -f "$best" ] || fail "no best checkpoint"
    grep -a -q '"brisk.epoch":"1"' "$best" || fail "the best checkpoint is not epoch 1's"
    # Resuming continues the policies: one more epoch without improvement stops again.
    run --resume="$tmp/logs/checkpoints" --epochs 6 --json
    expect_status 0
    [ "$(grep -c '"epoch":' "$out")" -eq 1 ] || fail "the resumed run should stop after 1 epoch"
    grep '"epoch": 3,' "$out" | grep -q '"lr_factor": 0.25,' || fail "the factor did not carry over"
    # Usage errors name the flag.
    run $syn --early-stop 2 --monitor val_los
    expect_status 2
    expect_in "$err" "--monitor"
    run $syn --early-stop 2 --val-split 0
    expect_status 2
    expect_in "$err" "validation samples"
    run $syn --keep-best --checkpoint-dir none
    expect_status 2
    expect_in "$err" "--keep-best"
    run $syn --plateau 2 --plateau-factor 1.5
    expect_status 2
    expect_in "$err" "--plateau-factor"
    ;;
tokens)
    # Token data and the gpt preset: text a byte a token, windows of --seq-len + 1, the
    # validation part the text's end; per-token metrics, bits per byte and generated samples in
    # the logs; an exact resume; --sample continues a prompt reproducibly; and the refusals.
    seq 1 1500 | awk '{ printf "line %d says %s\n", $1, ($1 * 7) % 13 }' >"$tmp/text.txt"
    gpt="--model gpt:1:32:4 --data $tmp/text.txt --seq-len 32 --batch 16 --schedule constant --samples 1 --sample-tokens 40"
    run $gpt --epochs 2 --logdir "$tmp/straight" --json
    expect_status 0
    [ "$(grep -c '"epoch":' "$out")" -eq 2 ] || fail "expected 2 epoch lines"
    run $gpt --epochs 2 --logdir none --summary
    expect_status 0
    expect_in "$out" "attention:4"
    expect_in "$out" "dense:256:nobias:tied"
    run $gpt --epochs 1 --logdir "$tmp/gpt"
    expect_status 0
    expect_in "$out" "weight decay 0.1"
    run --resume="$tmp/gpt" --epochs 2 --json
    expect_status 0
    sum_resumed=$(grep -o '"params_checksum": "[0-9a-f]*"' "$out")
    run $gpt --epochs 2 --logdir none --json
    [ "$sum_resumed" = "$(grep -o '"params_checksum": "[0-9a-f]*"' "$out")" ] || fail "resumed weights differ from a straight run's"
    events_ok "$tmp/gpt"
    expect_tag validation epoch_bits_per_byte scalar
    expect_tag train epoch_bits_per_byte scalar
    expect_tag validation samples/0 text
    ck=$(ls "$tmp/gpt/checkpoints"/ckpt-*.safetensors | tail -n 1)
    run --sample "$ck" --prompt "line 12" --tokens 30 --temperature 0.7 --top-k 8 --seed 4
    expect_status 0
    expect_in "$out" "^line 12"
    cp "$out" "$tmp/sample1.txt"
    run --sample "$ck" --prompt "line 12" --tokens 30 --temperature 0.7 --top-k 8 --seed 4
    cmp -s "$out" "$tmp/sample1.txt" || fail "the same seed gave another sample"
    [ "$(wc -c <"$out")" -ge 38 ] || fail "the sample is shorter than the prompt and 30 tokens"
    # The run's directory and its checkpoint directory stand for the newest checkpoint (the
    # README's command names the run directory: its checkpoints are several).
    for d in "$tmp/gpt" "$tmp/gpt/checkpoints"; do
        run --sample "$d" --prompt "line 12" --tokens 30 --temperature 0.7 --top-k 8 --seed 4
        expect_status 0
        cmp -s "$out" "$tmp/sample1.txt" || fail "--sample $d did not sample its newest checkpoint"
    done
    mkdir "$tmp/empty"
    run --sample "$tmp/empty" --prompt "line 12"
    expect_status 1
    expect_in "$err" "no checkpoint (ckpt-\*-step\*.safetensors) in $tmp/empty"
    # Refusals: exit 2 naming the flag for settings, exit 1 naming the file for files.
    run --model gpt --data "$tmp/text.txt" --logdir none
    expect_status 2
    expect_in "$err" "--seq-len"
    run --model 32-10 --data "$tmp/text.txt" --seq-len 32 --logdir none
    expect_status 2
    expect_in "$err" "need a language model"
    run $gpt --seq-len 100000 --logdir none
    expect_status 2
    expect_in "$err" "--seq-len"
    head -c 20 "$tmp/text.txt" >"$tmp/short.txt"
    run --model gpt --data "$tmp/short.txt" --seq-len 32 --logdir none
    expect_status 1
    expect_in "$err" "short.txt: 20 tokens, fewer than one window"
    printf '\210\330\064\001\001\000\000\000\020\000\000\000' >"$tmp/bad.bin"
    head -c 1012 /dev/zero >>"$tmp/bad.bin"
    run --model gpt --data "$tmp/bad.bin" --seq-len 8 --logdir none
    expect_status 1
    expect_in "$err" "bad.bin: the header's token count (header\[2\]) is 16"
    run $gpt --init-from "$tmp/text.txt" --logdir none
    expect_status 1
    expect_in "$err" "is not llm.c's model magic"
    run --sample "$tmp/text.txt"
    expect_status 1
    run --prompt hello
    expect_status 2
    expect_in "$err" "--prompt: goes with --sample"
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok [$case_name]"
