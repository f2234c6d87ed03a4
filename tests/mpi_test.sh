#!/bin/sh
# brisk-train across processes: mpirun on loopback, several ranks on this machine.
# Usage: mpi_test.sh MPIRUN BRISK_TRAIN CASE
set -u
mpirun=$1
bin=$2
case_name=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpi() { np=$1; shift; "$mpirun" --allow-run-as-root --oversubscribe -np "$np" "$bin" "$@"; }
fail() { echo "FAIL [$case_name]: $*"; exit 1; }
checksum() { grep -o '"params_checksum": "[0-9a-f]*"' "$1" | tail -n 1; }
strip_times() { sed 's/"threads_in_use": [0-9.]*, //; s/"samples_per_second": [0-9.]*, "elapsed_seconds": [0-9.]*//; s/, "elapsed_seconds": [0-9.]*//; s/, "logging_cpu_seconds": [0-9.]*//' "$1"; }

# 20 steps of 64 samples in 8 micro-shards; a model big enough that every rank owns blocks.
syn="--data synthetic --model 64-300-200-4 --synthetic-n 1280 --val-split 0 --synthetic-test-n 300 --batch 64 --micro-batch 8 --json"
# Trains "$@" for $1 epochs at P x T 1x1, 1x2, 2x1 and 2x2: the same weights and metrics bit
# for bit; then to epoch $2 at 2x2, and that checkpoint resumed at 1x1 to epoch $1 reaches the
# weights of the straight 1x1 run.
same_bits_and_resume() {
    epochs=$1
    split=$2
    shift 2
    "$bin" "$@" --epochs "$epochs" --threads 1 --logdir none >"$tmp/ref.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "1x1 failed"; }
    grep -q '"params_checksum"' "$tmp/ref.txt" || fail "no checksum"
    strip_times "$tmp/ref.txt" >"$tmp/ref.s"
    "$bin" "$@" --epochs "$epochs" --threads 2 --logdir none >"$tmp/1x2.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "1x2 failed"; }
    strip_times "$tmp/1x2.txt" | diff "$tmp/ref.s" - || fail "1x2 differs from 1x1"
    for pt in 2x1 2x2; do
        mpi "${pt%x*}" "$@" --epochs "$epochs" --threads "${pt#*x}" --logdir none >"$tmp/$pt.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "$pt failed"; }
        strip_times "$tmp/$pt.txt" | diff "$tmp/ref.s" - || fail "$pt differs from 1x1"
    done
    rm -rf "$tmp/split"
    mpi 2 "$@" --epochs "$split" --threads 2 --logdir "$tmp/split" >"$tmp/a.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "2x2 run to epoch $split failed"; }
    "$bin" --resume="$tmp/split" --epochs "$epochs" --threads 1 --json >"$tmp/b.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume at 1x1 failed"; }
    [ "$(checksum "$tmp/b.txt")" = "$(checksum "$tmp/ref.txt")" ] || fail "resumed weights differ: $(checksum "$tmp/b.txt") vs $(checksum "$tmp/ref.txt")"
}

case $case_name in
identical)
    # P x T in {1x1, 1x2, 2x1, 2x2, 4x1}: the same weights bit for bit, the same metrics.
    "$bin" $syn --epochs 1 --threads 1 --logdir none >"$tmp/ref.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "1x1 failed"; }
    grep -q '"params_checksum"' "$tmp/ref.txt" || fail "no checksum"
    strip_times "$tmp/ref.txt" >"$tmp/ref.s"
    for pt in 1x2 2x1 2x2 4x1; do
        p=${pt%x*}
        t=${pt#*x}
        mpi "$p" $syn --epochs 1 --threads "$t" --logdir none >"$tmp/$pt.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "$pt failed"; }
        strip_times "$tmp/$pt.txt" | diff "$tmp/ref.s" - || fail "$pt differs from 1x1"
    done
    ;;
cnn)
    # A CNN with batchnorm (statistics per micro-shard, running statistics merged in shard
    # order) and dropout (masks keyed by the sample's place in the batch): P x T in {1x1, 1x2,
    # 2x1, 2x2} give the same weights and metrics bit for bit; a checkpoint written at 2x2
    # (running statistics included) resumes at 1x1 to the weights of a straight 1x1 run.
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,conv:6:3:s2,relu,flatten,dense:16,batchnorm,relu,dropout:0.3,dense:4 --synthetic-n 640 --val-split 0.1 --synthetic-test-n 100 --batch 64 --micro-batch 16 --schedule constant --json"
    same_bits_and_resume 3 2 $cnn
    ;;
