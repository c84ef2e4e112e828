#!/usr/bin/env bash
# Installs the dependencies (once) and builds Distillery into ./build (Release, Ninja).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" "$@"
