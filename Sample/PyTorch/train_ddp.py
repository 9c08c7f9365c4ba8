"""Fine-tunes the exported network on a picture folder with PyTorch's DistributedDataParallel, as the sample's finetune does.

    torchrun --standalone --nproc_per_node=N train_ddp.py --images DIR --epochs N --output OUT
    (Debian 12's torchrun, PyTorch 1.13 on Python 3.11: add --redirects 1 --tee 1 before the script; its default fails)
    python3 train_ddp.py --images DIR ...   (one process, no torchrun)

DIR holds train/<class>/ and val/<class>/ pictures (PNG; JPEG where Pillow is installed), as finetune reads them. The
network starts from weights.safetensors beside this script (its classifier too when the folder's classes are the
checkpoint's, else a new one). Training is finetune's: the classifier and the last --trainable-stages stages train (the
other batch-norms keep their statistics), random crops and flips of pictures resized as PREPROCESS says, SGD with
Nesterov momentum 0.9 and weight decay, a warm-up of 1/50 of the steps then cosine decay, the global batch split over the
processes (NCCL on CUDA, one GPU per process; gloo on the CPU; --device chooses). After each epoch every process takes
rank 0's batch-norm statistics (each process updated its own from its share of the last batch), so all hold the same
network, bit for bit. Rank 0 prints progress and validation, and writes OUT/finetune-ddp.safetensors with the C#
network's keys and the sample's metadata: predict, export and finetune --from read it as it is. --save-logits writes
each validation picture's logits (OUT/val-logits.safetensors, the files in its metadata) to compare with the C# network;
--save-ranks writes every process's own state_dict (OUT/rank-N.safetensors) to check they agree.
Needs torch and numpy only (written by ResNetGen's sample, export --pytorch).
"""
import argparse
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402  (beside this script)

EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_png(path):
    """An 8-bit PNG (grayscale, RGB, palette, with or without alpha; not interlaced) as uint8 [H, W, 3]: the alpha dropped
    and the stored colour kept, as PIL's convert("RGB") and the sample do."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, palette = 8, [], None
    width = height = depth = color = interlace = None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if depth not in (8, 16) or interlace:
        raise ValueError(f"{path}: a {depth}-bit{' interlaced' if interlace else ''} PNG; save it as 8-bit, not interlaced")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    bpp = channels * depth // 8
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int32)
    previous = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) & 255
        else:
            row = np.zeros(stride, np.int32)
            for x in range(stride):  # Sub, Average and Paeth depend on the bytes just decoded
                left = row[x - bpp] if x >= bpp else 0
                up, corner = previous[x], (previous[x - bpp] if x >= bpp else 0)
                if kind == 1:
                    predictor = left
                elif kind == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[x] = (line[x] + predictor) & 255
        out[y] = row
        previous = row
    pixels = out.astype(np.uint8).reshape(height, width, channels * depth // 8)
    if depth == 16:
        pixels = pixels[:, :, ::2]  # the high byte of each sample
    if color == 3:
        return palette[pixels[:, :, 0]]
    rgb = pixels[:, :, :3] if color in (2, 6) else np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(rgb)


def read_picture(path):
    if path.lower().endswith(".png"):
        return read_png(path)
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit(f"{path}: JPEG needs Pillow (apt-get install python3-pil); PNG pictures need nothing else")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


class Preprocessing:
    """finetune's: shorter side resized to floor(size / crop_pct), a size x size crop (random and flipped for training,
    central otherwise), normalised. The sample resizes bilinear and bicubic exactly as PIL does (torchvision's Resize on
    a PIL picture): with Pillow installed so does this script, byte for byte; without it, pictures already at that size
    are used as they are and others are resized with torch's interpolation (close, not identical)."""

    def __init__(self, text):
        if not text.startswith("resize-crop:"):
            raise SystemExit(f"train_ddp.py fine-tunes finetune's checkpoints (preprocessing resize-crop:...), not '{text}'")
        fields = dict(f.split("=", 1) for f in text[len("resize-crop:"):].split(","))
        self.size = int(fields["size"])
        self.resize_to = int(math.floor(self.size / float(fields["crop_pct"]) + 1e-9))
        self.interpolation = fields["interpolation"]
        self.mean = torch.tensor([float(v) for v in fields["mean"].split("/")]).view(3, 1, 1)
        self.std = torch.tensor([float(v) for v in fields["std"].split("/")]).view(3, 1, 1)
        self.resized = 0

    def load(self, path):
        pixels = read_picture(path)  # [H, W, 3] uint8
        h, w = pixels.shape[:2]
        if min(h, w) != self.resize_to:
            # torchvision's Resize(size): the shorter side to resize_to, the longer one truncated in proportion.
            longer = int(self.resize_to * max(h, w) / min(h, w))
            new_h, new_w = (longer, self.resize_to) if w <= h else (self.resize_to, longer)
            self.resized += 1
            try:
                from PIL import Image
                resample = Image.BILINEAR if self.interpolation == "bilinear" else Image.BICUBIC
                pixels = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), resample), np.uint8)
            except ImportError:
                mode = "bilinear" if self.interpolation == "bilinear" else "bicubic"
                resized = F.interpolate(torch.from_numpy(pixels).permute(2, 0, 1).float()[None], size=(new_h, new_w), mode=mode, align_corners=False)
                return resized[0].round().clamp(0, 255)
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()  # [3, H, W], 0..255

    def crop(self, pixels, generator=None):
        h, w = pixels.shape[1:]
        if generator is None:
            x, y, flip = int(round((w - self.size) / 2.0)), int(round((h - self.size) / 2.0)), False  # torchvision's centre crop
        else:
            r = torch.rand(3, generator=generator, dtype=torch.float64)
            x, y, flip = int(r[0] * (w - self.size + 1)), int(r[1] * (h - self.size + 1)), bool(r[2] < 0.5)
        out = pixels[:, y:y + self.size, x:x + self.size]
        if flip:
            out = out.flip(2)
        return (out / 255.0 - self.mean) / self.std


