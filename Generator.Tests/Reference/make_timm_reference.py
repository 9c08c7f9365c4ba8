#!/usr/bin/env python3
"""Writes the timm reference data the timm-family tests compare against.

Run with Debian's python3-torch and python3-torchvision and timm's source (../shared/reference/ holds it), from this
folder:
    mkdir -p /tmp/timm-src && tar xzf ../../../shared/reference/timm-1.0.29.dev0-src.tgz -C /tmp/timm-src
    PYTHONPATH=/tmp/timm-src /usr/bin/python3 make_timm_reference.py

The weights are make_reference.py's: every tensor a deterministic function of its state_dict key, so the C# tests
rebuild them bit for bit. Writes into timm/, per model:
  <model>.keys.txt          state_dict key, dtype and shape, in timm's order
  <model>.eval.bin          eval-mode logits for the deterministic [2, 3, 64, 64] input, float32 little-endian
and for the models in TRAIN_CHECKED also one train-mode forward and backward in float64 (drop path 0):
  <model>.train64.bin       train-mode logits, float64 little-endian
  <model>.grads.txt         the parameters whose gradients follow, one per line
  <model>.grads64.bin       their gradients of sum(logits × uniform("grad-weights")), concatenated, float64
and a small timm ResNet with timm's own random weights (see tiny_checkpoint) as .safetensors files. For the models in
DROP_PATH, built with that drop_path_rate (and, last, kuangliu's CIFAR PreActResNet18: see preact_cifar):
  <model>.droppath.txt      the rate, then each block's drop probability in block order (repr, exact)
"""
import os

import numpy as np
import timm
import torch
from timm.layers import BlurPool2d

from make_reference import deterministic_input, uniform, value, write_reference

# timm's names; a name with a suffix is built with the arguments given.
MODELS = {
    "resnet10t": {}, "resnet18d": {}, "resnet26t": {}, "resnet50c": {}, "resnet50d": {}, "resnet50s": {},
    "resnet101d": {}, "seresnet50": {}, "seresnext26d_32x4d": {}, "seresnext50_32x4d": {}, "ecaresnet26t": {},
    "ecaresnet50d": {}, "resnetrs50": {}, "resnetaa50d": {}, "resnetblur50": {}, "seresnextaa101d_32x8d": {},
    # avg-down in dilated stages (timm's AvgPool2dSame): output stride 8.
    "resnet50d_os8": dict(name="resnet50d", output_stride=8),
    # the blur at stride 1 where a dilated stage begins.
    "resnetblur50_os16": dict(name="resnetblur50", output_stride=16),
    # ResNet-RS's convolution stem pool with each anti-aliasing pool between its convolution and batch-norm.
    "resnetrs50_blur": dict(name="resnetrs50", aa_layer=BlurPool2d),
    "resnetrs50_aa": dict(name="resnetrs50", aa_layer=torch.nn.AvgPool2d),
    # Pre-activation ResNets (timm's resnetv2.py) with batch-norm.
    "resnetv2_18": {}, "resnetv2_50": {},
    # BiT (Kolesnikov et al. 2020): GroupNorm of 32 groups, weight-standardised convolutions (eps 1e-8), the fixed stem.
    "resnetv2_50x1_bit": {}, "resnetv2_101x1_bit": {},
}
# Stochastic depth: timm's per-block drop rates for these (model, drop_path_rate), one rate a line, in block order.
DROP_PATH = {"resnet50d": 0.2, "resnet18d": 0.1, "resnet10t": 0.05}
TRAIN_CHECKED = {
    "resnet18d": ["conv1.0.weight", "layer2.0.downsample.1.weight", "layer4.1.bn2.bias"],
    "seresnext26d_32x4d": ["conv1.0.weight", "layer1.0.se.fc1.weight", "layer1.0.downsample.1.weight"],
    "ecaresnet26t": ["conv1.0.weight", "layer2.1.se.conv.weight", "layer1.0.downsample.1.weight"],
    "resnetrs50": ["maxpool.0.weight", "layer1.0.se.fc2.bias", "layer1.2.conv3.weight"],
    "resnetaa50d": ["conv1.0.weight", "layer2.0.bn2.weight", "layer4.0.downsample.2.bias"],
    "resnetblur50_os16": ["conv1.weight", "layer2.0.bn2.bias", "layer4.0.bn2.weight"],
    # Small tensors only (a gradient file is checked in): the stem, one shortcut of the first stage, norms, biases.
    "resnetv2_50": ["stem.conv.weight", "stages.1.blocks.0.norm1.weight", "stages.0.blocks.0.downsample.conv.weight", "norm.weight"],
    "resnetv2_18": ["stem.conv.weight", "stages.1.blocks.0.downsample.conv.weight", "stages.3.blocks.1.norm2.weight", "norm.weight"],
    "resnetv2_101x1_bit": ["stem.conv.weight", "stages.2.blocks.22.norm2.weight", "stages.0.blocks.0.downsample.conv.weight", "norm.weight"],
    "resnetv2_50x1_bit": ["stem.conv.weight", "stages.0.blocks.0.norm1.weight", "stages.0.blocks.0.downsample.conv.weight",
                          "stages.3.blocks.2.norm3.bias", "norm.bias", "stages.3.blocks.2.norm2.weight"],
}
# A classifier's bias gets the gradient sum(grad-weights over the batch) in any network: checking it checks nothing.
assert not any(k.endswith("fc.bias") for keys in TRAIN_CHECKED.values() for k in keys), "choose gradients that depend on the network"


