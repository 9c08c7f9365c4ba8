using System;
using System.Globalization;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Kernels;

/// <summary>
/// The once-per-process oneDNN check. Anything that may run libtorch's kernels unguarded runs in a child process: on a
/// CPU whose oneDNN is broken (an AMD EPYC Zen 5 VM) those kernels compute wrongly or raise SIGFPE.
/// </summary>
public class OneDnnTests
{
    private readonly Xunit.Abstractions.ITestOutputHelper _output;

    public OneDnnTests(Xunit.Abstractions.ITestOutputHelper output) => _output = output;

    [Fact]
    public void The_check_ran_as_the_tests_loaded_and_leaves_the_test_convolution_correct()
    {
        var status = OneDnn.Status;
        Assert.NotNull(status);
        Assert.Equal(CpuCaches.DescriptionComplete(), status!.CacheDescriptionComplete);
        Assert.Equal(status.Enabled, OneDnn.Enabled);
        Assert.True(OneDnn.ProbeChannelsLast1x1Stride2() <= OneDnn.Tolerance, "the guarded process computes the test convolution wrongly");
        // NCHW 3×3 over 12 and 20 input channels: what AVX's kernels computed wrongly on the Zen 5 VM (a deep-tiered stem's 12).
        Assert.True(OneDnn.ProbeNarrow3x3() <= OneDnn.Tolerance, $"the guarded process computes a narrow 3×3 convolution wrongly ({OneDnn.ProbeNarrow3x3():G3})");
        Assert.Same(status, OneDnn.EnsureChecked()); // once per process
    }

    [Fact]
    public void Libtorchs_defaults_fail_the_probe_only_where_the_check_intervened()
    {
        // The child trusts libtorch (policy on, no ISA limit) and reports what the test convolution gives there.
        var output = Isolated.Run<OneDnnTests>(nameof(ReportRawProbe), (OneDnn.PolicyVariable, "on"), (OneDnn.IsaVariable, null));
        var raw = double.Parse(output.Split('\n').Single(l => l.StartsWith("raw-probe ", StringComparison.Ordinal))["raw-probe ".Length..], CultureInfo.InvariantCulture);
        var status = OneDnn.Status!;
        var rawCorrect = raw <= OneDnn.Tolerance;
        // Every machine takes exactly one of three branches, and each asserts what the check must have done there.
        string branch;
        if (status.Policy != OneDnnPolicy.Check || Environment.GetEnvironmentVariable(OneDnn.IsaVariable) is not null && status.IsaCap is null)
        {
            // The person running the tests chose for oneDNN (RESNETGEN_ONEDNN or their own ONEDNN_MAX_CPU_ISA): the check kept out.
            branch = $"the user's own setting ({OneDnn.PolicyVariable}={Environment.GetEnvironmentVariable(OneDnn.PolicyVariable)}, {OneDnn.IsaVariable}={Environment.GetEnvironmentVariable(OneDnn.IsaVariable)})";
            Assert.Null(status.IsaCap);
        }
        else if (status.CacheDescriptionComplete)
        {
            // Nothing to limit up front: the check's own probe ran libtorch's defaults, as the child did, and acted on it alone.
            branch = rawCorrect ? "complete cache description, defaults correct: oneDNN left as it was" : "complete cache description, defaults wrong: oneDNN turned off";
            Assert.Null(status.IsaCap);
            Assert.Equal(rawCorrect, status.Enabled);
            Assert.Equal(rawCorrect, status.ProbeError <= OneDnn.Tolerance);
        }
        else
        {
            // An incomplete description (the Zen 5 VM): limited to SSE4.1 before the first kernel, then probed under the limit.
            branch = $"incomplete cache description: limited to {OneDnn.LimitedIsa} (libtorch's defaults {(rawCorrect ? "correct" : "wrong")} here, relative error {raw:G3})";
            Assert.Equal(OneDnn.LimitedIsa, status.IsaCap);
            Assert.Equal(status.ProbeError <= OneDnn.Tolerance, status.Enabled);
        }
        if (!rawCorrect) Assert.True(status.IsaCap is not null || !status.Enabled, $"libtorch's defaults compute the probe wrongly here ({raw:G3}), yet the check left oneDNN as it was");
        _output.WriteLine("branch: " + branch);
    }

