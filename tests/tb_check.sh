#!/bin/sh
# tb_check.sh TB_DEMO TB_READ: writes a log directory with tb_demo and reads it with
# TensorBoard's own readers and server (tb_read.py --serve). Skipped (exit 77) where Python's
# tensorboard package or tb_read.py is missing.
set -eu
demo=$1
reader=$2
if [ ! -f "$reader" ] || ! python3 -c 'import tensorboard' 2>/dev/null; then
    echo "SKIP: needs python3's tensorboard package and $reader"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$demo" "$dir/demo"
python3 "$reader" "$dir/demo" --serve
