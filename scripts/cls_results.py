#!/usr/bin/env python3
"""Regenerates the Fashion-MNIST tables of docs/results.md.

  python3 scripts/cls_results.py presets [model ...]
      trains configs/cls/<model>.yaml into runs/cls/<model> (skipping finished runs) and prints
      test top-1, params, FLOPs and train time of every classification preset.
  python3 scripts/cls_results.py kd --pairs cnn2cnn --seeds 0 1 2 [--methods ...] [--optimizers sgd dot]
      distils each pair's student with every method, with plain SGD and with DOT, and prints
      top-1 per seed, mean +- std, paired deltas (vs the student alone, DOT vs SGD) and the
      published patterns checked on the rows (DKD >= KD, DOT improves KD, OFA's rank).

Every run is `build/distill --threads 1 train <recipe>` with OMP_WAIT_POLICY=PASSIVE; finished
runs (a summary in metrics.jsonl) are reused, so the script can be stopped and re-run, and
several copies can run side by side on disjoint --pairs / --seeds. Every finished distillation
run is also recorded in docs/data/cls_kd_runs.json (committed): a recorded run is not trained
again, so `kd --no-train` prints the tables on a fresh checkout; `--fresh` ignores the record.
"""
import argparse
import fcntl
import os
import statistics
import subprocess
import sys

from run_ledger import Ledger, paired_delta, summary
from seg_results import zoo     # params and forward GFLOPs from `distill models`

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "build", "distill")
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")

PRESETS = ["resnet50_cls", "resnet18_cls", "mobilenetv2_cls", "mit_b2_cls", "mit_b0_cls",
           "vit_small_cls", "vit_tiny_cls"]

# The distillation pairs use narrower variants of the presets (model.width) so that one
# student run takes well under a minute on one thread: a CNN teacher (ResNet-18 layout at
# width x0.125, configs/cls/kd_teacher_resnet18.yaml), a CNN student (the same layout at
# x0.0625), the mit_b0_cls preset trained 3,000 steps as Transformer teacher
# (configs/cls/kd_teacher_mit_b0.yaml) and MiT-b0 at x0.5 as Transformer student. The CNN
# student is shared by cnn2cnn and tf2cnn, the CNN teacher by cnn2cnn and cnn2tf.
MODELS = {
    "cnn_teacher": ("resnet18_cls", 0.125, "configs/cls/kd_teacher_resnet18.yaml", "runs/cls_kd/teacher_resnet18"),
    "tf_teacher": ("mit_b0_cls", 0, "configs/cls/kd_teacher_mit_b0.yaml", "runs/cls_kd/teacher_mit_b0"),
    "cnn_student": ("resnet18_cls", 0.0625, None, None),
    "tf_student": ("mit_b0_cls", 0.5, None, None),
}
PAIRS = {
    "cnn2cnn": ("cnn_teacher", "cnn_student"),
    "cnn2tf": ("cnn_teacher", "tf_student"),
    "tf2cnn": ("tf_teacher", "cnn_student"),
}
STUDENT_STEPS = 500
BATCH = 64
TRAIN_SIZE = 60000
STUDENT_LR = 0.05  # SGD + momentum for every student, so that DOT (an SGD variant) has the same baseline
LEDGER = Ledger(
    os.path.join(ROOT, "docs", "data", "cls_kd_runs.json"),
    "Final test top-1 (fraction) and train seconds of every run of scripts/cls_results.py kd, keyed "
    "by run directory under runs/cls_kd/; teacher_top1: the teacher the run distilled from.",
    os.path.join(ROOT, "runs", "cls_kd"), "top1")
METHODS = ["student", "kd", "dkd", "dist", "ofa", "fitnet", "at", "rkd", "crd", "heteroakd"]


def describe(key):
    name, width, _, _ = MODELS[key]
    return f"{name} x{width}" if width else name


def method_block(method, steps):
    # DKD warms up over 20 of 240 epochs: the same fraction (1/12) of this schedule.
    dkd_warmup = steps / 12 / (TRAIN_SIZE / BATCH)
    return {
        "student": None,
        "kd": "{name: kd, temperature: 4.0, weight: 0.9}",
        "dkd": f"{{name: dkd, alpha: 1.0, beta: 8.0, temperature: 4.0, warmup_epochs: {dkd_warmup:.4f}}}",
        "dist": "{name: dist}",
        "ofa": "{name: ofa}",
        "fitnet": "{name: fitnet, stage: -2, teacher_stage: -2}",
        "at": "{name: at}",
        "rkd": "{name: rkd}",
        "crd": "{name: crd, negatives: 1024, weight: 0.8}",
        "heteroakd": "{name: heteroakd}",
    }[method]


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=ENV)


