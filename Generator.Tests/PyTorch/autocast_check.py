#!/usr/bin/env python3
"""PyTorch's own autocast on the generated twins, the reference of the mixed-precision tests (AutocastTests runs it).

Usage: python3 autocast_check.py MANIFEST.json

The manifest lists cases: {"name", "module" (the twin's .py), "input" (float32 raw), "input_shape", "upstream" (float32
raw, the output's shape: the train-mode loss is sum(output * upstream)), "train" (compare a train-mode forward and the
gradients too), "dtype" ("bfloat16")}; file names are relative to the manifest's folder. Each twin gets the
deterministic weights the C# network had (Reference/deterministic.py) and computes, in float32 and under
torch.autocast(device_type="cpu", dtype=DTYPE), its eval output and, with "train", a train-mode output from the same
weights and the float32 parameters' gradients of that loss. Written beside the manifest, float32 little-endian:
<name>.{eval,train,grads}.{fp32,autocast}.out (grads concatenated in named_parameters order, named in <name>.grads.json).
Prints "ok NAME" or "FAIL NAME: why" per case. Needs torch and numpy.

PyTorch 1.13's CPU autocast has no group-norm for a bfloat16 input with float32 weights ("expected scalar type
BFloat16 but found Float"); later PyTorch computes exactly that case in float32 inside and returns the input's dtype, as
libtorch 2.10 does under ResNetGen. Where this PyTorch lacks it, group_norm below does that, and says so once.
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import twin_check  # noqa: E402  (its loader and its per-case loop)
from twin_check import deterministic  # noqa: E402

_group_norm = F.group_norm
_patched = []


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if weight is not None and x.dtype != weight.dtype:
        if not _patched:
            _patched.append(True)
            print("note: mixed-dtype group_norm computed in float32 and returned in the input's dtype (as PyTorch >= 2.0 on a CPU)", flush=True)
        return _group_norm(x.float(), num_groups, weight, bias, eps).to(x.dtype)
    return _group_norm(x, num_groups, weight, bias, eps)


def mixed_group_norm_missing():
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _group_norm(torch.ones(1, 2, 2, 2, dtype=torch.bfloat16), 1, torch.ones(2), torch.zeros(2))
        return False
    except RuntimeError:
        return True


def run(net, x, upstream, train, dtype):
    """Eval output, and with train a train-mode output and the gradients, in float32 or under autocast."""
    net = copy.deepcopy(net)
    autocast = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype is not None else None
    net.eval()
    with torch.no_grad():
        if autocast:
            with autocast():
                evaluated = net(x).float()
        else:
            evaluated = net(x)
    if not train:
        return evaluated, None, None
    upstream = upstream.reshape(evaluated.shape)
    net.train()
    if autocast:
        with autocast():
            out = net(x).float()
    else:
        out = net(x)
    (out * upstream).sum().backward()
    grads = [(name, p.grad.detach().clone()) for name, p in net.named_parameters()]
    for _, g in grads:
        assert g.dtype == torch.float32, "gradients of float32 parameters are float32"
    return evaluated, out.detach(), grads


def check(case, base):
    path = lambda name: os.path.join(base, name)  # noqa: E731
    net = twin_check.load_module("twin_" + case["name"], path(case["module"])).build()
    net.load_state_dict(deterministic.state(net), strict=True)
    x = torch.from_numpy(np.fromfile(path(case["input"]), dtype="<f4").reshape(case["input_shape"]))
    dtype = getattr(torch, case.get("dtype", "bfloat16"))
    upstream = None
    if case["train"]:
        upstream = torch.from_numpy(np.fromfile(path(case["upstream"]), dtype="<f4"))
    for label, chosen in (("fp32", None), ("autocast", dtype)):
        evaluated, trained, grads = run(net, x, upstream, case["train"], chosen)
        for kind, values in (("eval", evaluated), ("train", trained)):
            if values is None:
                continue
            if not torch.isfinite(values).all():
                return f"{label} {kind} output holds NaN or infinity"
            values.numpy().astype("<f4").tofile(path(f"{case['name']}.{kind}.{label}.out"))
        if grads is not None:
            torch.cat([g.reshape(-1) for _, g in grads]).numpy().astype("<f4").tofile(path(f"{case['name']}.grads.{label}.out"))
            with open(path(f"{case['name']}.grads.json"), "w") as f:
                json.dump([[name, list(g.shape)] for name, g in grads], f)
    return None


def main():
    if mixed_group_norm_missing():
        F.group_norm = group_norm
    twin_check.run_manifest(sys.argv[1], check)


if __name__ == "__main__":
    main()
