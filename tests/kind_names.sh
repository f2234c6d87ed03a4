#!/bin/sh
# No layer kind is compared by name outside the file that defines it: what differs between
# layers (initialisation, checkpoint entries, TensorBoard images, folded activations) comes
# from their ops tables and flags, so that a registered user layer is treated as a built-in
# one. Fails naming each comparison (strcmp, strncmp, strstr) with a built-in kind's name,
# and each comparison of a layer's kind with strcmp, outside the layer's own file (and the
# registry in layer.c, which looks kinds up).
# Usage: kind_names.sh SOURCE_DIR
set -u
cd "$1" || exit 1
kinds=$(sed -n 's/.*\.kind = "\([a-z_]*\)".*/\1/p; s/^ACT_OPS([a-z_]*, "\([a-z_]*\)".*/\1/p' core/src/layers_*.c | sort -u)
[ "$(echo "$kinds" | wc -w)" -ge 10 ] || { echo "kind_names: found only: $kinds"; exit 1; }
bad=0
files=$(find core/src logging/src parallel/src apps -name '*.[ch]' | sort)
for k in $kinds; do
    home=$(grep -l -e "\.kind = \"$k\"" -e "^ACT_OPS([a-z_]*, \"$k\"" core/src/layers_*.c)
    for f in $files; do
        [ "$f" = "$home" ] && continue
        if grep -n "str[a-z]*(.*\"$k\"" "$f" >/dev/null; then
            grep -n "str[a-z]*(.*\"$k\"" "$f" |
                sed "s|^|kind_names: $f:|; s|\$| (the kind '$k' compared outside $home)|"
            bad=1
        fi
    done
done
for f in $files; do
    case "$f" in core/src/layer.c) continue ;; esac
    if grep -n "strcmp([^;]*->kind" "$f" >/dev/null; then
        grep -n "strcmp([^;]*->kind" "$f" | sed "s|^|kind_names: $f:|; s|\$| (a kind compared by name)|"
        bad=1
    fi
done
[ "$bad" -eq 0 ] && echo "kind_names: $(echo "$kinds" | wc -w) kinds, none named outside its own file"
exit "$bad"
