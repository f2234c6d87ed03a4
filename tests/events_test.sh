#!/bin/sh
# brisk-events on hostile directories: many tags (linear, not quadratic), a FIFO named like an
# event file (no hang), a pipe given as the file (a clear error), a symlink loop (no endless
# walk, every file counted once), an unreadable file (a clear error).
# Usage: events_test.sh BRISK_EVENTS TB_DEMO
set -u
events=$1
demo=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL [events]: $*"; exit 1; }

"$demo" "$tmp/many" --tags 80000 >/dev/null || fail "tb_demo --tags"
start=$(date +%s)
timeout 60 "$events" "$tmp/many" >"$tmp/out" 2>&1 || { tail "$tmp/out"; fail "80,000 tags: failed or took over 60 s"; }
took=$(( $(date +%s) - start ))
[ "$took" -le 10 ] || fail "80,000 tags took $took s"
grep -q "^train  *tag00079999  *scalar  *1 " "$tmp/out" || fail "the last tag is missing"
echo "ok: 80,000 tags in $took s"

"$demo" "$tmp/d" >/dev/null || fail "tb_demo"
"$events" "$tmp/d" >"$tmp/plain.txt" 2>&1 || fail "a clean directory does not read cleanly"
mkfifo "$tmp/d/train/events.out.tfevents.fifo"
timeout 10 "$events" "$tmp/d" >"$tmp/out" 2>&1
status=$?
[ "$status" -ne 124 ] || fail "hung on a FIFO named like an event file"
[ "$status" -eq 1 ] || fail "exit $status with a FIFO in the directory, expected 1"
grep -q "events.out.tfevents.fifo.*not a regular file" "$tmp/out" || { cat "$tmp/out"; fail "no message naming the FIFO"; }
rm "$tmp/d/train/events.out.tfevents.fifo"
echo "ok: a FIFO"

f=$(ls "$tmp/d/train"/*tfevents* | head -n 1)
cat "$f" | timeout 10 "$events" /dev/stdin >"$tmp/out" 2>&1
status=$?
[ "$status" -eq 1 ] || { cat "$tmp/out"; fail "a pipe: exit $status, expected 1"; }
grep -q "not a regular file" "$tmp/out" || { cat "$tmp/out"; fail "a pipe: no clear message"; }
echo "ok: a pipe"

ln -s .. "$tmp/d/train/loop"
timeout 10 "$events" "$tmp/d" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "a symlink loop: failed or hung"; }
grep -v '^/' "$tmp/out" >"$tmp/loop.txt"
grep -v '^/' "$tmp/plain.txt" | diff - "$tmp/loop.txt" || fail "a symlink loop changed the counts"
rm "$tmp/d/train/loop"
echo "ok: a symlink loop"

if [ "$(id -u)" -ne 0 ]; then
    chmod 000 "$f"
    "$events" "$tmp/d" >"$tmp/out" 2>&1
    [ $? -eq 1 ] || fail "an unreadable file: exit status, expected 1"
    grep -q "Permission denied" "$tmp/out" || { cat "$tmp/out"; fail "an unreadable file: no reason"; }
    chmod 644 "$f"
    echo "ok: an unreadable file"
fi
echo "ok [events]"
