using System;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Timm;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.MixedPrecision;

/// <summary>A small network with every step of a torchvision ResNet, for the precision switch.</summary>
[ResNet(Block.Basic, 1, 1, 1, 1, NumClasses = 10, InputSize = 64)]
public partial class MixedSmall { }

/// <summary>
/// Precision on one network: the switch back and forth, the parameters untouched, float64 and wrong inputs, training,
/// the weight casts per forward, and every option that must work with it (channels-last, ForwardFeatures, drop path,
/// freezing, the fold, the ONNX export and engine). Each test that computes in a low precision runs in a child process
/// (<see cref="Isolated"/>): a new dtype runs new native kernels, and one that crashes must fail its test alone.
/// </summary>
public sealed class PrecisionTests
{
    private static readonly long[] Shape = { 2, 3, 64, 64 };

    private static double MaxAbs(torch.Tensor t) => t.abs().max().item<float>();

    private static double Distance(torch.Tensor a, torch.Tensor b)
    {
        using var d = a.sub(b);
        return MaxAbs(d);
    }

    private static bool Same(torch.Tensor a, torch.Tensor b)
    {
        using var equal = a.eq(b);
        using var all = equal.all();
        return a.shape.SequenceEqual(b.shape) && all.item<bool>();
    }

    private static bool BitEqual(torch.Tensor a, torch.Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.contiguous().data<float>().ToArray().SequenceEqual(b.contiguous().data<float>().ToArray());

    /// <summary>A bfloat16 output: not the float32 one (it computed in bfloat16), but within bfloat16's rounding of it.</summary>
    private static void AssertLowPrecisionOf(torch.Tensor float32, torch.Tensor mixed, string what, double relative = 3e-2)
    {
        Assert.Equal(torch.ScalarType.Float32, mixed.dtype);
        Assert.Equal(float32.shape, mixed.shape);
        Assert.True(mixed.isfinite().all().item<bool>(), what + ": not finite");
        var (distance, scale) = (Distance(float32, mixed), MaxAbs(float32));
        Assert.True(distance > 1e-5 * scale, $"{what}: {distance:G3} from float32 (of {scale:G3}): it did not compute in a low precision");
        Assert.True(distance < relative * scale, $"{what}: {distance:G3} from float32 (of {scale:G3}), more than {relative} of it");
    }

    [Fact]
    public void The_default_is_float32_and_an_unknown_precision_is_refused()
    {
        using var network = new MixedSmall();
        Assert.Equal(Precision.Float32, network.Precision);
        Assert.Equal(Precision.Float32, ((IResNet)network).Precision);
        Assert.Equal(Precision.Float32, default(Precision));
        using var input = torch.zeros(Shape);
        Assert.Null(Autocast.Begin(Precision.Float32, input)); // nothing to do: no pass, no casts
        network.Precision = (Precision)7;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => network.forward(input));
        Assert.Contains("Float32, BFloat16 or Float16", e.Message);
    }

    [Fact]
    public void The_switch_back_and_forth_leaves_float32_bit_for_bit_and_the_parameters_untouched() =>
        Isolated.Run<PrecisionTests>(nameof(SwitchBackAndForth));

    internal static void SwitchBackAndForth()
    {
        using var network = new ResNet18();
        DeterministicWeights.Apply(network);
        network.eval();
        var before = network.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        using var input = DeterministicWeights.Input(Shape);
        using var inputBefore = input.clone();
        using var noGrad = torch.no_grad();
        using var float32 = network.forward(input);
        network.Precision = Precision.BFloat16;
        using var bfloat16 = network.forward(input);
        ((IResNet)network).Precision = Precision.Float32; // through the interface, as code that handles any network does
        using var float32Again = network.forward(input);
        network.Precision = Precision.BFloat16;
        using var bfloat16Again = network.forward(input);
        network.Precision = Precision.Float16;
        using var float16 = network.forward(input);
        network.Precision = Precision.Float32;
        using var float32Last = network.forward(input);

        Assert.True(BitEqual(float32, float32Again) && BitEqual(float32, float32Last), "Float32 after a low precision: not bit for bit the first Float32 output");
        Assert.True(BitEqual(bfloat16, bfloat16Again), "BFloat16 twice: not the same output");
        AssertLowPrecisionOf(float32, bfloat16, "bfloat16");
        AssertLowPrecisionOf(float32, float16, "float16", relative: 5e-3);
        Assert.True(Distance(float32, float16) < Distance(float32, bfloat16), "float16 (11 bits) should be closer to float32 than bfloat16 (8 bits)");
        // The parameters and buffers: the same tensors, dtypes and values as before any of it.
        foreach (var (key, tensor) in network.state_dict())
        {
            Assert.Equal(before[key].dtype, tensor.dtype);
            Assert.True(Same(before[key], tensor), key + " changed");
        }
        Assert.True(Same(input, inputBefore), "the input changed");
        Console.WriteLine("switched");
    }

