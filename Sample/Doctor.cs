using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>
/// The doctor command: what this machine can run safely. It prints the CPU, its cache description, libtorch, oneDNN and
/// threads, what ResNetGen's once-per-process check decided, then probes every kind of ResNet convolution in both
/// layouts, forward and backward, each in a child process, with libtorch's defaults and with ResNetGen's.
/// </summary>
public sealed class Doctor
{
    private readonly IAnsiConsole _console;
    private readonly Func<string, ProcessStartInfo> _child;

    /// <param name="console">Where the report goes.</param>
    /// <param name="child">Starts a child that runs one probe (this program's <c>doctor --probe NAME</c>).</param>
    public Doctor(IAnsiConsole console, Func<string, ProcessStartInfo> child)
    {
        _console = console;
        _child = child;
    }

    /// <summary>Runs one probe in this process and writes the protocol lines to standard output (the child's side).</summary>
    public static int Probe(string name) => Probe(name, null);

    /// <summary>Runs one probe in this process with its result computed on <paramref name="device"/> (null: the CPU).</summary>
    public static int Probe(string name, torch.Device? device)
    {
        var probe = KernelProbes.Find(name);
        OneDnn.EnsureChecked();
        KernelProbes.RunHere(probe, Console.Out, device);
        return 0;
    }

    /// <summary>The dtypes <c>doctor --dtype</c> takes, by name.</summary>
    public static readonly IReadOnlyDictionary<string, torch.ScalarType[]> DtypeChoices = new Dictionary<string, torch.ScalarType[]>
    {
        ["all"] = new[] { torch.ScalarType.Float32, torch.ScalarType.BFloat16, torch.ScalarType.Float16 },
        ["float32"] = new[] { torch.ScalarType.Float32 },
        ["bfloat16"] = new[] { torch.ScalarType.BFloat16 },
        ["float16"] = new[] { torch.ScalarType.Float16 },
    };

    /// <summary>The report; exit code 0 when every probe passes with ResNetGen's defaults, 1 otherwise.</summary>
    public int Run() => Run(DtypeChoices["all"]);

