"""The exported network, ready in PyTorch: load() builds model.py's network with the checkpoint's class count and loads
weights.safetensors into it (strictly). CLASSES and PREPROCESS are the checkpoint's class names and preprocessing
(ResNetGen's sample: 'fashion-mnist', or 'resize-crop:size=...,crop_pct=...,interpolation=...,mean=...,std=...').
Written by ResNetGen's sample (export --pytorch); needs torch and numpy only.
"""
import json
import os

import model
import safetensors_io

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "weights.safetensors")
_META = safetensors_io.metadata(WEIGHTS)
CLASSES = json.loads(_META["classes"])
PREPROCESS = _META.get("preprocess", "")
ARCHITECTURE = _META.get("architecture", "")


def load(device="cpu"):
    """The network with the checkpoint's weights, in eval mode, on device."""
    net = model.build(len(CLASSES)) if model.NUM_CLASSES > 0 else model.build()
    net.load_state_dict(safetensors_io.load(WEIGHTS), strict=True)
    return net.to(device).eval()
