#!/usr/bin/env bash
# Installs clang with the libFuzzer runtime (Debian 12: clang 14) when missing and configures
# ./build-fuzz: everything built with clang, -fsanitize=address,undefined and libFuzzer's
# coverage instrumentation (used by scripts/fuzz.sh and scripts/sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev >/dev/null
fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DDISTILLERY_BUILD_FUZZERS=ON -DDISTILLERY_BUILD_TESTS=ON -DDISTILLERY_BUILD_BENCH=OFF >/dev/null
