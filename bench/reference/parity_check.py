#!/usr/bin/python3
"""Checks the Python ports against the C++ op for op, from the files parity_dump.cpp writes:
the same parameter and buffer names and shapes in the same order, the same eval-mode logits and
stage features once the C++ weights are loaded, and the same task and distillation loss terms
on the C++ outputs. Exit status 1 on any mismatch.

  python3 bench/reference/parity_check.py DUMP_DIR
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distillery_losses import create_distiller, task_loss  # noqa: E402
from distillery_models import create_model  # noqa: E402

DTYPES = {"float32": np.float32, "int64": np.int64}


def read_group(directory, group):
    """[(name, tensor)] in file order."""
    with open(os.path.join(directory, group + ".txt")) as index:
        entries = [line.split() for line in index if line.strip()]
    blob = open(os.path.join(directory, group + ".bin"), "rb").read()
    tensors, offset = [], 0
    for name, dtype, *shape in entries:
        shape = [int(s) for s in shape]
        count = int(np.prod(shape)) if shape else 1
        array = np.frombuffer(blob, DTYPES[dtype], count, offset).reshape(shape)
        offset += array.nbytes
        tensors.append((name, torch.from_numpy(array.copy())))
    if offset != len(blob):
        raise ValueError(f"{group}.bin has {len(blob) - offset} bytes more than its index lists")
    return tensors


class Checker:
    def __init__(self):
        self.failures = 0

    def expect(self, ok, what):
        self.failures += not ok
        print(f"{'ok      ' if ok else 'MISMATCH'} {what}")

    def close(self, a, b, what, rtol=1e-4, atol=1e-5):
        diff = (a - b).abs().max().item() if a.numel() else 0.0
        self.expect(a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol),
                    f"{what}: shape {tuple(a.shape)}, max |diff| {diff:.3g}")


def load_state(module, named, check, label):
    # The dump lists every parameter, then every buffer (named_parameters, named_buffers).
    ours = list(module.named_parameters()) + list(module.named_buffers())
    same_layout = [(n, tuple(t.shape)) for n, t in ours] == [(n, tuple(t.shape)) for n, t in named]
    check.expect(same_layout, f"{label}: {len(ours)} parameter/buffer names and shapes, in order")
    if same_layout:
        module.load_state_dict({n: t for n, t in named})
    return same_layout


def main():
    if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "index.txt")):
        print("usage: parity_check.py DUMP_DIR (written by parity_dump)", file=sys.stderr)
        return 2
    directory = sys.argv[1]
    torch.set_num_threads(1)
    check = Checker()
    batch = dict(read_group(directory, "batch"))
    images, labels = batch["images"], batch["labels"]

    models, outputs = {}, {}
    for name in ("deeplabv3_resnet18", "deeplabv3_resnet18_slim", "segformer_b0", "segformer_b2"):
        model = create_model(name).eval()
        models[name] = model
        cpp_out = dict(read_group(directory, name + ".out"))
        outputs[name] = cpp_out
        if not load_state(model, read_group(directory, name), check, name):
            continue
        with torch.no_grad():
            logits, features = model(images)
        check.close(logits, cpp_out["logits"], f"{name} logits")
        for i, f in enumerate(features):
            check.close(f, cpp_out[f"features.{i}"], f"{name} features[{i}]")

    expected = {}
    with open(os.path.join(directory, "losses.txt")) as lines:
        for line in lines:
            student, method, term, value = line.split()
            expected[(student, method, term)] = float(value)
    groups = open(os.path.join(directory, "index.txt")).read().split()
    teacher = outputs["deeplabv3_resnet18"]
    t_features = [teacher[f"features.{i}"] for i in range(4)]
    for student in ("segformer_b0", "deeplabv3_resnet18_slim"):
        out = outputs[student]
        s_features = [out[f"features.{i}"] for i in range(4)]
        ce = task_loss(out["logits"], labels).item()
        want = expected[(student, "task", "ce")]
        check.expect(abs(ce - want) <= 1e-5 * abs(want), f"{student} task ce {ce:.7g} vs {want:.7g}")
        for method in ("kd", "cwd", "heteroakd"):
            distiller = create_distiller(method, models[student].stage_channels,
                                         models["deeplabv3_resnet18"].stage_channels)
            if f"{student}.{method}" in groups:
                load_state(distiller, read_group(directory, f"{student}.{method}"), check,
                           f"{student} {method} projectors")
            with torch.no_grad():
                terms = distiller(out["logits"], s_features, teacher["logits"], t_features, labels)
            cpp_terms = {k[2]: v for k, v in expected.items() if k[:2] == (student, method)}
            check.expect(set(terms) == set(cpp_terms), f"{student} {method} terms {sorted(terms)}")
            for term, value in terms.items():
                want = cpp_terms.get(term, float("nan"))
                got = value.item()
                check.expect(abs(got - want) <= 1e-4 * abs(want) + 1e-6,
                             f"{student} {term} {got:.7g} vs {want:.7g}")
    print(f"{check.failures} mismatches")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
