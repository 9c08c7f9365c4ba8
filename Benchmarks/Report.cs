using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Text;
using ResNetGen;

namespace ResNetGen.Benchmarks;

/// <summary>The closing table: medians, ratios to the peer of the same family, GFLOP/s against torch.mm, memory.</summary>
internal static class Report
{
    public static string Table(IReadOnlyList<string> cases, Dictionary<string, double> medians, Dictionary<string, double> ratios,
        Dictionary<string, double> memory, int rounds, string oneDnn)
    {
        var peak = medians.TryGetValue("mm-2048", out var mm) ? Case.Gflop("mm-2048") / (mm / 1e3) : double.NaN;
        var sb = new StringBuilder();
        sb.AppendLine($"Machine: {Environment.ProcessorCount} logical cores, {RuntimeInfo()}; torch threads: {TorchSharp.torch.get_num_threads()}.");
        sb.AppendLine(FormattableString.Invariant($"Peak: torch.mm 2048×2048 at {peak:0.0} GFLOP/s."));
        sb.AppendLine($"CPU: {CpuCaches.Model ?? "not x86"}; features: {(CpuCaches.Features.Count == 0 ? "none read" : string.Join(", ", CpuCaches.Features))}.");
        sb.AppendLine($"oneDNN check: {oneDnn}.");
        sb.AppendLine("Peer of each family: TorchSharp's TorchVision model in a DisposeScope (torchvision), else the hand-written TorchSharp ResNet (handwritten) or, for BiT, standardising at each forward (peer).");
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
            var family = name.Split('/')[0];
            var peerName = Case.PeerOf(family, cases);
            var ratio = ratios.TryGetValue(name, out var r) ? r.ToString("0.00", CultureInfo.InvariantCulture) : name == peerName ? "1 (peer)" : "—";
            var medianRatio = peerName is not null && medians.TryGetValue(peerName, out var peerMs) ? (ms / peerMs).ToString("0.00", CultureInfo.InvariantCulture) : "—";
            var gflops = Case.Gflop(name) / (ms / 1e3);
            var mem = memory.TryGetValue(name, out var mb) ? mb.ToString("0", CultureInfo.InvariantCulture) : "—";
            sb.AppendLine(double.IsNaN(gflops)
                ? FormattableString.Invariant($"| {name} | {ms:0.0} | — | — | — | — | — |")
                : FormattableString.Invariant($"| {name} | {ms:0.0} | {medianRatio} | {ratio} | {gflops:0.0} | {100 * gflops / peak:0}% | {mem} |"));
        }
        foreach (var (pair, value) in ratios.Where(r => r.Key.EndsWith(" vs onnxruntime", StringComparison.Ordinal)))
            sb.AppendLine().AppendLine(FormattableString.Invariant($"{pair}: {value:0.000} (median over the rounds of the engine's time over ONNX Runtime's in the same round)."));
        var int8 = ratios.Where(r => r.Key.EndsWith("/engine-int8 vs engine", StringComparison.Ordinal)).ToList();
        if (int8.Count > 0)
        {
            sb.AppendLine().AppendLine($"int8 engine against the float32 engine, the same network and batch (median over the rounds of the in-round time ratio; speed-up = 1 / ratio); this CPU {(CpuCaches.HasInt8DotProduct ? "has" : "has no")} VNNI:");
            foreach (var (pair, value) in int8)
                sb.AppendLine(FormattableString.Invariant($"- {pair}: {value:0.000} ({1 / value:0.00}× the float32 engine's speed)"));
        }
        var lowPrecision = ratios.Where(r => r.Key.Contains("-bf16", StringComparison.Ordinal) && r.Key.Contains(" vs ", StringComparison.Ordinal)).ToList();
        if (lowPrecision.Count > 0)
        {
            sb.AppendLine().AppendLine("bfloat16 against float32, the same case (median over the rounds of the in-round time ratio; speed-up = 1 / ratio):");
            foreach (var (pair, value) in lowPrecision)
                sb.AppendLine(FormattableString.Invariant($"- {pair}: {value:0.000} ({1 / value:0.00}× float32's speed)"));
        }
        return sb.ToString();
    }


    private static string RuntimeInfo() => $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, .NET {Environment.Version}";
}
