using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.PyTorch;
using Xunit;
using Xunit.Abstractions;

namespace ResNetGen.Generator.Tests.DeviceCheck;

/// <summary>
/// The GPU run's programs, end to end with the CPU as the device (what CI can run): the device check over a few models of
/// each kind, and the speed run, the generated networks through the .NET server interleaved with PyTorch on the twins.
/// </summary>
public sealed class DeviceCheckTests : IDisposable
{
    private readonly ITestOutputHelper _log;
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("resnetgen-devicecheck-");

    public DeviceCheckTests(ITestOutputHelper log) => _log = log;

    public void Dispose()
    {
        try { _work.Delete(recursive: true); } catch (IOException) { }
    }

    private static string Program()
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name; // …/bin/<configuration>/net10.0/
        var dll = Path.Combine(Repository.Root(), "DeviceCheck", "bin", configuration, "net10.0", "ResNetGen.DeviceCheck.dll");
        Assert.True(File.Exists(dll), "no " + dll + " (the test project builds it first)");
        return dll;
    }

    private (int Code, string Output) Run(params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { WorkingDirectory = _work.FullName };
        start.ArgumentList.Add(Program());
        foreach (var a in arguments) start.ArgumentList.Add(a);
        var exit = ChildProcess.Run(start, TimeSpan.FromMinutes(10));
        _log.WriteLine(exit.Output + exit.Error);
        Assert.False(exit.TimedOut, "the device check ran past 10 minutes");
        return (exit.ExitCode, exit.Output + exit.Error);
    }

    [Fact]
    public void The_check_runs_every_comparison_with_the_cpu_as_the_device()
    {
        var report = Path.Combine(_work.FullName, "check.md");
        var (code, output) = Run("check", "--device", "cpu", "--models", "resnet18,seresnext26d_32x4d,ecaresnet26t,resnetv2_50x1_bit,resnet18d_drop_path", "--report", report);
        Assert.True(code == 0, output);
        var table = File.ReadAllText(report);
        Assert.Contains("PASS: all 5 models agree on cpu with the CPU.", table);
        Assert.Contains("| model | eval f64 | train f64 | eval f32 | train f32 | grads f32 | folded | channels-last | features | bf16 | seconds |", table);
        foreach (var model in new[] { "resnet18", "seresnext26d_32x4d", "ecaresnet26t", "resnetv2_50x1_bit", "resnet18d_drop_path" })
        {
            var row = table.Split('\n').Single(l => l.StartsWith($"| {model} |", StringComparison.Ordinal));
            var cells = row.Split('|', StringSplitOptions.TrimEntries).Skip(2).Take(9).ToList();
            // Every comparison ran and gave a number (drop path's train mode draws its own masks: eval only).
            foreach (var cell in cells.Where(c => c != "—")) Assert.Matches(@"^\d+\.\d\d$", cell);
            Assert.Equal(model == "resnet18d_drop_path" ? 3 : 0, cells.Count(c => c == "—"));
        }
        // Drop path's masks are random draws: the check itself holds the dropped fraction to 4σ of the rate.
        var dropPath = table.Split('\n').Single(l => l.StartsWith("| drop path 0.1 statistics |", StringComparison.Ordinal));
        Assert.Matches(@"\| dropped (9|10)\.\d\d % of 400,000 \(4σ 0\.19 %\) \| scale error [^✗|]+ \|", dropPath);
        Assert.Contains("libtorch 2.10.0 CPU build", output);
    }

    [Fact]
    public void An_unknown_model_or_device_is_one_line_naming_the_choices()
    {
        var (code, output) = Run("check", "--device", "cpu", "--models", "resnet5");
        Assert.Equal(2, code);
        Assert.Contains("error: no model 'resnet5'. The models: resnet18, resnet34", output);
        (code, output) = Run("check", "--device", "tpu");
        Assert.Equal(2, code);
        Assert.Contains("error: --device tpu: use cuda, cuda:N or cpu", output);
        if (!TorchSharp.torch.cuda.is_available())
        {
            (code, output) = Run("check", "--device", "cuda");
            Assert.Equal(2, code);
            Assert.Contains("error: --device cuda: CUDA is not available to this libtorch (2.10.0 CPU build", output);
        }
    }

    [Fact]
    public void The_speed_run_interleaves_the_generated_network_with_pytorch_on_its_twin()
    {
        var twins = Path.Combine(_work.FullName, "twins");
        Assert.Equal(0, Run("twins", "--out", twins, "--models", "resnet18").Code);
        var outDir = Path.Combine(_work.FullName, "speed");
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        var output = Twins.RunPython(_work.FullName, Path.Combine(Repository.Root(), "DeviceCheck", "gpu_speed.py"),
            "--server", $"{dotnet} {Program()} speed-server", "--twins", twins, "--device", "cpu", "--models", "resnet18", "--batches", "2",
            "--size", "32", "--rounds", "2", "--iterations", "1", "--warmup", "1", "--precisions", "fp32,bf16", "--out", outDir);
        _log.WriteLine(output);
        var table = File.ReadAllLines(Path.Combine(outDir, "speed.md"));
        var rows = table.Where(l => l.StartsWith("| resnet18 |", StringComparison.Ordinal)).ToList();
        foreach (var mode in new[] { "infer", "train" })
        foreach (var layout in new[] { "nchw", "channels-last" })
        foreach (var precision in new[] { "fp32", "bf16" })
        {
            var sides = rows.Where(r => r.StartsWith($"| resnet18 | 2 | {mode} | {layout} | {precision} |", StringComparison.Ordinal))
                .Select(r => r.Split('|', StringSplitOptions.TrimEntries)[6]).ToList();
            Assert.Contains("generated", sides);
            Assert.Contains("twin-eager", sides);
            Assert.Equal(mode == "infer", sides.Contains("generated-folded"));
        }
        // Every measurement is logged: 8 settings × 2 rounds × their sides.
        var measurements = File.ReadAllLines(Path.Combine(outDir, "speed.jsonl"));
        Assert.Equal(2 * rows.Count, measurements.Length);
        Assert.All(rows, r => Assert.Matches(@"\| \d+\.\d\d \| \d+ \| \d+\.\d{3} \|", r));
    }
}
