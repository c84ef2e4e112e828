#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, into ./build-fuzz) and runs each one for
# the given number of seconds, one after the other.
#
#   bash scripts/fuzz.sh [seconds per target, default 600] [target ...]
#   targets: idx png checkpoint config (default: all)
#
# New inputs go to build-fuzz/corpus/<target>; the seeds in fuzz/corpus/<target> are only read.
# A crash stops the run and leaves crash-<hash> in build-fuzz/artifacts/<target>/; replay it with
#   build-fuzz/fuzz/fuzz_<target> build-fuzz/artifacts/<target>/crash-<hash>
# Run it niced on a shared machine: nice -n 10 bash scripts/fuzz.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx png checkpoint config)

bash scripts/setup.sh
# clang with the libFuzzer runtime (Debian 12: clang 14, libclang-rt-14-dev).
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev >/dev/null
fi

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DDISTILLERY_BUILD_FUZZERS=ON -DDISTILLERY_BUILD_TESTS=OFF -DDISTILLERY_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")

# LibTorch is not instrumented and keeps allocations alive until exit: no leak reports.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
for target in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$target" "build-fuzz/artifacts/$target"
  echo "== fuzz_$target for ${seconds}s"
  build-fuzz/fuzz/fuzz_$target "build-fuzz/corpus/$target" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -timeout=30 \
    -artifact_prefix="build-fuzz/artifacts/$target/" -print_final_stats=1 \
    2>&1 | tee "build-fuzz/fuzz_$target.log" | grep -E "^(#[0-9]+ +(INITED|DONE)|==|stat::|SUMMARY|Done)" || true
  if ls "build-fuzz/artifacts/$target"/crash-* "build-fuzz/artifacts/$target"/leak-* \
        "build-fuzz/artifacts/$target"/timeout-* "build-fuzz/artifacts/$target"/oom-* >/dev/null 2>&1; then
    echo "fuzz_$target: FOUND A PROBLEM, see build-fuzz/artifacts/$target and build-fuzz/fuzz_$target.log"
    exit 1
  fi
done
echo "fuzz: no crash in ${targets[*]} (${seconds}s each)"
