using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace ResNetGen.Benchmarks;

/// <summary>Ratios to the peer measured in interleaved rounds (median over rounds of the in-round ratio).</summary>
internal static class Interleaved
{
    public static Dictionary<string, double> Ratios(IReadOnlyList<string> cases, int rounds)
    {
        var result = new Dictionary<string, double>();
        foreach (var family in cases.Where(c => c.Contains('/') && !c.StartsWith("generator/", StringComparison.Ordinal)).GroupBy(c => c.Split('/')[0]))
        {
            var members = family.ToList();
            var peer = Case.PeerOf(family.Key, members);
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
                // Each bfloat16 case against the same computation in float32, within each round.
                foreach (var m in members)
                {
                    if (Case.Float32Of(m) is { } fp32 && perRound.ContainsKey(fp32))
                        result[m + " vs " + fp32] = Median(perRound[m].Zip(perRound[fp32], (low, full) => low / full).ToList());
                }
                // ResNetGen's engine against ONNX Runtime's own API on the same export, within each round.
                var (engine, onnx) = (family.Key + "/engine", family.Key + "/onnxruntime");
                if (perRound.ContainsKey(engine) && perRound.ContainsKey(onnx))
                    result[engine + " vs onnxruntime"] = Median(perRound[engine].Zip(perRound[onnx], (e, o) => e / o).ToList());
                // The int8 engine against the float32 engine, within each round.
                var int8 = family.Key + "/engine-int8";
                if (perRound.ContainsKey(engine) && perRound.ContainsKey(int8))
                    result[int8 + " vs engine"] = Median(perRound[int8].Zip(perRound[engine], (q, f) => q / f).ToList());
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
