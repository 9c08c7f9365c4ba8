#!/usr/bin/env python3
"""The speed run: generated networks (through ResNetGen.DeviceCheck's speed-server) against PyTorch on the same device.

For each model, batch, mode (inference; training step: forward, cross-entropy, backward, SGD with momentum), layout
(NCHW, channels-last) and precision (fp32 with TF32 off, tf32, bf16), it times the generated network (and, for
inference, its folded form), PyTorch eager running the network's own twin (its PyTorchSource), torchvision's model where
torchvision has it, and torch.compile of the twin where asked. The cases of one setting run one after another in
rotating order within each round, and each case's ratio to PyTorch eager is taken within the round; medians over the
rounds are reported. Peak GPU memory per case: each case once more in a fresh process of its side, read from
nvidia-smi (the same measure for both sides; PyTorch's own max_memory_allocated beside it).

Writes speed.md (the table) and speed.jsonl (every measurement) under --out. Runs on the CPU too (--device cpu) as a
dry run; torch.compile is skipped where PyTorch has none.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import torch

PRECISIONS = ("fp32", "tf32", "bf16")
LAYOUTS = ("nchw", "channels-last")
MODES = ("infer", "train")


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="the command that starts the .NET speed server, as one string (split on spaces)")
    p.add_argument("--twins", required=True, help="folder of the twins (ResNetGen.DeviceCheck twins --out DIR)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="resnet50,resnet18,resnet50d")
    p.add_argument("--batches", default="256,64")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--iterations", type=int, default=5, help="timed runs per case per round; their median is the round's figure")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before a case's first round")
    p.add_argument("--compile", default="resnet50", help="models whose twin also runs under torch.compile (comma-separated; '' for none)")
    p.add_argument("--compile-settings", default="256/channels-last/bf16",
                   help="batch/layout/precision settings at which torch.compile runs, comma-separated, '*' for any part "
                        "(it compiles once per setting and mode, tens of seconds each)")
    p.add_argument("--memory", default="resnet50/256/channels-last/*",
                   help="model/batch/layout/precision settings whose peak memory is measured in fresh processes, '*' for any "
                        "part ('' for none; each is a process start per side)")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cuDNN's algorithm search off (default: on, on both sides)")
    p.add_argument("--out", required=True)
    p.add_argument("--one-case", help=argparse.SUPPRESS)  # a memory-pass child: run this PyTorch case and report
    return p.parse_args()


def load_twin(folder, name):
    spec = importlib.util.spec_from_file_location(f"twin_{name}", os.path.join(folder, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def torchvision_model(name):
    try:
        import torchvision
    except ImportError:
        return None
    return getattr(torchvision.models, name)() if name in ("resnet50", "resnet18") else None


class TorchSide:
    """PyTorch's cases: the twin in eager mode, torchvision's model, the twin under torch.compile."""

    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.built = {}
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark

    def build(self, side, case):
        key = (side, case["model"], case["mode"], case["layout"], case["precision"], case["batch"])
        if key in self.built:
            return self.built[key]
        torch.manual_seed(1)
        model = torchvision_model(case["model"]) if side == "torchvision" else load_twin(self.args.twins, case["model"])
        model = model.to(self.device)
        if case["layout"] == "channels-last":
            model = model.to(memory_format=torch.channels_last)
        model.train(case["mode"] == "train")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if case["mode"] == "train" else None
        if side == "compile":
            model = torch.compile(model)
        g = torch.Generator().manual_seed(3)
        x = torch.randn(case["batch"], 3, case["size"], case["size"], generator=g).to(self.device)
        if case["layout"] == "channels-last":
            x = x.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 1000, (case["batch"],), generator=g).to(self.device)
        self.built[key] = (model, optimizer, x, labels)
        return self.built[key]

    def release(self, side, case):
        for key in [k for k in self.built if k[0] == side and k[1] == case["model"] and k[5] == case["batch"]]:
            del self.built[key]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, side, case, warmup, iterations):
        model, optimizer, x, labels = self.build(side, case)
        tf32 = case["precision"] == "tf32"
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        bf16 = case["precision"] == "bf16"
        times = []
        for i in range(warmup + iterations):
            self.sync()
            start = time.perf_counter()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                if optimizer is None:
                    with torch.no_grad():
                        model(x)
                else:
                    optimizer.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.cross_entropy(model(x), labels)
            if optimizer is not None:
                loss.backward()
                optimizer.step()
            self.sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        return times


class DotnetSide:
    """The generated networks, through ResNetGen.DeviceCheck speed-server."""

    def __init__(self, command, device, cudnn_benchmark):
        argv = command.split() + ["--device", device] + ([] if cudnn_benchmark else ["--no-cudnn-benchmark"])
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self._read()
        if not ready.get("ready"):
            raise SystemExit(f"the .NET speed server did not start: {ready}")
        self.libtorch = ready["libtorch"]

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the .NET speed server ended (exit code {self.process.wait()})")
        return json.loads(line)

    def request(self, payload):
        self.process.stdin.write(json.dumps(payload) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def time(self, case, folded, warmup, iterations):
        return self.request({"case": dotnet_case(case, folded), "warmup": warmup, "iterations": iterations})["times_ms"]

    def release(self, case):
        for folded in (False, True):
            self.request({"case": dotnet_case(case, folded), "release": True})

    def close(self):
        try:
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        self.process.wait(timeout=60)


def dotnet_case(case, folded):
    return {"model": case["model"], "batch": case["batch"], "size": case["size"], "mode": case["mode"],
            "layout": case["layout"], "precision": case["precision"], "folded": folded}


def gpu_memory_of(pid):
    """The process's GPU memory in MiB as nvidia-smi reports it, or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def matches(patterns, parts):
    """Whether any comma-separated pattern a/b/c ('*' for any part) names these parts."""
    for pattern in filter(None, patterns.split(",")):
        fields = pattern.split("/")
        if len(fields) == len(parts) and all(f == "*" or f == str(p) for f, p in zip(fields, parts)):
            return True
    return False


