using System;
using System.Diagnostics;
using System.Globalization;
using TorchSharp;

namespace ResNetGen;

/// <summary>What <see cref="OneDnn.EnsureChecked"/> does with libtorch's oneDNN (mkldnn) CPU kernels.</summary>
public enum OneDnnPolicy
{
    /// <summary>
    /// The default: check this CPU once per process and keep oneDNN only where it computes correctly. Where the CPU
    /// describes its caches incompletely (some cloud VMs), oneDNN's kernels are limited to AVX before its first use;
    /// where a test convolution still computes wrongly, oneDNN is turned off for the process.
    /// </summary>
    Check = 0,

    /// <summary>Trust libtorch's defaults: no check, nothing changed (for users who know their kernels).</summary>
    On = 1,

    /// <summary>Turn oneDNN off for the process: libtorch's own (slower) convolutions, on every CPU.</summary>
    Off = 2,
}

/// <summary>The outcome of the once-per-process check.</summary>
/// <param name="Policy">The policy that was applied.</param>
/// <param name="Enabled">Whether libtorch uses oneDNN after the check.</param>
/// <param name="CacheDescriptionComplete">Whether CPUID describes the caches completely (always true off x86).</param>
/// <param name="IsaCap">The <c>ONEDNN_MAX_CPU_ISA</c> value ResNetGen set for the process, or null.</param>
/// <param name="ProbeError">The test convolution's largest error relative to its largest value (NaN when not run).</param>
/// <param name="Milliseconds">What the check cost.</param>
/// <param name="Message">One line saying what was done, or null when nothing needed doing.</param>
public sealed record OneDnnStatus(OneDnnPolicy Policy, bool Enabled, bool CacheDescriptionComplete, string? IsaCap,
    double ProbeError, double Milliseconds, string? Message);

/// <summary>
/// Keeps libtorch's CPU convolutions correct on every CPU. libtorch 2.10's oneDNN picks its convolution kernels from
/// the CPU's cache sizes; on CPUs whose CPUID leaves describe the caches incompletely (an AMD EPYC Zen 5 VM reports
/// a 508 MiB L3 of associativity 0) its AVX-512/AVX2 "brgemm" kernels compute some 1×1 convolutions wrongly or
/// divide by zero (SIGFPE, a crash no .NET handler can catch). Generated networks call <see cref="EnsureChecked"/>
/// when constructed, so the check runs before their first convolution.
/// </summary>
/// <remarks>
/// One line turns oneDNN off for the process on any CPU: <c>OneDnn.Enabled = false;</c> (or set the environment
/// variable <c>RESNETGEN_ONEDNN=off</c>). <c>RESNETGEN_ONEDNN=on</c> skips the check.
/// </remarks>
public static class OneDnn
{
    /// <summary>The environment variable that chooses the policy: <c>check</c> (default), <c>on</c> or <c>off</c>.</summary>
    public const string PolicyVariable = "RESNETGEN_ONEDNN";

    /// <summary>oneDNN's own variable for the highest instruction set its kernels may use.</summary>
    public const string IsaVariable = "ONEDNN_MAX_CPU_ISA";

    /// <summary>The largest relative error the test convolution may show (float32 against a float64 reference).</summary>
    public const double Tolerance = 1e-4;

    private static readonly object Gate = new();
    private static OneDnnStatus? _status;

    /// <summary>The result of the check, or null before it ran.</summary>
    public static OneDnnStatus? Status
    {
        get { lock (Gate) return _status; }
    }

    /// <summary>
    /// Whether libtorch may use oneDNN (<c>torch.backends.mkldnn.enabled</c>). Setting it takes effect for every
    /// later convolution in the process; <c>false</c> is the way to compute correctly where oneDNN does not.
    /// </summary>
    public static bool Enabled
    {
        get => LibTorchNative.UserEnabledMkldnn();
        set
        {
            lock (Gate)
            {
                _status ??= new OneDnnStatus(value ? OneDnnPolicy.On : OneDnnPolicy.Off, value, true, null, double.NaN, 0, null);
                LibTorchNative.SetUserEnabledMkldnn(value);
            }
        }
    }

    /// <summary>libtorch's oneDNN version string, or null where it cannot be read (off Linux x64).</summary>
    public static string? Version => LibTorchNative.OneDnnVersion();

    /// <summary>The policy from <see cref="PolicyVariable"/>; <see cref="OneDnnPolicy.Check"/> when unset.</summary>
    /// <exception cref="InvalidOperationException">The variable holds something other than check, on or off.</exception>
    public static OneDnnPolicy PolicyFromEnvironment()
    {
        var value = Environment.GetEnvironmentVariable(PolicyVariable)?.Trim();
        return value?.ToLowerInvariant() switch
        {
            null or "" or "check" => OneDnnPolicy.Check,
            "on" or "1" or "true" => OneDnnPolicy.On,
            "off" or "0" or "false" => OneDnnPolicy.Off,
            _ => throw new InvalidOperationException($"{PolicyVariable}={value} is not a policy. Use check (the default), on or off."),
        };
    }

    /// <summary>
    /// Runs the check once per process (later calls return the first result at no cost) under the policy of
    /// <see cref="PolicyVariable"/>, and writes one line to standard error when it changes anything.
    /// </summary>
    public static OneDnnStatus EnsureChecked()
    {
        lock (Gate)
        {
            if (_status is not null) return _status;
            _status = Apply(PolicyFromEnvironment());
            if (_status.Message is not null) Console.Error.WriteLine("ResNetGen: " + _status.Message);
            return _status;
        }
    }

