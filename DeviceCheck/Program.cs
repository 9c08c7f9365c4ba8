using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using ResNetGen;
using ResNetGen.DeviceCheck;
using TorchSharp;

// Generated networks on a device (CUDA, or the CPU for a dry run): the correctness check against the CPU in float64, the
// .NET side of the speed run against PyTorch (gpu_speed.py drives it), and the twins' sources that run speaks for PyTorch.
const string Help = """
    Usage: ResNetGen.DeviceCheck COMMAND [options]   (dotnet run -c Release --project DeviceCheck -- COMMAND ...)

    Commands:
      check          every model's eval and train-mode forward and backward on the device against the CPU in float64:
                     float64 within 1e-10, float32 with TF32 off by the suite's rules; then the folded network,
                     channels-last, ForwardFeatures and bfloat16 on the device, and drop path's statistics there
      speed          time the generated networks alone (medians; gpu_speed.py times them against PyTorch)
      speed-server   the .NET side of gpu_speed.py: one JSON request per line on standard input
      info           which libtorch was loaded (path, version, CPU or CUDA build), the CUDA devices, cuDNN
      probes         every ResNet convolution probe (doctor's) computed on the device against the float64 CPU
                     reference, forward and backward, each in a child process; --dtype all|float32|bfloat16|float16
      twins          write each model's PyTorch twin (its PyTorchSource) to --out DIR/<model>.py
      models         list the models

    Options:
      --device D     cuda (default where CUDA is available), cuda:N, or cpu (a dry run: the device is the CPU)
      --models LIST  models or families (torchvision, timm, preact/bit, drop path), comma-separated (default: all)
      --size N       check: input size (default 64); speed: 224
      --batch N      check: batch (default 2); speed: comma-separated batches (default 256,64)
      --report FILE  check, probes: also write the table (markdown) there
      --dtype D      probes: all (default), float32, bfloat16 or float16
      --out DIR      twins: where to write them
      --rounds N     speed: timed runs per case after 2 warm-ups (default 10)
      --no-cudnn-benchmark   speed: leave cuDNN's algorithm search off (PyTorch's default); on by default, on both sides
      --help         this text

    A missing libtorch is one line naming the fix; build with -p:TorchBackend=external to run on a machine's own libtorch
    (LD_LIBRARY_PATH naming a PyTorch install's torch/lib).
    """;

if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
{
    Console.WriteLine(Help);
    return args.Length == 0 ? 2 : 0;
}
var command = args[0];
var options = new Dictionary<string, string?>();
for (var i = 1; i < args.Length; i++)
{
    var name = args[i];
    if (name is "--help" or "-h")
    {
        Console.WriteLine(Help);
        return 0;
    }
    if (name == "--no-cudnn-benchmark")
    {
        options[name] = null;
        continue;
    }
    if (!name.StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
    {
        Console.Error.WriteLine($"error: '{name}' {(name.StartsWith("--", StringComparison.Ordinal) ? "needs a value" : "is not an option")} (see --help)");
        return 2;
    }
    options[name] = args[++i];
}
var known = new[] { "--dtype", "--probe", "--device", "--models", "--size", "--batch", "--report", "--out", "--rounds", "--no-cudnn-benchmark" };
if (options.Keys.FirstOrDefault(k => !known.Contains(k)) is { } unknown)
{
    Console.Error.WriteLine($"error: unknown option '{unknown}' (see --help)");
    return 2;
}
int Number(string option, int fallback) =>
    options.TryGetValue(option, out var text) && text is not null
        ? int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"{option} takes a positive whole number, not '{text}'")
        : fallback;