def sides_of(args, case):
    sides = ["generated"]
    if case["mode"] == "infer":
        sides.append("generated-folded")
    sides.append("twin-eager")
    if torchvision_model(case["model"]) is not None:
        sides.append("torchvision")
    if (case["model"] in args.compile.split(",") and matches(args.compile_settings, [case["batch"], case["layout"], case["precision"]])
            and hasattr(torch, "compile")):
        sides.append("twin-compile")
    return sides


def one_case(args):
    """A memory-pass child: one PyTorch case, a few runs, then its memory while the process still holds it."""
    side, case = json.loads(args.one_case)
    torch_side = TorchSide(args)
    torch_side.time({"twin-eager": "twin", "twin-compile": "compile"}.get(side, side), case, 1, 2)
    allocated = torch.cuda.max_memory_allocated() / 2**20 if torch_side.device.type == "cuda" else None
    print(json.dumps({"pid": os.getpid(), "max_allocated_mib": allocated}), flush=True)
    sys.stdin.readline()  # held until the parent has read nvidia-smi


def main():
    args = parse()
    if args.one_case:
        return one_case(args)
    os.makedirs(args.out, exist_ok=True)
    cases = [dict(model=m, batch=int(b), size=args.size, mode=mode, layout=layout, precision=precision)
             for m in args.models.split(",") for b in args.batches.split(",") for mode in args.modes.split(",")
             for layout in args.layouts.split(",") for precision in args.precisions.split(",")]
    dotnet = DotnetSide(args.server, args.device, not args.no_cudnn_benchmark)
    torch_side = TorchSide(args)
    log = open(os.path.join(args.out, "speed.jsonl"), "w")
    print(f"speed run on {args.device}: {len(cases)} settings, {args.rounds} rounds; PyTorch {torch.__version__}; "
          f".NET side on libtorch {dotnet.libtorch}", flush=True)
    if not hasattr(torch, "compile"):
        print(f"torch.compile: not in PyTorch {torch.__version__}, skipped", flush=True)
    results = []
    started = time.time()
    # One model and batch at a time: its settings' cases interleaved over the rounds, then released.
    groups = {}
    for case in cases:
        groups.setdefault((case["model"], case["batch"]), []).append(case)
    for (model, batch), group in groups.items():
        medians = {}
        for r in range(args.rounds):
            for index, case in enumerate(group):
                sides = sides_of(args, case)
                shift = (r + index) % len(sides)
                round_times = {}
                for side in sides[shift:] + sides[:shift]:
                    warmup = args.warmup if r == 0 else 1
                    if side == "generated":
                        times = dotnet.time(case, False, warmup, args.iterations)
                    elif side == "generated-folded":
                        times = dotnet.time(case, True, warmup, args.iterations)
                    else:
                        times = torch_side.time({"twin-eager": "twin", "twin-compile": "compile"}.get(side, side), case, warmup, args.iterations)
                    round_times[side] = statistics.median(times)
                    log.write(json.dumps({"case": case, "side": side, "round": r, "times_ms": times}) + "\n")
                for side, ms in round_times.items():
                    entry = medians.setdefault((json.dumps(case, sort_keys=True), side), {"ms": [], "ratio": []})
                    entry["ms"].append(ms)
                    entry["ratio"].append(ms / round_times["twin-eager"])
            log.flush()
        for (key, side), entry in medians.items():
            case = json.loads(key)
            ms = statistics.median(entry["ms"])
            results.append(dict(case=case, side=side, ms=ms, images_per_s=case["batch"] * 1000 / ms,
                                speed_vs_eager=1 / statistics.median(entry["ratio"])))
        dotnet.release(group[0])
        for side in ("twin", "torchvision", "compile"):
            torch_side.release(side, group[0])
        print(f"  {model} batch {batch}: {len(group)} settings in {time.time() - started:.0f} s", flush=True)
        write_table(args, results, {}, dotnet.libtorch, quiet=True)  # what is measured so far survives a timeout
    dotnet.close()

    memory = measure_memory(args, cases) if args.device.startswith("cuda") and args.memory else {}
    write_table(args, results, memory, dotnet.libtorch)


