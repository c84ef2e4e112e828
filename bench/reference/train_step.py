#!/usr/bin/python3
"""PyTorch-Python reference of Distillery's training step (issue 6), for the side-by-side
benchmark against bench/bench_distill.cpp. A plain, idiomatic PyTorch loop: eager mode, NCHW,
default optimizer implementations; no torch.compile, jit or channels_last.

  python3 bench/reference/train_step.py --config heteroakd --batch 16 --threads 2 \
      --warmup 3 --steps 20 [--student segformer_b0] [--teacher deeplabv3_resnet18] [--json out.json]
  python3 bench/reference/train_step.py --check-params

Configs: student (the student alone), kd / cwd / heteroakd (student + frozen online teacher +
that distiller of the demo recipes), teacher (the teacher model trained alone).
Prints one JSON object with the per-step times (warm-up excluded) and the peak resident memory.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distillery_losses import CPP_DISTILLER_PARAMS, create_distiller, task_loss  # noqa: E402
from distillery_models import (CPP_PARAMS, PRESETS, count_parameters, create_model,  # noqa: E402
                               is_transformer)

CONFIGS = ("student", "kd", "cwd", "heteroakd", "teacher")
NUM_CLASSES, INPUT_SIZE = 11, 64


def make_optimizer(model_name, params):
    """The demo recipes' optimizers (train/optimizer.cpp): weight decay only on tensors with
    more than one dimension. AdamW for Transformers, SGD with momentum for CNNs."""
    decay = [p for p in params if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in params if p.requires_grad and p.dim() <= 1]
    if is_transformer(model_name):
        return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                  {"params": no_decay, "weight_decay": 0.0}],
                                 lr=1e-3, betas=(0.9, 0.999))
    return torch.optim.SGD([{"params": decay, "weight_decay": 1e-4},
                            {"params": no_decay, "weight_decay": 0.0}], lr=0.02, momentum=0.9)


def fixed_batch(batch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 1, INPUT_SIZE, INPUT_SIZE, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch, INPUT_SIZE, INPUT_SIZE), generator=generator)
    ignored = torch.rand(batch, INPUT_SIZE, INPUT_SIZE, generator=generator) < 0.05
    return images, labels.masked_fill(ignored, 255)


def check_params():
    """Asserts that every port has exactly the C++ parameter count; returns the exit code."""
    failures = 0
    channels = {}
    for name in PRESETS:
        model = create_model(name)
        channels[name] = model.stage_channels
        count = count_parameters(model)
        ok = count == CPP_PARAMS[name]
        failures += not ok
        print(f"{name:26s} python {count:9d}  c++ {CPP_PARAMS[name]:9d}  {'ok' if ok else 'MISMATCH'}")
    for (method, student), expected in CPP_DISTILLER_PARAMS.items():
        distiller = create_distiller(method, channels[student], channels["deeplabv3_resnet18"])
        count = count_parameters(distiller)
        ok = count == expected
        failures += not ok
        label = f"{method} ({student} <- deeplabv3_resnet18)"
        print(f"{label:50s} python {count:6d}  c++ {expected:6d}  {'ok' if ok else 'MISMATCH'}")
    return 1 if failures else 0


def run(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = fixed_batch(args.batch)

    distilling = args.config in ("kd", "cwd", "heteroakd")
    # 'teacher': the large model trained alone, with its own (CNN) optimizer.
    trained_name = args.teacher if args.config == "teacher" else args.student
    model = create_model(trained_name)
    model.train()
    params = list(model.parameters())

    teacher = distiller = None
    if distilling:
        teacher = create_model(args.teacher)
        teacher.eval()
        teacher.requires_grad_(False)
        distiller = create_distiller(args.config, model.stage_channels, teacher.stage_channels)
        distiller.train()
        params += list(distiller.parameters())  # projectors learn with the student
    optimizer = make_optimizer(trained_name, params)

    step_seconds, losses = [], []
    for step in range(args.warmup + args.steps):
        begin = time.perf_counter()
        logits, features = model(images)
        loss = task_loss(logits, labels)
        if distilling:
            with torch.no_grad():
                t_logits, t_features = teacher(images)
            for value in distiller(logits, features, t_logits, t_features, labels).values():
                loss = loss + value
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step >= args.warmup:
            step_seconds.append(time.perf_counter() - begin)

    median = statistics.median(step_seconds)
    return {
        "config": args.config,
        "student": None if args.config == "teacher" else args.student,
        "teacher": args.teacher if distilling or args.config == "teacher" else None,
        "batch": args.batch,
        "threads": args.threads,
        "params_student": 0 if args.config == "teacher" else count_parameters(model),
        "params_teacher": count_parameters(teacher if distilling else model)
        if args.config != "student" else 0,
        "params_distiller": count_parameters(distiller) if distiller is not None else 0,
        "warmup": args.warmup,
        "step_seconds": step_seconds,
        "median": median,
        "min": min(step_seconds),
        "max": max(step_seconds),
        "images_per_second": args.batch / median,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "losses": losses,
        "torch": torch.__version__,
    }


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=CONFIGS)
    parser.add_argument("--batch", type=positive, default=16)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--warmup", type=non_negative, default=3)
    parser.add_argument("--steps", type=positive, default=20)
    parser.add_argument("--student", choices=sorted(PRESETS), default="segformer_b0")
    parser.add_argument("--teacher", choices=sorted(PRESETS), default="deeplabv3_resnet18")
    parser.add_argument("--json", help="also write the result object to this file")
    parser.add_argument("--check-params", action="store_true",
                        help="compare every port's parameter count with the C++ and exit")
    args = parser.parse_args()
    if args.check_params:
        return check_params()
    if args.config is None:
        parser.error("--config is required (one of: " + ", ".join(CONFIGS) + ")")
    out = None
    if args.json:  # opened first, so a bad path fails before the run rather than after it
        try:
            out = open(args.json, "w")
        except OSError as error:
            print(f"train_step.py: cannot write --json {args.json}: {error.strerror}", file=sys.stderr)
            return 1
    text = json.dumps(run(args))
    print(text)
    if out is not None:
        with out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