accumulate)
    # --accumulate K: the passes' shards are dealt over the processes pass by pass and added in
    # the one batch's order: 2 x 32 and 4 x 16 at P x T 2x1 and 2x2 give the weights and
    # metrics of one batch of 64 at 1x1 bit for bit; a checkpoint of an accumulating 2x2 run
    # resumes at 1x1 to the same weights. With mixup, whose partners come from the whole
    # step's batch, across passes and processes.
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,conv:6:3:s2,relu,flatten,dense:16,batchnorm,relu,dropout:0.3,dense:4 --synthetic-n 640 --val-split 0.1 --synthetic-test-n 100 --micro-batch 16 --schedule constant --mixup 0.4 --json"
    "$bin" $cnn --batch 64 --epochs 3 --threads 1 --logdir none >"$tmp/ref.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "1x1 failed"; }
    strip_times "$tmp/ref.txt" >"$tmp/ref.s"
    for run in 2x1:32:2 2x2:32:2 2x2:16:4; do
        pt=${run%%:*}
        rest=${run#*:}
        b=${rest%%:*}
        k=${rest#*:}
        p=${pt%x*}
        t=${pt#*x}
        mpi "$p" $cnn --batch "$b" --accumulate "$k" --epochs 3 --threads "$t" --logdir none >"$tmp/$pt.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "$pt --accumulate $k failed"; }
        strip_times "$tmp/$pt.txt" | diff "$tmp/ref.s" - || fail "$pt --batch $b --accumulate $k differs from one batch of 64 at 1x1"
    done
    mpi 2 $cnn --batch 32 --accumulate 2 --epochs 2 --threads 2 --logdir "$tmp/split" >"$tmp/a.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "2x2 run to epoch 2 failed"; }
    "$bin" --resume="$tmp/split/checkpoints" --epochs 3 --threads 1 --json >"$tmp/b.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume at 1x1 failed"; }
    [ "$(checksum "$tmp/b.txt")" = "$(checksum "$tmp/ref.txt")" ] || fail "resumed weights differ: $(checksum "$tmp/b.txt") vs $(checksum "$tmp/ref.txt")"
    ;;
augment)
    # --augment: every draw keyed by (seed, epoch, sample), so P x T in {1x1, 1x2, 2x1, 2x2}
    # give the same bits, and a 2x2 checkpoint resumes at 1x1 to the straight run's weights;
    # with --ema, the moving average too (its metrics and checksum are in the lines compared).
    cnn="--data synthetic --model conv:4:3:pad1,batchnorm,relu,maxpool:2,conv:6:3:s2,relu,flatten,dense:16,relu,dropout:0.3,dense:4 --synthetic-n 640 --val-split 0.1 --synthetic-test-n 100 --batch 64 --micro-batch 16 --schedule constant --augment crop:2,flip,erase:0.5 --ema 0.9 --json"
    same_bits_and_resume 3 2 $cnn
    ;;
gpt)
    # A GPT with dropout (embeddings, attention weights, residual branches) on byte-level
    # text: P x T in {1x1, 1x2, 2x1, 2x2} give the same weights and metrics bit for bit, and a
    # checkpoint written at 2x2 resumes at 1x1 to the weights of a straight 1x1 run.
    seq 1 3000 | awk '{ printf "line %d says %s\n", $1, ($1 * 7) % 13 }' >"$tmp/text.txt"
    gpt="--data $tmp/text.txt --seq-len 24 --model gpt:1:32:4:drop0.1 --batch 12 --micro-batch 4 --samples 0 --schedule constant --json"
    same_bits_and_resume 2 1 $gpt
    ;;
bf16)
    # --precision bf16 on a CNN (first-layer, Winograd and strided convolutions, batchnorm,
    # dropout) and a GPT with dropout: P x T in {1x1, 1x2, 2x1, 2x2} give the same bits, and a
    # 2x2 checkpoint resumes at 1x1 to the straight run's weights.
    cnn="--data synthetic --model conv:8:3:pad1,batchnorm,relu,conv:8:3:pad1,relu,maxpool:2,conv:6:3:s2,relu,flatten,dense:16,relu,dropout:0.3,dense:4 --synthetic-n 640 --val-split 0.1 --synthetic-test-n 100 --batch 64 --micro-batch 16 --schedule constant --precision bf16 --json"
    same_bits_and_resume 3 2 $cnn
    seq 1 3000 | awk '{ printf "line %d says %s\n", $1, ($1 * 7) % 13 }' >"$tmp/text.txt"
    gpt="--data $tmp/text.txt --seq-len 24 --model gpt:1:32:4:drop0.1 --batch 12 --micro-batch 4 --samples 0 --schedule constant --precision bf16 --json"
    same_bits_and_resume 2 1 $gpt
    ;;
