#!/bin/sh
# Puts a training corpus in data/. No corpus text is committed to the repository.
#
#   sh data/get.sh fortunes                 the text of Debian's `fortunes` package (installed
#                                           by `make deps`): needs no network
#   sh data/get.sh tinyshakespeare [FILE]   Karpathy's 1 MB Shakespeare corpus: copied from
#                                           FILE when given, downloaded otherwise
set -eu
dir=$(dirname "$0")

fortunes() {
    src=/usr/share/games/fortunes
    if [ ! -d "$src" ]; then
        echo "get.sh: $src is missing: install the Debian package fortunes (make deps)" >&2
        exit 1
    fi
    # Each file holds fortunes separated by lines of a single '%'; the .dat files are
    # indexes and the .u8 names are links to the same text.
    for f in "$src"/*; do
        case "$f" in *.dat | *.u8) continue ;; esac
        [ -f "$f" ] && sed 's/^%$//' "$f"
    done >"$dir/fortunes.txt.tmp"
    mv "$dir/fortunes.txt.tmp" "$dir/fortunes.txt"
}

tinyshakespeare() {
    expected=86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
    out="$dir/tinyshakespeare.txt"
    if [ -n "${1:-}" ]; then
        cp "$1" "$out.tmp"
    else
        url=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
        curl -fsSL "$url" -o "$out.tmp" || {
            echo "get.sh: download failed; offline, pass a local copy: sh data/get.sh tinyshakespeare FILE" >&2
            rm -f "$out.tmp"
            exit 1
        }
    fi
    actual=$(sha256sum "$out.tmp" | cut -d' ' -f1)
    if [ "$actual" != "$expected" ]; then
        echo "get.sh: $out: sha256 $actual, expected $expected" >&2
        rm -f "$out.tmp"
        exit 1
    fi
    mv "$out.tmp" "$out"
}

case "${1:-}" in
fortunes) fortunes ;;
tinyshakespeare) tinyshakespeare "${2:-}" ;;
*)
    echo "usage: sh data/get.sh fortunes | tinyshakespeare [LOCAL_COPY]" >&2
    exit 1
    ;;
esac
echo "get.sh: wrote $(ls "$dir"/"$1".txt) ($(wc -c <"$dir/$1.txt") bytes)"
