#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer and runs it. It
# shares the instrumented build directory ./build-fuzz with scripts/fuzz.sh (clang 14: one
# instrumented library serves both). Extra arguments go to ctest (e.g. -R 'Robustness|Config').
#
#   bash scripts/sanitize.sh
#
# LibTorch is not instrumented; ASan still checks every allocation it makes (malloc is
# intercepted). Leak checking is off: LibTorch, OpenMP and oneDNN keep allocations alive until
# exit, and LeakSanitizer reports those (see docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fuzz_setup.sh
cmake --build build-fuzz -j"$(nproc)" --target distill $(ls tests/test_*.cpp | xargs -n1 basename | sed 's/\.cpp$//')
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd build-fuzz
ctest --output-on-failure -j"$(nproc)" "$@"
