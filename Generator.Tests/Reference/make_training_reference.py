#!/usr/bin/env python3
"""Writes the training-recipe reference the ResNetGen.Training tests compare against (Reference/training/).

Run with Debian's python3-torch 1.13 and timm's source (../shared/reference holds it), from this folder:
    mkdir -p /tmp/timm-src && tar xzf ../../../shared/reference/timm-1.0.29.dev0-src.tgz -C /tmp/timm-src
    PYTHONPATH=/tmp/timm-src /usr/bin/python3 make_training_reference.py

Every input is deterministic.uniform(key, n) (DeterministicWeights.Uniform rebuilds it in C#), float32. Written, all
float32 little-endian unless said:
  adamw.bin      torch.optim.AdamW (defaults but lr), 5 steps: the three parameters after each step, concatenated
  lamb.bin       timm's Lamb (defaults but lr; the bias-like parameter without weight decay), 5 steps, the same layout
  lamb_noclip.bin  the same with max_grad_norm None and trust_clip True
  ema.bin        timm's ModelEmaV3 (decay 0.99, warm-up, update_after_step 1) over a conv + batch-norm, 6 updates:
                 the averaged state_dict's float tensors after each, concatenated; ema.decays.txt its decays
  losses.bin     F.cross_entropy(label_smoothing=0.1), timm's SoftTargetCrossEntropy, BinaryCrossEntropy (hard and
                 soft targets): each loss then its gradient with respect to the logits
  mixup.bin      timm's mixup_target (λ 0.7, smoothing 0.1); _mix_batch's mixup of the images at λ 0.7; its cutmix
                 with the box in mixup.box.txt
  clip.bin       torch.nn.utils.clip_grad_norm_(max_norm 0.5): the norm, then the clipped gradients
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from timm.data.mixup import mixup_target
from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy
from timm.optim.lamb import Lamb
from timm.utils.model_ema import ModelEmaV3

from deterministic import uniform

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training")
os.makedirs(HERE, exist_ok=True)

SHAPES = {"w": (4, 3), "b": (5,), "k": (2, 3, 3, 3)}
STEPS = 5


def tensor(key, shape, scale=1.0):
    return torch.from_numpy((uniform(key, int(np.prod(shape))) * scale).astype(np.float32).reshape(shape))


def write(name, tensors):
    torch.cat([t.detach().reshape(-1).float() for t in tensors]).numpy().astype("<f4").tofile(os.path.join(HERE, name))


def parameters():
    return {k: torch.nn.Parameter(tensor("param." + k, s)) for k, s in SHAPES.items()}


def run(optimizer_for, name, grad_scale=1.0):
    params = parameters()
    optimizer = optimizer_for(params)
    out = []
    for step in range(1, STEPS + 1):
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * step  # a schedule: the learning rate changes every step
        for k, p in params.items():
            p.grad = tensor(f"grad{step}.{k}", SHAPES[k], grad_scale)
        optimizer.step()
        out += [params[k].detach().clone() for k in SHAPES]
    write(name, out)


run(lambda p: torch.optim.AdamW(list(p.values()), lr=0.01), "adamw.bin")
# Gradients three times larger: their global norm is above 1, so Lamb's clipping acts.
groups = lambda p: [{"params": [p["w"], p["k"]]}, {"params": [p["b"]], "weight_decay": 0.0}]
run(lambda p: Lamb(groups(p), lr=0.01), "lamb.bin", grad_scale=3.0)
run(lambda p: Lamb(groups(p), lr=0.01, max_grad_norm=None, trust_clip=True), "lamb_noclip.bin", grad_scale=3.0)

# EMA over a convolution and a batch-norm: parameters, running statistics, and num_batches_tracked (copied).
model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
with torch.no_grad():
    for key, t in model.state_dict().items():
        if t.is_floating_point():
            t.copy_(tensor("ema0." + key, tuple(t.shape)))
ema = ModelEmaV3(model, decay=0.99, use_warmup=True, update_after_step=1)
out, decays = [], []
for step in range(1, 7):
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(tensor(f"ema{step}.{key}", tuple(t.shape)))
            else:
                t.fill_(step)
    decays.append(ema.get_decay(step))
    ema.update(model, step=step)
    out += [t.clone() for t in ema.module.state_dict().values() if t.is_floating_point()]
write("ema.bin", out)
with open(os.path.join(HERE, "ema.decays.txt"), "w") as f:
    f.write("".join(f"{d!r}\n" for d in decays))
assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 6

# Losses and their gradients on the same logits.
labels = torch.tensor([0, 3, 4, 1, 1, 2])
soft = torch.softmax(tensor("soft-targets", (6, 5), 3.0), -1)
out = []
for loss_of in [lambda x: F.cross_entropy(x, labels, label_smoothing=0.1),
                lambda x: SoftTargetCrossEntropy()(x, soft),
                lambda x: BinaryCrossEntropy(smoothing=0.1)(x, labels),
                lambda x: BinaryCrossEntropy(smoothing=0.1)(x, soft)]:
    logits = tensor("logits", (6, 5), 4.0).requires_grad_()
    loss = loss_of(logits)
    loss.backward()
    out += [loss.reshape(1), logits.grad]
write("losses.bin", out)

# Mixup and cutmix for a fixed λ and box, as timm's Mixup._mix_batch computes them.
images = tensor("mix-images", (4, 3, 8, 10))
targets = mixup_target(torch.tensor([2, 0, 1, 2]), 3, lam=0.7, smoothing=0.1)
mixed = images.clone()
x_flipped = mixed.flip(0).mul_(1. - 0.7)
mixed.mul_(0.7).add_(x_flipped)
box = (2, 6, 3, 8)  # yl, yh, xl, xh
cut = images.clone()
yl, yh, xl, xh = box
cut[:, :, yl:yh, xl:xh] = cut.flip(0)[:, :, yl:yh, xl:xh]
write("mixup.bin", [targets, mixed, cut])
with open(os.path.join(HERE, "mixup.box.txt"), "w") as f:
    f.write(" ".join(str(v) for v in box) + "\n")

# Gradient clipping.
params = parameters()
for k, p in params.items():
    p.grad = tensor(f"grad1.{k}", SHAPES[k])
norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 0.5)
write("clip.bin", [norm.reshape(1)] + [params[k].grad for k in SHAPES])
print("written", sorted(os.listdir(HERE)))

# Augmentation: torchvision 0.14's tensor operations, each at several magnitudes (both signs where signed), on a
# grayscale 28×28 picture and a colour 20×24 one (uint8, written as bytes: augment_ops.bin, cases in augment_ops.txt);
# then TrivialAugmentWide and RandAugment on 24 pictures of each, after torch.manual_seed(s) (augment_policies.bin).
from torchvision.transforms import RandAugment, TrivialAugmentWide
from torchvision.transforms.autoaugment import _apply_op
from torchvision.transforms import InterpolationMode


def picture(key, shape):
    c, h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 127 + 90 * np.sin(x / 3.1) * np.cos(y / 4.3)
    noise = uniform(key, c * h * w).reshape(c, h, w) * 40
    image = np.clip(np.round(base[None] + noise + np.arange(c).reshape(c, 1, 1) * 25), 0, 255)
    image[:, : h // 5, :] = 0  # a dark band, as Fashion-MNIST's background
    return torch.from_numpy(image.astype(np.uint8))


gray, colour = picture("aug-gray", (1, 28, 28)), picture("aug-colour", (3, 20, 24))
cases, out = [], []
for name, magnitudes in [("Identity", [0.0]), ("ShearX", [0.3, -0.99]), ("ShearY", [0.5, -0.2]), ("TranslateX", [7.5, -12.0]),
                         ("TranslateY", [3.0, -31.9]), ("Rotate", [30.0, -135.0, 45.0]), ("Brightness", [0.5, -0.99]),
                         ("Color", [0.9, -0.6]), ("Contrast", [0.7, -0.9]), ("Sharpness", [0.99, -0.5]), ("Posterize", [2.0, 5.0]),
                         ("Solarize", [128.0, 246.5]), ("AutoContrast", [0.0]), ("Equalize", [0.0])]:
    for magnitude in magnitudes:
        for which, image in (("gray", gray), ("colour", colour)):
            result = _apply_op(image.clone(), name, magnitude, interpolation=InterpolationMode.NEAREST, fill=None)
            cases.append(f"{name} {magnitude!r} {which}")
            out.append(result)
torch.cat([t.reshape(-1) for t in out]).numpy().tofile(os.path.join(HERE, "augment_ops.bin"))
with open(os.path.join(HERE, "augment_ops.txt"), "w") as f:
    f.write("\n".join(cases) + "\n")
out = []
for policy, seed in ((TrivialAugmentWide(), 11), (RandAugment(), 12)):
    for which, image in (("gray", gray), ("colour", colour)):
        torch.manual_seed(seed)
        for _ in range(24):
            out.append(policy(image.clone()))
torch.cat([t.reshape(-1) for t in out]).numpy().tofile(os.path.join(HERE, "augment_policies.bin"))
for which, image in (("gray", gray), ("colour", colour)):
    image.numpy().tofile(os.path.join(HERE, f"augment_{which}.bin"))
print("augmentation cases", len(cases))
