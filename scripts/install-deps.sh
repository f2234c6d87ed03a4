#!/bin/sh
# Installs everything Brisk needs to build, test and train on Debian 12, from Debian's archive.
# Runs apt-get directly as root, through sudo otherwise.
set -eu
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# The python3-* packages besides numpy are what TensorBoard's own reader needs (the tb_check
# test runs it where ../shared/tools/tb_read.py exists).
PACKAGES="build-essential cmake pkg-config libopenblas-dev zlib1g-dev libprotobuf-c-dev
protobuf-c-compiler libcjson-dev libcmocka-dev python3-numpy libopenmpi-dev openmpi-bin
dataset-fashion-mnist python3-protobuf python3-werkzeug python3-markdown python3-bleach
python3-six python3-packaging python3-pil python3-absl python3-grpcio"
missing=
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: installing$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