resume)
    # A checkpoint written at 2x1 resumes at 1x2 and matches a straight 1x2 run; rank 0 alone
    # writes the logs, with the same tags as a single process.
    c="--data synthetic --model 64-300-200-4 --synthetic-n 1600 --synthetic-test-n 300 --batch 100 --micro-batch 16 --schedule constant --json"
    "$bin" $c --epochs 4 --threads 2 --logdir "$tmp/straight" >"$tmp/straight.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "straight run failed"; }
    mpi 2 $c --epochs 2 --threads 1 --logdir "$tmp/split" >"$tmp/a.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "2x1 run failed"; }
    [ "$(ls "$tmp/split/checkpoints" | wc -l)" -eq 2 ] || fail "rank 0 should have written 2 checkpoints"
    [ "$(ls "$tmp/split/train" | wc -l)" -eq 1 ] || fail "only rank 0 writes event files"
    "$bin" --resume="$tmp/split/checkpoints" --epochs 4 --threads 2 --json >"$tmp/b.txt" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume at 1x2 failed"; }
    [ "$(checksum "$tmp/b.txt")" = "$(checksum "$tmp/straight.txt")" ] || fail "resumed weights differ: $(checksum "$tmp/b.txt") vs $(checksum "$tmp/straight.txt")"
    strip_times "$tmp/b.txt" >"$tmp/b.s"
    strip_times "$tmp/straight.txt" | tail -n 3 | diff - "$tmp/b.s" || fail "resumed metrics differ"
    ;;
kill)
    # A rank killed mid-run ends the whole job with a nonzero status within 30 s.
    "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$bin" --data synthetic --model 64-512-512-4 \
        --synthetic-n 50000 --synthetic-test-n 500 --batch 64 --epochs 50 --threads 1 --json \
        --logdir none >"$tmp/out" 2>"$tmp/err" &
    job=$!
    for _ in $(seq 1 600); do
        [ -s "$tmp/out" ] && break
        kill -0 "$job" 2>/dev/null || { cat "$tmp/err"; fail "the job ended before its first epoch"; }
        sleep 0.1
    done
    [ -s "$tmp/out" ] || fail "no first epoch after 60 s"
    victim=$(pgrep -f -n "synthetic-n 50000 --synthetic-test-n 500 --batch 64 --epochs 50")
    [ -n "$victim" ] || fail "no rank to kill"
    kill -9 "$victim"
    start=$(date +%s)
    while kill -0 "$job" 2>/dev/null; do
        [ $(( $(date +%s) - start )) -le 30 ] || { kill -9 "$job"; fail "the job still runs 30 s after a rank died"; }
        sleep 0.2
    done
    wait "$job"
    status=$?
    [ "$status" -ne 0 ] || fail "the job exited 0 after a rank died"
    echo "job ended $(( $(date +%s) - start )) s after the kill, status $status"
    ;;
sigint)
    # Ctrl-C to mpirun: every rank stops after the same step, rank 0 writes a checkpoint that
    # then loads anywhere.
    "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$bin" --data synthetic --model 64-512-512-4 \
        --synthetic-n 50000 --synthetic-test-n 500 --batch 64 --epochs 50 --threads 1 --json \
        --logdir "$tmp/logs" >"$tmp/out" 2>"$tmp/err" &
    job=$!
    for _ in $(seq 1 600); do
        [ -s "$tmp/out" ] && break
        kill -0 "$job" 2>/dev/null || { cat "$tmp/err"; fail "the job ended before its first epoch"; }
        sleep 0.1
    done
    kill -INT "$job"
    wait "$job"
    grep -q '"interrupted": true' "$tmp/out" || { cat "$tmp/out" "$tmp/err"; fail "no interrupted line"; }
    ck=$(sed -n 's/.*"checkpoint": "\([^"]*\)".*/\1/p' "$tmp/out")
    [ -f "$ck" ] || fail "no checkpoint '$ck'"
    "$bin" --eval "$ck" >"$tmp/eval" 2>&1 || { cat "$tmp/eval"; fail "the checkpoint does not load"; }
    grep -c "resume with" "$tmp/err" | grep -qx 1 || fail "rank 0 alone should print the resume command"
    ;;