    /// <summary>The report over the probes in <paramref name="dtypes"/>; exit code 0 when every one passes with ResNetGen's defaults, 1 otherwise.</summary>
    public int Run(IReadOnlyCollection<torch.ScalarType> dtypes)
    {
        _console.Write(new Rule("[bold]This machine[/]").LeftJustified());
        var facts = new Grid().AddColumn().AddColumn();
        void Fact(string name, string value) => facts.AddRow($"[grey]{name}[/]", Markup.Escape(value));
        Fact("CPU", CpuCaches.Model ?? System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString());
        Fact("caches (CPUID)", CpuCaches.Description + (CpuCaches.DescriptionComplete() ? "" : "  ← incomplete"));
        var libtorch = LibTorch.Describe();
        Fact("libtorch", libtorch.ToString());
        var cuda = LibTorch.CudaDevices();
        Fact("CUDA", cuda.Count == 0
            ? (libtorch.CudaBuild ? "this CUDA build sees no device (driver, CUDA_VISIBLE_DEVICES?)" : "none (a CPU build of libtorch)")
            : string.Join("; ", cuda));
        if (cuda.Count > 0) Fact("cuDNN", LibTorch.CuDnnVersion() ?? (torch.cuda.is_cudnn_available() ? "available, version not readable" : "not available"));
        Fact("oneDNN", OneDnn.Version ?? "version not readable here");
        Fact("CPU features", CpuCaches.Features.Count == 0 ? "none read" : string.Join(", ", CpuCaches.Features));
        Fact("threads", $"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op, {Environment.ProcessorCount} logical cores");
        Fact(OneDnn.PolicyVariable, Environment.GetEnvironmentVariable(OneDnn.PolicyVariable) ?? "(unset: check)");
        Fact(OneDnn.IsaVariable, Environment.GetEnvironmentVariable(OneDnn.IsaVariable) ?? "(unset)");
        _console.Write(facts);

        var status = OneDnn.EnsureChecked();
        _console.MarkupLine($"ResNetGen's check ({status.Milliseconds:0} ms): " + Markup.Escape(status.Message ?? (status.Enabled
            ? "oneDNN computes the test convolution correctly; nothing changed."
            : "oneDNN is off for this process.")));

        _console.Write(new Rule("[bold]Convolutions, each in a child process[/]").LeftJustified());
        _console.MarkupLine("[grey]Each against a float64 reference computed without oneDNN on the same values; ok means a relative error ≤ 1e-4 in float32, " +
                            "≤ 1.6e-2 in bfloat16 (…/bf16) and ≤ 4e-3 in float16 (…/fp16), a few units in their last place, as Precision computes them.[/]");
        if (dtypes.Contains(torch.ScalarType.Float16) && !CpuCaches.HasFloat16Arithmetic)
            _console.MarkupLine("[grey]This CPU has no float16 arithmetic (AVX512-FP16, AMX-FP16): libtorch's generic float16 kernels make the …/fp16 probes slow.[/]");
        var probes = KernelProbes.All.Where(p => dtypes.Contains(p.Dtype)).ToList();
        var columns = new List<(string Title, string? Policy, string? Device)> { ("libtorch", "on", null), ("ResNetGen", null, null) };
        // On a CUDA machine the same probes computed on each GPU (TF32 off), against the same float64 CPU reference.
        foreach (var gpu in cuda) columns.Add(($"cuda:{gpu.Index}", null, $"cuda:{gpu.Index}"));
        var outcomes = new Dictionary<string, IReadOnlyList<ProbeOutcome>>();
        foreach (var (title, policy, device) in columns)
        {
            var clock = Stopwatch.StartNew();
            var done = 0;
            outcomes[title] = KernelProbes.RunIsolated(probes, name =>
                {
                    var start = _child(name);
                    start.Environment.Remove(OneDnn.PolicyVariable);
                    // libtorch's defaults: the ISA limit this process's check set is in its native environment only, so the
                    // child starts without it (a user's own ONEDNN_MAX_CPU_ISA stays).
                    if (policy is not null) start.Environment[OneDnn.PolicyVariable] = policy;
                    if (device is not null)
                    {
                        start.ArgumentList.Add("--probe-device");
                        start.ArgumentList.Add(device);
                    }
                    return start;
                }, TimeSpan.FromMinutes(2), (probe, _) => _console.MarkupLine(
                    $"[grey]{System.Threading.Interlocked.Increment(ref done),2}/{probes.Count} {Markup.Escape(probe.Name)} with {title}'s defaults[/]"));
            _console.MarkupLine($"Probed {probes.Count} convolutions with {title}'s defaults in {clock.Elapsed.TotalSeconds:0} s.");
        }

        var table = new Table().AddColumn("convolution");
        foreach (var (title, _, _) in columns) table.AddColumn($"{title} forward").AddColumn($"{title} backward");
        foreach (var probe in probes)
        {
            var row = new List<string> { probe.Name };
            foreach (var (title, _, _) in columns)
            {
                foreach (var direction in new[] { "forward", "backward" })
                    row.Add(Cell(outcomes[title].Single(o => o.Probe == probe.Name && o.Direction == direction)));
            }
            table.AddRow(row.ToArray());
        }
        _console.Write(table);

        var raw = outcomes[columns[0].Title].Where(o => !o.Passed).ToList();
        var guarded = outcomes[columns[1].Title].Where(o => !o.Passed).ToList();
        var onGpus = columns.Skip(2).SelectMany(c => outcomes[c.Title].Where(o => !o.Passed).Select(o => (c.Title, o))).ToList();
        if (columns.Count > 2)
            _console.MarkupLine(onGpus.Count == 0
                ? $"[green]On {string.Join(", ", columns.Skip(2).Select(c => c.Title))} every convolution is correct (TF32 off).[/]"
                : $"[red]On the GPU {onGpus.Count} probe direction(s) compute wrongly or crash:[/] {Markup.Escape(string.Join(", ", onGpus.Select(p => $"{p.Title} {p.o.Probe} {p.o.Direction} {p.o.Verdict}")))}.");
        if (guarded.Count == 0)
        {
            _console.MarkupLine(raw.Count == 0
                ? "[green]Every convolution is correct here, with libtorch's defaults and with ResNetGen's.[/] Channels-last (ActivationLayout.ChannelsLast) is safe on this machine."
                : $"[green]With ResNetGen's defaults every convolution is correct here.[/] [yellow]With libtorch's defaults {raw.Count} of {raw.Count + outcomes[columns[0].Title].Count(o => o.Passed)} are not[/], so keep {OneDnn.PolicyVariable} unset (or =off) and do not use TorchSharp convolutions before the first generated network is built.");
            return onGpus.Count == 0 ? 0 : 1;
        }
        _console.MarkupLine($"[red]{guarded.Count} convolution(s) compute wrongly or crash here even with ResNetGen's defaults.[/] " +
            $"Turn libtorch's oneDNN off for the process: set {OneDnn.PolicyVariable}=off, or call OneDnn.Enabled = false; before the first convolution (correct, slower).");
        return 1;
    }

    private static string Cell(ProbeOutcome outcome) => outcome.Verdict switch
    {
        "ok" => $"[green]ok[/] {outcome.Error.ToString("0.0e+0", CultureInfo.InvariantCulture)}",
        "wrong" => $"[red]wrong[/] {outcome.Error.ToString("0.0e+0", CultureInfo.InvariantCulture)}",
        "non-finite" => "[red]NaN/Inf[/]",
        "crashed" => $"[red]crashed[/] {Markup.Escape(outcome.Detail.Split(' ').Skip(2).FirstOrDefault() ?? "")}",
        _ => "[grey]not run[/]",
    };
}
