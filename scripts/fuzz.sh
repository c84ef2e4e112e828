#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, into ./build-fuzz) and runs each one for
# the given number of seconds, one after the other.
#
#   bash scripts/fuzz.sh [seconds per target, default 600] [target ...]
#   targets: idx png checkpoint config teacher_cache (default: all)
#
# New inputs go to build-fuzz/corpus/<target>; the seeds in fuzz/corpus/<target> are only read.
# The build directory build-fuzz (scripts/fuzz_setup.sh) is shared with scripts/sanitize.sh.
# A crash ends that target's run and leaves crash-<hash> in build-fuzz/artifacts/<target>/; replay it with
#   build-fuzz/fuzz/fuzz_<target> build-fuzz/artifacts/<target>/crash-<hash>
# Run it niced on a shared machine: nice -n 10 bash scripts/fuzz.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx png checkpoint config teacher_cache)

bash scripts/setup.sh
bash scripts/fuzz_setup.sh
cmake --build build-fuzz -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")

# LibTorch is not instrumented and keeps allocations alive until exit: no leak reports.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
# FUZZ_PARALLEL=1 runs the targets side by side (one core each) instead of one after another.
run_target() {
  local target=$1
  mkdir -p "build-fuzz/corpus/$target" "build-fuzz/artifacts/$target"
  build-fuzz/fuzz/fuzz_$target "build-fuzz/corpus/$target" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -timeout=30 \
    -artifact_prefix="build-fuzz/artifacts/$target/" -print_final_stats=1 \
    > "build-fuzz/fuzz_$target.log" 2>&1 || true
  echo "== fuzz_$target:"
  grep -E "^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb)|SUMMARY|ERROR" \
    "build-fuzz/fuzz_$target.log" || true
}
if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
  for target in "${targets[@]}"; do run_target "$target" & done
  wait
else
  for target in "${targets[@]}"; do run_target "$target"; done
fi
status=0
for target in "${targets[@]}"; do
  if ls "build-fuzz/artifacts/$target"/* >/dev/null 2>&1; then
    echo "fuzz_$target: FOUND A PROBLEM, see build-fuzz/artifacts/$target and build-fuzz/fuzz_$target.log"
    status=1
  fi
done
[ $status = 0 ] && echo "fuzz: no crash in ${targets[*]} (${seconds}s each)"
exit $status
