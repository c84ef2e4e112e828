#!/usr/bin/env bash
# Builds everything and runs the whole test suite (GoogleTest via CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
# Busy-waiting OpenMP threads collapse when ctest runs two test programs on two cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --output-on-failure -j"$(nproc)" "$@"
