#!/usr/bin/env bash
# The main job: builds Distillery and runs `distill demo` (teacher, student, pixel KD, CWD and
# HeteroAKD on the embedded fashion-seg benchmark). Extra arguments go to `distill demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target distill
./build/distill demo "$@"
