#!/usr/bin/env python3
"""Checks generated PyTorch twins against the C# networks they were generated with (PyTorchTwinTests runs it).

Usage: python3 twin_check.py MANIFEST.json

The manifest lists cases: {"name", "module" (the twin's .py), "weights" (a .safetensors the C# network wrote),
"keys" ([key, dtype, shape] of the C# state_dict, in order), "input" (float32 raw), "input_shape", "train"}.
For each case: build() the twin, compare its state_dict with "keys" (names, order, dtypes, shapes), load the
weights strictly, and write <name>.eval.out (eval-mode outputs, float32) and, if "train", <name>.train64.out (one
train-mode forward after it in float64), little-endian. Prints "ok NAME" or "FAIL NAME: why" per case. Needs torch and numpy.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch

# The sample's reader (export --pytorch ships it), the one the users' scripts read weights with.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Sample", "PyTorch"))
import safetensors_io  # noqa: E402

def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(case):
    net = load_module("twin_" + case["name"], case["module"]).build()
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
    net.load_state_dict(safetensors_io.load(case["weights"]), strict=True)
    x = torch.from_numpy(np.fromfile(case["input"], dtype="<f4").reshape(case["input_shape"]))
    net.eval()
    with torch.no_grad():
        net(x).numpy().astype("<f4").tofile(case["name"] + ".eval.out")
        if case["train"]:
            net.double().train()
            net(x.double()).numpy().astype("<f8").tofile(case["name"] + ".train64.out")
    return None


def main():
    torch.manual_seed(0)
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases:
        try:
            problem = check(case)
        except Exception as e:  # reported per case, so that one broken twin does not hide the others
            problem = f"{type(e).__name__}: {e}"
        print(("FAIL " + case["name"] + ": " + problem) if problem else "ok " + case["name"], flush=True)


if __name__ == "__main__":
    main()
