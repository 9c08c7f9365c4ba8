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

// Generated networks against the hand-written TorchSharp idiom, in one run: time with BenchmarkDotNet
// (in process, so TorchSharp's native library is the one this build prepared), peak memory with one child
// process per case, and GFLOP/s against torch.mm measured in the same run.
var options = Options.Parse(args);
if (options is null) return 2;
// Before any convolution: ResNetGen's oneDNN check (the peer runs after it too, so both compute on the same kernels).
var oneDnn = OneDnn.EnsureChecked();
if (options.KernelProbe is { } kernelProbe)
{
    KernelProbes.RunHere(KernelProbes.Find(kernelProbe), Console.Out);
    return 0;
}
if (options.Probe is { } probe) return MemoryProbe.Run(probe, options.ProbeRuns);
Console.WriteLine($"oneDNN: {(oneDnn.Enabled ? "on" : "off")}{(oneDnn.IsaCap is { } cap ? $", limited to {cap} kernels" : "")} ({oneDnn.Message ?? "the check found nothing to change"})");

// Channels-last cases run only where every channels-last probe passes in a child process; a broken kernel would
// otherwise give wrong timings or kill the run.
var channelsLast = options.Cases.Where(c => c.Contains("channels-last", StringComparison.Ordinal)).ToList();
if (channelsLast.Count > 0)
{
    var failed = KernelProbes.RunIsolated(KernelProbes.All.Where(p => p.ChannelsLast), name => KernelProbes.Self("--kernel-probe", name), TimeSpan.FromMinutes(2))
        .Where(o => !o.Passed).ToList();
    if (failed.Count == 0) Console.WriteLine($"channels-last: every channels-last probe passed here, so these cases run: {string.Join(", ", channelsLast)}");
    else
    {
        Console.WriteLine($"channels-last: skipped ({string.Join(", ", channelsLast)}), because {string.Join("; ", failed.Select(f => $"{f.Probe} {f.Direction} {f.Verdict} {f.Detail}".Trim()))}");
        options = options with { Cases = options.Cases.Except(channelsLast).ToList() };
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

var table = Report.Table(options.Cases, medians, ratios, memory, options.Rounds);
Console.WriteLine();
Console.WriteLine(table);
var output = Path.Combine(summary.ResultsDirectoryPath, "resnetgen-summary.md");
File.WriteAllText(output, table);
Console.WriteLine($"written to {output}");
return medians.Count == options.Cases.Count ? 0 : 1;

/// <summary>The one benchmark: a case by name, set up once, run per invocation.</summary>
public class Bench
{
    public static IReadOnlyList<string> Selected { get; set; } = ResNetGen.Benchmarks.Case.Names;

    private Case? _case;

    public static IEnumerable<string> Cases() => Selected;

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _case = ResNetGen.Benchmarks.Case.Create(Case);
        _case.Run(); // first touch: allocator pools, kernel selection
    }

    [Benchmark]
    public void Run() => _case!.Run();

    [GlobalCleanup]
    public void Cleanup() => _case?.Dispose();
}

internal sealed record Options(IReadOnlyList<string> Cases, int Warmup, int Iterations, bool Memory, string? Probe, int ProbeRuns, int Rounds, string? KernelProbe = null)
{
    public static Options? Parse(string[] args)
    {
        var cases = Case.Names.ToList();
        int warmup = 1, iterations = 5, probeRuns = 3, rounds = 7;
        var memory = true;
        string? probe = null, kernelProbe = null;
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            try
            {
                switch (args[i])
                {
                    case "--help" or "-h":
                        Console.WriteLine("""
                            Usage: dotnet run -c Release --project Benchmarks [-- options]

                              --cases A,B,...   run only these cases, or those starting with a prefix (default: all)
                              --warmup N        warm-up runs per case (default 1)
                              --iterations N    measured runs per case (default 5; the median is reported)
                              --rounds N        interleaved rounds for the ratios to the peer (default 7)
                              --no-memory       skip the peak-memory probes (one child process per case)
                              --memory-runs N   runs per memory probe (default 3)
                              --help            this text

                            Channels-last cases run only where every channels-last convolution probe passes in a child
                            process (the run says which); the sample's doctor command shows the probes.

                            Cases:
                            """ + "\n  " + string.Join("\n  ", Case.Names));
                        return null;
                    case "--cases":
                        var wanted = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                        cases = Case.Names.Where(n => wanted.Any(w => n == w || n.StartsWith(w, StringComparison.Ordinal))).ToList();
                        if (cases.Count == 0) throw new ArgumentException($"no case matches '{string.Join(",", wanted)}'; --help lists the cases");
                        if (!cases.Contains("mm-2048")) cases.Insert(0, "mm-2048"); // the peak every GFLOP/s figure is read against
                        break;
                    case "--warmup": warmup = Positive(Next(), "--warmup", allowZero: true); break;
                    case "--iterations": iterations = Positive(Next(), "--iterations"); break;
                    case "--no-memory": memory = false; break;
                    case "--rounds": rounds = Positive(Next(), "--rounds"); break;
                    case "--memory-runs": probeRuns = Positive(Next(), "--memory-runs"); break;
                    case "--memory-probe": probe = Next(); break;
                    case "--kernel-probe": kernelProbe = Next(); break;
                    default: throw new ArgumentException($"unknown option '{args[i]}'");
                }
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}" + (e.Message.Contains("--help") ? "" : " (see --help)"));
                return null;
            }
        }
        return new Options(cases, warmup, iterations, memory, probe, probeRuns, rounds, kernelProbe);
    }

    private static int Positive(string text, string option, bool allowZero = false) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && (n > 0 || allowZero && n == 0)
            ? n : throw new ArgumentException($"{option} takes a {(allowZero ? "non-negative" : "positive")} whole number, not '{text}'");
}

