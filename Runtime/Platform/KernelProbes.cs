using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Threading.Tasks;
using TorchSharp;

namespace ResNetGen;

/// <summary>One kind of convolution a ResNet computes, in one layout, with the shapes it is tried at.</summary>
/// <param name="Name">The probe's name, e.g. <c>1x1-stride2/channels-last</c>.</param>
/// <param name="ChannelsLast">Whether the input is laid out channels-last.</param>
/// <param name="Kernel">Kernel size.</param>
/// <param name="Stride">Stride.</param>
/// <param name="Groups">Groups.</param>
/// <param name="Dilation">Dilation (padding keeps the size for odd kernels).</param>
/// <param name="Shapes">Batch, input channels, output channels and square size of each convolution tried (for a 1-D
/// probe, the size is the row's length).</param>
/// <param name="OneDimensional">A 1-D convolution over rows [N, C, L] (efficient channel attention's), not a 2-D one.</param>
/// <param name="Operation">What is computed: a convolution (default), a group-norm of <paramref name="Groups"/> groups, or a
/// convolution whose weight is standardised first (timm's StdConv2d).</param>
/// <param name="Dtype">What it computes in: float32, or bfloat16 or float16 as a mixed-precision network runs it (the
/// activations and convolution weights in that dtype; a group-norm's weight and a standardisation in float32).</param>
public sealed record KernelProbe(string Name, bool ChannelsLast, int Kernel, int Stride, int Groups, int Dilation,
    IReadOnlyList<(int Batch, int In, int Out, int Size)> Shapes, bool OneDimensional = false, ProbeOperation Operation = ProbeOperation.Convolution,
    torch.ScalarType Dtype = torch.ScalarType.Float32)
{
    /// <summary>The largest error relative to the reference's largest value that still counts as correct: 1e-4 in float32; in a low precision a few of its units in the last place (bfloat16 keeps 8 bits, float16 11).</summary>
    public double Tolerance => Dtype == torch.ScalarType.Float32 ? OneDnn.Tolerance : LowPrecisionSupport.Tolerance(Dtype);
}

/// <summary>The layer a <see cref="KernelProbe"/> tries.</summary>
public enum ProbeOperation
{
    /// <summary>A convolution (every ResNet's).</summary>
    Convolution,

    /// <summary>A group-norm with a per-channel weight and bias (BiT's).</summary>
    GroupNorm,

    /// <summary>A convolution of a weight standardised per output channel (BiT's StdConv2d: a batch-norm over the weight, then the convolution).</summary>
    StandardizedConvolution,
}

/// <summary>What one probe direction gave: <c>ok</c>, <c>wrong</c>, <c>non-finite</c>, <c>crashed</c> or <c>not run</c>.</summary>
public sealed record ProbeOutcome(string Probe, string Direction, string Verdict, double Error, string Detail)
{
    /// <summary>Whether the direction computed correctly.</summary>
    public bool Passed => Verdict == "ok";
}

/// <summary>
/// Checks, convolution by convolution, whether this machine's libtorch computes what ResNets need correctly: forward
/// and backward, in both layouts, against a float64 reference that oneDNN takes no part in. A broken kernel can kill
/// its process, so <see cref="RunIsolated"/> runs each probe in a child process and reports a crash as an outcome;
/// <see cref="RunHere(KernelProbe, TextWriter, torch.Device?)"/> is what the child runs.
/// </summary>
public static class KernelProbes
{
    /// <summary>The line prefix of the child's protocol.</summary>
    public const string Prefix = "resnetgen-probe";

    /// <summary>The dtypes probed, with their name suffixes.</summary>
    public static IReadOnlyList<(torch.ScalarType Dtype, string Suffix)> Dtypes { get; } = new[]
    {
        (torch.ScalarType.Float32, ""), (torch.ScalarType.BFloat16, "/bf16"), (torch.ScalarType.Float16, "/fp16"),
    };

