using System.Collections.Generic;
using System;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using ResNetGen.Generator.Tests.Cifar;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.PyTorch;
using ResNetGen.Generator.Tests.Timm;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Onnx;

/// <summary>
/// The in-process ONNX Runtime engine (<c>ToOnnxRuntime</c>): equal to the network's eval forward, never on stale weights,
/// released when disposed, and one clear error for each bad input.
/// </summary>
public sealed class OnnxRuntimeEngineTests : IDisposable
{
    /// <summary>The bound: within 1e-5 of the largest |output| (and the batch-contrast rule).</summary>
    private const double Bound = 1e-5;

    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-engine-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    internal static T Deterministic<T>(T network) where T : torch.nn.Module
    {
        DeterministicWeights.Apply(network);
        network.eval();
        return network;
    }

    private static void AssertEngineEqualsForward(torch.nn.Module<torch.Tensor, torch.Tensor> network, OnnxRuntimeEngine engine, torch.Tensor input, string what)
    {
        using var noGrad = torch.no_grad();
        using var expected = network.call(input);
        using var actual = engine.forward(input);
        Assert.Equal(torch.float32, actual.dtype);
        Tolerance.AssertClose(expected, actual, what, Bound);
    }

    public static TheoryData<string> Networks() => new() { "resnet18", "resnet20_zeropad", "resnet20_avgpoolzeropad", "small_bit", "headless", "resnet50d" };

