#!/usr/bin/env python3
"""PyTorch's GradScaler on a fixed sequence of gradients, the reference of GradScalerTests.

Usage: python3 grad_scaler_check.py CASES.json  ->  one JSON line per case: the scale, the growth tracker, whether the
step was taken and the parameter after each step.

Each case: {"init_scale", "growth_factor", "backoff_factor", "growth_interval", "lr", "start" (the parameter),
"grads" (per step, the gradient of the unscaled loss; "inf", "-inf" and "nan" as strings)}. The loss of step t is
sum(p * g_t), so its gradient is g_t times the scale; SGD without momentum takes the step.

PyTorch's own GradScaler class runs the sequence: torch.amp.GradScaler("cpu") where this PyTorch has it (2.3 and
later). PyTorch 1.13's torch.cuda.amp.GradScaler runs only on CUDA tensors, through two CUDA-only kernels; there its
Python logic (the stages, the inf checks per device, the skipped step, update) runs on the CPU with those two kernels
written out here from their CUDA source (aten/src/ATen/native/cuda/AmpKernels.cu) and its two CUDA device
assertions (scale(), _MultiDeviceReplicator) left out.
"""
import json
import math
import sys

import torch


def value(v):
    return float(v) if not isinstance(v, str) else {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}[v]


def non_finite_check_and_unscale_(grads, found_inf, inv_scale):
    for g in grads:
        if not torch.isfinite(g).all():
            found_inf.fill_(1.0)
        g.mul_(inv_scale)


def update_scale_(scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    if found_inf.item():
        scale.mul_(backoff_factor)
        growth_tracker.fill_(0)
    else:
        successful = growth_tracker.item() + 1
        if successful == growth_interval:
            grown = torch.tensor(scale.item() * growth_factor, dtype=torch.float32)
            if torch.isfinite(grown):
                scale.copy_(grown)
            growth_tracker.fill_(0)
        else:
            growth_tracker.fill_(successful)
    return scale


def make_scaler(case):
    kwargs = dict(init_scale=case["init_scale"], growth_factor=case["growth_factor"], backoff_factor=case["backoff_factor"],
                  growth_interval=case["growth_interval"])
    try:
        return torch.amp.GradScaler("cpu", **kwargs), "torch.amp.GradScaler('cpu')"
    except (AttributeError, TypeError, RuntimeError):
        pass
    import torch.cuda.amp.grad_scaler as gs
    gs.amp_definitely_not_available = lambda: False
    torch._amp_foreach_non_finite_check_and_unscale_ = non_finite_check_and_unscale_
    torch._amp_update_scale_ = update_scale_

    class Replicator(gs._MultiDeviceReplicator):
        def __init__(self, master_tensor):  # the original, less its CUDA assertion
            self.master = master_tensor
            self._per_device_tensors = {}

    gs._MultiDeviceReplicator = Replicator

    class CpuGradScaler(gs.GradScaler):
        def scale(self, outputs):
            if self._scale is None:
                self._lazy_init_scale_growth_tracker(outputs.device)
            return outputs * self._scale.to(device=outputs.device)

    return CpuGradScaler(**kwargs), "torch.cuda.amp.GradScaler's logic on the CPU"


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases:
        scaler, which = make_scaler(case)
        p = torch.nn.Parameter(torch.tensor(case["start"], dtype=torch.float32))
        optimizer = torch.optim.SGD([p], lr=case["lr"])
        taken = []
        step = optimizer.step
        optimizer.step = lambda *a, **k: (taken.append(True), step(*a, **k))[1]  # observes whether GradScaler stepped
        steps = []
        for g in case["grads"]:
            optimizer.zero_grad()
            loss = (p * torch.tensor([value(v) for v in g], dtype=torch.float32)).sum()
            scaler.scale(loss).backward()
            taken.clear()
            scaler.step(optimizer)
            stepped = bool(taken)
            scaler.update()
            steps.append({"scale": scaler.get_scale(), "tracker": int(scaler._get_growth_tracker()), "stepped": stepped,
                          "p": [x for x in p.detach().tolist()]})
        print(json.dumps({"name": case["name"], "scaler": which, "torch": torch.__version__, "steps": steps}), flush=True)


if __name__ == "__main__":
    main()
