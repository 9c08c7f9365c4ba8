using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>
/// What a generated network computes its convolutions and classifier in. Read at each forward, like
/// <see cref="ActivationLayout"/>; the parameters and buffers are never converted.
/// </summary>
public enum Precision
{
    /// <summary>The default: no casts; every op computes in the dtype of its input and of the parameters, as today.</summary>
    Float32 = 0,

    /// <summary>
    /// Mixed precision in bfloat16, as <c>torch.autocast(device, torch.bfloat16)</c> computes: float32 parameters and
    /// batch-norm statistics, convolutions and the classifier in bfloat16, every other op where autocast runs it for the
    /// input's device, float32 logits. On a CPU with AVX512-BF16 or AMX, about twice float32's speed.
    /// </summary>
    BFloat16 = 1,

    /// <summary>
    /// Mixed precision in float16, as <c>torch.autocast(device, torch.float16)</c> computes. The GPU's low precision; train it
    /// with a <see cref="GradScaler"/> (float16 gradients underflow). On a CPU without AVX512-FP16 or AMX-FP16 libtorch's
    /// float16 kernels are generic and far slower than float32.
    /// </summary>
    Float16 = 2,
}

/// <summary>Where <c>torch.autocast</c> runs an op: its three cast policies that a ResNet meets.</summary>
public enum CastPolicy
{
    /// <summary>In the low precision: floating inputs (and weights) are cast to bfloat16 or float16 (autocast's <c>lower_precision_fp</c>).</summary>
    LowerPrecision,

    /// <summary>In float32: floating inputs are cast to float32, and so is the output (autocast's <c>fp32</c>).</summary>
    Float32,

    /// <summary>Not in autocast's lists: the op computes in its input's dtype (for a batch-norm: low-precision input, float32 parameters).</summary>
    AsInput,
}

/// <summary>One op of a ResNet and where autocast places it on each device.</summary>
/// <param name="Name">The ATen op (<c>conv2d</c>, <c>batch_norm</c>, …), as autocast's lists name it.</param>
/// <param name="Cpu">Its policy for a CPU input (<c>AutocastCPU</c>).</param>
/// <param name="Cuda">Its policy for a CUDA input (<c>AutocastCUDA</c>).</param>
public sealed record AutocastOp(string Name, CastPolicy Cpu, CastPolicy Cuda)
{
    /// <summary>The policy for an input on <paramref name="device"/>.</summary>
    public CastPolicy For(DeviceType device) => device == DeviceType.CUDA ? Cuda : Cpu;
}

