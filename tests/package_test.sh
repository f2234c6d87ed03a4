#!/bin/sh
# The installed package, as a user gets it: cmake --install into a temporary prefix, then a
# separate CMake project (tests/package) built with find_package(Brisk) and the example built
# with pkg-config, each run. A shared build also checks that libbrisk.so exports only the
# public API. Skips (77) in sanitizer builds (the installed library would need the
# sanitizer's runtime in every program).
# Usage: package_test.sh BUILD_DIR SOURCE_DIR SANITIZE SHARED MPI
set -eu
build=$1
src=$2
sanitize=$3
shared=$4
mpi=$5
# docs/api.md shows examples/train_cnn.c verbatim (the ```c block that starts with its comment).
shown=$(mktemp)
awk '/^```c$/ { inblk = 1; buf = ""; next }
     /^```$/ && inblk { inblk = 0; if (buf ~ /^\/\* train_cnn:/) { printf "%s", buf; exit } next }
     inblk { buf = buf $0 "\n" }' "$src/docs/api.md" >"$shown"
if ! cmp -s "$shown" "$src/examples/train_cnn.c"; then
    diff "$src/examples/train_cnn.c" "$shown" | head -n 10
    rm -f "$shown"
    echo "FAIL: docs/api.md's program differs from examples/train_cnn.c"
    exit 1
fi
rm -f "$shown"
[ -z "$sanitize" ] || { echo "skip: sanitizer build"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
[ -f "$tmp/prefix/include/brisk/trainer.h" ] || fail "no headers installed"
[ -x "$tmp/prefix/bin/brisk-train" ] || fail "brisk-train not installed"
pcdir=$(dirname "$(find "$tmp/prefix" -name brisk.pc | head -n 1)")
[ -f "$pcdir/brisk.pc" ] || fail "no brisk.pc installed"

# find_package(Brisk)
with_mpi=OFF
[ "$mpi" = "ON" ] && with_mpi=ON
cmake -S "$src/tests/package" -B "$tmp/user" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DBRISK_EXAMPLES="$src/examples" -DWITH_MPI=$with_mpi >"$tmp/user.log" 2>&1 ||
    { cat "$tmp/user.log"; fail "configuring a project with find_package(Brisk)"; }
cmake --build "$tmp/user" >>"$tmp/user.log" 2>&1 || { cat "$tmp/user.log"; fail "building against the package"; }
export LD_LIBRARY_PATH="$(dirname "$(find "$tmp/prefix" -name 'libbrisk.*' | head -n 1)")"
"$tmp/user/headers_cxx" || fail "the C++ program failed"
"$tmp/user/custom_layer" >"$tmp/run.log" || { cat "$tmp/run.log"; fail "custom_layer (find_package) failed"; }
grep -q "bitwise identical" "$tmp/run.log" || fail "custom_layer printed no result"
"$tmp/user/train_cnn" >"$tmp/run3.log" || { cat "$tmp/run3.log"; fail "train_cnn failed"; }
grep -q "^epoch 3" "$tmp/run3.log" || fail "train_cnn printed no epochs"
"$tmp/user/fit_policies" "$tmp/fitlogs" >"$tmp/run4.log" || { cat "$tmp/run4.log"; fail "fit_policies failed"; }
[ -d "$tmp/fitlogs/train" ] || fail "fit_policies wrote no logs"
"$tmp/user/custom_loop" "$tmp/looplogs" 1 >"$tmp/run5.log" || { cat "$tmp/run5.log"; fail "custom_loop failed"; }
[ -d "$tmp/looplogs/validation" ] || fail "custom_loop wrote no validation logs"
"$tmp/user/regress_csv" "$src/examples/data/friedman1.csv" "$tmp/reg" >"$tmp/run6.log" ||
    { cat "$tmp/run6.log"; fail "regress_csv failed"; }
[ -x "$tmp/user/fit_npy" ] || fail "fit_npy was not built" # run by the example_fit_npy test
[ -x "$tmp/user/resume_predict" ] || fail "resume_predict was not built"
# Every installed header compiles alone, in C11 and in C++17 (warnings as errors), and only
# public headers are installed: no plumbing (rings, the pool, TFRecord, file utilities).
inc="$tmp/prefix/include"
n_headers=0
for h in "$inc"/brisk/*.h; do
    name=brisk/$(basename "$h")
    printf '#include "%s"\nint brisk_header_test_%d;\n' "$name" "$n_headers" >"$tmp/one.c"
    cp "$tmp/one.c" "$tmp/one.cpp"
    cc -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$inc" "$tmp/one.c" ||
        fail "$name does not compile alone as C11"
    c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/one.cpp" ||
        fail "$name does not compile alone as C++17"
    n_headers=$((n_headers + 1))
done
[ "$n_headers" -ge 10 ] || fail "only $n_headers headers installed"
for plumbing in ring pool tfrecord fsutil crc32c; do
    [ ! -e "$inc/brisk/$plumbing.h" ] || fail "brisk/$plumbing.h (internal) is installed"
done
echo "package: $n_headers headers, each compiles alone in C11 and C++17"

# Brisk's own kernels do the products: nothing links OpenBLAS (or any BLAS), so a program
# cannot fall onto OpenBLAS's slow fallback kernel (#13).
if ldd "$tmp/user/custom_layer" | grep -qi 'blas'; then fail "a Brisk program links a BLAS"; fi
if grep -qi 'blas' "$pcdir/brisk.pc"; then fail "brisk.pc asks for a BLAS"; fi
# A one-process program does not link MPI.
if ldd "$tmp/user/custom_layer" | grep -q libmpi; then fail "Brisk::brisk pulls in MPI"; fi
if [ "$with_mpi" = ON ]; then
    ldd "$tmp/user/custom_layer_mpi" | grep -q libmpi || fail "Brisk::brisk_mpi does not link MPI"
fi

# pkg-config
PKG_CONFIG_PATH="$pcdir" pkg-config --exists brisk || fail "pkg-config does not find brisk"
# shellcheck disable=SC2046
cc -O2 "$src/examples/custom_layer.c" -o "$tmp/custom_layer_pc" \
    $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs brisk) -lm || fail "building with pkg-config"
# shellcheck disable=SC2046
cc "$src/examples/train_cnn.c" -o "$tmp/train_cnn_pc" \
    $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs brisk) || fail "building train_cnn with pkg-config"
"$tmp/train_cnn_pc" >/dev/null || fail "train_cnn (pkg-config) failed"
"$tmp/custom_layer_pc" >"$tmp/run2.log" || { cat "$tmp/run2.log"; fail "custom_layer (pkg-config) failed"; }

if [ "$shared" = "ON" ]; then
    so=$(find "$tmp/prefix" -name 'libbrisk.so' | head -n 1)
    [ -n "$so" ] || fail "no libbrisk.so"
    extra=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^brisk_[a-z]' || true)
    [ -z "$extra" ] || fail "libbrisk.so exports more than the API: $(echo "$extra" | head -n 5)"
    echo "libbrisk.so exports $(nm -D --defined-only "$so" | wc -l) symbols, all brisk_*"
fi
echo "package: installed, found by CMake and pkg-config, examples built and run"