    private static OneDnnStatus Apply(OneDnnPolicy policy)
    {
        var clock = Stopwatch.StartNew();
        torch.InitializeDeviceType(DeviceType.CPU);
        switch (policy)
        {
            case OneDnnPolicy.Off:
                LibTorchNative.SetUserEnabledMkldnn(false);
                return new OneDnnStatus(policy, false, true, null, double.NaN, clock.Elapsed.TotalMilliseconds,
                    $"oneDNN is off for this process ({PolicyVariable}=off): libtorch's own convolutions, correct and slower.");
            case OneDnnPolicy.On:
                return new OneDnnStatus(policy, LibTorchNative.UserEnabledMkldnn(), true, null, double.NaN, clock.Elapsed.TotalMilliseconds, null);
        }

        if (!LibTorchNative.UserEnabledMkldnn())
            return new OneDnnStatus(policy, false, true, null, double.NaN, clock.Elapsed.TotalMilliseconds, null);

        // 1. Before oneDNN's first kernel: an incomplete cache description feeds its kernel choice garbage, so its kernels
        //    are limited to SSE4.1. AVX is not enough: on the Zen 5 VM its kernels (and AVX2's and AVX-512's) compute every
        //    NCHW 3×3 convolution whose input channels are above 8 and not a multiple of 8 wrongly (relative errors 0.2–0.6,
        //    or NaN), while SSE4.1's computed every shape probed correctly. oneDNN reads the variable once, at its first
        //    use; a user's own setting is kept. Set in the native environment only, which this process's oneDNN reads:
        //    not in .NET's, which child processes inherit — another program's oneDNN (a Python PyTorch, say) has its own
        //    kernels and its own needs (PyTorch 1.13's finds no bfloat16 convolution under AVX and fails).
        var complete = CpuCaches.DescriptionComplete();
        string? cap = null;
        if (!complete && Environment.GetEnvironmentVariable(IsaVariable) is null && LibTorchNative.TrySetEnvironment(IsaVariable, LimitedIsa))
            cap = LimitedIsa;

        // 2. Deterministic symptoms: channels-last 1×1 stride-2 convolutions and NCHW 3×3 convolutions of 12 and 20 input
        //    channels, which compute wrongly (without crashing) where the kernels are broken, checked against float64
        //    references that oneDNN takes no part in.
        var error = Math.Max(ProbeChannelsLast1x1Stride2(), ProbeNarrow3x3()); // NaN if either is
        var elapsed = clock.Elapsed.TotalMilliseconds;
        var what = string.Format(CultureInfo.InvariantCulture, "{0:0.##e+0}", error);
        if (!(error <= Tolerance))
        {
            LibTorchNative.SetUserEnabledMkldnn(false);
            return new OneDnnStatus(policy, false, complete, cap, error, elapsed,
                $"libtorch's oneDNN computed a test convolution wrongly on this CPU (relative error {what}); it is off for this process, " +
                $"so convolutions are correct but slower. Run the sample's doctor command for details; set {PolicyVariable}=on to keep oneDNN anyway.");
        }
        return new OneDnnStatus(policy, true, complete, cap, error, elapsed, cap is null ? null :
            $"this CPU describes its caches incompletely (CPUID), which breaks libtorch's oneDNN AVX-512, AVX2 and AVX convolution kernels; " +
            $"they are limited to SSE4.1 for this process ({IsaVariable}={LimitedIsa}). Set {PolicyVariable}=on to keep oneDNN's defaults, or off to turn it off.");
    }

    /// <summary>The instruction set the check limits oneDNN to where the CPU describes its caches incompletely.</summary>
    public const string LimitedIsa = "SSE41";

    /// <summary>
    /// Runs the doctor's <c>3x3-narrow/nchw</c> probe forward (NCHW 3×3 convolutions of 12 and 20 input channels: above 8
    /// and not a multiple of 8, a deep-tiered stem's or a picture of many bands) and returns its largest error relative
    /// to the largest value of its float64 reference, computed with oneDNN off; NaN if anything is not finite.
    /// </summary>
    public static double ProbeNarrow3x3() => KernelProbes.Measure(KernelProbes.Find("3x3-narrow/nchw"), backward: false, device: null);

    /// <summary>
    /// Runs channels-last 1×1 stride-2 convolutions of a ResNet downsampling shape in float32 and returns their largest
    /// error relative to the largest value of a float64 reference computed as a matrix product. Leaves the global
    /// random state, the grad mode and every tensor as they were.
    /// </summary>
    public static double ProbeChannelsLast1x1Stride2()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator(20261123);
        var worst = 0.0;
        // Shapes seen to give wrong numbers without crashing where the kernels are broken (other 1×1 shapes can raise SIGFPE there).
        foreach (var (n, cin, cout, size) in new[] { (2, 256, 512, 7), (4, 256, 512, 8) })
        {
            var x = torch.randn(new long[] { n, cin, size, size }, generator: generator);
            using var fanInRoot = Math.Sqrt(cin).ToScalar(); // held: a temporary Scalar can be freed while libtorch reads it
            var w = torch.randn(new long[] { cout, cin, 1, 1 }, generator: generator).div_(fanInRoot);
            var input = TensorLayout.ForCompute(x, ActivationLayout.ChannelsLast);
            var y = torch.nn.functional.conv2d(input, w, strides: new long[] { 2, 2 });
            // Reference: y[n, o, i, j] = Σc w[o, c] · x[n, c, 2i, 2j], in float64.
            var sampled = x.slice(2, 0, size, 2).slice(3, 0, size, 2).to(torch.float64);
            var reference = torch.einsum("oc,nchw->nohw", w.reshape(cout, cin).to(torch.float64), sampled);
            var scale = reference.abs().max().item<double>();
            var diff = y.to(torch.float64).sub(reference).abs().max().item<double>();
            var relative = diff / scale;
            if (double.IsNaN(relative)) return double.NaN;
            worst = Math.Max(worst, relative);
        }
        return worst;
    }
}
