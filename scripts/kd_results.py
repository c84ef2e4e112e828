#!/usr/bin/env python3
"""Regenerates the segmentation KD tables of docs/results.md.

For every teacher->student pair and every method, writes a recipe under runs/kd/, trains it
with `build/distill train` (skipping runs that already finished), and prints a markdown table
of final mIoU (mean +- std over seeds). Same schedule for every method within a pair.

  python3 scripts/kd_results.py --threads 1                 # docs/results.md's main tables
  python3 scripts/kd_results.py --threads 1 --pairs cnn2tf --seeds 0
      --methods heteroakd_no_kmm heteroakd_no_kem heteroakd_bce     # HeteroAKD ablations
  python3 scripts/kd_results.py --report                    # only print what has finished
  python3 scripts/kd_results.py --student-optimizer recipe --report   # the first grid

Defaults: students with AdamW lr 2e-3 and every distiller reading a teacher-output cache.
Every finished run's final mIoU and train time also go to docs/data/seg_kd_runs.json (keyed by
the run directory under runs/kd/), which is committed: a run recorded there is not trained again
and its row is printed from the record, so the tables survive a fresh checkout. `--fresh`
ignores the record and trains whatever has no run directory.
"""
import argparse
import os
import statistics
import subprocess
import sys

from run_ledger import Ledger, paired_delta, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "build", "distill")

TEACHERS = {
    "deeplabv3_resnet18": "configs/seg/deeplabv3_resnet18.yaml",
    "segformer_b2": "configs/seg/segformer_b2.yaml",
}
# Stage indices at strides 8-16 (64x64 inputs leave the last MiT stage at 2x2).
STAGES = {
    "deeplabv3_resnet18": [-2, -1],
    "deeplabv3_resnet18_slim": [-2, -1],
    "deeplabv3_mobilenetv2": [-2, -1],
    "segformer_b0": [1, 2],
    "segformer_b2": [1, 2],
}
PAIRS = {
    "cnn2cnn": ("deeplabv3_resnet18", "deeplabv3_resnet18_slim"),
    "cnn2tf": ("deeplabv3_resnet18", "segformer_b0"),
    "tf2cnn": ("segformer_b2", "deeplabv3_resnet18_slim"),
    "tf2tf": ("segformer_b2", "segformer_b0"),
}
OPTIMIZER = {
    "deeplabv3_resnet18_slim": "{type: sgd, lr: 0.02, momentum: 0.9, weight_decay: 0.0001, warmup_steps: 100}",
    "deeplabv3_mobilenetv2": "{type: sgd, lr: 0.02, momentum: 0.9, weight_decay: 0.0001, warmup_steps: 100}",
    "segformer_b0": "{type: adamw, lr: 0.001, weight_decay: 0.01, warmup_steps: 100}",
}


def method_block(method, teacher, student):
    s, t = STAGES[student], STAGES[teacher]
    blocks = {
        "student": None,
        "kd": "{name: kd, temperature: 1.0}",
        "cwd": "{name: cwd, on: logits, temperature: 4.0}",
        "dist": "{name: dist}",
        "at": f"{{name: at, student_stages: {s}, teacher_stages: {t}}}",
        "fitnet": f"{{name: fitnet, stage: {s[-1]}, teacher_stage: {t[-1]}}}",
        "skd": f"{{name: skd, stage: {s[-1]}, teacher_stage: {t[-1]}}}",
        "ofa": f"{{name: ofa, stages: {s}}}",
        "cirkd": f"{{name: cirkd, student_stage: {s[-1]}, teacher_stage: {t[-1]}}}",
        "heteroakd": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}}}",
        # HeteroAKD ablations
        "heteroakd_no_kmm": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}, kmm: false}}",
        "heteroakd_no_kem": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}, kem: false}}",
        "heteroakd_last_stage": f"{{name: heteroakd, student_stages: [{s[-1]}], teacher_stages: [{t[-1]}]}}",
        "heteroakd_all_stages": "{name: heteroakd, student_stages: [0, 1, 2, 3], teacher_stages: [0, 1, 2, 3]}",
        "heteroakd_last_two": "{name: heteroakd, student_stages: [2, 3], teacher_stages: [2, 3]}",
        "heteroakd_bce": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}, reliability: bce}}",
        "heteroakd_conv_proj": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}, projector: conv}}",
        "heteroakd_kem_classes": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}, kem_axis: classes}}",
        "heteroakd_tau4": f"{{name: heteroakd, student_stages: {s}, teacher_stages: {t}, tau: 4.0}}",
    }
    # Several distillers in one recipe, summed: "<method>+<method>".
    return "\n  - ".join(blocks[m] for m in method.split("+")) if "+" in method else blocks[method]


