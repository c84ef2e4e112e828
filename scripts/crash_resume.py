#!/usr/bin/env python3
"""Crash-resume check: kill `distill train` with SIGKILL at random moments, resume it each time,
and require the final checkpoints and metrics.jsonl to equal, bit for bit, those of an
uninterrupted run with the same seed.

  python3 scripts/crash_resume.py                      # the full check: 20 kills per model
  python3 scripts/crash_resume.py --kills 4 --steps 24 # the short version ctest runs

Three kinds of kill moments, drawn at random:
  startup     while the process loads and builds its data (before any step),
  training    at a random instant inside a random step (a log line or a checkpoint may be
              half written),
  checkpoint  inside a checkpoint write: the run gets DISTILLERY_TEST_CHECKPOINT_WRITE_DELAY_MS,
              which makes the writer pause halfway through latest.ckpt.tmp, and is killed while
              that file is half written.
Checkpoints are compared by content: the metadata (step, best metric, model, classes, recipe)
and every stored tensor and value (model, distillers, optimizer, RNG state) by dtype, shape and
CRC-32 of its bytes (`distill inspect --tensors`); the files' own bytes differ between
processes even for the same state. metrics.jsonl is compared record by record without the wall-clock
fields (train_seconds, images_per_second).
"""
import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = {"train_seconds", "images_per_second"}

# One CNN and one Transformer, small enough that a run takes seconds. Dropout (ASPP) and
# stochastic depth (drop_path) make the RNG state part of what must survive a crash;
# augmentation makes the data stream part of it.
MODELS = {
    "cnn": "{name: deeplabv3_resnet18_slim, width: 0.25}",
    "transformer": "{name: segformer_b0, width: 0.5, drop_path: 0.1}",
}


def recipe_text(model, steps, seed):
    return f"""name: crash_{seed}
seed: {seed}
data:
  fashion_seg: {{canvas: 32, train_scenes: 96, val_scenes: 16, max_items: 2, max_scale: 1.0}}
  augment: {{enabled: true}}
model: {model}
train:
  steps: {steps}
  batch_size: 4
  eval_every: {max(2, steps // 4)}
  eval_batch_size: 8
  checkpoint_every: 1
  log_every: 1
  optimizer: {{type: adamw, lr: 0.002, warmup_steps: 3}}
"""


def read_checkpoint(distill, path):
    """(metadata dict, ["name summary" per stored tensor or value]) of a Distillery checkpoint.
    The tensors come from `distill inspect --tensors` (dtype, shape, CRC-32 of the bytes): the
    archive's own bytes differ between processes even for the same state."""
    with open(path, "rb") as f:
        header = f.read(28)
        if header[:8] != b"DSTLCKPT":
            raise ValueError(f"{path}: bad magic")
        _, meta_size, _ = struct.unpack_from("<IQQ", header, 8)
        meta = json.loads(f.read(meta_size))
    listing = subprocess.run([distill, "inspect", "--tensors", path], check=True, capture_output=True,
                             text=True).stdout.splitlines()
    return meta, listing[1:]  # the first line names the file


def is_timing(key):
    """Wall-clock fields: train_seconds, data_wait_seconds, images_per_second, ..."""
    return key in TIMING_KEYS or key.endswith("_seconds") or key.endswith("per_second")


def read_log(path):
    records = []
    with open(path) as f:
        for line in f:
            record = {k: v for k, v in json.loads(line).items() if not is_timing(k)}
            if isinstance(record.get("summary"), dict):
                record["summary"] = {k: v for k, v in record["summary"].items() if not is_timing(k)}
            records.append(record)
    return records


def compare_runs(distill, reference, crashed):
    problems = []
    for name in ("latest.ckpt", "best.ckpt"):
        a, b = os.path.join(reference, name), os.path.join(crashed, name)
        if not os.path.exists(b):
            problems.append(f"{name} missing after the crashed run")
            continue
        meta_a, tensors_a = read_checkpoint(distill, a)
        meta_b, tensors_b = read_checkpoint(distill, b)
        if meta_a != meta_b:
            problems.append(f"{name}: metadata differs: {meta_a['step']}/{meta_a['best_metric']} vs "
                            f"{meta_b['step']}/{meta_b['best_metric']}")
        if len(tensors_a) != len(tensors_b):
            problems.append(f"{name}: {len(tensors_a)} stored values vs {len(tensors_b)}")
        differing = [x.split(" ")[0] for x, y in zip(tensors_a, tensors_b) if x != y]
        if differing:
            problems.append(f"{name}: {len(differing)} of {len(tensors_a)} tensors differ, e.g. {differing[:3]}")
    log_a = read_log(os.path.join(reference, "metrics.jsonl"))
    log_b = read_log(os.path.join(crashed, "metrics.jsonl"))
    if len(log_a) != len(log_b):
        problems.append(f"metrics.jsonl: {len(log_a)} records vs {len(log_b)}")
    for i, (x, y) in enumerate(zip(log_a, log_b)):
        if x != y:
            problems.append(f"metrics.jsonl record {i + 1} differs:\n  {x}\n  {y}")
            break
    return problems


