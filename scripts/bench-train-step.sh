#!/usr/bin/env bash
# Builds bench/train_step and runs it beside bench/peers/torch_train_step.py (Debian
# python3-torch) on the same model, batch, optimizer and thread count, alternating the two
# ROUNDS times per configuration (a noisy machine hits both alike), then prints the
# side-by-side table for docs/PERFORMANCE.md: best ms/step of each, the speed-up, peak RSS.
# --precision runs both under one policy (amp/policy.h names; the peer uses torch.autocast, and
# says so when torch 1.13 has no equivalent, e.g. F16 autocast on the CPU).
# --optimizer auto (the default) is Adam for the MNIST nets and each CIFAR recipe's SGD for
# resnet20 / airbench (see bench/train_step.cpp).
#   scripts/bench-train-step.sh [--threads 2] [--rounds 3] [--optimizer auto] [--precision bf16]
#                               [--device cpu] [--configs "mlp:64 cnn:64"]
#   scripts/bench-train-step.sh --configs "airbench:1024 resnet20:128" --precision bf16
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2
ROUNDS=3
OPTIMIZER=auto
PRECISION=fp32
DEVICE=cpu
CONFIGS="mlp:64 mlp:256 cnn:64 cnn:256"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --optimizer) OPTIMIZER=$2; shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    *) echo "usage: $0 [--threads N] [--rounds N] [--optimizer auto|adam|adamw|sgd] [--precision NAME] [--device cpu|cuda[:N]] [--configs \"mlp:64 cnn:256\"]" >&2; exit 2 ;;
  esac
done
BUILD_DIR=${BUILD_DIR:-build}

if [ -z "${SKIP_BUILD:-}" ]; then
  scripts/setup.sh
  if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-torch
  fi
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMANTISSA_BENCH=ON >/dev/null
  cmake --build "$BUILD_DIR" --target bench_train_step >&2
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for cfg in $CONFIGS; do
  model=${cfg%%:*}
  batch=${cfg##*:}
  # The cnn step is ~20x the mlp's, the CIFAR steps ~10-100x the cnn's: fewer steps keep each
  # round around a few seconds (airbench at batch 1024: 1-3 s per step; two warm-up steps let
  # the allocator cache and oneDNN's primitive cache settle).
  case "$model" in
    cnn) steps=10; warmup=3 ;;
    resnet20) steps=5; warmup=2 ;;
    airbench) steps=2; warmup=2 ;;
    *) steps=50; warmup=10 ;;
  esac
  args=(--model "$model" --batch-size "$batch" --optimizer "$OPTIMIZER" --threads "$THREADS"
        --precision "$PRECISION" --device "$DEVICE" --steps "$steps" --warmup "$warmup" --repeats 3)
  for _ in $(seq "$ROUNDS"); do
    "$BUILD_DIR/bench/train_step" "${args[@]}" >>"$out"
    OMP_NUM_THREADS=$THREADS /usr/bin/python3 bench/peers/torch_train_step.py "${args[@]}" >>"$out"
  done
done

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads: $THREADS, optimizer: $OPTIMIZER, precision: $PRECISION, device: $DEVICE, best of $ROUNDS rounds x 3 repeats per side"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
best = {}
notes = set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    side = "mantissa" if r["impl"] == "mantissa" else "torch"
    k = (r["model"], r["batch_size"], side)
    if "unsupported" in r or "note" in r:
        notes.add("PyTorch: " + r.get("unsupported", r.get("note")))
    if "unsupported" in r:
        continue
    if k not in best or r["ms_per_step"] < best[k]["ms_per_step"]:
        best[k] = r
    best[k]["rss"] = max(best[k].get("rss", 0), r["peak_rss_mb"])
print("| model | batch | Mantissa ms/step | PyTorch ms/step | speed-up | Mantissa img/s | PyTorch img/s | peak RSS MB (M / T) |")
print("|---|---|---|---|---|---|---|---|")
seen = []
for (m, b, _side) in best:
    if (m, b) not in seen:
        seen.append((m, b))
for m, b in seen:
    o, t = best.get((m, b, "mantissa")), best.get((m, b, "torch"))
    if o and not t:
        print(f"| {m} | {b} | {o['ms_per_step']:.2f} | n/a | n/a | {o['images_per_s']:.0f} | n/a | {o['rss']:.0f} / n/a |")
        continue
    if not o or not t:
        continue
    print(f"| {m} | {b} | {o['ms_per_step']:.2f} | {t['ms_per_step']:.2f} | {t['ms_per_step'] / o['ms_per_step']:.2f}x "
          f"| {o['images_per_s']:.0f} | {t['images_per_s']:.0f} | {o['rss']:.0f} / {t['rss']:.0f} |")
for n in sorted(notes):
    print(n)
PY