    /// <summary>
    /// Every probe: each kind of ResNet convolution and BiT's group-norm and standardised convolutions, in NCHW and in
    /// channels-last (the 1-D one once), in float32 (named <c>1x1-stride2/channels-last</c>) and in bfloat16 and float16
    /// as <see cref="Precision"/> computes them (<c>…/bf16</c>, <c>…/fp16</c>).
    /// </summary>
    public static IReadOnlyList<KernelProbe> All { get; } = Build();

    /// <summary>The probes in <paramref name="dtype"/>.</summary>
    public static IReadOnlyList<KernelProbe> In(torch.ScalarType dtype) => All.Where(p => p.Dtype == dtype).ToList();


    private static IReadOnlyList<KernelProbe> Build()
    {
        var kinds = new (string Name, int Kernel, int Stride, int Groups, int Dilation, (int, int, int, int)[] Shapes)[]
        {
            ("1x1-stride1", 1, 1, 1, 1, new[] { (4, 64, 256, 14), (4, 256, 64, 14), (4, 512, 128, 7), (4, 256, 512, 7) }),
            ("1x1-stride2", 1, 2, 1, 1, new[] { (4, 64, 128, 16), (4, 256, 512, 8), (4, 512, 1024, 8), (2, 1024, 2048, 4) }),
            ("3x3-stride1", 3, 1, 1, 1, new[] { (4, 64, 64, 14), (4, 128, 128, 7) }),
            ("3x3-stride2", 3, 2, 1, 1, new[] { (4, 64, 128, 16), (4, 256, 256, 8) }),
            // Input channels above 8 and not a multiple of 8 (a deep-tiered stem's 12, a picture of 10 bands): a class of
            // its own where oneDNN's kernels are broken (the Zen 5 VM under AVX).
            ("3x3-narrow", 3, 1, 1, 1, new[] { (4, 12, 16, 17), (4, 20, 24, 9) }),
            ("3x3-grouped", 3, 1, 32, 1, new[] { (4, 128, 128, 14), (4, 256, 256, 7) }),
            ("3x3-dilated", 3, 1, 1, 2, new[] { (4, 256, 256, 14), (2, 512, 512, 7) }),
            ("7x7-stem", 7, 2, 1, 1, new[] { (2, 3, 64, 32) }),
            // Anti-aliasing's blur pool: a fixed 3×3 filter per channel at stride 2.
            ("3x3-depthwise", 3, 2, 128, 1, new[] { (4, 128, 128, 16) }),
            // Efficient channel attention: a 1-D convolution of 3 to 7 over each sample's channel means, [N, 1, C].
            ("1d-channels", 5, 1, 1, 1, new[] { (8, 1, 1, 256), (8, 1, 1, 2048) }),
            // BiT: group-norm of 32 groups, and weight-standardised convolutions (a 3×3 and the strided 1×1 shortcut's).
            ("group-norm", 1, 1, 32, 1, new[] { (4, 64, 64, 28), (4, 256, 256, 14), (2, 2048, 2048, 4) }),
            ("std-3x3", 3, 1, 1, 1, new[] { (4, 64, 64, 14), (4, 128, 128, 7) }),
            ("std-1x1-stride2", 1, 2, 1, 1, new[] { (4, 256, 512, 8) }),
        };
        var result = new List<KernelProbe>();
        foreach (var (dtype, suffix) in Dtypes)
        foreach (var channelsLast in new[] { false, true })
        {
            foreach (var (name, kernel, stride, groups, dilation, shapes) in kinds)
            {
                // A 1-D convolution has no channels-last layout of its own: it is probed once.
                var oneDimensional = name.StartsWith("1d-", StringComparison.Ordinal);
                if (oneDimensional && channelsLast) continue;
                var operation = name == "group-norm" ? ProbeOperation.GroupNorm
                    : name.StartsWith("std-", StringComparison.Ordinal) ? ProbeOperation.StandardizedConvolution : ProbeOperation.Convolution;
                result.Add(new KernelProbe(name + (oneDimensional ? "" : channelsLast ? "/channels-last" : "/nchw") + suffix, channelsLast, kernel, stride, groups,
                    dilation, shapes, oneDimensional, operation, dtype));
            }
        }
        return result;
    }

