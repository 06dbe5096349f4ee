#!/usr/bin/env bash
# Installs the build dependencies from Debian's packages when any is missing. Idempotent:
# a machine that already has them does nothing (and needs no network).
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in build-essential cmake ninja-build pkg-config git ca-certificates \
           libgtest-dev googletest libbenchmark-dev nlohmann-json3-dev libdnnl-dev zlib1g-dev \
           chromium; do  # chromium: headless rendering of report.html (tests/examples/test_report_render)
  have_pkg "$pkg" || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