def teacher_checkpoint(teacher):
    return os.path.join(ROOT, "runs", "kd", "teachers", teacher, "latest.ckpt")


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def ensure_teacher(teacher, threads):
    ckpt = teacher_checkpoint(teacher)
    if not os.path.exists(ckpt) or summary(os.path.dirname(ckpt)) is None:
        run([DISTILL] + threads + ["train", os.path.join(ROOT, TEACHERS[teacher]), "--set",
                                   "output.dir=" + os.path.dirname(ckpt)])
    return ckpt


# --student-optimizer adamw: every student on this (the CNN recipes' SGD lr 0.02 under-trains the
# CNN students at 1,000 steps); its runs get the suffix _adamw.
ADAMW = "{type: adamw, lr: 0.002, weight_decay: 0.01, warmup_steps: 100}"


def run_dir_for(pair, student, method, seed, cached, suffix=""):
    """The student alone does not depend on the teacher: one run per student and seed, shared by
    every pair with that student."""
    if method == "student":
        return os.path.join(ROOT, "runs", "kd", "students", f"{student}{suffix}_s{seed}")
    name = f"{method}_cached{suffix}_s{seed}" if cached else f"{method}{suffix}_s{seed}"
    return os.path.join(ROOT, "runs", "kd", pair, name)


LEDGER = Ledger(
    os.path.join(ROOT, "docs", "data", "seg_kd_runs.json"),
    "Final validation mIoU (fraction) and train seconds of every run of scripts/kd_results.py, "
    "keyed by run directory under runs/kd/. Entries recorded before the ledger existed "
    "(2026-11-23) were taken from docs/results.md: mIoU to 4 decimals, train seconds = "
    "the method's mean over its seeds.",
    os.path.join(ROOT, "runs", "kd"), "mIoU")