try
{
    switch (command)
    {
        case "models":
            foreach (var m in Models.All) Console.WriteLine($"{m.Name}\t{m.Family}");
            return 0;
        case "twins":
        {
            var folder = options.GetValueOrDefault("--out") ?? throw new ArgumentException("twins needs --out DIR");
            Directory.CreateDirectory(folder);
            var models = Models.Select(options.GetValueOrDefault("--models"));
            foreach (var m in models) File.WriteAllText(Path.Combine(folder, m.Name + ".py"), m.PyTorchSource);
            Console.WriteLine($"wrote {models.Count} twins to {folder}");
            return 0;
        }
    }

    LibTorchLog.QuietUnlessSet();
    OneDnn.EnsureChecked();
    var device = Device(options.GetValueOrDefault("--device"));
    switch (command)
    {
        case "info":
            Console.WriteLine("libtorch  " + LibTorch.Describe());
            var gpus = LibTorch.CudaDevices();
            Console.WriteLine("CUDA      " + (gpus.Count == 0 ? "no device" : string.Join("; ", gpus)));
            if (gpus.Count > 0) Console.WriteLine("cuDNN     " + (LibTorch.CuDnnVersion() ?? "version not readable"));
            Console.WriteLine("oneDNN    " + (OneDnn.Version ?? "version not readable"));
            return 0;
        case "probes" when options.GetValueOrDefault("--probe") is { } one:
            KernelProbes.RunHere(KernelProbes.Find(one), Console.Out, device);
            return 0;
        case "probes":
        {
            var dtype = options.GetValueOrDefault("--dtype") ?? "all";
            var dtypes = dtype switch
            {
                "all" => new[] { torch.ScalarType.Float32, torch.ScalarType.BFloat16, torch.ScalarType.Float16 },
                "float32" => new[] { torch.ScalarType.Float32 },
                "bfloat16" => new[] { torch.ScalarType.BFloat16 },
                "float16" => new[] { torch.ScalarType.Float16 },
                _ => throw new ArgumentException($"--dtype {dtype}: use all, float32, bfloat16 or float16"),
            };
            var probes = KernelProbes.All.Where(p => dtypes.Contains(p.Dtype)).ToList();
            Console.WriteLine($"{probes.Count} probes on {device}, each against the float64 CPU reference (TF32 off), each in a child process");
            var outcomes = KernelProbes.RunIsolated(probes, n => KernelProbes.Self("probes", "--probe", n, "--device", device.ToString()), TimeSpan.FromMinutes(2));
            var lines = new List<string> { "| probe | direction | verdict | error / tolerance |", "| --- | --- | --- | --- |" };
            foreach (var o in outcomes)
                lines.Add($"| {o.Probe} | {o.Direction} | {o.Verdict}{(o.Detail.Length > 0 && !o.Passed ? " " + o.Detail : "")} | {(o.Error / KernelProbes.Find(o.Probe).Tolerance).ToString("0.000", CultureInfo.InvariantCulture)} |");
            var failed = outcomes.Count(o => !o.Passed);
            lines.Add("");
            lines.Add(failed == 0 ? $"PASS: all {outcomes.Count} probe directions correct on {device}." : $"FAIL: {failed} of {outcomes.Count} probe directions wrong or crashed on {device}.");
            Console.WriteLine(string.Join(Environment.NewLine, lines));
            if (options.GetValueOrDefault("--report") is { } report) File.WriteAllLines(report, lines);
            return failed == 0 ? 0 : 1;
        }
        case "check":
            return new Check(device, Models.Select(options.GetValueOrDefault("--models")), Number("--size", 64), Number("--batch", 2), Console.Out)
                .Run(options.GetValueOrDefault("--report"));
        case "speed-server":
        {
            using var speed = new Speed(device, !options.ContainsKey("--no-cudnn-benchmark"));
            return speed.Serve(Console.In, Console.Out);
        }
        case "speed":
        {
            using var speed = new Speed(device, !options.ContainsKey("--no-cudnn-benchmark"));
            var size = Number("--size", 224);
            var rounds = Number("--rounds", 10);
            var batches = (options.GetValueOrDefault("--batch") ?? "256,64").Split(',').Select(b =>
                int.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"--batch: '{b}' is not a positive whole number")).ToList();
            var models = Models.Select(options.GetValueOrDefault("--models") ?? "resnet50,resnet18,resnet50d");
            Console.WriteLine($"speed on {device}: libtorch {LibTorch.Describe()}");
            Console.WriteLine("| case | median ms | images/s |");
            Console.WriteLine("| --- | --- | --- |");
            foreach (var m in models)
            foreach (var batch in batches)
            foreach (var mode in new[] { "infer", "train" })
            foreach (var layout in new[] { "nchw", "channels-last" })
            foreach (var precision in new[] { "fp32", "tf32", "bf16" })
            {
                var c = new SpeedCase(m.Name, batch, size, mode, layout, precision);
                var times = speed.Time(c, 2, rounds).OrderBy(t => t).ToArray();
                var median = times[times.Length / 2];
                Console.WriteLine($"| {c.Key} | {median.ToString("0.00", CultureInfo.InvariantCulture)} | {(batch * 1000 / median).ToString("0", CultureInfo.InvariantCulture)} |");
            }
            return 0;
        }
        default:
            Console.Error.WriteLine($"error: unknown command '{command}' (see --help)");
            return 2;
    }
}
catch (LibTorchNotFoundException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return 1;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return 2;
}

static torch.Device Device(string? name)
{
    if (name is null) return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
    if (name == "cpu") return torch.CPU;
    if (name == "cuda" || name.StartsWith("cuda:", StringComparison.Ordinal))
    {
        if (!torch.cuda.is_available())
            throw new ArgumentException($"--device {name}: CUDA is not available to this libtorch ({LibTorch.Describe()}). Run on a CUDA build (LD_LIBRARY_PATH naming a CUDA PyTorch's torch/lib with -p:TorchBackend=external, or TorchSharp-cuda-linux), or use --device cpu.");
        return new torch.Device(name);
    }
    throw new ArgumentException($"--device {name}: use cuda, cuda:N or cpu");
}