stop-rank0)
    # Rank 0 stopped inside a collective (SIGSTOP at a failpoint in the 6th, the all-gather of
    # the parameters, which takes several MPI_Test calls to complete) for longer than the timeout
    # and then continued, while rank 1 still waits there: rank 0 does not count the time it
    # was stopped itself, does not blame rank 1 for its own absence, and the job completes.
    BRISK_FAILPOINT=comm-wait@6:stop "$mpirun" --allow-run-as-root --oversubscribe -np 2 \
        -x BRISK_FAILPOINT "$bin" $syn --epochs 2 --threads 1 --logdir none --mpi-timeout 3 \
        >"$tmp/out" 2>"$tmp/err" &
    job=$!
    stopped=
    for _ in $(seq 1 600); do
        for p in $(pgrep -f "synthetic-n 1280 --val-split 0"); do
            [ "$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)" = T ] && stopped=$p
        done
        [ -n "$stopped" ] && break
        kill -0 "$job" 2>/dev/null || { cat "$tmp/err"; fail "the job ended before rank 0 stopped"; }
        sleep 0.1
    done
    [ -n "$stopped" ] || fail "rank 0 never stopped at the failpoint"
    sleep 5 # past the 3 s limit, within rank 1's 3 + 5 s
    kill -CONT "$stopped"
    wait "$job"
    status=$?
    [ "$status" -eq 0 ] || { cat "$tmp/err"; fail "the job exited $status after rank 0 was continued"; }
    grep -q "did not arrive" "$tmp/err" && { cat "$tmp/err"; fail "a rank was blamed for rank 0's absence"; }
    grep -q '"params_checksum"' "$tmp/out" || fail "no final line"
    ;;
hung)
    # A stopped (hung) rank: the others wait at most --mpi-timeout seconds in a collective,
    # sleeping rather than spinning, then the job ends with a message naming the collective
    # and the rank that did not arrive.
    "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$bin" --data synthetic --model 64-512-512-4 \
        --synthetic-n 50000 --synthetic-test-n 500 --batch 64 --micro-batch 32 --epochs 50 \
        --threads 1 --json --logdir none --mpi-timeout 10 >"$tmp/out" 2>"$tmp/err" &
    job=$!
    for _ in $(seq 1 600); do
        [ -s "$tmp/out" ] && break
        kill -0 "$job" 2>/dev/null || { cat "$tmp/err"; fail "the job ended before its first epoch"; }
        sleep 0.1
    done
    [ -s "$tmp/out" ] || fail "no first epoch after 60 s"
    rank_pid() {
        for p in $(pgrep -f "synthetic-n 50000 --synthetic-test-n 500 --batch 64 --micro-batch 32"); do
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
        done
    }
    victim=$(rank_pid 1)
    waiter=$(rank_pid 0)
    [ -n "$victim" ] && [ -n "$waiter" ] || fail "cannot find the ranks' processes"
    kill -STOP "$victim"
    start=$(date +%s)
    cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
    sleep 4
    c0=$(cpu "$waiter")
    sleep 4
    c1=$(cpu "$waiter")
    ticks=$(getconf CLK_TCK)
    [ $((c1 - c0)) -le $((ticks * 2)) ] || { kill -9 "$victim"; fail "rank 0 used $((c1 - c0)) ticks of CPU in 4 s while waiting"; }
    while kill -0 "$job" 2>/dev/null; do
        [ $(( $(date +%s) - start )) -le 60 ] || { kill -9 "$victim" "$job"; fail "the job still runs 60 s after a rank hung"; }
        sleep 0.2
    done
    wait "$job"
    status=$?
    kill -9 "$victim" 2>/dev/null
    [ "$status" -ne 0 ] || fail "the job exited 0 after a rank hung"
    grep -q "rank 1" "$tmp/err" || { cat "$tmp/err"; fail "the message does not name rank 1"; }
    grep -q "did not arrive" "$tmp/err" || { cat "$tmp/err"; fail "the message does not say what waited"; }
    echo "job ended $(( $(date +%s) - start )) s after the stop, status $status"
    ;;
escapes)
    # Open MPI gives ranks a pseudo-terminal even when mpirun's output goes to a file: no
    # progress line (escape codes) under mpirun.
    mpi 2 --data synthetic --model 64-300-200-4 --synthetic-n 12800 --synthetic-test-n 300 \
        --batch 64 --micro-batch 32 --epochs 2 --logdir none >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "run failed"; }
    grep -q "$(printf '\033')" "$tmp/out" && fail "escape codes in redirected output"
    grep -q "epoch 2/2" "$tmp/out" || fail "no epoch lines"
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok [$case_name]"
