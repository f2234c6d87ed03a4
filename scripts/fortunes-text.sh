#!/bin/sh
# Writes the English text of Debian's fortunes package as one plain text file, for the
# character-level language model example: every fortune file (the files without an extension
# under /usr/share/games/fortunes; .dat are indexes, .u8 links), in name order, without the
# '%' lines that separate the fortunes. Installs the package first when it is missing and this
# runs as root (or with sudo).
# Usage: scripts/fortunes-text.sh [OUT]   (default data/fortunes.txt)
set -eu
out=${1:-data/fortunes.txt}
dir=/usr/share/games/fortunes
if [ ! -d "$dir" ]; then
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y fortunes >/dev/null || {
        echo "fortunes-text: $dir is missing: install Debian's fortunes package" >&2
        exit 1
    }
fi
mkdir -p "$(dirname "$out")"
find "$dir" -maxdepth 1 -type f ! -name '*.*' | sort | xargs cat | grep -v -x '%' >"$out.tmp"
mv "$out.tmp" "$out"
echo "fortunes-text: $(wc -c <"$out") bytes of text in $out"
