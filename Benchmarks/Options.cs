using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace ResNetGen.Benchmarks;

internal sealed record Options(IReadOnlyList<string> Cases, int Warmup, int Iterations, bool Memory, string? Probe, int ProbeRuns, int Rounds, string? KernelProbe = null)
{
    /// <summary>The options, or null where <paramref name="help"/> was shown (exit 0) or an error was (exit 2).</summary>
    public static Options? Parse(string[] args, out bool help)
    {
        help = false;
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

                              --cases A,B,...   run only these cases (family/variant) or whole families (resnet50-infer); default: all
                              --warmup N        warm-up runs per case (default 1)
                              --iterations N    measured runs per case (default 5; the median is reported)
                              --rounds N        interleaved rounds for the ratios to the peer (default 7)
                              --no-memory       skip the peak-memory probes (one child process per case)
                              --memory-runs N   runs per memory probe (default 3)
                              --help            this text

                            Channels-last and bfloat16 (-bf16) cases run only where the convolution probes of their layout
                            and dtype pass, each in a child process (the run says which); the sample's doctor command
                            shows the probes. Each -bf16 case is also timed against its float32 case within the rounds.

                            Cases:
                            """ + "\n  " + string.Join("\n  ", Case.Names));
                        help = true;
                        return null;
                    case "--cases":
                        var wanted = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                        // A case by its whole name, a family (no '/') by its name: resnet50-infer/torchvision is not its -no-scope sibling.
                        cases = Case.Names.Where(n => wanted.Any(w => n == w || !w.Contains('/') && n.StartsWith(w + "/", StringComparison.Ordinal))).ToList();
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