def write_recipe(path, teacher, student, method, seed, steps, ckpt, run_dir, cache=None, optimizer=None):
    block = method_block(method, teacher, student)
    lines = [
        f"# generated by scripts/kd_results.py: {teacher} -> {student}, {method}, seed {seed}",
        f"name: {os.path.basename(run_dir)}",
        f"seed: {seed}",
        f"output: {{dir: {run_dir}}}",
        "data: {benchmark: fashion-seg}",
        f"model: {{name: {student}}}",
    ]
    if block:
        source = f", source: cache, path: {cache}" if cache else ""
        lines += [f"teacher: {{model: {{name: {teacher}}}, checkpoint: {ckpt}{source}}}", "distillers:", f"  - {block}"]
    lines += [f"train: {{steps: {steps}, batch_size: 16, eval_every: {steps}, optimizer: {optimizer or OPTIMIZER[student]}}}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def ensure_cache(teacher, student, seed, steps, ckpt, threads):
    """One cache of every teacher output per teacher, seed and schedule, shared by all methods
    and pairs (the batches depend only on the seed and the schedule)."""
    path = os.path.join(ROOT, "runs", "kd", "caches", f"{teacher}_s{seed}_{steps}.cache")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        recipe = path + ".yaml"
        write_recipe(recipe, teacher, student, "kd", seed, steps, ckpt, os.path.dirname(path))
        run([DISTILL] + threads + ["cache-teacher", recipe, "--all", "--out", path])
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS))
    parser.add_argument("--methods", nargs="+",
                        default=["student", "kd", "cwd", "dist", "at", "fitnet", "skd", "ofa", "cirkd", "heteroakd"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                        help="distil from a teacher-output cache per teacher and seed (built once, shared "
                             "by every method and pair; runs go to <method>_cached_s<seed>); --no-cache: "
                             "the online teacher")
    parser.add_argument("--threads", type=int, default=0, help="--threads for distill (0: all cores)")
    parser.add_argument("--student-optimizer", choices=["recipe", "adamw"], default="adamw",
                        help="adamw (default): every student with AdamW lr 2e-3 (runs suffixed _adamw); "
                             "recipe: the first grid's optimizers (SGD 0.02 CNN, AdamW 1e-3 SegFormer)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: print the tables from the runs that finished")
    parser.add_argument("--baseline", default="student",
                        help="the method the paired delta is taken against (e.g. heteroakd for its ablations)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore docs/data/seg_kd_runs.json: train every run without a run directory")
    args = parser.parse_args()
    optimizer = ADAMW if args.student_optimizer == "adamw" else None
    suffix = "_adamw" if optimizer else ""
    threads = ["--threads", str(args.threads)] if args.threads else []

    use_ledger = not args.fresh
    for pair in args.pairs:
        teacher, student = PAIRS[pair]
        ckpt = teacher_checkpoint(teacher)

        def distilled_from(method):  # the teacher mIoU a run's record must carry (None: no teacher)
            return None if method == "student" else teacher_miou

        def lookup(method, seed):
            cached = args.cache and method != "student"
            # --report falls back to the other teacher source, when only that one ran.
            for source in ([cached, not cached and method != "student"] if args.report else [cached]):
                s = LEDGER.result(run_dir_for(pair, student, method, seed, source, suffix), use_ledger,
                           distilled_from(method))
                if s is not None:
                    return s
            return None

        teacher_summary = LEDGER.result(os.path.dirname(ckpt), use_ledger)
        teacher_miou = teacher_summary["final_mIoU"] if teacher_summary else None
        if not args.report and any(m != "student" and lookup(m, seed) is None
                                   for m in args.methods for seed in args.seeds):
            # Something must distil: the teacher's checkpoint has to be here (trained if not; a
            # retrained teacher that differs makes the runs recorded with the old one stale).
            ensure_teacher(teacher, threads)
            teacher_summary = LEDGER.result(os.path.dirname(ckpt))
            teacher_miou = teacher_summary["final_mIoU"]
        rows = []
        for method in args.methods:
            scores, times = {}, []
            for seed in args.seeds:
                s = lookup(method, seed)
                if s is None and not args.report:
                    cached = args.cache and method != "student"
                    run_dir = run_dir_for(pair, student, method, seed, cached, suffix)
                    os.makedirs(run_dir, exist_ok=True)
                    recipe = os.path.join(run_dir, "recipe.yaml")
                    cache = ensure_cache(teacher, student, seed, args.steps, ckpt, threads) if cached else None
                    write_recipe(recipe, teacher, student, method, seed, args.steps, ckpt, run_dir, cache, optimizer)
                    run([DISTILL] + threads + ["train", recipe])
                    s = LEDGER.result(run_dir, teacher_score=distilled_from(method))
                if s is None:
                    continue
                scores[seed] = 100 * s["final_mIoU"]
                if s["train_seconds"] is not None:
                    times.append(s["train_seconds"])
            if scores:
                rows.append((method, scores, statistics.mean(times) if times else None))
        print_table(pair, teacher, student, teacher_summary, rows, args)


def print_table(pair, teacher, student, teacher_summary, rows, args):
    """rows: (method, {seed: mIoU}, mean train seconds). The delta is paired: the mean over the
    method's seeds of (method - baseline) on the same seed; the baseline is the student alone
    unless --baseline names another method of the table."""
    base = next((by_seed for method, by_seed, _ in rows if method == args.baseline), None)
    teacher_miou = f"{100 * teacher_summary['final_mIoU']:.2f}" if teacher_summary else "not trained"
    print(f"\n### {pair}: {teacher} (teacher {teacher_miou}) -> {student}, {args.steps} steps"
          f"{', teacher cache' if args.cache else ''}\n")
    print(f"| method | mIoU per seed | mean +- std | delta vs {args.baseline} (same seeds) | train s |")
    print("|---|---|---|---|---|")
    for method, by_seed, secs in rows:
        scores = list(by_seed.values())
        mean = statistics.mean(scores)
        std = f"{statistics.stdev(scores):.2f}" if len(scores) > 1 else "-"
        paired = paired_delta(by_seed, base)
        delta = f"{paired:+.2f}" if paired is not None and method != args.baseline else ""
        per_seed = " / ".join(f"{x:.2f}" for x in scores)
        secs = "-" if secs is None else f"{secs:.0f}"
        print(f"| {method} | {per_seed} | {mean:.2f} +- {std} | {delta} | {secs} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