def pictures(root, classes):
    items = []
    for label, name in enumerate(classes):
        for folder, _, files in sorted(os.walk(os.path.join(root, name))):
            items += [(os.path.join(folder, f), label) for f in sorted(files) if f.lower().endswith(EXTENSIONS)]
    return items


def stage_of(path, stages):
    """0 the stem, N for layerN / stages.N-1, past the last stage for the classifier and a pre-activation net's final norm."""
    if path.startswith("layer"):
        return int(path.split(".")[0][5:])
    if path.startswith("stages."):
        return 1 + int(path.split(".")[1])
    return stages + 1 if path.split(".")[0] in ("fc", "head", "norm") else 0


class FullFloat32:
    """Validation in float32 throughout, as the C# network computes it: without cuDNN's and cuBLAS's TF32 (which rounds
    inputs to 10 bits; PyTorch's default for convolutions on Ampere and later GPUs), so that the accuracy this script
    reports is the one the checkpoint scores in C#."""

    def __enter__(self):
        self.saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *_):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="picture folder: DIR/train/<class>/ and DIR/val/<class>/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", default="resnetgen-ddp", help="folder for finetune-ddp.safetensors")
    parser.add_argument("--batch-size", type=int, default=32, help="pictures per step over all processes")
    parser.add_argument("--lr", type=float, default=0.01, help="peak learning rate of the cosine schedule")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--trainable-stages", type=int, default=1, help="0 (the classifier only) to the stage count, +1 for everything")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save-logits", action="store_true",
                        help="also write OUT/val-logits.safetensors: the last epoch's float32 logits of every validation picture (key logits, [N, classes]; metadata files: their paths in order)")
    parser.add_argument("--save-ranks", action="store_true", help="also write every process's state_dict after training, OUT/rank-N.safetensors (they should be equal bit for bit)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to train: cuda (NCCL between processes, one GPU each), cpu (gloo), or auto: cuda where there is one")
    args = parser.parse_args()
    if args.epochs < 1:
        raise SystemExit(f"--epochs {args.epochs}: train at least one epoch")
    import checkpoint  # beside this script: model.py and weights.safetensors, read when training, not on import

    distributed = "RANK" in os.environ
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: this PyTorch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise SystemExit(f"{int(os.environ.get('LOCAL_WORLD_SIZE', 1))} processes on this machine but {torch.cuda.device_count()} GPU(s): NCCL needs "
                             f"one GPU per process. Start at most --nproc_per_node={torch.cuda.device_count()}, or train on the CPU with --device cpu")
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    say = print if rank == 0 else (lambda *a, **k: None)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} does not split over {world} processes")

    train_root, val_root = os.path.join(args.images, "train"), os.path.join(args.images, "val")
    if not os.path.isdir(train_root) or not os.path.isdir(val_root):
        raise SystemExit(f"--images {args.images}: needs train/<class>/ and val/<class>/ folders (the sample's fashion-folder writes one)")
    classes = sorted(d for d in os.listdir(train_root) if os.path.isdir(os.path.join(train_root, d)))
    prep = Preprocessing(checkpoint.PREPROCESS)
    train_items, val_items = pictures(train_root, classes), pictures(val_root, classes)
    train_x = torch.stack([prep.load(p) for p, _ in train_items])
    train_y = torch.tensor([l for _, l in train_items])
    val_x = torch.stack([prep.crop(prep.load(p)) for p, _ in val_items])
    val_y = torch.tensor([l for _, l in val_items])
    if prep.resized:
        say(f"note: {prep.resized} pictures were resized by torch, not by the sample's SkiaSharp: predictions may differ slightly")

    torch.manual_seed(args.seed)
    net = checkpoint.model.build(len(classes))
    state = safetensors_io.load(checkpoint.WEIGHTS)
    same_classes = classes == checkpoint.CLASSES
    head = [k for k in state if k.split(".")[0] in ("fc", "head")]
    if not same_classes:
        for k in head:
            del state[k]
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(k not in head for k in missing):
        raise SystemExit(f"weights.safetensors does not fit model.py: missing {missing[:3]}, unexpected {unexpected[:3]}")
    stages = max(stage_of(k, 0) for k in net.state_dict() if k.startswith(("layer", "stages.")))
    frozen_norms = []
    for path, module in net.m.items():
        s = stage_of(path, stages)
        trainable = s > stages or (1 <= s and s > stages - args.trainable_stages) or args.trainable_stages == stages + 1
        for p in module.parameters():
            p.requires_grad_(trainable)
        if not trainable and isinstance(module, torch.nn.BatchNorm2d):
            frozen_norms.append(module)
    net.to(device)
    model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if cuda else None) if distributed else net
    trainable = [p for p in net.parameters() if p.requires_grad]
    say(f"{checkpoint.ARCHITECTURE} from weights.safetensors ({'every tensor' if same_classes else 'a new classifier for ' + str(len(classes)) + ' classes'}); "
        f"training {sum(p.numel() for p in trainable):,} of {sum(p.numel() for p in net.parameters()):,} parameters on {world} process(es) "
        f"({'NCCL, one GPU each' if cuda and distributed else 'CUDA' if cuda else 'gloo, CPU' if distributed else 'CPU'}; PyTorch {torch.__version__}), "
        f"{len(train_items)} training and {len(val_items)} validation pictures")
    optimizer = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_items) / args.batch_size)
    total, warmup = steps_per_epoch * args.epochs, max(1, steps_per_epoch * args.epochs // 50)
    generator = torch.Generator().manual_seed(args.seed * 1000 + rank)
    order_generator = torch.Generator().manual_seed(args.seed)  # the same order in every process
    step, accuracy = 0, 0.0
    os.makedirs(args.output, exist_ok=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for norm in frozen_norms:
            norm.eval()
        order = torch.randperm(len(train_items), generator=order_generator)
        started, seen, loss_sum = time.time(), 0, torch.zeros(2)
        for b in range(steps_per_epoch):
            batch = order[b * args.batch_size:(b + 1) * args.batch_size]
            mine = batch[rank::world]  # this process's share of the global batch
            lr = args.lr * (step + 1) / warmup if step < warmup else args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = torch.stack([prep.crop(train_x[i], generator) for i in mine.tolist()]).to(device)
            y = train_y[mine].to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += torch.tensor([loss.item() * len(mine), len(mine)])
            seen += len(batch)
            step += 1
        if distributed:
            loss_sum = loss_sum.to(device)  # NCCL reduces CUDA tensors only
            dist.all_reduce(loss_sum)
            loss_sum = loss_sum.cpu()
        seconds = time.time() - started
        if distributed:
            # DistributedDataParallel hands out rank 0's buffers before each forward, then every process's forward updates
            # the batch-norm statistics from its own share: after the last step they differ. Take rank 0's, as the next
            # forward would, so that every process validates and holds the network rank 0 saves.
            with torch.no_grad():
                for buffer in net.buffers():
                    dist.broadcast(buffer, 0)
        net.eval()
        with torch.no_grad(), FullFloat32():
            logits = torch.cat([net(val_x[i:i + 64].to(device)).float().cpu() for i in range(0, len(val_items), 64)])
            predicted = logits.argmax(1)
        correct = int((predicted == val_y).sum())
        accuracy = correct / max(1, len(val_items))
        say(f"epoch {epoch}/{args.epochs}: train loss {float(loss_sum[0] / loss_sum[1]):.4f}, val accuracy {accuracy:.4f} "
            f"({correct}/{len(val_items)}), {seen / seconds:.1f} pictures/s over {world} process(es)", flush=True)
        if rank == 0:
            metadata = {"architecture": checkpoint.ARCHITECTURE, "classes": json.dumps(classes), "preprocess": checkpoint.PREPROCESS,
                        "epoch": str(epoch), "val_accuracy": f"{accuracy:.4f}"}
            safetensors_io.save(os.path.join(args.output, "finetune-ddp.safetensors"), net.state_dict(), metadata)
    say(f"wrote {os.path.join(args.output, 'finetune-ddp.safetensors')}")
    if args.save_logits and rank == 0:
        path = os.path.join(args.output, "val-logits.safetensors")
        safetensors_io.save(path, {"logits": logits.contiguous()}, {"files": json.dumps([p for p, _ in val_items]), "classes": json.dumps(classes)})
        say(f"wrote {path}: the logits of {len(val_items)} validation pictures")
    if args.save_ranks:
        path = os.path.join(args.output, f"rank-{rank}.safetensors")
        safetensors_io.save(path, {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, {"rank": str(rank), "world": str(world)})
        if distributed:
            dist.barrier()  # every file written before rank 0 says so
        say(f"wrote {world} state_dicts, {os.path.join(args.output, 'rank-N.safetensors')}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