    [Fact]
    public void A_float64_input_computes_in_the_low_precision_and_returns_float32() => Isolated.Run<PrecisionTests>(nameof(Float64Input));

    internal static void Float64Input()
    {
        using var network = new MixedSmall();
        DeterministicWeights.Apply(network);
        network.eval();
        network.Precision = Precision.BFloat16;
        using var input = DeterministicWeights.Input(Shape);
        using var input64 = input.to(torch.float64);
        using var noGrad = torch.no_grad();
        using var fromFloat32 = network.forward(input);
        using var fromFloat64 = network.forward(input64);
        // Autocast leaves a float64 input in float64 and then fails at the first convolution; here it is cast like any
        // input, so the float64 copy of a float32 picture gives exactly that picture's output.
        Assert.Equal(torch.ScalarType.Float32, fromFloat64.dtype);
        Assert.True(BitEqual(fromFloat32, fromFloat64), "a float64 input: not the output of its float32 values");
        Assert.Equal(torch.ScalarType.Float64, input64.dtype);
        Assert.True(Same(input64, input.to(torch.float64)));
    }

    [Fact]
    public void A_network_converted_from_float32_or_an_integer_input_is_one_clear_error() => Isolated.Run<PrecisionTests>(nameof(Refusals));

    internal static void Refusals()
    {
        using var network = new MixedSmall();
        network.eval();
        network.Precision = Precision.BFloat16;
        using var pixels = torch.zeros(Shape, torch.ScalarType.Byte);
        var integer = Assert.Throws<ArgumentException>(() => network.forward(pixels));
        Assert.Contains("computes on floating-point pictures, but the input is Byte. Convert it with input.to(torch.float32)", integer.Message);

        network.half();
        using var input = torch.zeros(Shape);
        var converted = Assert.Throws<InvalidOperationException>(() => network.forward(input));
        Assert.StartsWith("Precision.BFloat16 computes over float32 parameters (the master copy that training updates), but this network's are Float16.", converted.Message);
        Assert.Contains("network.to(torch.float32)", converted.Message);
        Assert.Contains("Precision = Precision.Float32", converted.Message);
        // The advice holds: converted back, it computes.
        network.to(torch.float32);
        using var noGrad = torch.no_grad();
        using var output = network.forward(input);
        Assert.Equal(torch.ScalarType.Float32, output.dtype);
    }

    [Fact]
    public void A_dtype_libtorch_cannot_compute_is_one_message_naming_the_alternative()
    {
        // libtorch 2.10 computes both low precisions on this CPU, so the ops are replaced by a failing one, as an older
        // libtorch without float16 convolutions fails.
        static void Fail(torch.ScalarType dtype, torch.Device device) =>
            throw new System.Runtime.InteropServices.ExternalException($"\"slow_conv2d_cpu\" not implemented for '{dtype}'\nException raised from ...");
        var cpu = LowPrecisionSupport.Probe(Precision.Float16, torch.ScalarType.Float16, torch.CPU, Fail);
        Assert.Equal($"Precision.Float16 needs Float16 convolutions and batch-norms on this CPU, and this libtorch ({torch.__version__}) has none " +
                     "(\"slow_conv2d_cpu\" not implemented for 'Float16'). Use Precision.BFloat16 (a CPU's low precision) or Precision.Float32.", cpu);
        var gpu = LowPrecisionSupport.Probe(Precision.BFloat16, torch.ScalarType.BFloat16, new torch.Device(DeviceType.CUDA, 0), Fail);
        Assert.EndsWith("Use Precision.Float16 (every CUDA GPU computes it) or Precision.Float32.", gpu);
        Assert.Contains("on this GPU (cuda:0)", gpu);
        Assert.Null(LowPrecisionSupport.Probe(Precision.BFloat16, torch.ScalarType.BFloat16, torch.CPU, (_, _) => { }));
    }

