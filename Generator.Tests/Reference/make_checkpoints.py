#!/usr/bin/env python3
"""Writes small checkpoints with PyTorch itself, for the weight-loading tests.

Run with Debian's python3-torch and python3-torchvision, from this folder:
    /usr/bin/python3 make_checkpoints.py

The model is built from torchvision's own BasicBlock with the state_dict keys of
[ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 8, NumClasses = 3)], so the files are what PyTorch
writes for a torchvision-style ResNet, small enough to commit. It writes:
  tiny_resnet.pth             torch.save(state_dict) in the zip format (float32)
  tiny_resnet_fp16.pth        the same state_dict in float16
  tiny_resnet.safetensors     the float32 state_dict in the safetensors layout, written by this script
  tiny_resnet.eval.bin        eval-mode output of the float32 model for the deterministic input, float32 LE
  tiny_resnet_fp16.eval.bin   the same for the float16 weights (computed in float32)
"""
import json
import struct

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from make_reference import uniform


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, downsample=nn.Sequential(conv1x1(8, 16, 2), nn.BatchNorm2d(16))))
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def write_safetensors(path, state):
    header, blobs, offset = {"__metadata__": {"format": "pt", "writer": "make_checkpoints.py"}}, [], 0
    for key in sorted(state):
        data = state[key].contiguous().numpy().tobytes()
        header[key] = {"dtype": DTYPES[state[key].dtype], "shape": list(state[key].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    torch.manual_seed(7)
    model = Tiny()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buffer.fill_(123)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "bn" in name or "downsample.1" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    model.eval()
    x = torch.from_numpy(uniform("input", 2 * 3 * 8 * 8).astype(np.float32).reshape(2, 3, 8, 8))
    state = model.state_dict()
    torch.save(state, "tiny_resnet.pth")
    write_safetensors("tiny_resnet.safetensors", state)
    with torch.no_grad():
        model(x).numpy().astype("<f4").tofile("tiny_resnet.eval.bin")
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    torch.save(half, "tiny_resnet_fp16.pth")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    with torch.no_grad():
        model(x).numpy().astype("<f4").tofile("tiny_resnet_fp16.eval.bin")


if __name__ == "__main__":
    main()