def train_or_record_divergence(cmd, run_dir, teacher_top1):
    """Runs `distill train`; a run the trainer stops for a NaN/Inf loss is recorded in the ledger
    as diverged (with the trainer's message) instead of ending the grid. Other failures raise."""
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode == 0:
        return
    message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    if "nan at step" not in message and "inf at step" not in message:
        raise subprocess.CalledProcessError(done.returncode, cmd)
    LEDGER.record_divergence(run_dir, message.replace("distill: error: ", "").split("; stopped")[0], teacher_top1)


def train_preset(name):
    run_dir = os.path.join(ROOT, "runs", "cls", name)
    if summary(run_dir) is None:
        run([DISTILL, "--threads", "1", "train", os.path.join(ROOT, "configs", "cls", name + ".yaml"),
             "--set", "output.dir=" + run_dir])
    return run_dir


def presets(names):
    sizes = zoo()
    print("\n| model | params | MFLOPs (28x28) | test top-1 | train img/s | train time | recipe |")
    print("|---|---|---|---|---|---|---|")
    for name in names or PRESETS:
        s = summary(train_preset(name))
        params, gflops = sizes[name]
        print(f"| {name} | {params:.2f}M | {1000 * gflops:.1f} | {100 * s['final_top1']:.2f} | "
              f"{s['images_per_second']:.0f} | {s['train_seconds'] / 60:.1f} min | `configs/cls/{name}.yaml` |",
              flush=True)


def teacher_dir(key):
    return os.path.join(ROOT, MODELS[key][3])


def ensure_teacher(key):
    run_dir = teacher_dir(key)
    if summary(run_dir) is None:
        run([DISTILL, "--threads", "1", "train", os.path.join(ROOT, MODELS[key][2]), "--set", "output.dir=" + run_dir])
    return run_dir


def model_block(key):
    name, width, _, _ = MODELS[key]
    return f"{{name: {name}, width: {width}}}" if width else f"{{name: {name}}}"


