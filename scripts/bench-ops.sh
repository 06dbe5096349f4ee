#!/usr/bin/env bash
# Builds bench/ops and runs it beside bench/peers/torch_ops.py on the same device (and, on the
# CPU, the same thread count), then prints the side-by-side table for docs/PERFORMANCE.md.
#   scripts/bench-ops.sh [--device cpu|cuda] [--threads 2] [extra bench args...]
# CPU: installs what is missing (scripts/setup.sh, Debian python3-torch) and builds in $BUILD_DIR.
# CUDA: installs nothing; PYTHON (default python3) must hold a CUDA build of torch, and
# SKIP_BUILD=1 uses an existing $BUILD_DIR (scripts/device-check.sh builds it that way).
# OUT_DIR=DIR keeps mantissa.json and torch.json there (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2
DEVICE=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    *) break ;;
  esac
done
case "$DEVICE" in cpu|cuda) ;; *) echo "bench-ops: --device $DEVICE: expected cpu or cuda" >&2; exit 2 ;; esac
BUILD_DIR=${BUILD_DIR:-build}

if [ "$DEVICE" = cpu ]; then PYTHON=${PYTHON:-/usr/bin/python3}; else PYTHON=${PYTHON:-python3}; fi
if [ -z "${SKIP_BUILD:-}" ]; then
  if [ "$DEVICE" = cpu ]; then
    scripts/setup.sh
    if ! "$PYTHON" -c "import torch" 2>/dev/null; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-torch
    fi
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  else
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMANTISSA_CUDA=ON -DMANTISSA_BENCH=ON >/dev/null
  fi
  cmake --build "$BUILD_DIR" --target bench_ops
fi
[ -x "$BUILD_DIR/bench/ops" ] || { echo "bench-ops: $BUILD_DIR/bench/ops is not built" >&2; exit 1; }
"$PYTHON" -c "import torch" || { echo "bench-ops: $PYTHON cannot import torch" >&2; exit 1; }

if [ -n "${OUT_DIR:-}" ]; then
  out=$OUT_DIR
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
"$BUILD_DIR/bench/ops" --device "$DEVICE" --threads "$THREADS" "$@" > "$out/mantissa.json"
OMP_NUM_THREADS=$THREADS "$PYTHON" bench/peers/torch_ops.py --device "$DEVICE" --threads "$THREADS" "$@" > "$out/torch.json"
if [ "$DEVICE" = cuda ]; then
  echo "machine: $(sed -n 's/.*"gpu": "\([^"]*\)".*/\1/p' "$out/mantissa.json" | head -n 1); host $(nproc) cores"
else
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads: $THREADS"
fi
"$PYTHON" bench/peers/compare.py "$out/mantissa.json" "$out/torch.json"
