using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using ResNetGen;
using ResNetGen.Benchmarks;
using TorchSharp;

// Generated networks against the hand-written TorchSharp idiom, in one run: time with BenchmarkDotNet
// (in process, so TorchSharp's native library is the one this build prepared), peak memory with one child
// process per case, and GFLOP/s against torch.mm measured in the same run.
var options = Options.Parse(args, out var help);
if (options is null) return help ? 0 : 2;
// Before any convolution: ResNetGen's oneDNN check (the peer runs after it too, so both compute on the same kernels).
var oneDnn = OneDnn.EnsureChecked();
if (options.KernelProbe is { } kernelProbe)
{
    KernelProbes.RunHere(KernelProbes.Find(kernelProbe), Console.Out);
    return 0;
}
if (options.Probe is { } probe) return MemoryProbe.Run(probe, options.ProbeRuns);
var oneDnnVerdict = $"{(oneDnn.Enabled ? "on" : "off")}{(oneDnn.IsaCap is { } cap ? $", limited to {cap} kernels" : "")} ({oneDnn.Message ?? "the check found nothing to change"})";
Console.WriteLine($"oneDNN: {oneDnnVerdict}");

// Channels-last and bfloat16 cases run only where the probes of their layout and dtype pass, each in a child process; a
// broken kernel would otherwise give wrong timings or kill the run.
static bool Needs(string name, KernelProbe probe) =>
    probe.Dtype == (name.Contains("-bf16", StringComparison.Ordinal) ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32)
    && probe.ChannelsLast == name.Contains("channels-last", StringComparison.Ordinal)
    && (probe.Dtype != torch.ScalarType.Float32 || probe.ChannelsLast);
var guarded = options.Cases.Where(c => KernelProbes.All.Any(p => Needs(c, p))).ToList();
if (guarded.Count > 0)
{
    var probes = KernelProbes.All.Where(p => guarded.Any(c => Needs(c, p))).ToList();
    var failed = KernelProbes.RunIsolated(probes, name => KernelProbes.Self("--kernel-probe", name), TimeSpan.FromMinutes(2)).Where(o => !o.Passed).ToList();
    var skipped = guarded.Where(c => failed.Any(f => Needs(c, KernelProbes.Find(f.Probe)))).ToList();
    if (skipped.Count == 0) Console.WriteLine($"probes: the {probes.Count} probes of their layouts and dtypes passed here, so these cases run: {string.Join(", ", guarded)}");
    else
    {
        Console.WriteLine($"probes: skipped ({string.Join(", ", skipped)}), because {string.Join("; ", failed.Select(f => $"{f.Probe} {f.Direction} {f.Verdict} {f.Detail}".Trim()))}");
        options = options with { Cases = options.Cases.Except(skipped).ToList() };
    }
}

Bench.Selected = options.Cases;
var config = ManualConfig.CreateMinimumViable()
    .AddJob(Job.Default
        .WithToolchain(InProcessEmitToolchain.Instance)
        .WithLaunchCount(1).WithWarmupCount(options.Warmup).WithIterationCount(options.Iterations)
        .WithInvocationCount(1).WithUnrollFactor(1))
    .AddColumn(StatisticColumn.Median, StatisticColumn.Min, StatisticColumn.Max)
    .WithOptions(ConfigOptions.DisableOptimizationsValidator);
Console.WriteLine($"ResNetGen benchmarks: {options.Cases.Count} cases, {options.Warmup} warm-up and {options.Iterations} measured runs each (--help for options).");
var summary = BenchmarkRunner.Run<Bench>(config);

var medians = new Dictionary<string, double>();
foreach (var report in summary.Reports)
{
    var name = (string)report.BenchmarkCase.Parameters["Case"];
    if (report.ResultStatistics is { } stats) medians[name] = stats.Median / 1e6; // ms
}

// Ratios from interleaved rounds: each round runs every case of a family once, in rotating order, and the ratio
// to the peer is taken within the round, so drift in the machine's speed between cases cancels out.
var ratios = Interleaved.Ratios(options.Cases, options.Rounds);

var memory = new Dictionary<string, double>();
if (options.Memory)
{
    foreach (var name in options.Cases.Where(c => c != "mm-2048" && !c.StartsWith("generator/", StringComparison.Ordinal)))
    {
        Console.WriteLine($"memory: {name} …");
        memory[name] = MemoryProbe.Spawn(name, options.ProbeRuns);
    }
}

var table = Report.Table(options.Cases, medians, ratios, memory, options.Rounds, oneDnnVerdict);
Console.WriteLine();
Console.WriteLine(table);
var output = Path.Combine(summary.ResultsDirectoryPath, "resnetgen-summary.md");
File.WriteAllText(output, table);
Console.WriteLine($"written to {output}");
return medians.Count == options.Cases.Count ? 0 : 1;
