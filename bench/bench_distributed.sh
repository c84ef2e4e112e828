#!/usr/bin/env bash
# Data-parallel throughput on this machine: the same recipe and global batch trained by 1
# process and by 2 processes (`distill launch`, 1 intra-op thread each), alternating for a few
# rounds so that both see the same background load; prints img/s, the 2-vs-1 ratio and the share
# of the step time spent averaging gradients (all-reduce, including waiting for the other rank).
#
#   bash bench/bench_distributed.sh [recipe] [steps] [rounds] [extra --set ...]   (DISTILL=path: another binary)
#   bash bench/bench_distributed.sh configs/seg/deeplabv3_resnet18_slim.yaml 60 2
#   bash bench/bench_distributed.sh configs/seg/deeplabv3_resnet18_slim.yaml 60 2 --set train.distributed.sync_batch_norm=true
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${1:-configs/seg/deeplabv3_resnet18_slim.yaml}
STEPS=${2:-60}
ROUNDS=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
EXTRA=("$@")
DISTILL=${DISTILL:-./build/distill}
OUT=$(mktemp -d /tmp/bench_distributed.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
export OMP_WAIT_POLICY=PASSIVE

# A smaller scene set keeps the start-up (scene generation) short; it does not change step cost.
COMMON=(train "$RECIPE" --stop-after "$STEPS" --set data.fashion_seg.train_scenes=2000
        --set data.fashion_seg.val_scenes=100 --set train.log_every=1000 "${EXTRA[@]}")

summary() {  # img/s and all-reduce share from a run's metrics summary
  python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "summary" in j:
        s = j["summary"]
        share = s.get("allreduce_seconds", 0.0) / s["train_seconds"]
        print(f'{s["images_per_second"]:.2f} {share:.4f} {s["train_seconds"]:.1f}')
PY
}

echo "recipe $RECIPE, $STEPS steps, global batch from the recipe, $ROUNDS rounds; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-10s %10s %14s %10s\n' round processes img/s allreduce% seconds
for round in $(seq 1 "$ROUNDS"); do
  for procs in 1 2; do
    dir="$OUT/r${round}_p${procs}"
    if [ "$procs" = 1 ]; then
      $DISTILL --threads 1 "${COMMON[@]}" --set output.dir="$dir" > "$OUT/log" 2>&1 || { cat "$OUT/log"; exit 1; }
    else
      $DISTILL launch --nproc 2 -- --threads 1 "${COMMON[@]}" --set output.dir="$dir" > "$OUT/log" 2>&1 || { cat "$OUT/log"; exit 1; }
    fi
    read -r ips share secs < <(summary "$dir/metrics.jsonl")
    printf '%-6s %-10s %10s %13.1f%% %10s\n' "$round" "$procs" "$ips" "$(python3 -c "print($share*100)")" "$secs"
    echo "$procs $ips $share" >> "$OUT/all"
  done
done
python3 - "$OUT/all" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
one = [float(r[1]) for r in rows if r[0] == "1"]
two = [float(r[1]) for r in rows if r[0] == "2"]
share = [float(r[2]) for r in rows if r[0] == "2"]
m1, m2 = sum(one) / len(one), sum(two) / len(two)
print(f"mean: 1 process {m1:.2f} img/s, 2 processes {m2:.2f} img/s, ratio {m2 / m1:.2f}x, "
      f"all-reduce {100 * sum(share) / len(share):.1f}% of the 2-process step time")
PY
