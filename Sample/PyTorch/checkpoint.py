"""The exported network, ready in PyTorch: load() builds model.py's network with the checkpoint's class count and loads
weights.safetensors into it (strictly). CLASSES and PREPROCESS are the checkpoint's class names and preprocessing
(the sample's 'fashion-mnist', or 'resize-crop:size=...,crop_pct=...,interpolation=...,mean=...,std=...'), and
METADATA all of the file's metadata (pass it to safetensors_io.save to write a checkpoint the sample reads).
Written by ResNetGen's sample (export --pytorch); needs torch and numpy only.
"""
import json
import os

import model
import safetensors_io

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "weights.safetensors")
METADATA = safetensors_io.metadata(WEIGHTS)
CLASSES = json.loads(METADATA["classes"])
PREPROCESS = METADATA.get("preprocess", "")
ARCHITECTURE = METADATA.get("architecture", "")


def load(device="cpu"):
    """The network with the checkpoint's weights, in eval mode, on device."""
    net = model.build(len(CLASSES)) if model.NUM_CLASSES > 0 else model.build()
    net.load_state_dict(safetensors_io.load(WEIGHTS), strict=True)
    return net.to(device).eval()