    internal static (torch.nn.Module<torch.Tensor, torch.Tensor> Network, int Size) Create(string name) => name switch
    {
        "resnet18" => (Deterministic(new ResNet18()), 64),
        "resnet20_zeropad" => (Deterministic(new ResNet20A()), 32),
        "resnet20_avgpoolzeropad" => (Deterministic(new ResNet20AvgPool()), 32),
        "small_bit" => (Deterministic(new SmallBit()), 64),
        "headless" => (Deterministic(new TwinHeadless()), 64),
        "resnet50d" => (Deterministic(new ResNet50d()), 64),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Networks))]
    public void Engine_equals_the_eval_forward_at_several_batch_sizes(string name)
    {
        var (network, size) = Create(name);
        using var _ = network;
        using var engine = ((IResNet)network).ToOnnxRuntime();
        Assert.Equal(1, engine.Builds);
        foreach (var batch in new[] { 1, 3, 8 })
        {
            using var input = DeterministicWeights.Input(batch, 3, size, size);
            AssertEngineEqualsForward(network, engine, input, $"{name}, batch {batch}");
        }
        Assert.Equal(1, engine.Builds); // unchanged weights: never rebuilt
        Assert.False(((IResNet)network).IsFused); // the engine folds its own graph; the network is left as it was
    }

    [Fact]
    public void Engine_takes_other_input_sizes_channels_last_inputs_and_empty_batches()
    {
        using var network = Deterministic(new ResNet18());
        using var engine = network.ToOnnxRuntime();
        Assert.Null(engine.FixedSize);
        Assert.Equal(3, engine.InChannels);
        Assert.Equal(1000, engine.OutputFeatures);
        using (var input = DeterministicWeights.Input(2, 3, 80, 96)) AssertEngineEqualsForward(network, engine, input, "80×96");
        using (var input = DeterministicWeights.Input(2, 3, 64, 64))
        using (var channelsLast = TensorLayout.ForCompute(input, ActivationLayout.ChannelsLast))
        {
            Assert.False(channelsLast.is_contiguous());
            // The expected outputs from the NCHW copy: the network's own forward on a channels-last input would run
            // channels-last convolutions, which crash or miscompute on some CPUs (those run in child processes only).
            using var noGrad = torch.no_grad();
            using var expected = network.call(input);
            using var actual = engine.forward(channelsLast);
            Tolerance.AssertClose(expected, actual, "a channels-last input", Bound);
        }
        using var none = torch.zeros(0, 3, 64, 64);
        using var empty = engine.forward(none);
        Assert.Equal(new long[] { 0, 1000 }, empty.shape);
    }

    [Fact]
    public void Span_run_gives_the_tensor_forwards_values()
    {
        using var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime(new OnnxRuntimeOptions { IntraOpThreads = 1 });
        using var input = DeterministicWeights.Input(3, 3, 32, 32);
        var pixels = input.data<float>().ToArray();
        var values = engine.Run(pixels, 3, 32, 32);
        Assert.Equal(30, values.Length);
        using var tensor = engine.forward(input);
        Assert.Equal(tensor.data<float>().ToArray(), values);
        var into = new float[40];
        into[30] = 42;
        engine.Run(pixels, 3, 32, 32, into);
        Assert.Equal(values, into.Take(30).ToArray());
        Assert.Equal(42, into[30]); // nothing written past the outputs
    }

    [Fact]
    public void Unfolded_engine_at_another_opset_gives_the_same_outputs()
    {
        using var network = Deterministic(new ResNet20AvgPool());
        using var folded = network.ToOnnxRuntime();
        using var plain = network.ToOnnxRuntime(new OnnxRuntimeOptions { Fold = false, Opset = 13, Optimization = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_DISABLE_ALL });
        Assert.Equal(32, plain.FixedSize);
        using var input = DeterministicWeights.Input(2, 3, 32, 32);
        using var a = folded.forward(input);
        using var b = plain.forward(input);
        Tolerance.AssertClose(a, b, "folded against plain", Bound);
    }

    // ---- options take effect, each checked in what ONNX Runtime ran and against the network's own forward ----

    [Fact]
    public void Fold_false_leaves_the_batch_norms_to_the_session()
    {
        using var network = Deterministic(new ResNet20AvgPool());
        var none = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_DISABLE_ALL;
        using var plain = network.ToOnnxRuntime(new OnnxRuntimeOptions { Fold = false, Optimization = none });
        using var folded = network.ToOnnxRuntime(new OnnxRuntimeOptions { Optimization = none });
        // ResNet-20 with average-pool shortcuts: 19 convolutions, each with its batch-norm.
        Assert.Equal(19, plain.OptimizedOps().GetValueOrDefault("BatchNormalization"));
        Assert.Equal(19, plain.OptimizedOps().GetValueOrDefault("Conv"));
        Assert.DoesNotContain("BatchNormalization", folded.OptimizedOps().Keys);
        Assert.Equal(19, folded.OptimizedOps().GetValueOrDefault("Conv"));
        using var input = DeterministicWeights.Input(2, 3, 32, 32);
        AssertEngineEqualsForward(network, plain, input, "unfolded");
        AssertEngineEqualsForward(network, folded, input, "folded");
    }

    [Theory]
    [InlineData(9)]
    [InlineData(13)]
    [InlineData(17)]
    [InlineData(21)]
    public void Opset_is_the_served_graphs_opset(int opset)
    {
        using var network = Deterministic(new ResNet18());
        using var engine = network.ToOnnxRuntime(new OnnxRuntimeOptions { Opset = opset });
        var path = Path.Combine(_folder, $"opset{opset}.onnx");
        var export = engine.ExportOnnx(path);
        Assert.Equal(opset, export.Opset);
        Assert.Equal(opset, OnnxGraphSummary.Read(path).Opset);
        using var input = DeterministicWeights.Input(2, 3, 64, 64);
        AssertEngineEqualsForward(network, engine, input, $"opset {opset}");
    }

    [Fact]
    public void Optimization_changes_what_onnx_runtime_runs_and_not_the_result()
    {
        using var network = Deterministic(new ResNet18());
        using var all = network.ToOnnxRuntime();
        using var none = network.ToOnnxRuntime(new OnnxRuntimeOptions { Optimization = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_DISABLE_ALL });
        var (optimised, asWritten) = (all.OptimizedOps(), none.OptimizedOps());
        // As written: 20 convolutions and 17 ReLUs as their own nodes. Optimised: the ReLUs fused into the convolutions.
        Assert.Equal(20, asWritten.GetValueOrDefault("Conv"));
        Assert.Equal(17, asWritten.GetValueOrDefault("Relu"));
        Assert.DoesNotContain("Relu", optimised.Keys);
        Assert.NotEqual(asWritten.OrderBy(p => p.Key), optimised.OrderBy(p => p.Key));
        using var input = DeterministicWeights.Input(3, 3, 64, 64);
        AssertEngineEqualsForward(network, all, input, "all optimisations");
        AssertEngineEqualsForward(network, none, input, "no optimisation");
    }

    // ---- stale weights ----

    [Fact]
    public void A_weight_edited_in_place_loaded_or_replaced_shows_in_the_next_call()
    {
        using var network = Deterministic(new ResNet18());
        using var engine = network.ToOnnxRuntime();
        using var input = DeterministicWeights.Input(2, 3, 64, 64);
        using var before = engine.forward(input);

        using (torch.no_grad()) network.layer1_0_conv1.weight!.mul_(1.5);
        AssertEngineEqualsForward(network, engine, input, "after an in-place edit");
        Assert.Equal(2, engine.Builds);
        using (var after = engine.forward(input)) Assert.False(after.allclose(before, 1e-3, 1e-3)); // it did change

        // A running statistic (what a train-mode forward updates).
        using (torch.no_grad()) network.bn1.running_var!.add_(0.5);
        AssertEngineEqualsForward(network, engine, input, "after a running statistic changed");
        Assert.Equal(3, engine.Builds);

        // A weight file loaded over the network.
        var path = Path.Combine(_folder, "other.safetensors");
        using (var other = new ResNet18())
        {
            torch.manual_seed(7);
            Safetensors.Save(other, path);
        }
        Safetensors.Load(network, path);
        AssertEngineEqualsForward(network, engine, input, "after Safetensors.Load");
        Assert.Equal(4, engine.Builds);

        // A parameter replaced by another tensor.
        using (torch.no_grad())
            network.fc.weight = new TorchSharp.Modules.Parameter(network.fc.weight!.mul(-1));
        AssertEngineEqualsForward(network, engine, input, "after fc.weight was replaced");
        Assert.Equal(5, engine.Builds);

        // Refresh rebuilds ahead of the call, once.
        using (torch.no_grad()) network.layer4_1_bn2.bias!.add_(0.25);
        Assert.True(engine.Refresh());
        Assert.False(engine.Refresh());
        Assert.Equal(6, engine.Builds);
        AssertEngineEqualsForward(network, engine, input, "after Refresh");
        Assert.Equal(6, engine.Builds);
    }

    [Fact]
    public void Training_steps_show_in_the_next_call()
    {
        using var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime();
        using var input = DeterministicWeights.Input(4, 3, 32, 32);
        using var labels = torch.tensor(new long[] { 0, 1, 2, 3 });
        using var optimizer = torch.optim.SGD(network.parameters(), 0.1);
        network.train();
        for (var i = 0; i < 2; i++)
        {
            optimizer.zero_grad();
            using var loss = torch.nn.functional.cross_entropy(network.call(input), labels);
            loss.backward();
            optimizer.step();
        }
        network.eval();
        AssertEngineEqualsForward(network, engine, input, "after two training steps");
        Assert.Equal(2, engine.Builds);
    }

    /// <summary>
    /// A float16 engine's output is the float32 forward of the same (widened) weights rounded to float16: each value within
    /// half a float16 unit in the last place of the float32 one, plus the float32 bound for the two computations' own rounding.
    /// </summary>
    private static void AssertRoundedToFloat16(torch.Tensor expected, torch.Tensor actual, string what)
    {
        Assert.Equal(torch.float16, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(torch.float64);
        var a = actual.to(torch.float64);
        Tolerance.AssertFinite(a.contiguous().data<double>().ToArray(), what);
        // float16 has 10 fraction bits; below 2^-14 the spacing is fixed (subnormals).
        var exponent = e.abs().clamp_min(Math.Pow(2, -14)).log2().floor();
        var halfUlp = torch.pow(2.0, exponent - 11);
        var slack = Bound * e.abs().max().item<double>();
        var excess = ((a - e).abs() - halfUlp - slack).max().item<double>();
        Assert.True(excess <= 0, $"{what}: an output is {excess:G3} further from the float32 forward than float16 rounding explains");
    }

    /// <summary>The network's float16 weights widened into a float32 copy: what the engine computes from.</summary>
    private static ResNet20A WidenedCopy(ResNet20A half)
    {
        var copy = new ResNet20A();
        using var noGrad = torch.no_grad();
        var state = half.state_dict();
        foreach (var (key, tensor) in copy.state_dict())
            tensor.copy_(state[key]);
        copy.eval();
        return copy;
    }

    [Fact]
    public void A_float16_network_is_served_in_float16_from_its_own_weights()
    {
        using var network = Deterministic(new ResNet20A());
        network.half();
        using var engine = network.ToOnnxRuntime();
        Assert.Equal(torch.float16, engine.Dtype);
        using var widened = WidenedCopy(network);
        using var input = DeterministicWeights.Input(3, 3, 32, 32);
        using var input16 = input.half();
        using var noGrad = torch.no_grad();
        using var expected = widened.call(input16.to(torch.float32));
        using var actual = engine.forward(input16);
        AssertRoundedToFloat16(expected, actual, "float16 engine against the float32 forward of the same weights");
        // The span API, in Half, gives the same values as the tensor API.
        var pixels = input16.data<Half>().ToArray();
        var values = engine.Run(pixels, 3, 32, 32);
        Assert.Equal(actual.data<Half>().ToArray(), values);
        // float32 in either API is refused with the fix named, and nothing is rebuilt.
        var refused = Assert.Throws<ArgumentException>(() => engine.forward(input));
        Assert.Contains("float16 network", refused.Message);
        Assert.Contains("input.to(torch.float16)", refused.Message);
        var spans = Assert.Throws<ArgumentException>(() => engine.Run(input.data<float>().ToArray(), 3, 32, 32));
        Assert.Contains("pass Half spans", spans.Message);
        Assert.Equal(1, engine.Builds);
    }

    [Fact]
    public void Converting_the_network_to_float16_and_back_changes_the_engines_dtype_at_the_next_call()
    {
        using var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime();
        using var input = DeterministicWeights.Input(2, 3, 32, 32);
        using var noGrad = torch.no_grad();
        using var before = engine.forward(input);
        Assert.Equal(torch.float32, engine.Dtype);
        network.half();
        // The conversion shows at the next call: rebuilt as a float16 engine, which refuses the float32 input.
        var refused = Assert.Throws<ArgumentException>(() => engine.forward(input));
        Assert.Contains("float16 network", refused.Message);
        Assert.Equal(torch.float16, engine.Dtype);
        Assert.Equal(2, engine.Builds);
        using var input16 = input.half();
        using var half = engine.forward(input16);
        using var widened = WidenedCopy(network);
        using var expected = widened.call(input16.to(torch.float32));
        AssertRoundedToFloat16(expected, half, "after half()");
        network.to(torch.float32);
        using var after = engine.forward(input);
        Assert.Equal(3, engine.Builds);
        Assert.Equal(torch.float32, after.dtype);
        using var expectedAfter = network.call(input);
        Tolerance.AssertClose(expectedAfter, after, "back in float32", Bound);

        // With Refuse, the conversion is refused like any other weight change, naming it.
        using var strict = network.ToOnnxRuntime(new OnnxRuntimeOptions { OnWeightChange = WeightChange.Refuse });
        network.half();
        var error = Assert.Throws<InvalidOperationException>(() => strict.forward(input16));
        Assert.Contains("weights changed since its ONNX Runtime engine was built", error.Message);
        Assert.Equal(torch.float32, strict.Dtype);
    }

    [Fact]
    public void A_network_converted_to_float64_is_served_in_float32()
    {
        using var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime();
        network.to(torch.float64);
        using var input = DeterministicWeights.Input(2, 3, 32, 32);
        using var input64 = input.to(torch.float64);
        using var noGrad = torch.no_grad();
        using var expected = network.call(input64);
        using var actual = engine.forward(input);
        Assert.Equal(2, engine.Builds);
        Tolerance.AssertClose(expected, actual, "float64 network, float32 engine", Bound);
    }

    [Fact]
    public void Refuse_names_the_weight_that_changed_and_computes_nothing()
    {
        using var network = Deterministic(new ResNet18());
        using var engine = network.ToOnnxRuntime(new OnnxRuntimeOptions { OnWeightChange = WeightChange.Refuse });
        using var input = DeterministicWeights.Input(1, 3, 64, 64);
        engine.forward(input).Dispose();
        using (torch.no_grad()) network.layer2_0_downsample_0.weight!.add_(0.01);
        var error = Assert.Throws<InvalidOperationException>(() => engine.forward(input));
        Assert.Contains("layer2.0.downsample.0.weight was changed in place", error.Message);
        Assert.Contains("ToOnnxRuntime()", error.Message);
        Assert.Throws<InvalidOperationException>(() => engine.Run(new float[3 * 64 * 64], 1, 64, 64));
        Assert.Throws<InvalidOperationException>(() => engine.Refresh());
        Assert.Equal(1, engine.Builds);
        using var fresh = network.ToOnnxRuntime(new OnnxRuntimeOptions { OnWeightChange = WeightChange.Refuse });
        AssertEngineEqualsForward(network, fresh, input, "a new engine after the change");
    }

    [Fact]
    public void Concurrent_calls_give_each_caller_its_own_result()
    {
        using var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime();
        var inputs = Enumerable.Range(0, 6).Select(i => DeterministicWeights.Input(i + 1, 3, 32, 32)).ToArray();
        try
        {
            var alone = inputs.Select(x => engine.Run(x.data<float>().ToArray(), (int)x.shape[0], 32, 32)).ToArray();
            var pixels = inputs.Select(x => x.data<float>().ToArray()).ToArray();
            var together = new float[inputs.Length][];
            Parallel.For(0, inputs.Length, i => together[i] = engine.Run(pixels[i], i + 1, 32, 32));
            for (var i = 0; i < inputs.Length; i++) Assert.Equal(alone[i], together[i]);
        }
        finally
        {
            foreach (var x in inputs) x.Dispose();
        }
    }

    // ---- disposal ----

    [Fact]
    public void Dispose_releases_the_session_and_later_calls_say_so()
    {
        using var network = Deterministic(new ResNet20A());
        var engine = network.ToOnnxRuntime();
        Assert.True(engine.HoldsSession);
        engine.Dispose();
        Assert.True(engine.IsDisposed);
        Assert.False(engine.HoldsSession);
        engine.Dispose(); // twice is harmless
        using var input = DeterministicWeights.Input(1, 3, 32, 32);
        var error = Assert.Throws<ObjectDisposedException>(() => engine.forward(input));
        Assert.Contains("ResNet20A", error.Message);
        Assert.Contains("ToOnnxRuntime()", error.Message);
        Assert.Throws<ObjectDisposedException>(() => engine.Run(new float[3 * 32 * 32], 1, 32, 32));
        Assert.Throws<ObjectDisposedException>(() => engine.Refresh());
        // The network is untouched.
        using var noGrad = torch.no_grad();
        network.call(input).Dispose();
    }

    [Fact]
    public void An_engine_whose_network_was_disposed_refuses_to_run()
    {
        var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime();
        network.Dispose();
        using var input = DeterministicWeights.Input(1, 3, 32, 32);
        var error = Assert.Throws<ObjectDisposedException>(() => engine.forward(input));
        Assert.Contains("ResNet20A was disposed", error.Message);
    }

    // ---- bad inputs ----

    [Fact]
    public void Each_bad_input_gets_one_clear_error()
    {
        using var network = Deterministic(new ResNet20AvgPool());
        using var engine = network.ToOnnxRuntime();
        void Refused<TException>(torch.Tensor input, params string[] words) where TException : Exception
        {
            using (input)
            {
                var error = Assert.Throws<TException>(() => engine.forward(input));
                foreach (var word in words) Assert.Contains(word, error.Message);
            }
        }
        Refused<ArgumentException>(torch.zeros(3, 32, 32), "[N, 3, 32, 32]", "[3, 32, 32]", "unsqueeze(0)");
        Refused<ArgumentException>(torch.zeros(1, 1, 32, 32), "[N, 3, 32, 32]", "3-channel");
        Refused<ArgumentException>(torch.zeros(1, 3, 40, 40), "32×32", "40×40");
        Refused<ArgumentException>(torch.zeros(1, 3, 32, 32, torch.float64), "float32", "Float64", "to(torch.float32)");
        Refused<ArgumentException>(torch.zeros(1, 3, 32, 32, torch.float16), "float32", "Float16", "half()");
        Assert.Throws<ArgumentNullException>(() => engine.forward(null!));

        var pixels = new float[2 * 3 * 32 * 32];
        var short1 = Assert.Throws<ArgumentException>(() => engine.Run(pixels.AsSpan(1), 2, 32, 32));
        Assert.Contains("6143 values for 2 pictures of 3×32×32, which are 6144", short1.Message);
        var small = Assert.Throws<ArgumentException>(() => engine.Run(pixels, 2, 32, 32, new float[19]));
        Assert.Contains("at least 20", small.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.Run(pixels, -1, 32, 32));
        Assert.Throws<ArgumentException>(() => engine.Run(pixels, 2, 31, 31));
        Assert.Equal(1, engine.Builds); // nothing was rebuilt or run
    }

    [Fact]
    public void Bad_options_fail_when_the_engine_is_made()
    {
        using var network = Deterministic(new ResNet20A());
        var threads = Assert.Throws<ArgumentOutOfRangeException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { IntraOpThreads = -1 }));
        Assert.Contains("IntraOpThreads", threads.Message);
        var opset = Assert.Throws<ArgumentOutOfRangeException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { Opset = 9 }));
        Assert.Contains("opset 11", opset.Message);
        var policy = Assert.Throws<ArgumentOutOfRangeException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { OnWeightChange = (WeightChange)7 }));
        Assert.Contains("OnWeightChange", policy.Message);
    }
}
