#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian 12), configures, builds and runs
# every test with CTest. Exits non-zero on any failure.
#   scripts/test.sh                 Release build in build/
#   MANTISSA_SANITIZE=address,undefined BUILD_DIR=build-asan scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
SANITIZE=${MANTISSA_SANITIZE:-}

scripts/setup.sh

cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DMANTISSA_SANITIZE="$SANITIZE" \
  ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" --timeout 900
