# Sourced by the tests that run TensorBoard's own reader (tb_check.sh, kill_points.sh): sets
# $py, and skips (exit 77) where the reader $reader or TensorBoard's Python packages are
# missing, unless BRISK_REQUIRE_TENSORBOARD=1 (CI sets it): then that is a failure.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
missing=
[ -f "$reader" ] || missing="TensorBoard's reader $reader (from ../shared/tools, beside the repository)"
[ -n "$missing" ] || "$py" "$reader" --help >/dev/null 2>&1 || missing="TensorBoard's Python packages"
if [ -n "$missing" ]; then
    if [ "${BRISK_REQUIRE_TENSORBOARD:-0}" = 1 ]; then
        echo "FAIL: BRISK_REQUIRE_TENSORBOARD=1 but $missing is missing"
        exit 1
    fi
    echo "SKIP: needs $missing"
    exit 77
fi
