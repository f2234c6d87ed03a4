#!/bin/sh
# Logs and checkpoints agree, whatever instant a run is killed at (#18): a CNN run (or, with
# an mpirun, a 2x1 MPI run) is killed with SIGKILL at each point of the checkpoint sequence
# (BRISK_FAILPOINT, brisk/fsutil.h) of a middle epoch and of the last one, and once in the
# final test evaluation; a chain of two kills too. Each is resumed to the end, and then
# TensorBoard's own reader (tb_read.py) must find every epoch's records exactly once in train
# and validation, the test metrics once at the last step, and no damaged file.
# Usage: kill_points.sh BRISK_TRAIN TB_READ [MPIRUN]
# Skipped (77) where TensorBoard's reader is missing, unless BRISK_REQUIRE_TENSORBOARD=1.
set -u
bin=$1
reader=$2
mpirun=${3:-}
. "$(dirname "$0")/tb_reader.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL [kill_points${mpirun:+ mpi}]: $*"; exit 1; }
epochs=3
# 540 training samples in batches of 64: 9 steps an epoch.
args="--data synthetic --model conv:6:3:pad1,relu,maxpool:2,flatten,dense:4 --synthetic-n 600
      --synthetic-test-n 100 --batch 64 --micro-batch 16 --epochs $epochs --quiet"
steps_per_epoch=9
if [ -n "$mpirun" ]; then
    train() { "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$bin" --threads 1 "$@"; }
else
    train() { "$bin" "$@"; }
fi

# kill_then_resume DIR POINT [POINT...]: a run killed at the first point, each resume killed
# at the next, then resumed to the end.
kill_then_resume() {
    dir=$1
    shift
    first=1
    for fp in "$@"; do
        if [ "$first" = 1 ]; then
            # shellcheck disable=SC2086
            BRISK_FAILPOINT=$fp train $args --logdir "$tmp/logs/$dir" >"$tmp/out" 2>"$tmp/err"
        else
            BRISK_FAILPOINT=$fp train --resume="$tmp/logs/$dir/checkpoints" --quiet \
                >"$tmp/out" 2>"$tmp/err"
        fi
        status=$?
        first=0
        [ "$status" -ne 0 ] || { cat "$tmp/err"; fail "$dir: the run was not killed at $fp (never reached?)"; }
    done
    train --resume="$tmp/logs/$dir/checkpoints" --quiet >"$tmp/out" 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "$dir: the resume after the kill failed"; }
    grep -q "^test " "$tmp/out" || { cat "$tmp/out"; fail "$dir: no test line at the end"; }
}

cases=
for point in fit-records-pushed fit-logs-flushed checkpoint-before-rename fit-checkpoint-renamed fit-pruned; do
    for k in 2 3; do
        kill_then_resume "$point-$k" "$point@$k"
        cases="$cases $point-$k"
    done
done
kill_then_resume test-begin fit-test-begin@1
kill_then_resume chain fit-logs-flushed@2 checkpoint-before-rename@1
cases="$cases test-begin chain"
# One straight run for reference.
train $args --logdir "$tmp/logs/straight" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "straight run"; }
cases="$cases straight"

"$py" "$reader" "$tmp/logs" --json "$tmp/read.json" >"$tmp/read.txt" 2>&1 ||
    { tail -n 30 "$tmp/read.txt"; fail "TensorBoard's reader reported problems"; }
"$py" - "$tmp/read.json" "$epochs" "$steps_per_epoch" $cases <<'PY' || fail "records missing or repeated"
import json, sys
report = json.load(open(sys.argv[1]))
epochs, spe, cases = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
last = epochs * spe
bad = []
def check(run, tag, points, steps):
    s = report["runs"].get(run, {}).get(tag)
    if s is None:
        bad.append("%s: no %s" % (run, tag))
    elif s["points"] != points or s["steps"] != steps:
        bad.append("%s: %s has %d points at steps %s, expected %d at %s"
                   % (run, tag, s["points"], s["steps"], points, steps))
for case in cases:
    for run in ("train", "validation"):
        check(case + "/" + run, "epoch_loss", epochs, [spe, last])
        check(case + "/" + run, "epoch_accuracy", epochs, [spe, last])
    check(case + "/train", "epoch", epochs, [spe, last])
    check(case + "/validation", "test_loss", 1, [last, last])
    check(case + "/validation", "test_accuracy", 1, [last, last])
for b in bad:
    print("kill_points:", b)
print("kill_points: %d runs, each with %d epochs of records and the test metrics exactly once"
      % (len(cases), epochs) if not bad else "kill_points: %d problems" % len(bad))
sys.exit(1 if bad else 0)
PY
