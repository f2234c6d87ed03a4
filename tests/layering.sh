#!/bin/sh
# The folders are floors: core/ (0) <- logging/ (1) <- parallel/ (2) <- apps/, bench/,
# examples/ (3). A file may include Brisk headers from its own floor or below, never from a
# floor above. Fails naming every include that points up.
# Usage: layering.sh SOURCE_DIR
set -u
cd "$1" || exit 1
floor() {
    case "$1" in
    core/*) echo 0 ;;
    logging/*) echo 1 ;;
    parallel/*) echo 2 ;;
    *) echo 3 ;;
    esac
}
bad=0
checked=0
for f in $(find core logging parallel apps bench examples -name '*.[ch]' | sort); do
    mine=$(floor "$f")
    for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(brisk\/[^"]*\)".*/\1/p' "$f"); do
        checked=$((checked + 1))
        # Where the header lives: a module's public or internal include folder.
        where=$(ls -d core/*/"$h" logging/*/"$h" parallel/*/"$h" 2>/dev/null | head -n 1)
        if [ -z "$where" ]; then
            echo "layering: $f includes $h, which no module provides"
            bad=1
            continue
        fi
        if [ "$(floor "$where")" -gt "$mine" ]; then
            echo "layering: $f (floor $mine) includes $h from $where (floor $(floor "$where"))"
            bad=1
        fi
    done
done
# Inside core, the model sits above the layers: a layer's file (and the registry, layer.c)
# never includes brisk/model.h.
for f in core/src/layer.c core/src/layers_*.c; do
    if grep -q '#include "brisk/model.h"' "$f"; then
        echo "layering: $f includes brisk/model.h: a layer must not see the model"
        bad=1
    fi
done
[ "$checked" -gt 50 ] || { echo "layering: only $checked includes found: the scan is broken"; exit 1; }
[ "$bad" -eq 0 ] && echo "layering: $checked includes of Brisk headers, none points up a floor"
exit "$bad"
