#!/usr/bin/env python3
"""Writes the torchvision reference data the numerics tests compare against.

Run with Debian's python3-torchvision (apt-get install python3-torchvision), from this folder:
    /usr/bin/python3 make_reference.py

Every weight is a deterministic function of its state_dict key (splitmix64 seeded by the key's FNV-1a hash),
so the C# tests rebuild the same weights bit for bit without shipping them. This script writes, per model:
  <model>.keys.txt          state_dict key, dtype and shape, in torchvision's order
  <model>.eval.bin          eval-mode logits for the deterministic input, float32 little-endian
and for resnet18 and resnet50 also one train-mode forward:
  <model>.train.bin         train-mode logits
  <model>.train.stats.bin   running_mean and running_var of bn1 and of the last batch-norm afterwards
"""
import numpy as np
import torch
import torchvision.models as tvm

from deterministic import INPUT_SHAPE, deterministic_input, fnv1a64, uniform, value  # noqa: F401 (make_timm_reference and make_checkpoints import them from here)

MODELS = {
    "resnet18": tvm.resnet18, "resnet34": tvm.resnet34, "resnet50": tvm.resnet50,
    "resnet101": tvm.resnet101, "resnet152": tvm.resnet152,
    "resnext50_32x4d": tvm.resnext50_32x4d, "resnext101_32x8d": tvm.resnext101_32x8d,
    "resnext101_64x4d": tvm.resnext101_64x4d,
    "wide_resnet50_2": tvm.wide_resnet50_2, "wide_resnet101_2": tvm.wide_resnet101_2,
    # A segmentation backbone: output stride 8 through torchvision's replace_stride_with_dilation.
    "resnet50_os8": lambda: tvm.resnet50(replace_stride_with_dilation=[False, True, True]),
}
TRAIN_CHECKED = {"resnet18": "layer4.1.bn2", "resnet50": "layer4.2.bn3"}


def write_reference(model, prefix, x):
    """Writes <prefix>.keys.txt, gives the model the deterministic weights and writes its eval outputs to <prefix>.eval.bin."""
    state = model.state_dict()
    with open(f"{prefix}.keys.txt", "w") as f:
        for key, tensor in state.items():
            dtype = str(tensor.dtype).replace("torch.", "")
            f.write(f"{key} {dtype} [{','.join(str(d) for d in tensor.shape)}]\n")
    new_state = {}
    for key, tensor in state.items():
        v = value(key, tuple(tensor.shape))
        new_state[key] = tensor if v is None else v
    model.load_state_dict(new_state)
    model.eval()
    with torch.no_grad():
        model(x).numpy().astype("<f4").tofile(f"{prefix}.eval.bin")


def main():
    x = deterministic_input()
    for name, make in MODELS.items():
        model = make()
        write_reference(model, name, x)
        if name in TRAIN_CHECKED:
            model.train()
            with torch.no_grad():
                model(x).numpy().astype("<f4").tofile(f"{name}.train.bin")
            after = model.state_dict()
            stats = [after[k + s] for k in ("bn1", TRAIN_CHECKED[name]) for s in (".running_mean", ".running_var")]
            torch.cat(stats).numpy().astype("<f4").tofile(f"{name}.train.stats.bin")
        print(name, sum(p.numel() for p in model.parameters()), "parameters")


if __name__ == "__main__":
    main()