    /// <summary>The probe of that name.</summary>
    /// <exception cref="ArgumentException">No probe has that name; the message lists them.</exception>
    public static KernelProbe Find(string name) =>
        All.FirstOrDefault(p => p.Name == name)
        ?? throw new ArgumentException($"no probe '{name}'. The probes: {string.Join(", ", All.Select(p => p.Name))}.", nameof(name));

    /// <summary>
    /// Runs <paramref name="probe"/> in this process, forward then backward, and writes one protocol line before and after
    /// each direction to <paramref name="output"/> (flushed, so a parent reading it learns where a crash happened).
    /// The result in the probe's dtype uses libtorch as configured; the reference is float64 with oneDNN off, on the same
    /// values rounded to that dtype.
    /// </summary>
    public static void RunHere(KernelProbe probe, TextWriter output) => RunHere(probe, output, null);

    /// <summary>
    /// As <see cref="RunHere(KernelProbe, TextWriter)"/>, computing the probe's result on <paramref name="device"/> (null: the
    /// CPU) against the same float64 CPU reference; on CUDA with TF32 off (cuBLAS and cuDNN), so that float32 is float32.
    /// </summary>
    public static void RunHere(KernelProbe probe, TextWriter output, torch.Device? device)
    {
        if (device is not null && device.type == DeviceType.CUDA)
        {
            torch.backends.cuda.matmul.allow_tf32 = false;
            torch.backends.cudnn.allow_tf32 = false;
        }
        foreach (var direction in new[] { "forward", "backward" })
        {
            output.WriteLine($"{Prefix} {probe.Name} {direction} start");
            output.Flush();
            var error = Measure(probe, direction == "backward", device);
            var verdict = double.IsNaN(error) ? "non-finite" : error <= probe.Tolerance ? "ok" : "wrong";
            output.WriteLine(string.Format(CultureInfo.InvariantCulture, "{0} {1} {2} {3} {4:0.###e+0}", Prefix, probe.Name, direction, verdict, error));
            output.Flush();
        }
    }

    /// <summary>The largest error relative to the reference's largest value over the probe's shapes; NaN if anything is not finite.</summary>
    internal static double Measure(KernelProbe probe, bool backward, torch.Device? device)
    {
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(1234);
        var worst = 0.0;
        // Scalars held until the ops are done: a temporary one can be freed while libtorch reads it (see Steps.One).
        using var half = 0.5.ToScalar();
        using var three = 3.0.ToScalar();
        foreach (var (batch, cin, cout, size) in probe.Shapes)
        {
            var outSize = (size - 1) / probe.Stride + 1;
            var x = torch.randn(probe.OneDimensional ? new long[] { batch, cin, size } : new long[] { batch, cin, size, size }, generator: generator);
            var norm = probe.Operation == ProbeOperation.GroupNorm;
            // A residual stream's statistics: an offset per channel that group-norm takes off again.
            if (norm) Steps.AddTo(x, torch.randn(new long[] { 1, cin, 1, 1 }, generator: generator).mul_(three));
            using var fanInRoot = Math.Sqrt(cin / probe.Groups * probe.Kernel * (probe.OneDimensional ? 1 : probe.Kernel)).ToScalar();
            var w = norm
                ? torch.randn(new long[] { cin }, generator: generator).mul_(half).add_(Steps.One, Steps.One) // the norm's per-channel weight
                : torch.randn(probe.OneDimensional ? new long[] { cout, cin / probe.Groups, probe.Kernel } : new long[] { cout, cin / probe.Groups, probe.Kernel, probe.Kernel },
                        generator: generator)
                    .div_(fanInRoot);
            var upstream = torch.randn(probe.OneDimensional ? new long[] { batch, cout, outSize } : new long[] { batch, cout, outSize, outSize }, generator: generator);
            var actual = device is null || device.type == DeviceType.CPU
                ? Compute(probe, x, w, upstream, backward, probe.Dtype)
                : Compute(probe, x.to(device), w.to(device), upstream.to(device), backward, probe.Dtype).Select(t => t.cpu()).ToArray();
            // Switched through libtorch directly: OneDnn.Enabled's setter also records the user's choice, which a
            // probe's temporary switch must not do (a later check would then be skipped).
            var enabled = LibTorchNative.UserEnabledMkldnn();
            torch.Tensor[] expected;
            try
            {
                LibTorchNative.SetUserEnabledMkldnn(false);
                expected = Compute(probe, x, w, upstream, backward, torch.float64, rounding: probe.Dtype);
            }
            finally
            {
                LibTorchNative.SetUserEnabledMkldnn(enabled);
            }
            for (var i = 0; i < actual.Length; i++)
            {
                if (!actual[i].isfinite().all().item<bool>()) return double.NaN;
                var scale = expected[i].abs().max().item<double>();
                worst = Math.Max(worst, actual[i].to(torch.float64).sub(expected[i]).abs().max().item<double>() / scale);
            }
        }
        return worst;
    }