def main():
    os.makedirs("timm", exist_ok=True)
    x = deterministic_input()
    for name, args in MODELS.items():
        args = dict(args)
        model = timm.create_model(args.pop("name", name), pretrained=False, **args)
        write_reference(model, f"timm/{name}", x)
        if name in TRAIN_CHECKED:
            # In float64: a float32 backward pass through a deep network in training mode (batch-norm over a batch of
            # two) moves early gradients by ~6e-4 of their size in timm itself, which would swamp any real difference.
            model.double().train()
            out = model(x.double())
            out.detach().numpy().astype("<f8").tofile(f"timm/{name}.train64.bin")
            weights = torch.from_numpy(uniform("grad-weights", out.numel()).reshape(out.shape))
            (out * weights).sum().backward()
            params = dict(model.named_parameters())
            with open(f"timm/{name}.grads.txt", "w") as f:
                f.write("\n".join(TRAIN_CHECKED[name]) + "\n")
            torch.cat([params[k].grad.reshape(-1) for k in TRAIN_CHECKED[name]]).numpy().astype("<f8").tofile(f"timm/{name}.grads64.bin")
        print(name, sum(p.numel() for p in model.parameters()), "parameters")
    for name, rate in DROP_PATH.items():
        model = timm.create_model(name, pretrained=False, drop_path_rate=rate)
        rates = [block.drop_path.drop_prob if block.drop_path is not None else 0.0
                 for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
        with open(f"timm/{name}.droppath.txt", "w") as f:
            f.write(f"{rate!r}\n" + "".join(f"{r!r}\n" for r in rates))


def write_safetensors(path, tensors):
    """The safetensors format by hand (8-byte header length, JSON header, raw little-endian data), as published files are."""
    import json
    names = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for key, tensor in tensors.items():
        data = tensor.contiguous().numpy().tobytes()
        header[key] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def tiny_checkpoint():
    """A small timm ResNet with timm's own random weights and non-trivial batch-norms, as model.safetensors files:
    tiny_timm.safetensors (the whole state_dict) and tiny_timm_nocounters.safetensors (num_batches_tracked removed, as
    cleaned checkpoints are), with its eval outputs for tiny_timm.input.bin."""
    from timm.models.resnet import ResNet, BasicBlock
    torch.manual_seed(2026)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5, channels=(8, 16, 32, 64), stem_width=8, stem_type="deep_tiered",
                   replace_stem_pool=True, avg_down=True, aa_layer=BlurPool2d, block_args=dict(attn_layer="se"))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
    model.eval()
    state = model.state_dict()
    write_safetensors("timm/tiny_timm.safetensors", state)
    write_safetensors("timm/tiny_timm_nocounters.safetensors", {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})
    x = torch.randn(2, 3, 32, 32)
    x.numpy().astype("<f4").tofile("timm/tiny_timm.input.bin")
    with torch.no_grad():
        model(x).numpy().astype("<f4").tofile("timm/tiny_timm.eval.bin")
    print("tiny_timm", sum(p.numel() for p in model.parameters()), "parameters")


class PreActBlock(torch.nn.Module):
    """kuangliu's pytorch-cifar PreActBlock (models/preact_resnet.py), transcribed."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = torch.nn.BatchNorm2d(in_planes)
        self.conv1 = torch.nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(torch.nn.Module):
    """kuangliu's PreActResNet18 for CIFAR, transcribed, with the v2 paper's final batch-norm and ReLU before the pool
    (He et al. 2016, and timm's resnetv2 norm), which kuangliu's omits."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, 2, 1)
        self.layer2 = self._make_layer(128, 2, 2)
        self.layer3 = self._make_layer(256, 2, 2)
        self.layer4 = self._make_layer(512, 2, 2)
        self.bn = torch.nn.BatchNorm2d(512)
        self.linear = torch.nn.Linear(512, num_classes)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return torch.nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.relu(self.bn(out))
        out = torch.nn.functional.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


def timm_key(key):
    """kuangliu's key → the generated network's (timm's resnetv2 layout)."""
    import re
    key = re.sub(r"^conv1\.", "stem.conv.", key)
    key = re.sub(r"^layer(\d)\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", key)
    key = key.replace(".bn1.", ".norm1.").replace(".bn2.", ".norm2.").replace(".shortcut.0.", ".downsample.conv.")
    key = re.sub(r"^bn\.", "norm.", key)
    return re.sub(r"^linear\.", "head.fc.", key)


def preact_cifar():
    """kuangliu's PreActResNet18 with the deterministic weights of the generated network's keys (the classifier's
    [10, 512] being head.fc's [10, 512, 1, 1]): eval outputs for a [2, 3, 32, 32] input, timm/preact_resnet18_cifar.eval.bin."""
    model = PreActResNet18()
    state = {}
    for key, tensor in model.state_dict().items():
        ours = timm_key(key)
        shape = tuple(tensor.shape) + ((1, 1) if ours == "head.fc.weight" else ())
        v = value(ours, shape)
        state[key] = tensor if v is None else v.reshape(tensor.shape)
    model.load_state_dict(state)
    model.eval()
    shape = (2, 3, 32, 32)
    x = torch.from_numpy(uniform("input", int(np.prod(shape))).astype(np.float32).reshape(shape))
    with torch.no_grad():
        model(x).numpy().astype("<f4").tofile("timm/preact_resnet18_cifar.eval.bin")
    print("preact_resnet18_cifar", sum(p.numel() for p in model.parameters()), "parameters")


if __name__ == "__main__":
    main()
    tiny_checkpoint()
    preact_cifar()
