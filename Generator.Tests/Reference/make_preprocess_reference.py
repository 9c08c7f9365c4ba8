"""Writes the preprocessing reference the tests read: pictures, and what torchvision's and timm's own evaluation
transforms make of them before normalisation (the resized, centre-cropped RGB bytes, as PNG).

Run with Debian's python3-torchvision 0.14 (and PIL) and timm's source (../shared/reference, see its README):
    PYTHONPATH=/tmp/timm-src python3 Generator.Tests/Reference/make_preprocess_reference.py
The tests compare the sample's preprocessing of each picture with these, in normalised units.
"""
import json
import math
import os

import numpy as np
from PIL import Image
import timm.data
from torchvision.models import resnet as R
from torchvision.transforms import functional as F, InterpolationMode

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "preprocess")
os.makedirs(HERE, exist_ok=True)
rng = np.random.default_rng(39)


def picture(width, height, mode):
    """Smooth colour fields with edges and a little noise: what resampling filters disagree on, small as PNG."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 127 + 100 * np.cos((x + y) / 31.0)
    b = np.where((x // 24 + y // 24) % 2 == 0, 40.0, 215.0)
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 2, (height, width, 3))
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode == "L":
        return image.convert("L")
    if mode == "RGBA":
        image = image.convert("RGBA")  # opaque
    if mode in ("RGBA-transparent", "LA"):
        # Alpha from 0 (left, the colour under it still stored) to 255 (right) with a fully transparent band: PIL's
        # convert("RGB"), which torchvision's and timm's loaders apply, drops it and keeps the stored colour.
        alpha = np.clip(np.round(x * 255.0 / max(1, width - 1)), 0, 255).astype(np.uint8)
        alpha[(y.astype(int) // 16) % 5 == 0] = 0
        image = image.convert("L") if mode == "LA" else image
        image.putalpha(Image.fromarray(alpha, "L"))
    if mode == "P-transparent":
        image = image.quantize(64)  # a palette picture; index 0 marked transparent when saved
    if mode == "CMYK":
        image = image.convert("CMYK")  # saved as a CMYK JPEG (Adobe marker); convert("RGB") is PIL's 255 - C - K
    return image


PICTURES = [
    ("landscape_300x200.png", 300, 200, "RGB"),
    ("portrait_200x333.png", 200, 333, "RGB"),
    ("square_500.png", 500, 500, "RGB"),
    ("small_180x150.png", 180, 150, "RGB"),
    ("below_crop_100x90.png", 100, 90, "RGB"),
    ("grey_257x256.png", 257, 256, "L"),
    ("alpha_640x427.png", 640, 427, "RGBA"),
    ("thin_37x400.png", 37, 400, "RGB"),
    ("photo_480x360.jpg", 480, 360, "RGB"),
    ("transparent_320x240.png", 320, 240, "RGBA-transparent"),
    ("grey_alpha_150x220.png", 150, 220, "LA"),
    ("palette_260x200.png", 260, 200, "P-transparent"),
    ("cmyk_400x300.jpg", 400, 300, "CMYK"),
]

# (weights, transform to the cropped picture): torchvision's Weights.transforms() and timm's create_transform,
# each stopped before ToTensor so that the reference is bytes.
def torchvision_crop(weights):
    t = weights.transforms()
    mode = t.interpolation
    def crop(image):
        image = F.resize(image, t.resize_size, interpolation=mode)
        return F.center_crop(image, t.crop_size)
    return crop


def timm_crop(tag):
    cfg = timm.models.get_pretrained_cfg(tag).to_dict()
    transform = timm.data.create_transform(input_size=cfg["input_size"], interpolation=cfg["interpolation"], crop_pct=cfg["crop_pct"],
                                           crop_mode=cfg.get("crop_mode") or "center", mean=cfg["mean"], std=cfg["std"])
    steps = transform.transforms[:2]  # Resize, CenterCrop
    assert [type(s).__name__ for s in steps] == ["Resize", "CenterCrop"], transform
    def crop(image):
        for s in steps:
            image = s(image)
        return image
    return crop


WEIGHTS = {
    "resnet50-0676ba61.pth": torchvision_crop(R.ResNet50_Weights.IMAGENET1K_V1),
    "resnet50-11ad3fa6.pth": torchvision_crop(R.ResNet50_Weights.IMAGENET1K_V2),
    "resnet50.a1_in1k": timm_crop("resnet50.a1_in1k"),
    "resnetv2_50x1_bit.goog_in21k_ft_in1k": timm_crop("resnetv2_50x1_bit.goog_in21k_ft_in1k"),
}

cases = []
for name, width, height, mode in PICTURES:
    path = os.path.join(HERE, name)
    image = picture(width, height, mode)
    if name.endswith(".jpg"):
        image.save(path, quality=90)
    elif mode == "P-transparent":
        image.save(path, transparency=0)
    else:
        image.save(path)
    loaded = Image.open(path).convert("RGB")  # as torchvision's and timm's image folders load it
    for weights, crop in WEIGHTS.items():
        if weights.startswith("resnetv2") and name not in ("landscape_300x200.png", "grey_257x256.png"):
            continue  # 448×448 references are large: two pictures are enough for BiT's crop 1.0
        out = crop(loaded)
        out.info.pop("transparency", None)  # convert("RGB") keeps a palette's transparent index as a colour key: not in the bytes
        expected = f"{os.path.splitext(name)[0]}.{weights}.png"
        out.save(os.path.join(HERE, expected))
        cases.append({"picture": name, "weights": weights, "expected": expected, "size": list(out.size)})

with open(os.path.join(HERE, "cases.json"), "w") as f:
    json.dump(cases, f, indent=1)
print(len(cases), "cases")

# Every entry of the sample's catalogue as torchvision's Weights.transforms() and timm's pretrained_cfg give it.
catalogue = []
crops = {}
for enum in [R.ResNet18_Weights, R.ResNet34_Weights, R.ResNet50_Weights, R.ResNet101_Weights, R.ResNet152_Weights, R.ResNeXt50_32X4D_Weights,
             R.ResNeXt101_32X8D_Weights, R.ResNeXt101_64X4D_Weights, R.Wide_ResNet50_2_Weights, R.Wide_ResNet101_2_Weights]:
    for w in enum:
        t = w.transforms()
        crops[w.url.split("/")[-1]] = torchvision_crop(w)
        catalogue.append({"name": w.url.split("/")[-1], "size": t.crop_size[0], "resize": t.resize_size[0], "interpolation": t.interpolation.value,
                          "mean": t.mean, "std": t.std, "top1": w.meta["_metrics"]["ImageNet-1K"]["acc@1"]})
for tag in ["resnet18.a1_in1k", "resnet18.tv_in1k", "resnet50.a1_in1k", "resnet50.a1h_in1k", "resnet50.tv_in1k", "resnet50.tv2_in1k", "resnet50d.ra2_in1k",
            "seresnext50_32x4d.racm_in1k", "resnetv2_50x1_bit.goog_in21k_ft_in1k", "resnetv2_50x1_bit.goog_in21k"]:
    cfg = timm.models.get_pretrained_cfg(tag).to_dict()
    size = cfg["input_size"][1]
    crops[tag] = timm_crop(tag)
    catalogue.append({"name": tag, "size": size, "resize": math.floor(size / cfg["crop_pct"]), "interpolation": cfg["interpolation"],
                      "mean": list(cfg["mean"]), "std": list(cfg["std"]), "top1": None})
with open(os.path.join(HERE, "catalogue.json"), "w") as f:
    json.dump(catalogue, f, indent=1)
print(len(catalogue), "catalogue entries")

# Every catalogue entry on every PNG picture (PIL decodes those as the sample does; JPEG decoders differ): the SHA-256
# of the resized, cropped RGB bytes, so that all 27 entries are checked byte for byte without storing their pictures.
import hashlib
hashes = []
for name, width, height, mode in PICTURES:
    if name.endswith(".jpg"):
        continue
    loaded = Image.open(os.path.join(HERE, name)).convert("RGB")
    for weights, crop in crops.items():
        out = np.asarray(crop(loaded).convert("RGB"), np.uint8)
        hashes.append({"picture": name, "weights": weights, "size": list(out.shape[:2]), "sha256": hashlib.sha256(out.tobytes()).hexdigest()})
with open(os.path.join(HERE, "catalogue_cases.json"), "w") as f:
    json.dump(hashes, f, indent=1)
print(len(hashes), "catalogue cases")