/// <summary>
/// PyTorch's autocast op lists (<c>aten/src/ATen/autocast_mode.cpp</c>), for the ops a generated ResNet runs, as data.
/// The generator writes the rows a network uses into its file's comments; <see cref="Autocast"/> applies them.
/// </summary>
public static class AutocastOps
{
    /// <summary>Every op a generated network can run, with its CPU and CUDA policy.</summary>
    public static IReadOnlyList<AutocastOp> All { get; } = new[]
    {
        new AutocastOp("conv2d", CastPolicy.LowerPrecision, CastPolicy.LowerPrecision),
        new AutocastOp("conv1d", CastPolicy.LowerPrecision, CastPolicy.LowerPrecision),
        new AutocastOp("linear", CastPolicy.LowerPrecision, CastPolicy.LowerPrecision),
        new AutocastOp("batch_norm", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("group_norm", CastPolicy.AsInput, CastPolicy.Float32),
        new AutocastOp("reflection_pad2d", CastPolicy.Float32, CastPolicy.AsInput),
        new AutocastOp("relu", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("add", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("max_pool2d", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("avg_pool2d", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("mean", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("sigmoid", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("mul", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("constant_pad_nd", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("slice", CastPolicy.AsInput, CastPolicy.AsInput),
        new AutocastOp("bernoulli", CastPolicy.AsInput, CastPolicy.AsInput),
    };

    /// <summary>The op of that name.</summary>
    /// <exception cref="ArgumentException">No such op in the table.</exception>
    public static AutocastOp Find(string name) =>
        All.FirstOrDefault(o => o.Name == name) ?? throw new ArgumentException($"no autocast policy for '{name}'", nameof(name));
}

/// <summary>
/// One forward pass in mixed precision: what a generated network's steps call to place each cast as
/// <c>torch.autocast</c> would for the input's device (<see cref="AutocastOps"/>). Float32 parameters are cast once per
/// forward and the casts kept until it ends (autocast's weight cache within a region); the casts are differentiable, so
/// gradients reach the float32 parameters. Made by <see cref="Begin"/>, disposed at the end of the forward.
/// </summary>
public sealed class Autocast : IDisposable
{
    private readonly Dictionary<torch.Tensor, torch.Tensor> _weights = new(ReferenceEqualityComparer.Instance);

    private Autocast(Precision precision, torch.ScalarType dtype, DeviceType device)
    {
        Precision = precision;
        Dtype = dtype;
        Device = device;
    }

    /// <summary>The precision of this pass.</summary>
    public Precision Precision { get; }

    /// <summary>The low-precision dtype (bfloat16 or float16).</summary>
    public torch.ScalarType Dtype { get; }

    /// <summary>The input's device type, whose op list applies.</summary>
    public DeviceType Device { get; }

    /// <summary>How many parameters have been cast in this pass (each once, however often used).</summary>
    public int WeightCasts => _weights.Count;

    private static long _castsMade;

    /// <summary>Weight casts made in this process, every pass together (for tests: a forward casts each weight once).</summary>
    internal static long CastsMade => System.Threading.Interlocked.Read(ref _castsMade);

    /// <summary>
    /// The pass a generated forward runs for <paramref name="input"/> under <paramref name="precision"/>: null for
    /// <see cref="Precision.Float32"/> (no casts at all). The first pass per device and dtype checks that libtorch computes
    /// that dtype there, and fails with one message naming the alternative if not.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="precision"/> is not a <see cref="Precision"/>.</exception>
    /// <exception cref="NotSupportedException">This device or libtorch cannot compute in that precision; the message says what to use.</exception>
    public static Autocast? Begin(Precision precision, torch.Tensor input)
    {
        if (input is null) throw new ArgumentNullException(nameof(input));
        var dtype = precision switch
        {
            Precision.Float32 => (torch.ScalarType?)null,
            Precision.BFloat16 => torch.ScalarType.BFloat16,
            Precision.Float16 => torch.ScalarType.Float16,
            _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "Precision is Float32, BFloat16 or Float16."),
        };
        if (dtype is null) return null;
        if (!input.is_floating_point())
            throw new ArgumentException($"Precision.{precision} computes on floating-point pictures, but the input is {input.dtype}. Convert it with input.to(torch.float32).", nameof(input));
        var device = input.device_type;
        if (device is not (DeviceType.CPU or DeviceType.CUDA))
            throw new NotSupportedException($"Precision.{precision} follows autocast's CPU and CUDA op lists; the input is on {device}. Use Precision.Float32 there.");
        LowPrecisionSupport.Ensure(precision, dtype.Value, input.device);
        return new Autocast(precision, dtype.Value, device);
    }

    /// <summary>
    /// Why <paramref name="precision"/> computes slower than float32 on <paramref name="device"/> here (a CPU without
    /// bfloat16 or float16 arithmetic, or oneDNN limited below it), or null where nothing speaks against it. The first
    /// mixed-precision forward on such a CPU writes the same sentence to standard error once.
    /// </summary>
    /// <remarks>
    /// On a CPU this runs ResNetGen's oneDNN check first (<see cref="OneDnn.EnsureChecked"/>, as constructing a generated
    /// network does): the answer depends on the instruction set the check leaves oneDNN, which it settles only once.
    /// </remarks>
    public static string? Slower(Precision precision, torch.Device device)
    {
        if (device.type != DeviceType.CPU || precision == Precision.Float32) return null;
        OneDnn.EnsureChecked();
        return precision switch
        {
            Precision.BFloat16 => LowPrecisionSupport.SlowOnThisCpu(torch.ScalarType.BFloat16),
            Precision.Float16 => LowPrecisionSupport.SlowOnThisCpu(torch.ScalarType.Float16),
            _ => null,
        };
    }

    /// <summary>
    /// The fastest precision that computes correctly on <paramref name="device"/>, with the reason: on a CPU,
    /// <see cref="Precision.BFloat16"/> where oneDNN has bfloat16 arithmetic there (AVX512-BF16 or AMX, not limited below
    /// it) and computes it correctly, otherwise <see cref="Precision.Float32"/>; on a GPU, BFloat16 where libtorch computes
    /// it there, else <see cref="Precision.Float16"/>, else Float32. Float16 on a CPU is never the fastest (where a CPU has
    /// float16 arithmetic it has bfloat16 too). Checks once per device and dtype, as the first mixed-precision forward does.
    /// </summary>
    public static (Precision Precision, string Reason) Fastest(torch.Device device)
    {
        if (device is null) throw new ArgumentNullException(nameof(device));
        OneDnn.EnsureChecked(); // before the probes' first convolution, as a network's constructor runs it
        if (device.type == DeviceType.CPU)
        {
            if (Slower(Precision.BFloat16, device) is { } slow) return (Precision.Float32, slow);
            if (LowPrecisionSupport.Problem(Precision.BFloat16, torch.ScalarType.BFloat16, device) is { } wrong) return (Precision.Float32, wrong);
            return (Precision.BFloat16, "this CPU has bfloat16 arithmetic (AVX512-BF16 or AMX) and oneDNN uses it");
        }
        if (device.type != DeviceType.CUDA)
            return (Precision.Float32, $"mixed precision follows autocast's CPU and CUDA op lists; this device is {device.type}");
        if (LowPrecisionSupport.Problem(Precision.BFloat16, torch.ScalarType.BFloat16, device) is not { } noBFloat16)
            return (Precision.BFloat16, $"libtorch computes bfloat16 on {device}");
        if (LowPrecisionSupport.Problem(Precision.Float16, torch.ScalarType.Float16, device) is null)
            return (Precision.Float16, $"{device} has no bfloat16 ({noBFloat16}); float16 trains with loss scaling");
        return (Precision.Float32, $"{device} computes neither bfloat16 nor float16 here ({noBFloat16})");
    }

    /// <summary>
    /// <paramref name="tensor"/> as the op <paramref name="op"/> takes it on this device: cast to the low precision or to
    /// float32 where its policy says so (a floating tensor of another dtype), otherwise a new handle on the same tensor.
    /// The caller disposes the result.
    /// </summary>
    public torch.Tensor For(string op, torch.Tensor tensor) => Cast(AutocastOps.Find(op).For(Device), tensor);

    private torch.Tensor Cast(CastPolicy policy, torch.Tensor tensor)
    {
        var target = policy switch
        {
            CastPolicy.LowerPrecision => Dtype,
            CastPolicy.Float32 => torch.ScalarType.Float32,
            _ => tensor.dtype,
        };
        return tensor.dtype == target || !tensor.is_floating_point() ? tensor.alias() : tensor.to(target);
    }

    /// <summary>
    /// A float32 parameter (or a fold's weight) in the low precision for a lower-precision op, cast the first time this pass
    /// asks and reused after; owned by the pass (do not dispose it).
    /// </summary>
    /// <exception cref="InvalidOperationException">The parameter is not float32 (the network was converted with half() or to()).</exception>
    public torch.Tensor Weight(torch.Tensor parameter)
    {
        if (_weights.TryGetValue(parameter, out var cast)) return cast;
        if (parameter.dtype != torch.ScalarType.Float32)
            throw new InvalidOperationException(
                $"Precision.{Precision} computes over float32 parameters (the master copy that training updates), but this network's are {parameter.dtype}. " +
                $"Convert it back with network.to(torch.float32), or set Precision = Precision.Float32 to compute in {parameter.dtype} as it is.");
        cast = parameter.to(Dtype);
        _weights.Add(parameter, cast);
        System.Threading.Interlocked.Increment(ref _castsMade);
        return cast;
    }

    /// <summary>A 2-D convolution with <paramref name="conv"/>'s own weight, bias and geometry, in the low precision.</summary>
    public torch.Tensor Conv2d(torch.Tensor input, Conv2d conv) =>
        Conv2d(input, Weight(conv.weight ?? throw new ArgumentException("the convolution has no weight", nameof(conv))), conv.bias, conv);

    /// <summary>
    /// A 2-D convolution of <paramref name="weight"/> (already low precision or cast here) and <paramref name="bias"/> (a
    /// float32 parameter or fold bias, cast once per pass) with <paramref name="geometry"/>'s stride, padding, dilation and
    /// groups, in the low precision. The input is not disposed.
    /// </summary>
    public torch.Tensor Conv2d(torch.Tensor input, torch.Tensor weight, torch.Tensor? bias, Convolution geometry) => Conv2d(input, weight, bias, geometry, "conv2d");

    /// <summary>As <see cref="Conv2d(torch.Tensor, torch.Tensor, torch.Tensor, Convolution)"/>, noted in an open <see cref="ConvolutionTrace"/> as <paramref name="kind"/>.</summary>
    internal torch.Tensor Conv2d(torch.Tensor input, torch.Tensor weight, torch.Tensor? bias, Convolution geometry, string kind)
    {
        using var x = Cast(CastPolicy.LowerPrecision, input);
        ConvolutionTrace.Record(x, geometry, kind);
        using var w = Cast(CastPolicy.LowerPrecision, weight);
        var b = bias is null ? null : Weight(bias);
        return torch.nn.functional.conv2d(x, w, b, geometry.stride, geometry.padding, geometry.dilation, geometry.groups);
    }

    /// <summary>A 1-D convolution with <paramref name="conv"/>'s weight and geometry, in the low precision.</summary>
    public torch.Tensor Conv1d(torch.Tensor input, Conv1d conv)
    {
        using var x = Cast(CastPolicy.LowerPrecision, input);
        ConvolutionTrace.Record(x, conv, "conv1d");
        var w = Weight(conv.weight ?? throw new ArgumentException("the convolution has no weight", nameof(conv)));
        var b = conv.bias is null ? null : Weight(conv.bias);
        return torch.nn.functional.conv1d(x, w, b, conv.stride[0], (conv.padding ?? new long[] { 0 })[0], conv.dilation[0], conv.groups);
    }

    /// <summary>The classifier, in the low precision.</summary>
    public torch.Tensor Linear(torch.Tensor input, Linear linear)
    {
        using var x = Cast(CastPolicy.LowerPrecision, input);
        var w = Weight(linear.weight ?? throw new ArgumentException("the classifier has no weight", nameof(linear)));
        var b = linear.bias is null ? null : Weight(linear.bias);
        return torch.nn.functional.linear(x, w, b);
    }

    /// <summary>A group-norm where autocast runs it: in its input's dtype on a CPU (float32 affine parameters), in float32 on CUDA.</summary>
    public torch.Tensor GroupNorm(torch.Tensor input, GroupNorm norm)
    {
        using var x = For("group_norm", input);
        return torch.nn.functional.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps);
    }

    /// <summary>
    /// What leaves a mixed-precision forward: <paramref name="output"/> as float32 (its handle disposed when a copy is
    /// made); with no pass (<see cref="Precision.Float32"/>), <paramref name="output"/> itself.
    /// </summary>
    public static torch.Tensor Output(torch.Tensor output, Autocast? pass)
    {
        if (pass is null || output.dtype == torch.ScalarType.Float32 || !output.is_floating_point()) return output;
        var result = output.to(torch.ScalarType.Float32);
        output.Dispose();
        return result;
    }

    /// <summary>Disposes this pass's weight casts (autograd keeps what a backward needs).</summary>
    public void Dispose()
    {
        foreach (var cast in _weights.Values) cast.Dispose();
        _weights.Clear();
    }
}

/// <summary>
/// Whether libtorch computes a low precision on a device: checked once per device and dtype, on first use, with a
/// convolution, a batch-norm with float32 statistics and a classifier in that dtype, and on a CPU a channels-last 1×1
/// stride-2 convolution against a float64 reference (the kernel oneDNN gets wrong where a CPU misdescribes its caches).
/// </summary>
internal static class LowPrecisionSupport
{
    /// <summary>A low-precision result is right when within this fraction of the reference's largest value (bfloat16 keeps 8 bits).</summary>
    public static double Tolerance(torch.ScalarType dtype) => dtype == torch.ScalarType.BFloat16 ? 1.6e-2 : 4e-3;

    private static readonly ConcurrentDictionary<(DeviceType, int, torch.ScalarType), Lazy<string?>> Checked = new();
    private static readonly ConcurrentDictionary<torch.ScalarType, bool> Warned = new();

    public static void Ensure(Precision precision, torch.ScalarType dtype, torch.Device device)
    {
        if (Problem(precision, dtype, device) is { } problem) throw new NotSupportedException(problem);
        if (device.type == DeviceType.CPU && SlowOnThisCpu(dtype) is { } why && Warned.TryAdd(dtype, true))
            Console.Error.WriteLine("ResNetGen: " + why);
    }

    /// <summary>Null when libtorch computes <paramref name="dtype"/> correctly on <paramref name="device"/>, else why not; probed once per device and dtype.</summary>
    internal static string? Problem(Precision precision, torch.ScalarType dtype, torch.Device device) =>
        Checked.GetOrAdd((device.type, device.index, dtype), _ => new Lazy<string?>(() => Probe(precision, dtype, device))).Value;

    /// <summary>
    /// Why <paramref name="dtype"/> is slower than float32 on this CPU, or null where oneDNN has its arithmetic: without
    /// it libtorch converts every value (bfloat16 on AVX-512) or runs generic kernels (float16, bfloat16 without AVX-512).
    /// Measured on an AMD EPYC Zen 4 VM with oneDNN limited by ONEDNN_MAX_CPU_ISA, ResNet-50 eval at batch 8: bfloat16
    /// 1.9× float32's time at AVX512_CORE, 21–22× at AVX2 or AVX; float16 without AVX512-FP16 12× on a ResNet-20 step.
    /// </summary>
    internal static string? SlowOnThisCpu(torch.ScalarType dtype)
    {
        var isa = (Environment.GetEnvironmentVariable(OneDnn.IsaVariable) ?? OneDnn.Status?.IsaCap)?.Trim().ToUpperInvariant();
        bool Allows(params string[] marks) => string.IsNullOrEmpty(isa) || isa is "ALL" or "DEFAULT" || marks.Any(m => isa!.Contains(m));
        var limited = string.IsNullOrEmpty(isa) ? "" : $", and oneDNN is limited to {isa} ({OneDnn.IsaVariable})";
        if (dtype == torch.ScalarType.BFloat16 && !(CpuCaches.HasBFloat16Arithmetic && Allows("BF16", "FP16", "AMX", "AVX10")))
            return $"Precision.BFloat16 on this CPU runs without bfloat16 arithmetic ({(CpuCaches.HasBFloat16Arithmetic ? "it has AVX512-BF16 or AMX" : "no AVX512-BF16 or AMX")}{limited}): " +
                   "libtorch converts every value, which makes it slower than float32 (ResNet-50 eval measured 1.9× float32's time with AVX-512, 21× with AVX2). " +
                   "Use Precision.Float32 on this machine; BFloat16 pays on a CPU with AVX512-BF16 or AMX, or on a GPU.";
        if (dtype == torch.ScalarType.Float16 && !(CpuCaches.HasFloat16Arithmetic && Allows("FP16", "AMX_FP16", "AVX10")))
            return $"Precision.Float16 on this CPU ({(CpuCaches.HasFloat16Arithmetic ? "it has AVX512-FP16 or AMX-FP16" : "no AVX512-FP16 or AMX-FP16")}{limited}) runs libtorch's " +
                   "generic float16 kernels, many times slower than float32; on a CPU the fast low precision is Precision.BFloat16 (AVX512-BF16 or AMX), Float16 is the GPU's.";
        return null;
    }

    /// <summary>
    /// Null when libtorch computes <paramref name="dtype"/> on <paramref name="device"/>, else the one message a forward
    /// fails with. <paramref name="compute"/> replaces the ops tried (for tests of the message).
    /// </summary>
    internal static string? Probe(Precision precision, torch.ScalarType dtype, torch.Device device, Action<torch.ScalarType, torch.Device>? compute = null)
    {
        var where = device.type == DeviceType.CUDA ? $"this GPU ({device})" : "this CPU";
        var alternative = device.type == DeviceType.CUDA
            ? dtype == torch.ScalarType.BFloat16 ? "Precision.Float16 (every CUDA GPU computes it) or Precision.Float32" : "Precision.Float32"
            : dtype == torch.ScalarType.Float16 ? "Precision.BFloat16 (a CPU's low precision) or Precision.Float32" : "Precision.Float32";
        try
        {
            (compute ?? Ops)(dtype, device);
        }
        catch (Exception e)
        {
            return $"Precision.{precision} needs {dtype} convolutions and batch-norms on {where}, and this libtorch ({torch.__version__}) has none " +
                   $"({FirstLine(e.Message)}). Use {alternative}.";
        }
        if (device.type != DeviceType.CPU) return null;
        var error = ChannelsLast1x1Stride2Error(dtype);
        if (error <= Tolerance(dtype)) return null;
        return $"libtorch computes {dtype} convolutions wrongly on this CPU (a channels-last 1×1 stride-2 convolution: relative error " +
               $"{error.ToString("0.##e+0", System.Globalization.CultureInfo.InvariantCulture)}), so Precision.{precision} would give wrong results. " +
               $"Use Precision.Float32; the sample's doctor command shows which kernels are affected.";
    }

    /// <summary>A convolution, a batch-norm with float32 statistics and a classifier in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    private static void Ops(torch.ScalarType dtype, torch.Device device)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = torch.ones(new long[] { 2, 4, 6, 6 }, dtype, device);
        var w = torch.ones(new long[] { 4, 4, 3, 3 }, dtype, device);
        var y = torch.nn.functional.conv2d(x, w, padding: new long[] { 1, 1 });
        var stats = torch.ones(4, torch.ScalarType.Float32, device);
        var normed = torch.nn.functional.batch_norm(y, stats, stats, stats, stats, false, 0.1, 1e-5);
        torch.nn.functional.linear(normed.mean(new long[] { 2, 3 }), torch.ones(new long[] { 3, 4 }, dtype, device)).cpu();
    }

    /// <summary>A ResNet downsampling convolution in <paramref name="dtype"/>, channels-last, against float64 on the same rounded values.</summary>
    internal static double ChannelsLast1x1Stride2Error(torch.ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator(20261203);
        var x = torch.randn(new long[] { 2, 256, 8, 8 }, generator: generator).to(dtype);
        using var scale = 16.0.ToScalar(); // held: a temporary Scalar can be freed while libtorch reads it
        var w = torch.randn(new long[] { 512, 256, 1, 1 }, generator: generator).div_(scale).to(dtype);
        var y = torch.nn.functional.conv2d(TensorLayout.ForCompute(x, ActivationLayout.ChannelsLast), w, strides: new long[] { 2, 2 });
        var sampled = x.slice(2, 0, 8, 2).slice(3, 0, 8, 2).to(torch.float64);
        var reference = torch.einsum("oc,nchw->nohw", w.reshape(512, 256).to(torch.float64), sampled);
        var relative = y.to(torch.float64).sub(reference).abs().max().item<double>() / reference.abs().max().item<double>();
        return double.IsNaN(relative) ? double.PositiveInfinity : relative;
    }

    private static string FirstLine(string message)
    {
        var line = message.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "no message";
        return line.Length > 200 ? line.Substring(0, 200) + "…" : line;
    }
}
