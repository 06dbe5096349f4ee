#!/usr/bin/env bash
# Builds the libFuzzer targets (safetensors, IDX and CIFAR-10 readers) with clang, ASan and
# UBSan, seeds each with a valid file, and runs each for a fixed time. Exits non-zero if any
# target finds a crash, a sanitizer report or an exception other than mantissa::Error.
#   scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
BUILD_DIR=${BUILD_DIR:-build-fuzz}

scripts/setup.sh
if ! command -v clang++-14 >/dev/null || ! dpkg-query -W libclang-rt-14-dev >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q clang-14 libclang-rt-14-dev
fi
CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMANTISSA_FUZZ=ON -DMANTISSA_SANITIZE=address,undefined -DMANTISSA_CUDA=OFF \
  -DMANTISSA_TESTS=OFF -DMANTISSA_BENCH=OFF -DMANTISSA_EXAMPLES=OFF -DMANTISSA_WERROR=OFF >/dev/null
cmake --build "$BUILD_DIR" --target fuzz_safetensors fuzz_idx fuzz_cifar

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/safetensors" "$work/idx" "$work/cifar"
cp tests/golden/safetensors_state.safetensors "$work/safetensors/"
# A 2-image 3x3 IDX file and its labels; one CIFAR record.
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x03' > "$work/idx/images"
head -c 18 /dev/urandom >> "$work/idx/images"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x03\x07' > "$work/idx/labels"
gzip -c "$work/idx/images" > "$work/idx/images.gz"
{ printf '\x03'; head -c 3072 /dev/urandom; } > "$work/cifar/record"

status=0
for target in safetensors idx cifar; do
  echo "== fuzz_$target for ${SECONDS_PER_TARGET}s"
  if ! (cd "$work" && "$OLDPWD/$BUILD_DIR/fuzz/fuzz_$target" -max_total_time="$SECONDS_PER_TARGET" \
        -max_len=65536 -print_final_stats=1 "$work/$target" 2>&1 | tail -n 12); then
    status=1
  fi
done
ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null && status=1
exit $status
