#!/usr/bin/env python3
"""Trains every recipe in configs/seg/ (skipping finished runs) and prints the model table of
docs/results.md: parameters, forward GFLOPs at 64x64, validation mIoU, training speed and time.

  python3 scripts/seg_results.py                      # all models
  python3 scripts/seg_results.py segformer_b0 deeplabv3_resnet18 --threads 1
"""
import argparse
import os
import re
import subprocess

from run_ledger import summary  # the run summary reader shared by the result scripts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "build", "distill")


def zoo():
    out = subprocess.run([DISTILL, "models"], check=True, capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"(\S+)\s+(\S+)\s+([\d.]+)M\s+([\d.]+)", line)
        if m:
            table[m.group(1)] = (float(m.group(3)), float(m.group(4)))
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="recipes in configs/seg/ (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="--threads for distill (0: all cores)")
    args = parser.parse_args()
    threads = ["--threads", str(args.threads)] if args.threads else []
    names = args.models or sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "configs", "seg")) if f.endswith(".yaml"))
    sizes = zoo()
    rows = []
    for name in names:
        recipe = os.path.join(ROOT, "configs", "seg", name + ".yaml")
        run_dir = os.path.join(ROOT, "runs", "seg", name)
        if summary(run_dir) is None:
            print("+ distill train", recipe, flush=True)
            subprocess.run([DISTILL] + threads + ["train", recipe, "--set", "output.dir=" + run_dir], check=True, cwd=ROOT)
        s = summary(run_dir)
        params, gflops = sizes[name]
        rows.append((name, params, gflops, 100 * s["final_mIoU"], s["images_per_second"], s["train_seconds"]))
    print("\n| model | params | GFLOPs (64x64) | val mIoU | train img/s | train time |")
    print("|---|---|---|---|---|---|")
    for name, params, gflops, miou, ips, secs in rows:
        print(f"| {name} | {params:.2f}M | {gflops:.3f} | {miou:.2f} | {ips:.0f} | {secs / 60:.1f} min |")


if __name__ == "__main__":
    main()