/// <summary>Peak resident memory of a case above its set-up, measured in a process of its own.</summary>
internal static class MemoryProbe
{
    public static int Run(string name, int runs)
    {
        using var c = Case.Create(name);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets the peak (VmHWM) to the current resident size
        var baseline = Status("VmRSS");
        for (var i = 0; i < runs; i++) c.Run();
        var peak = Status("VmHWM");
        Console.WriteLine(FormattableString.Invariant($"peak-mb {(peak - baseline) / 1024.0:0.0}"));
        return 0;
    }

    public static double Spawn(string name, int runs)
    {
        var self = Environment.ProcessPath!;
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(typeof(MemoryProbe).Assembly.Location);
        foreach (var a in new[] { "--memory-probe", name, "--memory-runs", runs.ToString(CultureInfo.InvariantCulture) }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var text = process.StandardOutput.ReadToEnd();
        var errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("peak-mb ", StringComparison.Ordinal));
        if (process.ExitCode != 0 || line is null)
        {
            Console.Error.WriteLine($"memory probe for {name} failed (exit {process.ExitCode}): {errors}");
            return double.NaN;
        }
        return double.Parse(line.Substring(8), CultureInfo.InvariantCulture);
    }

    private static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Substring(field.Length + 1).Trim().Split(' ')[0], CultureInfo.InvariantCulture); // kB
        }
        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }
}

