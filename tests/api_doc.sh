#!/bin/sh
# docs/api.md's reference is up to date: it holds exactly what scripts/api_reference.py prints
# from the public headers (every function and its signature), and that script reads every
# installed header but brisk.h (which only includes the others).
# Usage: api_doc.sh SOURCE_DIR
set -u
src=$1
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for h in "$src"/core/include/brisk/*.h "$src"/logging/include/brisk/*.h "$src"/parallel/include/brisk/*.h; do
    name=$(basename "$h")
    [ "$name" = brisk.h ] && continue
    grep -q "include/brisk/$name\"" "$src/scripts/api_reference.py" ||
        { echo "FAIL: scripts/api_reference.py does not read brisk/$name"; exit 1; }
done
"$py" "$src/scripts/api_reference.py" "$src" >"$tmp/want.md" || { echo "FAIL: api_reference.py"; exit 1; }
sed -n '/^<!-- reference:/,/^<!-- \/reference -->/p' "$src/docs/api.md" >"$tmp/have.md"
if ! cmp -s "$tmp/want.md" "$tmp/have.md"; then
    diff "$tmp/have.md" "$tmp/want.md" | head -n 20
    echo "FAIL: docs/api.md's reference is stale: run scripts/api_reference.py and paste its output"
    exit 1
fi
echo "api_doc: docs/api.md lists $(grep -c '^[a-z].*brisk_[a-z0-9_]*(' "$tmp/want.md") functions, as the headers declare them"