    /// <summary>
    /// The probe's op in <paramref name="dtype"/> (float32 or a low precision), or, for the reference, in float64 on the
    /// values rounded to <paramref name="rounding"/> wherever the low-precision computation rounds them: the input, the
    /// upstream gradient and each convolution's weight; a group-norm's weight and a standardisation stay float32 there, as
    /// in a mixed-precision network.
    /// </summary>
    private static torch.Tensor[] Compute(KernelProbe probe, torch.Tensor x, torch.Tensor w, torch.Tensor upstream, bool backward, torch.ScalarType dtype,
        torch.ScalarType rounding = torch.ScalarType.Float32)
    {
        var low = dtype is torch.ScalarType.BFloat16 or torch.ScalarType.Float16 ? dtype : rounding;
        torch.Tensor Round(torch.Tensor t) => low == torch.ScalarType.Float32 ? t.to(dtype) : t.to(low).to(dtype);
        var input = Round(x);
        if (probe.ChannelsLast) input = TensorLayout.ForCompute(input, ActivationLayout.ChannelsLast);
        // The low-precision probes keep the parameters as a mixed-precision network has them: float32 (float64 for the reference).
        var parameterType = low == torch.ScalarType.Float32 ? dtype : dtype == torch.float64 ? torch.float64 : torch.float32;
        var weight = probe.Operation == ProbeOperation.Convolution ? Round(w) : w.to(parameterType);
        if (backward)
        {
            input = input.detach().requires_grad_();
            weight = weight.detach().requires_grad_();
        }
        var padding = probe.Dilation * (probe.Kernel - 1) / 2;
        torch.Tensor y;
        if (probe.Operation == ProbeOperation.GroupNorm)
            y = torch.nn.functional.group_norm(input, probe.Groups, weight, null, 1e-5);
        else
        {
            // A standardised convolution is the same convolution of the standardised weight (BiT's eps, 1e-8), cast to the
            // low precision after the standardisation (differentiably: the rounding's gradient is the identity's).
            var kernel = probe.Operation == ProbeOperation.StandardizedConvolution ? Steps.StandardizeWeight(weight, 1e-8) : weight;
            if (probe.Operation == ProbeOperation.StandardizedConvolution && low != torch.ScalarType.Float32)
                kernel = dtype == low ? kernel.to(low) : kernel.to(low).to(dtype);
            y = probe.OneDimensional
                ? torch.nn.functional.conv1d(input, kernel, stride: probe.Stride, padding: padding, dilation: probe.Dilation, groups: probe.Groups)
                : torch.nn.functional.conv2d(input, kernel, strides: new long[] { probe.Stride, probe.Stride },
                    padding: new long[] { padding, padding }, dilation: new long[] { probe.Dilation, probe.Dilation }, groups: probe.Groups);
        }
        if (!backward) return new[] { y };
        y.mul(Round(upstream)).sum().backward();
        return new[] { input.grad!, weight.grad! };
    }

