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
DROP_PATH, built with that drop_path_rate:
  <model>.droppath.txt      the rate, then each block's drop probability in block order (repr, exact)
"""
import os

import numpy as np
import timm
import torch
from timm.layers import BlurPool2d

from make_reference import deterministic_input, uniform, write_reference

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
}
# Stochastic depth: timm's per-block drop rates for these (model, drop_path_rate), one rate a line, in block order.
DROP_PATH = {"resnet50d": 0.2, "resnet18d": 0.1, "resnet10t": 0.05}
TRAIN_CHECKED = {
    "resnet18d": ["conv1.0.weight", "layer2.0.downsample.1.weight", "fc.bias"],
    "seresnext26d_32x4d": ["conv1.0.weight", "layer1.0.se.fc1.weight", "layer1.0.downsample.1.weight"],
    "ecaresnet26t": ["conv1.0.weight", "layer2.1.se.conv.weight", "layer1.0.downsample.1.weight"],
    "resnetrs50": ["maxpool.0.weight", "layer1.0.se.fc2.bias", "layer1.2.conv3.weight"],
    "resnetaa50d": ["conv1.0.weight", "layer2.0.bn2.weight", "layer4.0.downsample.2.bias"],
    "resnetblur50_os16": ["conv1.weight", "layer2.0.bn2.bias", "layer4.0.bn2.weight"],
}


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


if __name__ == "__main__":
    main()
    tiny_checkpoint()
