#!/usr/bin/env python3
"""Distillery's C++ training step against the PyTorch-Python reference, side by side.

For every configuration and thread count, runs ./build/bench_distill and
bench/reference/train_step.py in turn (C++, Python, C++, Python, ...), each in its own process,
and prints the medians and the ratio C++ / Python of images per second, pair by pair. The machine
is shared and noisy: only ratios measured in the same invocation are meaningful.

  python3 bench/compare.py [--rounds 3] [--threads 1 2] [--steps 20] [--out bench-results.json]

With several thread counts, each round runs every (threads, configuration) once, and the last
line gives the C++ speed-up from the first thread count to the others, pair by pair.

Needs python3-torch (Debian; the same LibTorch 1.13 as the C++ build):
  sudo apt-get install -y python3-torch
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPP = os.path.join(ROOT, "build", "bench_distill")
PY = [sys.executable if sys.executable.startswith("/usr/bin") else "/usr/bin/python3",
      os.path.join(ROOT, "bench", "reference", "train_step.py")]
TRAINING = ["student", "kd", "cwd", "heteroakd", "teacher"]  # both implementations
CPP_ONLY = ["heteroakd_cached"]


def run(cmd):
    # The environment as users have it: OMP_WAIT_POLICY=PASSIVE, handy on a crowded machine,
    # costs a 2-thread SegFormer step ~2x (a futex wake-up per parallel region).
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def args_for(config, threads, a):
    return ["--config", config, "--threads", str(threads), "--batch", str(a.batch),
            "--warmup", str(a.warmup), "--steps", str(a.steps)]


def report_thread_count(threads, measured_peak, loader, cpp_runs, py_runs, a, results):
    peak = measured_peak["peak_gflops"]
    results["runs"].append({"threads": threads, "peak_gflops": peak, "matmul_gflops": measured_peak["matmul_gflops"],
                            "conv_gflops": measured_peak["conv_gflops"], "loader_median_s": loader["median"]})
    print(f"\n## {threads} thread(s): peak {peak:.1f} GFLOP/s (best of BLAS matmul "
          f"{measured_peak['matmul_gflops']:.1f} and oneDNN 3x3 conv {measured_peak['conv_gflops']:.1f}); "
          f"one augmented batch of {a.batch} takes {loader['median'] * 1e3:.1f} ms to build (prefetch thread)")
    print(f"{'config':<18} {'C++ img/s':>10} {'Py img/s':>9} {'C++/Py':>7} {'spread':>13} "
          f"{'GFLOP/s':>8} {'% peak':>6} {'C++ MiB':>8} {'Py MiB':>7} {'params ok':>9}")
    student = cpp_runs.get((threads, "student"), [])
    for config in a.configs:
        cpp, py = cpp_runs[threads, config], py_runs[threads, config]
        cpp_ips = statistics.median(r["images_per_second"] for r in cpp)
        gflops = statistics.median(r["achieved_gflops"] for r in cpp)
        row = {"config": config, "threads": threads, "cpp_images_per_second": cpp_ips,
               "cpp_step_s": statistics.median(r["median"] for r in cpp),
               "cpp_peak_rss_mib": max(r["peak_rss_mib"] for r in cpp), "achieved_gflops": gflops,
               "phase_seconds": {k: statistics.median(r["phase_seconds"][k] for r in cpp)
                                 for k in cpp[0]["phase_seconds"]},
               "loader_share": loader["median"] / statistics.median(r["median"] for r in cpp)}
        if student:
            row["step_vs_student"] = statistics.median(c["median"] / s_["median"] for c, s_ in zip(cpp, student))
        line = f"{config:<18} {cpp_ips:>10.1f} "
        if py:
            ratios = [c["images_per_second"] / p_["images_per_second"] for c, p_ in zip(cpp, py)]
            same = all(cpp[0][k] == py[0][k] for k in ("params_student", "params_teacher", "params_distiller"))
            row.update({"py_images_per_second": statistics.median(r["images_per_second"] for r in py),
                        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                        "ratio_max": max(ratios), "py_peak_rss_mib": max(r["peak_rss_mib"] for r in py),
                        "params_match": same})
            spread = f"({min(ratios):.2f}-{max(ratios):.2f})"
            line += (f"{row['py_images_per_second']:>9.1f} {row['ratio_median']:>7.2f} {spread:>13} "
                     f"{gflops:>8.1f} {100 * gflops / peak:>6.1f} {row['cpp_peak_rss_mib']:>8.0f} "
                     f"{row['py_peak_rss_mib']:>7.0f} {'yes' if same else 'NO':>9}")
        else:
            line += (f"{'-':>9} {'-':>7} {'':>13} {gflops:>8.1f} {100 * gflops / peak:>6.1f} "
                     f"{row['cpp_peak_rss_mib']:>8.0f} {'-':>7} {'-':>9}")
        print(line)
        results["runs"].append(row)
    rows = [r for r in results["runs"] if r.get("threads") == threads and "config" in r]
    print("C++ step / student-alone step (pairs within a round): " + ", ".join(
        f"{r['config']} {r['step_vs_student']:.2f}x" for r in rows if "step_vs_student" in r))
    print("C++ phases, ms per step: " + "; ".join(
        f"{r['config']}: " + " ".join(f"{k.split('_')[0]} {1e3 * v:.0f}" for k, v in r["phase_seconds"].items() if v > 0)
        for r in rows))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--configs", nargs="+", default=TRAINING + CPP_ONLY)
    p.add_argument("--out", default="")
    a = p.parse_args()

    results = {"rounds": a.rounds, "batch": a.batch, "steps": a.steps, "runs": []}
    peaks, loaders = {}, {}
    for threads in a.threads:
        peaks[threads] = run([CPP, "--config", "peak", "--threads", str(threads)])
        loaders[threads] = run([CPP, "--config", "loader", "--batch", str(a.batch), "--steps", "20"])
    # Round-major over thread counts and configurations: every (threads, config) once per round,
    # so that ratios to the student alone and between thread counts are taken pair by pair.
    cpp_runs = {(t, c): [] for t in a.threads for c in a.configs}
    py_runs = {(t, c): [] for t in a.threads for c in a.configs}
    for _ in range(a.rounds):
        for threads in a.threads:
            for config in a.configs:
                cpp_runs[threads, config].append(run([CPP] + args_for(config, threads, a)))
                if config in TRAINING:
                    py_runs[threads, config].append(run(PY + args_for(config, threads, a)))
    for threads in a.threads:
        report_thread_count(threads, peaks[threads], loaders[threads], cpp_runs, py_runs, a, results)
    if len(a.threads) > 1:
        base = a.threads[0]
        for threads in a.threads[1:]:
            scaling = []
            for config in a.configs:
                pairs = [m["images_per_second"] / b["images_per_second"]
                         for m, b in zip(cpp_runs[threads, config], cpp_runs[base, config])]
                scaling.append(f"{config} {statistics.median(pairs):.2f}x")
                results.setdefault("thread_scaling", {})[f"{config}_{threads}_vs_{base}"] = statistics.median(pairs)
            print(f"\nC++ img/s with {threads} threads / with {base} (pairs within a round): " + ", ".join(scaling))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