def measure_memory(args, cases):
    memory = {}
    for case in cases:
        if not matches(args.memory, [case["model"], case["batch"], case["layout"], case["precision"]]):
            continue
        for side in sides_of(args, case):
            if side == "twin-compile":
                continue
            key = (json.dumps(case, sort_keys=True), side)
            if side.startswith("generated"):
                server = DotnetSide(args.server, args.device, not args.no_cudnn_benchmark)
                server.time(case, side == "generated-folded", 1, 2)
                memory[key] = (gpu_memory_of(server.process.pid), None)
                server.close()
            else:
                child = subprocess.Popen([sys.executable, __file__, "--server", args.server, "--twins", args.twins, "--device", args.device,
                                          "--out", args.out, "--one-case", json.dumps([side, case])] + (["--no-cudnn-benchmark"] if args.no_cudnn_benchmark else []),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                report = json.loads(child.stdout.readline())
                memory[key] = (gpu_memory_of(report["pid"]), report["max_allocated_mib"])
                child.stdin.write("\n")
                child.stdin.flush()
                child.wait(timeout=60)
    return memory


SIDES = ("generated", "generated-folded", "twin-eager", "torchvision", "twin-compile")


def write_table(args, results, memory, libtorch, quiet=False):
    results = sorted(results, key=lambda r: (r["case"]["model"], -r["case"]["batch"], MODES.index(r["case"]["mode"]),
                                             LAYOUTS.index(r["case"]["layout"]), PRECISIONS.index(r["case"]["precision"]), SIDES.index(r["side"])))
    lines = [f"Speed on {args.device} ({torch.cuda.get_device_name(0) if args.device.startswith('cuda') else 'CPU'}), "
             f"PyTorch {torch.__version__}, the generated networks on libtorch {libtorch}; input {args.size}×{args.size}, "
             f"cuDNN benchmark {'off' if args.no_cudnn_benchmark else 'on'} on both sides; medians of {args.rounds} interleaved rounds "
             f"of {args.iterations} runs each. 'vs eager': PyTorch eager's time (the twin) over this case's, within each round "
             "(> 1: faster than eager). Memory: the process's GPU memory after the case in a fresh process (nvidia-smi), "
             "PyTorch's max_memory_allocated in brackets.", "",
             "| model | batch | mode | layout | precision | side | ms | images/s | vs eager | GPU MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        c = r["case"]
        mem = memory.get((json.dumps(c, sort_keys=True), r["side"]))
        mem_text = "" if mem is None or mem[0] is None else f"{mem[0]:.0f}" + ("" if mem[1] is None else f" [{mem[1]:.0f}]")
        lines.append(f"| {c['model']} | {c['batch']} | {c['mode']} | {c['layout']} | {c['precision']} | {r['side']} | "
                     f"{r['ms']:.2f} | {r['images_per_s']:.0f} | {r['speed_vs_eager']:.3f} | {mem_text} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "speed.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "speed.json"), "w") as f:
        json.dump([dict(r, memory=memory.get((json.dumps(r["case"], sort_keys=True), r["side"]))) for r in results], f, indent=1)
    if not quiet:
        print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
