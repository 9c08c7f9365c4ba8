#!/usr/bin/env python3
"""Checks generated PyTorch twins against the C# networks they were generated with (PyTorchTwinTests runs it).

Usage: python3 twin_check.py MANIFEST.json

The manifest lists cases: {"name", "module" (the twin's .py), "weights" (a .safetensors the C# network wrote),
"keys" ([key, dtype, shape] of the C# state_dict, in order), "input" (float32 raw), "input_shape", "train"}; file
names are relative to the manifest's folder. For each case: build() the twin, compare its state_dict with "keys"
(names, order, dtypes, shapes), load the weights strictly, and write <name>.eval.out (eval-mode outputs, float32) and,
if "train", <name>.train64.out (one train-mode forward after it in float64), little-endian, beside the manifest.
Prints "ok NAME" or "FAIL NAME: why" per case. Needs torch and numpy.

Without "weights" the twin gets the deterministic weights the C# network had (Reference/deterministic.py rebuilds them
bit for bit), so a set of cases travels without its weight files (RESNETGEN_TWIN_EXPORT, Twins.cs). With
"expected_eval" (and "expected_train64") the C# outputs are beside the manifest and each twin's outputs are compared with
them here, by the test suite's closeness rules (Infrastructure/Tolerance.cs): no NaN or infinity, max |difference|
within "relative" of the largest expected output, and each output's difference from its batch's mean within 2e-3 of
the largest such difference. That is how the same cases are checked on another PyTorch (2.x) than the tests' own.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch

# The sample's reader (export --pytorch ships it), the one the users' scripts read weights with.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Sample", "PyTorch"))
sys.path.insert(0, os.path.join(HERE, "..", "Reference"))
import deterministic  # noqa: E402
import safetensors_io  # noqa: E402

CONTRAST = 2e-3  # Tolerance.Contrast

def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closeness(expected, actual, relative):
    """None when actual is close to expected by Tolerance.Compare's two rules, else why not."""
    expected, actual = expected.astype(np.float64), actual.astype(np.float64)
    for what, values in (("expected", expected), ("the twin's", actual)):
        if not np.isfinite(values).all():
            return f"{what} outputs hold NaN or infinity"
    scale, worst = np.abs(expected).max(initial=0.0), np.abs(expected - actual).max(initial=0.0)
    if worst > relative * scale:
        return f"max |difference| {worst:.4g} exceeds {relative:.2g} x max |expected| = {relative * scale:.4g}"
    if expected.ndim >= 2 and expected.shape[0] >= 2:
        e, a = expected - expected.mean(0), actual - actual.mean(0)
        spread, error = np.abs(e).max(initial=0.0), np.abs(e - a).max(initial=0.0)
        if error > max(CONTRAST * spread, 1e-2 * relative * scale):
            return f"the outputs' differences from their batch mean are off by {error:.4g}, more than {CONTRAST:.2g} x their largest {spread:.4g}"
    return None


def check(case, base):
    path = lambda name: os.path.join(base, name)  # noqa: E731
    net = load_module("twin_" + case["name"], path(case["module"])).build()
    buffers = {name for name, _ in net.named_buffers()}
    ours = [[k, str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in net.state_dict().items()]
    theirs = case["keys"]
    if sorted(map(str, ours)) != sorted(map(str, theirs)):
        missing = [e for e in theirs if e not in ours][:3]
        extra = [e for e in ours if e not in theirs][:3]
        return f"the state_dicts differ: the C# network has {missing} the twin lacks, the twin {extra}"
    # TorchSharp lists every parameter before every buffer; PyTorch module by module: the order is compared per kind.
    for kind, pick in (("parameters", lambda e: e[0] not in buffers), ("buffers", lambda e: e[0] in buffers)):
        a, b = [e for e in ours if pick(e)], [e for e in theirs if pick(e)]
        if a != b:
            i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            return f"{kind} entry {i}: the twin has {a[i]}, the C# network {b[i]}"
    weights = safetensors_io.load(path(case["weights"])) if case.get("weights") else deterministic.state(net)
    net.load_state_dict(weights, strict=True)
    x = torch.from_numpy(np.fromfile(path(case["input"]), dtype="<f4").reshape(case["input_shape"]))
    net.eval()
    outputs = []
    with torch.no_grad():
        outputs.append(("eval", net(x).numpy().astype("<f4"), case.get("relative")))
        if case["train"]:
            net.double().train()
            outputs.append(("train64", net(x.double()).numpy().astype("<f8"), case.get("train_relative")))
    for kind, values, relative in outputs:
        values.tofile(path(f"{case['name']}.{kind}.out"))
        if case.get("expected_" + kind):
            expected = np.fromfile(path(case["expected_" + kind]), dtype=values.dtype).reshape(values.shape)
            problem = closeness(expected, values, relative)
            if problem:
                return f"{kind} output: {problem}"
    return None


def run_manifest(path, check_case):
    """Runs check_case(case, folder) on each case of the manifest at path; prints "ok NAME" or "FAIL NAME: why"."""
    torch.manual_seed(0)
    print(f"PyTorch {torch.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}", flush=True)
    with open(path) as f:
        cases = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    for case in cases:
        try:
            problem = check_case(case, base)
        except Exception as e:  # reported per case, so that one broken twin does not hide the others
            problem = f"{type(e).__name__}: {e}"
        print(("FAIL " + case["name"] + ": " + problem) if problem else "ok " + case["name"], flush=True)


if __name__ == "__main__":
    run_manifest(sys.argv[1], check)