def write_recipe(path, teacher, student, method, optimizer, seed, steps, run_dir):
    block = method_block(method, steps)
    lines = [
        f"# generated by scripts/cls_results.py: {describe(teacher)} -> {describe(student)}, {method}, "
        f"{optimizer}, seed {seed}",
        f"name: {os.path.basename(run_dir)}",
        f"seed: {seed}",
        f"output: {{dir: {run_dir}}}",
        "data: {benchmark: fashion-mnist, augment: {enabled: true}}",
        f"model: {model_block(student)}",
    ]
    if block:
        ckpt = os.path.join(teacher_dir(teacher), "latest.ckpt")
        lines += [f"teacher: {{model: {model_block(teacher)}, checkpoint: {ckpt}}}", "distillers:", f"  - {block}"]
    # mdistiller's KD recipe weighs the cross-entropy 0.1 (CIFAR); its other methods keep 1.
    task_weight = ", task_weight: 0.1" if method == "kd" else ""
    lines += [f"train: {{steps: {steps}, batch_size: {BATCH}, eval_every: {steps}, eval_batch_size: 500{task_weight}, "
              f"log_every: 25, optimizer: {{type: {optimizer}, lr: {STUDENT_LR}, momentum: 0.9, "
              f"weight_decay: 0.0005, warmup_steps: 10}}}}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_dir_for(pair, student, method, optimizer, seed, steps):
    """Student-alone runs do not depend on the teacher: one per student and seed, shared by pairs."""
    if method == "student":
        return os.path.join(ROOT, "runs", "cls_kd", "alone", f"{student}_{steps}_s{seed}")
    return os.path.join(ROOT, "runs", "cls_kd", pair, f"{method}_{optimizer}_{steps}_s{seed}")


def kd(args):
    use_ledger = not args.fresh
    for pair in args.pairs:
        teacher, student = PAIRS[pair]
        teacher_summary = LEDGER.result(teacher_dir(teacher), use_ledger)
        teacher_top1 = teacher_summary["final_top1"] if teacher_summary else None
        configs = [(m, o) for m in args.methods for o in (["sgd"] if m == "student" else args.optimizers)]

        def lookup(method, optimizer, seed):
            return LEDGER.result(run_dir_for(pair, student, method, optimizer, seed, args.steps), use_ledger,
                                 None if method == "student" else teacher_top1)

        if not args.no_train and any(m != "student" and lookup(m, o, seed) is None
                                     for m, o in configs for seed in args.seeds):
            # Something must distil: the teacher's checkpoint has to be here (trained if missing; a
            # retrained teacher that differs makes the runs recorded with the old one stale).
            teacher_summary = LEDGER.result(ensure_teacher(teacher))
            teacher_top1 = teacher_summary["final_top1"]
        rows = []
        for method, optimizer in configs:
            scores, times = {}, []
            for seed in args.seeds:
                s = lookup(method, optimizer, seed)
                if s is None and not args.no_train:
                    run_dir = run_dir_for(pair, student, method, optimizer, seed, args.steps)
                    os.makedirs(run_dir, exist_ok=True)
                    with open(os.path.join(run_dir, ".lock"), "w") as lock:
                        try:  # another copy of this script is training it: leave it to that one
                            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except BlockingIOError:
                            print(f"skipping {run_dir}: being trained by another process", flush=True)
                            continue
                        if summary(run_dir) is None:
                            recipe = os.path.join(run_dir, "recipe.yaml")
                            write_recipe(recipe, teacher, student, method, optimizer, seed, args.steps, run_dir)
                            train_or_record_divergence([DISTILL, "--threads", "1", "train", recipe], run_dir,
                                                       None if method == "student" else teacher_top1)
                    s = LEDGER.result(run_dir, teacher_score=None if method == "student" else teacher_top1)
                if s is not None and "diverged" in s:
                    scores[seed] = None  # a result too: shown as "NaN", left out of means and deltas
                elif s is not None:
                    scores[seed] = 100 * s["final_top1"]
                    times.append(s["train_seconds"])
            if scores:
                rows.append((method, optimizer, scores, statistics.mean(times) if times else None))
        print_table(pair, teacher, student, teacher_top1, rows, args)
        print_patterns(pair, rows)


def print_table(pair, teacher, student, teacher_top1, rows, args):
    """rows: (method, optimizer, {seed: top-1}, mean train seconds). Deltas are paired: the mean
    over seeds of (row - student alone) and, for DOT rows, of (DOT - the same method with SGD)."""
    scores = {(m, o): by_seed for m, o, by_seed, _ in rows}
    base = scores.get(("student", "sgd"))
    shown = f"{100 * teacher_top1:.2f}" if teacher_top1 is not None else "not trained"
    print(f"\n### {pair}: {describe(teacher)} (teacher {shown}) -> {describe(student)}, "
          f"{args.steps} steps of {BATCH}, seeds {args.seeds}\n")
    print("| method | optimizer | top-1 per seed | mean +- std | vs student | DOT vs SGD | train s |")
    print("|---|---|---|---|---|---|---|")
    for method, optimizer, by_seed, secs in rows:
        values = [v for v in by_seed.values() if v is not None]
        if not values:
            print(f"| {method} | {optimizer} | {' / '.join('NaN' for _ in by_seed)} | diverged | | | |")
            continue
        std = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "-"
        diverged = len(by_seed) - len(values)
        mean = f"{statistics.mean(values):.2f} +- {std}" + (f" ({diverged} NaN)" if diverged else "")
        vs_student = paired_delta(by_seed, base) if method != "student" else None
        vs_sgd = paired_delta(by_seed, scores.get((method, "sgd"))) if optimizer == "dot" else None
        fmt = lambda d: "" if d is None else f"{d:+.2f}"
        per_seed = " / ".join("NaN" if v is None else f"{v:.2f}" for v in by_seed.values())
        print(f"| {method} | {optimizer} | {per_seed} | {mean} | {fmt(vs_student)} | {fmt(vs_sgd)} | {secs:.0f} |")
    sys.stdout.flush()


def print_patterns(pair, rows):
    """The published patterns the issue asks about, checked on this pair's rows (paired deltas)."""
    scores = {(m, o): by_seed for m, o, by_seed, _ in rows}
    lines = []
    dkd_kd = paired_delta(scores.get(("dkd", "sgd"), {}), scores.get(("kd", "sgd")))
    if dkd_kd is not None:
        lines.append(f"DKD - KD: {dkd_kd:+.2f} (DKD >= KD {'holds' if dkd_kd >= 0 else 'does not hold'})")
    dot_kd = paired_delta(scores.get(("kd", "dot"), {}), scores.get(("kd", "sgd")))
    if dot_kd is not None:
        lines.append(f"KD+DOT - KD: {dot_kd:+.2f} (DOT improves KD: {'holds' if dot_kd > 0 else 'does not hold'})")
    finished = {k: [x for x in v.values() if x is not None] for k, v in scores.items()}
    sgd = sorted(((statistics.mean(v), m) for (m, o), v in finished.items() if o == "sgd" and m != "student" and v),
                 reverse=True)
    ranks = [m for _, m in sgd]
    if "ofa" in ranks:
        lines.append(f"OFA ranks {ranks.index('ofa') + 1} of {len(ranks)} methods (SGD); best: {ranks[0]}")
    if lines:
        print(f"\n{pair}: " + "; ".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("presets")
    p.add_argument("models", nargs="*")
    k = sub.add_parser("kd")
    k.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    k.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    k.add_argument("--optimizers", nargs="+", default=["sgd", "dot"], choices=["sgd", "dot"])
    k.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    k.add_argument("--steps", type=int, default=STUDENT_STEPS)
    k.add_argument("--no-train", action="store_true", help="train nothing: tabulate the finished or recorded runs")
    k.add_argument("--fresh", action="store_true",
                   help="ignore docs/data/cls_kd_runs.json: train every run without a run directory")
    args = parser.parse_args()
    if args.command == "presets":
        presets(args.models)
    else:
        kd(args)


if __name__ == "__main__":
    main()