/// <summary>Ratios to the peer measured in interleaved rounds (median over rounds of the in-round ratio).</summary>
internal static class Interleaved
{
    public static Dictionary<string, double> Ratios(IReadOnlyList<string> cases, int rounds)
    {
        var result = new Dictionary<string, double>();
        foreach (var family in cases.Where(c => c.Contains('/') && !c.StartsWith("generator/", StringComparison.Ordinal)).GroupBy(c => c.Split('/')[0]))
        {
            var members = family.ToList();
            var peer = members.FirstOrDefault(m => m.EndsWith("/peer", StringComparison.Ordinal) || m.EndsWith("/peer-scope", StringComparison.Ordinal));
            if (peer is null || members.Count < 2) continue;
            Console.WriteLine($"interleaved: {family.Key}, {rounds} rounds of {members.Count} cases …");
            var created = members.Select(Case.Create).ToList();
            try
            {
                foreach (var c in created) c.Run(); // warm-up
                var perRound = members.ToDictionary(m => m, _ => new List<double>());
                for (var round = 0; round < rounds; round++)
                {
                    var times = new Dictionary<string, double>();
                    for (var k = 0; k < created.Count; k++)
                    {
                        var index = (round + k) % created.Count;
                        created[index].Run(); // back in its own steady state (allocator caches) before it is timed
                        // Tensors a case leaks (the peer without a DisposeScope) go only when finalizers run: run them
                        // here, untimed, or the leaks of many rounds exhaust the machine's memory.
                        GC.Collect();
                        GC.WaitForPendingFinalizers();
                        var clock = Stopwatch.StartNew();
                        created[index].Run();
                        times[members[index]] = clock.Elapsed.TotalMilliseconds;
                    }
                    foreach (var m in members) perRound[m].Add(times[m] / times[peer]);
                }
                foreach (var m in members.Where(m => m != peer)) result[m] = Median(perRound[m]);
            }
            finally
            {
                foreach (var c in created) c.Dispose();
            }
        }
        return result;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}

/// <summary>The closing table: medians, ratios to the peer of the same family, GFLOP/s against torch.mm, memory.</summary>
internal static class Report
{
    public static string Table(IReadOnlyList<string> cases, Dictionary<string, double> medians, Dictionary<string, double> ratios,
        Dictionary<string, double> memory, int rounds)
    {
        var peak = medians.TryGetValue("mm-2048", out var mm) ? Case.Gflop("mm-2048") / (mm / 1e3) : double.NaN;
        var sb = new StringBuilder();
        sb.AppendLine($"Machine: {Environment.ProcessorCount} logical cores, {RuntimeInfo()}; torch threads: {TorchSharp.torch.get_num_threads()}.");
        sb.AppendLine(FormattableString.Invariant($"Peak: torch.mm 2048×2048 at {peak:0.0} GFLOP/s."));
        sb.AppendLine();
        sb.AppendLine("Median / peer's: the BenchmarkDotNet medians, each case measured on its own (steady state, but exposed to drift between cases).");
        sb.AppendLine($"Interleaved ratio: median over {rounds} rounds that run every case of the family twice and time the second run, of the time relative to the peer in the same round (below 1: faster).");
        sb.AppendLine("GFLOP/s: nominal work (2 per multiply-add; a training step counted as 3 passes) over the BenchmarkDotNet median.");
        sb.AppendLine();
        sb.AppendLine("| case | median (ms) | median / peer's | interleaved ratio | GFLOP/s | % of mm peak | peak memory (MB) |");
        sb.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var name in cases)
        {
            if (!medians.TryGetValue(name, out var ms)) continue;
            var ratio = ratios.TryGetValue(name, out var r) ? r.ToString("0.00", CultureInfo.InvariantCulture) : name.Contains("/peer") ? "1 (peer)" : "—";
            var family = name.Split('/')[0];
            var peerName = cases.FirstOrDefault(c => c == family + "/peer" || c == family + "/peer-scope");
            var medianRatio = peerName is not null && medians.TryGetValue(peerName, out var peerMs) ? (ms / peerMs).ToString("0.00", CultureInfo.InvariantCulture) : "—";
            var gflops = Case.Gflop(name) / (ms / 1e3);
            var mem = memory.TryGetValue(name, out var mb) ? mb.ToString("0", CultureInfo.InvariantCulture) : "—";
            sb.AppendLine(double.IsNaN(gflops)
                ? FormattableString.Invariant($"| {name} | {ms:0.0} | — | — | — | — | — |")
                : FormattableString.Invariant($"| {name} | {ms:0.0} | {medianRatio} | {ratio} | {gflops:0.0} | {100 * gflops / peak:0}% | {mem} |"));
        }
        return sb.ToString();
    }


    private static string RuntimeInfo() => $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, .NET {Environment.Version}";
}
