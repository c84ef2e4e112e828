#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, ./build-asan)
# and runs it. Extra arguments go to ctest (e.g. -R Robustness).
#
#   bash scripts/sanitize.sh
#
# LibTorch is not instrumented; ASan still checks every allocation it makes (malloc is
# intercepted). Leak checking is off: LibTorch and OpenMP keep static allocations alive until
# exit, and LeakSanitizer reports those (see docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDISTILLERY_SANITIZE=ON \
  -DDISTILLERY_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd build-asan
ctest --output-on-failure -j"$(nproc)" "$@"
