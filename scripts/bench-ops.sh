#!/usr/bin/env bash
# Builds bench/ops and runs it beside bench/peers/torch_ops.py (Debian python3-torch) with the
# same thread count, then prints the side-by-side table for docs/PERFORMANCE.md.
#   scripts/bench-ops.sh [--threads 2] [extra bench args...]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2
if [ "${1:-}" = "--threads" ]; then THREADS=$2; shift 2; fi
BUILD_DIR=${BUILD_DIR:-build}

scripts/setup.sh
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-torch
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" --target bench_ops
out=$(mktemp -d)
"$BUILD_DIR/bench/ops" --threads "$THREADS" "$@" > "$out/mantissa.json"
OMP_NUM_THREADS=$THREADS /usr/bin/python3 bench/peers/torch_ops.py --threads "$THREADS" "$@" > "$out/torch.json"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads: $THREADS"
/usr/bin/python3 bench/peers/compare.py "$out/mantissa.json" "$out/torch.json"