    [Fact]
    public void Where_the_cpu_has_no_bfloat16_arithmetic_the_first_forward_says_so_once()
    {
        // oneDNN limited to AVX2 stands for a CPU without AVX512-BF16 (measured there: bfloat16 21x float32's time).
        var exit = Isolated.Start(typeof(PrecisionTests).FullName!, nameof(BFloat16WithoutItsArithmetic), new[] { (OneDnn.IsaVariable, (string?)"AVX2") });
        Assert.True(exit.ExitCode == 0, exit.Output + exit.Error);
        var lines = exit.Error.Split('\n').Where(l => l.StartsWith("ResNetGen: Precision.BFloat16", StringComparison.Ordinal)).ToList();
        var line = Assert.Single(lines); // two forwards, one line
        Assert.Contains("oneDNN is limited to AVX2 (ONEDNN_MAX_CPU_ISA)", line);
        Assert.Contains("Use Precision.Float32 on this machine", line);
        Assert.Contains("slower", exit.Output);
    }

    [Fact]
    public void Fastest_is_float32_where_the_cpu_has_no_bfloat16_arithmetic_and_says_why()
    {
        var exit = Isolated.Start(typeof(PrecisionTests).FullName!, nameof(FastestWithoutBFloat16Arithmetic), new[] { (OneDnn.IsaVariable, (string?)"AVX2") });
        Assert.True(exit.ExitCode == 0, exit.Output + exit.Error);
        Assert.Contains("Float32 because Precision.BFloat16 on this CPU runs without bfloat16 arithmetic", exit.Output);
        Assert.Contains("oneDNN is limited to AVX2 (ONEDNN_MAX_CPU_ISA)", exit.Output);
    }

    internal static void FastestWithoutBFloat16Arithmetic()
    {
        var (precision, reason) = Autocast.Fastest(torch.CPU);
        Console.WriteLine($"{precision} because {reason}");
        var (elsewhere, why) = Autocast.Fastest(new torch.Device(DeviceType.MPS));
        Assert.Equal(Precision.Float32, elsewhere);
        Assert.Contains("CPU and CUDA op lists", why);
    }

    internal static void BFloat16WithoutItsArithmetic()
    {
        Console.WriteLine(Autocast.Slower(Precision.BFloat16, torch.CPU) ?? "no caveat");
        Assert.Null(Autocast.Slower(Precision.Float32, torch.CPU));
        Assert.Null(Autocast.Slower(Precision.BFloat16, new torch.Device(DeviceType.CUDA, 0)));
        using var network = new MixedSmall();
        network.eval();
        network.Precision = Precision.BFloat16;
        using var input = torch.randn(1, 3, 32, 32);
        using var noGrad = torch.no_grad();
        using var first = network.forward(input);
        using var second = network.forward(input);
        Assert.True(BitEqual(first, second));
    }

    [Fact]
    public void Training_reaches_the_float32_parameters_and_each_weight_is_cast_once_per_forward() => Isolated.Run<PrecisionTests>(nameof(Training));

    internal static void Training()
    {
        using var network = new ResNet18();
        DeterministicWeights.Apply(network);
        network.train();
        network.Precision = Precision.BFloat16;
        using var input = DeterministicWeights.Input(Shape);
        var meanBefore = network.bn1.running_mean!.clone();
        var casts = Autocast.CastsMade;
        using (var scope = torch.NewDisposeScope())
        {
            var output = network.forward(input);
            Assert.Equal(torch.ScalarType.Float32, output.dtype);
            output.sum().backward();
        }
        // ResNet-18: 20 convolution weights, the classifier's weight and bias; each cast once in the forward.
        Assert.Equal(22, Autocast.CastsMade - casts);
        foreach (var (name, parameter) in network.named_parameters())
        {
            Assert.Equal(torch.ScalarType.Float32, parameter.dtype);
            var grad = parameter.grad ?? throw new Xunit.Sdk.XunitException(name + " has no gradient");
            Assert.Equal(torch.ScalarType.Float32, grad.dtype);
            Assert.True(grad.isfinite().all().item<bool>(), name);
            Assert.True(grad.abs().sum().item<float>() > 0, name + "'s gradient is zero");
        }
        // Batch-norm statistics accumulate in float32, from the bfloat16 batch.
        Assert.Equal(torch.ScalarType.Float32, network.bn1.running_mean!.dtype);
        Assert.False(Same(network.bn1.running_mean!, meanBefore), "training did not update the running mean");

        // The weight cache itself: a second use in one pass is the same tensor, not a second cast.
        using var pass = Autocast.Begin(Precision.BFloat16, input)!;
        var first = pass.Weight(network.conv1.weight!);
        Assert.Same(first, pass.Weight(network.conv1.weight!));
        Assert.Equal(torch.ScalarType.BFloat16, first.dtype);
        Assert.Equal(1, pass.WeightCasts);
    }