class Runner:
    def __init__(self, args, recipe, run_dir, log):
        self.args, self.recipe, self.run_dir, self.log = args, recipe, run_dir, log

    def command(self, resume):
        cmd = [self.args.distill, "--threads", str(self.args.threads), "train", self.recipe,
               "--set", "output.dir=" + self.run_dir]
        if resume:
            cmd += ["--resume"] + [x for kv in self.args.resume_set for x in ("--set", kv)]
        return cmd

    def start(self, env_extra=None):
        resume = os.path.exists(os.path.join(self.run_dir, "latest.ckpt"))
        env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        env.update(env_extra or {})
        return subprocess.Popen(self.command(resume), stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def finish(self):
        process = self.start()
        if process.wait(timeout=self.args.timeout) != 0:
            raise SystemExit(f"run in {self.run_dir} failed; see {self.log.name}")


def logged_steps(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
            return f.read().count(b'"loss"')
    except FileNotFoundError:
        return 0


def wait_for(predicate, process, timeout):
    """Polls until predicate() or the process ends; True if predicate() held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def crash_loop(args, runner, rng, startup_s, step_s):
    """Kills runs until args.kills kills landed; returns the kinds of kill made."""
    kinds = []
    delay_ms = max(200, int(step_s * 1000))
    attempts = 0
    while len(kinds) < args.kills:
        attempts += 1
        if attempts > 4 * args.kills:
            raise SystemExit("runs keep finishing before the kill: use more --steps")
        kind = rng.choice(["startup", "training", "training", "checkpoint"])
        env = {"DISTILLERY_TEST_CHECKPOINT_WRITE_DELAY_MS": str(delay_ms)} if kind == "checkpoint" else {}
        process = runner.start(env)
        if kind == "startup":
            time.sleep(rng.uniform(0, startup_s))
            landed = process.poll() is None
        elif kind == "training":
            target = logged_steps(runner.run_dir) + rng.randint(1, 2)
            landed = wait_for(lambda: logged_steps(runner.run_dir) >= target, process, args.timeout)
            time.sleep(rng.uniform(0, step_s))
            landed = landed and process.poll() is None
        else:
            tmp = os.path.join(runner.run_dir, "latest.ckpt.tmp")
            if os.path.exists(tmp):
                os.remove(tmp)  # a stale one from an earlier kill would trigger the wait at once
            landed = wait_for(lambda: os.path.exists(tmp) and os.path.getsize(tmp) > 0, process, args.timeout)
            time.sleep(rng.uniform(0, delay_ms / 1000 / 2))
            landed = landed and process.poll() is None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        if process.returncode not in (0, -signal.SIGKILL):
            raise SystemExit(f"a resumed run failed with exit code {process.returncode}; see {runner.log.name}")
        if landed:
            kinds.append(kind)
            print(f"  kill {len(kinds):2d}: {kind:<10} at step {logged_steps(runner.run_dir)}", flush=True)
        if process.returncode == 0:
            raise SystemExit("the run finished before the kill: use more --steps")
    return kinds


def check_model(args, label, model, work, rng):
    recipe = os.path.join(work, f"{label}.yaml")
    with open(recipe, "w") as f:
        f.write(recipe_text(model, args.steps, args.seed))
    run_dir = os.path.join(work, label)
    with open(os.path.join(work, f"{label}.log"), "w") as log:
        # The reference run uses the same output.dir as the crashed one (the recipe stored in
        # each checkpoint includes it), then moves aside.
        begin = time.monotonic()
        Runner(args, recipe, run_dir, log).finish()
        total_s = time.monotonic() - begin
        reference = run_dir + "_reference"
        shutil.move(run_dir, reference)
        with open(os.path.join(reference, "metrics.jsonl")) as m:
            steps_s = sum(1 for line in m if '"loss"' in line)
        step_s = max(0.05, total_s * 0.6 / max(1, steps_s))
        startup_s = max(0.2, total_s * 0.4)
        print(f"{label}: reference run {total_s:.1f} s; {args.kills} kills", flush=True)
        runner = Runner(args, recipe, run_dir, log)
        kinds = crash_loop(args, runner, rng, startup_s, step_s)
        runner.finish()
    problems = compare_runs(args.distill, reference, run_dir)
    counts = {k: kinds.count(k) for k in sorted(set(kinds))}
    if problems:
        print(f"{label}: FAILED after {len(kinds)} kills {counts}")
        for p in problems:
            print("  " + p)
        return False
    print(f"{label}: identical to the uninterrupted run after {len(kinds)} kills {counts}")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0, help="recipe seed")
    parser.add_argument("--rng-seed", type=int, default=None, help="seed of the kill moments")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for the resumed runs only; a negative control: e.g. "
                             "train.optimizer.lr=0.003 must make the check fail")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--distill", default=os.path.join(ROOT, "build", "distill"))
    parser.add_argument("--work", default=None, help="work directory (default: a fresh temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    rng_seed = args.rng_seed if args.rng_seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(rng_seed)
    work = args.work or tempfile.mkdtemp(prefix="distillery_crash_")
    os.makedirs(work, exist_ok=True)
    print(f"crash_resume: kill moments from --rng-seed {rng_seed}; work dir {work}", flush=True)
    ok = True
    try:
        for label in args.models:
            ok = check_model(args, label, MODELS[label], work, rng) and ok
    finally:
        if ok and not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
