#!/usr/bin/env bash
# Fills the git-ignored .vendor/ folder with what scripts/device-check.sh needs on a GPU machine
# that has no network and no Debian packages: GoogleTest's sources, nlohmann_json's headers
# and the four MNIST files (gzipped, to stay well inside the 64 MiB a device run may carry).
# Run it here, on the Debian machine, before a device run that carries ".vendor":
#   scripts/vendor-for-device.sh [MNIST_DIR]
# MNIST_DIR: where scripts/fetch-mnist.sh put the files (default: datasets/mnist, else data/mnist;
# when neither holds them, fetch-mnist.sh is run for datasets/mnist).
# Idempotent: every run rebuilds .vendor/ from the sources and checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "vendor-for-device: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

GTEST_SRC=${GTEST_SRC:-/usr/src/googletest}
NLOHMANN_SRC=${NLOHMANN_SRC:-/usr/include/nlohmann}
VENDOR=.vendor
MNIST_FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

# 1. Everything we copy from must be here: fail before touching .vendor/.
if [ ! -f "$GTEST_SRC/CMakeLists.txt" ] || [ ! -f "$GTEST_SRC/googletest/include/gtest/gtest.h" ]; then
  die "$GTEST_SRC does not hold GoogleTest's sources (apt-get install googletest, or set GTEST_SRC)"
fi
[ -f "$NLOHMANN_SRC/json.hpp" ] ||
  die "$NLOHMANN_SRC/json.hpp is missing (apt-get install nlohmann-json3-dev, or set NLOHMANN_SRC)"
git check-ignore -q "$VENDOR/" || die "$VENDOR/ is not ignored by git; a device run would copy it as a tracked file"

has_mnist() {
  local d=$1 f
  for f in $MNIST_FILES; do
    [ -f "$d/$f" ] || [ -f "$d/$f.gz" ] || return 1
  done
}
if [ $# -ge 1 ]; then
  MNIST_DIR=$1
elif has_mnist datasets/mnist; then
  MNIST_DIR=datasets/mnist
elif has_mnist data/mnist; then
  MNIST_DIR=data/mnist
else
  MNIST_DIR=datasets/mnist
fi
# fetch-mnist.sh checks sizes and SHA-256 sums, and fetches only what is missing or bad.
scripts/fetch-mnist.sh "$MNIST_DIR" || die "MNIST is not available in $MNIST_DIR (see fetch-mnist.sh's message above)"

# 2. Build the new folder beside the old one, then swap: an interrupted run leaves no half state.
tmp="$VENDOR.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/nlohmann/include" "$tmp/mnist"
cp -a "$GTEST_SRC" "$tmp/googletest"
cp -a "$NLOHMANN_SRC" "$tmp/nlohmann/include/nlohmann"
for f in $MNIST_FILES; do
  if [ -f "$MNIST_DIR/$f" ]; then
    gzip -9 -n -c "$MNIST_DIR/$f" > "$tmp/mnist/$f.gz"
  else
    cp "$MNIST_DIR/$f.gz" "$tmp/mnist/$f.gz"
  fi
done
# The copies must check out exactly like the originals (sizes and SHA-256 of the content).
scripts/fetch-mnist.sh "$tmp/mnist" >/dev/null 2>&1 || die "the gzipped MNIST copies in $tmp/mnist do not check out"
cat > "$tmp/README" <<EOF
Filled by scripts/vendor-for-device.sh on $(date -u +%Y-%m-%dT%H:%MZ) from:
  googletest/         $GTEST_SRC
  nlohmann/include/   $NLOHMANN_SRC (header-only)
  mnist/              $MNIST_DIR (gzipped; the MNIST reader takes .gz files)
Carry ".vendor" in a device run; scripts/device-check.sh uses all three.
EOF
rm -rf "$VENDOR"
mv "$tmp" "$VENDOR"
trap - EXIT

size_kb=$(du -sk "$VENDOR" | cut -f1)
say "filled $VENDOR/ ($((size_kb / 1024)) MiB): googletest, nlohmann/include, mnist"
# A device run carries the working tree plus .vendor within 64 MiB.
[ "$size_kb" -lt $((48 * 1024)) ] || die "$VENDOR/ is $((size_kb / 1024)) MiB: too large to carry beside the tree (64 MiB in all)"
