#!/usr/bin/env bash
# Installs every build, test and data dependency of Distillery from Debian's packages.
# Idempotent: when everything is present it returns in well under a second.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev dataset-fashion-mnist
  # Debian's LibTorch calls the BLAS behind libblas.so.3, which is the slow reference BLAS
  # unless an optimised one is installed: OpenBLAS (OpenMP build, like LibTorch) is ~9x faster.
  libopenblas0-openmp
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  libpng-dev zlib1g-dev libgtest-dev
  # JPEG decoding for real datasets: header-only stb_image (copying the header is enough elsewhere).
  libstb-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