    internal static void ReportRawProbe()
    {
        Assert.Equal(OneDnnPolicy.On, OneDnn.Status!.Policy);
        Assert.Null(Environment.GetEnvironmentVariable(OneDnn.IsaVariable));
        Console.WriteLine("raw-probe " + OneDnn.ProbeChannelsLast1x1Stride2().ToString("R", CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Off_turns_onednn_off_for_the_process_and_resnet18_still_equals_torchvision() =>
        Isolated.Run<OneDnnTests>(nameof(OffIsCorrect), (OneDnn.PolicyVariable, "off"));

    internal static void OffIsCorrect()
    {
        Assert.Equal(OneDnnPolicy.Off, OneDnn.Status!.Policy);
        Assert.False(OneDnn.Enabled);
        using var network = new ResNet18();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats("resnet18.eval.bin"), output, "resnet18 without oneDNN");
        OneDnn.Enabled = true; // the switch works both ways
        Assert.True(OneDnn.Enabled);
    }

    [Fact]
    public void Under_resnetgens_defaults_convolutions_of_any_input_width_are_correct() =>
        Assert.Contains("shapes correct", Isolated.Run<OneDnnTests>(nameof(SweepInputWidths)));

    internal static void SweepInputWidths()
    {
        // Where a CPU's oneDNN kernels are broken, the breakage follows the input width: on the Zen 5 VM under the AVX
        // limit every NCHW 3×3 convolution of 9–39 input channels not a multiple of 8 was wrong, the rest right. Every
        // width of 1–40, both layouts, 1×1 and 3×3, stride 1 and 2, forward, measured as the doctor's probes are.
        var wrong = new System.Collections.Generic.List<string>();
        var count = 0;
        foreach (var channelsLast in new[] { false, true })
        foreach (var kernel in new[] { 3, 1 })
        foreach (var cin in Enumerable.Range(1, 40))
        foreach (var stride in new[] { 1, 2 })
        {
            var probe = new KernelProbe($"{(channelsLast ? "channels-last" : "nchw")} {kernel}x{kernel} {cin}→16 stride {stride}", channelsLast, kernel, stride,
                Groups: 1, Dilation: 1, new[] { (2, cin, 16, 13) });
            var error = KernelProbes.Measure(probe, backward: false, device: null);
            count++;
            if (!(error <= probe.Tolerance)) wrong.Add($"{probe.Name}: {error:G3}");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {count} convolutions wrong under {OneDnn.Status}:\n" + string.Join("\n", wrong));
        Console.WriteLine($"{count} shapes correct (oneDNN {(OneDnn.Enabled ? "on" : "off")}, limited to {OneDnn.Status!.IsaCap ?? "nothing"})");
    }

    [Fact]
    public void The_isa_limit_the_check_sets_stays_in_its_process() =>
        Assert.Contains("child sees nothing", Isolated.Run<OneDnnTests>(nameof(LimitNotInherited)));

    internal static void LimitNotInherited()
    {
        // Where the check limits oneDNN (an incomplete cache description, the Zen 5 VM), the limit is for this process's
        // libtorch; another program it starts (a Python PyTorch whose oneDNN needs no limit and fails with one) must not
        // inherit it.
        var status = OneDnn.EnsureChecked();
        var start = new System.Diagnostics.ProcessStartInfo("sh");
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("echo child sees ${ONEDNN_MAX_CPU_ISA:-nothing}");
        var line = ChildProcess.Run(start, TimeSpan.FromSeconds(30)).Output.Trim();
        Console.WriteLine($"{line} (this process: limited to {status.IsaCap ?? "nothing"})");
        Assert.Equal("child sees nothing", line);
    }

    [Fact]
    public void A_users_own_isa_setting_is_kept() =>
        Isolated.Run<OneDnnTests>(nameof(UserIsaKept), (OneDnn.IsaVariable, "AVX"));

    internal static void UserIsaKept()
    {
        Assert.Null(OneDnn.Status!.IsaCap);
        Assert.Equal("AVX", Environment.GetEnvironmentVariable(OneDnn.IsaVariable));
        Assert.True(OneDnn.ProbeChannelsLast1x1Stride2() <= OneDnn.Tolerance);
    }

    [Theory]
    [InlineData(null, OneDnnPolicy.Check)]
    [InlineData("check", OneDnnPolicy.Check)]
    [InlineData("ON", OneDnnPolicy.On)]
    [InlineData("off", OneDnnPolicy.Off)]
    public void The_policy_comes_from_the_environment(string? value, OneDnnPolicy expected) =>
        Isolated.Run<OneDnnTests>("ReportPolicy" + expected, (OneDnn.PolicyVariable, value));

    internal static void ReportPolicyCheck() => Assert.Equal(OneDnnPolicy.Check, OneDnn.PolicyFromEnvironment());

    internal static void ReportPolicyOn() => Assert.Equal(OneDnnPolicy.On, OneDnn.PolicyFromEnvironment());

    internal static void ReportPolicyOff() => Assert.Equal(OneDnnPolicy.Off, OneDnn.PolicyFromEnvironment());

    [Fact]
    public void An_unknown_policy_is_refused_with_the_choices()
    {
        var outcome = Isolated.Start(typeof(OneDnnTests).FullName!, nameof(ReportPolicyCheck), new[] { (OneDnn.PolicyVariable, (string?)"sometimes") });
        Assert.NotEqual(0, outcome.ExitCode);
        Assert.Contains("RESNETGEN_ONEDNN=sometimes is not a policy. Use check (the default), on or off.", outcome.Error);
    }

    [Fact]
    public void The_cpu_and_its_caches_are_described()
    {
        Assert.False(string.IsNullOrWhiteSpace(CpuCaches.Description));
        if (System.Runtime.Intrinsics.X86.X86Base.IsSupported)
        {
            Assert.Contains("family", CpuCaches.Model);
            Assert.NotNull(CpuCaches.Vendor);
        }
    }
}
