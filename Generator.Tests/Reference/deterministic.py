"""The deterministic weights and input of the reference data and the twin checks (torch and numpy only).

Every weight is a function of its state_dict key: a splitmix64 stream seeded by the key's FNV-1a hash, scaled by the
tensor's kind (DeterministicWeights.cs rebuilds the same values bit for bit in C#).
"""
import numpy as np
import torch

MASK = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
INPUT_SHAPE = (2, 3, 64, 64)


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def uniform(key, count):
    """count values in [-1, 1), exactly representable in float32."""
    with np.errstate(over="ignore"):
        state = np.uint64(fnv1a64(key)) + np.arange(1, count + 1, dtype=np.uint64) * GOLDEN
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24) * 2.0 - 1.0


def value(key, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(key, n)
    if key.endswith("num_batches_tracked"):
        return None
    if key.endswith("running_mean"):
        v = 0.1 * u
    elif key.endswith("running_var"):
        v = 1.0 + 0.25 * (u + 1.0)
    elif key.endswith("bias"):
        v = 0.1 * u
    elif len(shape) == 4:
        v = u * np.sqrt(6.0 / (shape[1] * shape[2] * shape[3]))
    elif len(shape) == 3:
        v = u * np.sqrt(6.0 / (shape[1] * shape[2]))
    elif len(shape) == 2:
        v = u * np.sqrt(1.0 / shape[1])
    else:
        v = 1.0 + 0.1 * u
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def deterministic_input():
    return torch.from_numpy(uniform("input", int(np.prod(INPUT_SHAPE))).astype(np.float32).reshape(INPUT_SHAPE))


def state(net):
    """net's state_dict with every float32 tensor replaced by its deterministic values (counters kept), for load_state_dict."""
    return {k: (value(k, tuple(t.shape)) if t.dtype == torch.float32 else t) for k, t in net.state_dict().items()}