    /// <summary>
    /// Runs each probe in a child process started by <paramref name="child"/> (given the probe's name; its command must
    /// call <see cref="RunHere(KernelProbe, TextWriter, torch.Device?)"/>), two at a time, and reads the outcomes from its output. A child that dies is reported
    /// as <c>crashed</c> with its signal for the direction it was in, and <c>not run</c> for the rest.
    /// </summary>
    public static IReadOnlyList<ProbeOutcome> RunIsolated(IEnumerable<KernelProbe> probes, Func<string, ProcessStartInfo> child,
        TimeSpan limit, Action<KernelProbe, IReadOnlyList<ProbeOutcome>>? done = null)
    {
        var list = probes.ToList();
        var results = new IReadOnlyList<ProbeOutcome>[list.Count];
        Parallel.For(0, list.Count, new ParallelOptions { MaxDegreeOfParallelism = 2 }, i =>
        {
            results[i] = RunOne(list[i], child(list[i].Name), limit);
            done?.Invoke(list[i], results[i]);
        });
        return results.SelectMany(r => r).ToList();
    }

    private static IReadOnlyList<ProbeOutcome> RunOne(KernelProbe probe, ProcessStartInfo start, TimeSpan limit)
    {
        var exit = ChildProcess.Run(start, limit);
        var outcomes = new List<ProbeOutcome>();
        string? started = null;
        foreach (var line in exit.Output.Split('\n'))
        {
            var parts = line.Trim().Split(' ');
            if (parts.Length < 4 || parts[0] != Prefix || parts[1] != probe.Name) continue;
            if (parts[3] == "start")
            {
                started = parts[2];
                continue;
            }
            var error = parts.Length > 4 && double.TryParse(parts[4], NumberStyles.Float, CultureInfo.InvariantCulture, out var e) ? e : double.NaN;
            outcomes.Add(new ProbeOutcome(probe.Name, parts[2], parts[3], error, ""));
            started = null;
        }
        foreach (var direction in new[] { "forward", "backward" })
        {
            if (outcomes.Any(o => o.Direction == direction)) continue;
            var why = exit.TimedOut || exit.ExitCode > 128 ? exit.Describe(limit) : $"{exit.Describe(limit)}: {LastLine(exit.Error)}";
            outcomes.Add(started == direction || (started is null && outcomes.Count == 0)
                ? new ProbeOutcome(probe.Name, direction, "crashed", double.NaN, why)
                : new ProbeOutcome(probe.Name, direction, "not run", double.NaN, "the process ended before it"));
        }
        return outcomes;
    }

    /// <summary>A start for re-running the current program with <paramref name="arguments"/> (through <c>dotnet exec</c> where it runs under the dotnet host).</summary>
    public static ProcessStartInfo Self(params string[] arguments)
    {
        var path = Environment.ProcessPath ?? "dotnet";
        var entry = Assembly.GetEntryAssembly()?.Location;
        if (Path.GetFileNameWithoutExtension(path) == "dotnet" && !string.IsNullOrEmpty(entry))
            return new ProcessStartInfo(path, new[] { "exec", entry }.Concat(arguments));
        return new ProcessStartInfo(path, arguments);
    }

    private static string LastLine(string text)
    {
        var lines = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.Contains("NNPACK")).ToList();
        return lines.Count == 0 ? "no message" : lines[^1];
    }
}