    [Fact]
    public void Channels_last_the_features_drop_path_freezing_the_fold_and_the_onnx_paths_work_with_it() =>
        Isolated.Run<PrecisionTests>(nameof(Options));

    internal static void Options()
    {
        using var input = DeterministicWeights.Input(Shape);
        using (var network = new ResNet18())
        {
            DeterministicWeights.Apply(network);
            network.eval();
            using var noGrad = torch.no_grad();
            using var float32 = network.forward(input);
            network.Precision = Precision.BFloat16;
            using var nchw = network.forward(input);

            // Channels-last: the same computation up to bfloat16 rounding of another kernel order.
            network.ActivationLayout = ActivationLayout.ChannelsLast;
            using var last = network.forward(input);
            AssertLowPrecisionOf(float32, last, "bfloat16 channels-last");
            Assert.True(Distance(nchw, last) < 3e-2 * MaxAbs(nchw));

            // ForwardFeatures: float32 outputs, contiguous, each the bfloat16 rounding of the float32 feature.
            using var features = network.ForwardFeatures(input);
            network.Precision = Precision.Float32;
            network.ActivationLayout = ActivationLayout.AsGiven;
            using var features32 = network.ForwardFeatures(input);
            foreach (var (mixed, exact, name) in new[] { (features.Stem, features32.Stem, "stem"), (features.Layer2, features32.Layer2, "layer2"), (features.Layer4, features32.Layer4, "layer4") })
            {
                Assert.True(mixed.is_contiguous(), name);
                AssertLowPrecisionOf(exact, mixed, "feature " + name);
            }

            // The fold: made in float32, cast per forward.
            network.FuseForInference();
            network.Precision = Precision.BFloat16;
            using var fused = network.forward(input);
            AssertLowPrecisionOf(float32, fused, "bfloat16 fused");

            // ONNX: the export and the engine compute in float32 whatever Precision says.
            var folder = Directory.CreateTempSubdirectory("resnetgen-precision-").FullName;
            try
            {
                network.ExportOnnx(Path.Combine(folder, "mixed.onnx"));
                network.Precision = Precision.Float32;
                network.ExportOnnx(Path.Combine(folder, "float32.onnx"));
                Assert.Equal(File.ReadAllBytes(Path.Combine(folder, "float32.onnx")), File.ReadAllBytes(Path.Combine(folder, "mixed.onnx")));
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
            network.Precision = Precision.BFloat16;
            using var engine = network.ToOnnxRuntime();
            using var served = engine.forward(input);
            Tolerance.AssertClose(float32, served, "the engine under Precision.BFloat16", 1e-5);
        }

        // Drop path and freezing in training: timm's options under bfloat16.
        using (var network = new EveryTimmOption())
        {
            network.Precision = Precision.BFloat16;
            network.FreezeBackbone(1);
            network.train();
            var frozen = network.named_modules().Where(m => m.module is TorchSharp.Modules.BatchNorm2d && m.name.StartsWith("layer1", StringComparison.Ordinal))
                .Select(m => (Name: m.name, Mean: ((TorchSharp.Modules.BatchNorm2d)m.module).running_mean!)).ToList();
            Assert.NotEmpty(frozen);
            var frozenBefore = frozen.Select(f => f.Mean.clone()).ToList();
            var trainable = network.named_modules().Where(m => m.name.StartsWith("layer4", StringComparison.Ordinal) && m.module is TorchSharp.Modules.BatchNorm2d)
                .Select(m => ((TorchSharp.Modules.BatchNorm2d)m.module).running_mean!).First();
            var trainableBefore = trainable.clone();
            using var scope = torch.NewDisposeScope();
            using var batch = DeterministicWeights.Input(4, 3, 64, 64);
            var output = network.forward(batch);
            Assert.Equal(torch.ScalarType.Float32, output.dtype);
            output.sum().backward();
            for (var i = 0; i < frozen.Count; i++) Assert.True(Same(frozen[i].Mean, frozenBefore[i]), frozen[i].Name + " moved while frozen");
            Assert.False(Same(trainable, trainableBefore), "layer4's statistics did not move");
            foreach (var (name, parameter) in network.named_parameters())
            {
                var trains = name.StartsWith("layer4", StringComparison.Ordinal) || name.StartsWith("fc", StringComparison.Ordinal);
                Assert.Equal(trains, parameter.grad is not null);
                if (parameter.grad is { } grad) Assert.True(grad.isfinite().all().item<bool>() && grad.dtype == torch.ScalarType.Float32, name);
            }
        }
        Console.WriteLine("options");
    }
}
