using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.OnnxRuntime;
using ResNetGen.Generator.Tests.Cifar;
using ResNetGen.Generator.Tests.PyTorch;
using ResNetGen.Generator.Tests.Timm;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace ResNetGen.Generator.Tests.Onnx;

/// <summary>
/// The int8 engine (<c>ToOnnxRuntime</c> with <see cref="OnnxRuntimeOptions.Int8Calibration"/>): the quantised graph's
/// structure before and after ONNX Runtime's optimisation, its agreement with the float32 engine for every kind of
/// generated network, the calibration methods, staleness, bad calibration input and disposal.
/// </summary>
public sealed class Int8EngineTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-int8-").FullName;

    public Int8EngineTests(ITestOutputHelper output) => _output = output;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    /// <summary>Reproducible pictures in [−1, 1): <paramref name="key"/> picks the stream.</summary>
    private static torch.Tensor Pictures(string key, long n, long channels, long size) => DeterministicWeights.Input(key, n, channels, size, size);

    private static List<torch.Tensor> Calibration(long channels, long size, int batches = 4, long perBatch = 8) =>
        Enumerable.Range(0, batches).Select(i => Pictures("calibration" + i, perBatch, channels, size)).ToList();

    private static void DisposeAll(IEnumerable<torch.Tensor> tensors)
    {
        foreach (var t in tensors) t.Dispose();
    }

    public static TheoryData<string> Networks() => new()
    {
        "resnet18", "resnet20_zeropad", "resnet20_avgpoolzeropad", "headless", "resnet50d", "every_timm_option", "seresnext26d", "small_bit", "standardized_batchnorm",
    };

    // The float engine's networks, and three more whose steps quantise differently: ECA with blur and the ResNet-RS stem,
    // squeeze-excite, and pre-activation blocks whose batch-norms do not follow a convolution.
    private static (torch.nn.Module<torch.Tensor, torch.Tensor> Network, int Size) Create(string name) => name switch
    {
        "every_timm_option" => (Deterministic(new EveryTimmOption()), 64),
        "seresnext26d" => (Deterministic(new SeResNeXt26d_32x4d()), 64),
        "standardized_batchnorm" => (Deterministic(new StandardizedBatchNorm()), 32),
        _ => OnnxRuntimeEngineTests.Create(name),
    };

    private static T Deterministic<T>(T network) where T : torch.nn.Module => OnnxRuntimeEngineTests.Deterministic(network);

    // ---- agreement ----

    [Theory]
    [MemberData(nameof(Networks))]
    public void Int8_engine_agrees_with_the_float_engine_and_really_quantises(string name)
    {
        var (network, size) = Create(name);
        using var _ = network;
        var calibration = Calibration(3, size);
        try
        {
            using var floats = ((IResNet)network).ToOnnxRuntime();
            using var int8 = ((IResNet)network).ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration });
            Assert.True(int8.IsQuantized);
            Assert.False(floats.IsQuantized);
            Assert.Null(floats.Quantization);
            var q = int8.Quantization!;
            Assert.Equal(4, q.Batches);
            Assert.Equal(32, q.Pictures);
            Assert.True(q.IntegerNodes > 0);
            foreach (var t in q.Tensors)
            {
                Assert.True(t.Scale > 0 && float.IsFinite(t.Scale), $"{t.Tensor}: scale {t.Scale}");
                Assert.InRange(t.ZeroPoint, 0, 255);
                Assert.True(t.Low <= 0 && t.High >= 0 && t.Min <= t.Max, $"{t.Tensor}: {t}");
            }
            using var input = Pictures("test", 6, 3, size);
            using var expected = floats.forward(input);
            using var actual = int8.forward(input);
            Assert.Equal(expected.shape, actual.shape);
            Assert.Equal(torch.float32, actual.dtype);
            using var difference = (expected - actual).abs().max();
            using var largest = expected.abs().max();
            using var cosine = torch.nn.functional.cosine_similarity(expected.flatten(), actual.flatten(), 0);
            var relative = difference.item<float>() / largest.item<float>();
            _output.WriteLine($"{name}: max |int8 − float32| = {relative:P2} of the largest output, cosine {cosine.item<float>():F5}; " +
                              $"{q.IntegerNodes} integer nodes, {q.Tensors.Count} quantised tensors; float: {string.Join(", ", q.FloatOps)}");
            Assert.True(relative > 1e-4, $"{name}: the int8 output equals the float32 one ({relative:G3}): nothing was quantised");
            Assert.True(relative < 0.1, $"{name}: the int8 output is {relative:P1} of the largest output away from float32");
            Assert.True(cosine.item<float>() > 0.995, $"{name}: cosine similarity {cosine.item<float>()}");
        }
        finally
        {
            DisposeAll(calibration);
        }
    }

    // ---- a trained network on real pictures ----

    /// <summary>
    /// The sample's ResNet-20 as its train command trains it (Reference/fashion-resnet20.safetensors: <c>dotnet run --project
    /// Sample -- train --epochs 5 --precision bf16</c> on the full Fashion-MNIST, 92.12% on its 10,000 test images),
    /// quantised from 256 training pictures: on the 2,000 test pictures the sample embeds, the int8 engine gives the float32
    /// engine's class for at least 99% of them and loses at most half a point of accuracy, with either calibration method.
    /// </summary>
    [Theory]
    [InlineData(CalibrationMethod.Percentile)]
    [InlineData(CalibrationMethod.MinMax)]
    public void Trained_resnet20_keeps_its_predictions_and_accuracy_in_int8(CalibrationMethod method)
    {
        var data = ResNetGen.Generator.Tests.SampleApplication.SampleAppTests.TinyDataIn(_folder, train: 256, test: 2000);
        using var fashion = ResNetGen.Sample.FashionMnist.Load(data);
        using var network = new ResNetGen.Sample.ResNet20();
        Safetensors.Load(network, Path.Combine(DeterministicWeights.ReferenceFolder, "fashion-resnet20.safetensors"));
        network.eval();
        var calibration = new List<torch.Tensor>();
        for (var start = 0; start < 256; start += 64)
            calibration.Add(ResNetGen.Sample.FashionMnist.Normalize(fashion.TrainImages.narrow(0, start, 64), torch.CPU));
        try
        {
            using var floats = network.ToOnnxRuntime();
            using var int8 = network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Int8Method = method });
            using var images = ResNetGen.Sample.FashionMnist.Normalize(fashion.TestImages, torch.CPU);
            using var a = floats.forward(images);
            using var b = int8.forward(images);
            using var classesA = a.argmax(1);
            using var classesB = b.argmax(1);
            var (pa, pb, labels) = (classesA.data<long>().ToArray(), classesB.data<long>().ToArray(), fashion.TestLabels.data<long>().ToArray());
            var agreement = pa.Zip(pb).Count(p => p.First == p.Second) / 2000.0;
            var (accA, accB) = (pa.Zip(labels).Count(p => p.First == p.Second) / 2000.0, pb.Zip(labels).Count(p => p.First == p.Second) / 2000.0);
            _output.WriteLine($"{method}: agreement {agreement:P2}; accuracy float32 {accA:P2}, int8 {accB:P2}");
            Assert.True(accA > 0.85, $"the reference checkpoint scores {accA:P2}: not the trained network");
            Assert.True(agreement >= 0.99, $"{method}: int8 agrees with float32 on {agreement:P2} of the pictures");
            Assert.True(accA - accB <= 0.005, $"{method}: int8 loses {100 * (accA - accB):0.00} points ({accA:P2} → {accB:P2})");
        }
        finally
        {
            DisposeAll(calibration);
        }
    }

    // ---- the graph ----

    [Fact]
    public void Quantised_graph_has_int8_weights_qdq_pairs_and_only_integer_convolutions_after_optimisation()
    {
        using var network = Deterministic(new ResNet18());
        var calibration = Calibration(3, 64);
        try
        {
            using var engine = network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration });
            var path = Path.Combine(_folder, "resnet18-int8.onnx");
            var export = engine.ExportOnnx(path);
            var graph = OnnxGraphSummary.Read(path);
            Assert.Equal(17, graph.Opset);
            Assert.Equal(export.Nodes, graph.Nodes.Count);
            var producers = graph.Nodes.ToDictionary(n => n.Outputs[0], StringComparer.Ordinal);
            var initializers = graph.Initializers.ToDictionary(i => i.Name, StringComparer.Ordinal);
            var convs = graph.Nodes.Where(n => n.OpType == "Conv").ToList();
            Assert.Equal(20, convs.Count);
            foreach (var conv in convs)
            {
                // input, weight and bias each come from a DequantizeLinear: uint8 activations, int8 weights, int32 bias.
                var (x, w, b) = (producers[conv.Inputs[0]], producers[conv.Inputs[1]], producers[conv.Inputs[2]]);
                Assert.All(new[] { x, w, b }, dq => Assert.Equal("DequantizeLinear", dq.OpType));
                Assert.Equal("QuantizeLinear", producers[x.Inputs[0]].OpType);
                Assert.Equal(3, initializers[w.Inputs[0]].DataType);
                Assert.Equal(initializers[w.Inputs[0]].Dims[0], initializers[w.Inputs[1]].Dims[0]); // one scale per output channel
                Assert.Equal(6, initializers[b.Inputs[0]].DataType);
                Assert.Equal(2, initializers[x.Inputs[2]].DataType);
                // its output goes to one QuantizeLinear alone (the ReLU after it merged into it)
                var readers = graph.Nodes.Where(n => n.Inputs.Contains(conv.Outputs[0])).ToList();
                Assert.Equal("QuantizeLinear", Assert.Single(readers).OpType);
            }
            Assert.DoesNotContain(graph.Initializers, i => i.Name.EndsWith(".weight", StringComparison.Ordinal) && i.Name != "fc.weight");
            Assert.Single(graph.Nodes, n => n.OpType == "Gemm"); // the classifier stays float32
            Assert.DoesNotContain(graph.Nodes, n => n.OpType == "Relu");
            var quantize = graph.Nodes.Count(n => n.OpType == "QuantizeLinear");
            Assert.Equal(quantize, graph.Nodes.Count(n => n.OpType == "DequantizeLinear" && !initializers.ContainsKey(n.Inputs[0])));
            Assert.Equal(engine.Quantization!.Tensors.Count, quantize);

            var optimized = engine.OptimizedOps();
            _output.WriteLine(string.Join(", ", optimized.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")));
            Assert.Equal(20, optimized.GetValueOrDefault("QLinearConv"));
            Assert.Equal(8, optimized.GetValueOrDefault("QLinearAdd"));
            Assert.DoesNotContain(optimized.Keys, op => op is "Conv" or "FusedConv" or "NchwcConv" or "Add" or "Relu");
            Assert.Equal(new[] { "Flatten", "Gemm", "GlobalAveragePool" }, engine.Quantization.FloatOps);

            // The exported file serves elsewhere as the engine serves it.
            using var input = Pictures("test", 3, 3, 64);
            using var served = engine.forward(input);
            using var session = new InferenceSession(path);
            using var value = OrtValue.CreateTensorValueFromMemory(input.data<float>().ToArray(), new long[] { 3, 3, 64, 64 });
            using var results = session.Run(new RunOptions(), new[] { "input" }, new[] { value }, new[] { "logits" });
            var elsewhere = results[0].GetTensorDataAsSpan<float>().ToArray();
            Assert.Equal(served.data<float>().ToArray(), elsewhere);
        }
        finally
        {
            DisposeAll(calibration);
        }
    }

    [Fact]
    public void Float_engine_optimised_graph_keeps_float_convolutions()
    {
        using var network = Deterministic(new ResNet20A());
        using var engine = network.ToOnnxRuntime();
        var ops = engine.OptimizedOps();
        Assert.DoesNotContain(ops.Keys, op => op.StartsWith("QLinear", StringComparison.Ordinal));
        Assert.Contains(ops.Keys, op => op.Contains("Conv", StringComparison.Ordinal));
    }

    // ---- calibration methods ----

    [Fact]
    public void Percentile_clips_where_min_max_keeps_every_value_and_both_report_their_ranges()
    {
        using var network = Deterministic(new ResNet20A());
        var calibration = Calibration(3, 32);
        try
        {
            var progress = new List<long>();
            using var minMax = network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Int8Method = CalibrationMethod.MinMax });
            using var percentile = network.ToOnnxRuntime(new OnnxRuntimeOptions
            {
                Int8Calibration = calibration, Int8Percentile = 99.9, Int8Progress = new Synchronous(progress.Add),
            });
            Assert.Equal(new long[] { 8, 16, 24, 32 }, progress);
            var (a, b) = (minMax.Quantization!, percentile.Quantization!);
            Assert.Equal(CalibrationMethod.MinMax, a.Method);
            Assert.Equal(100, a.Percentile);
            Assert.Equal(99.9, b.Percentile);
            Assert.Equal(a.Tensors.Select(t => t.Tensor), b.Tensors.Select(t => t.Tensor));
            foreach (var (x, y) in a.Tensors.Zip(b.Tensors))
            {
                Assert.Equal(x.Min, y.Min);
                Assert.Equal(x.Max, y.Max);
                // min-max takes the extremes (widened to hold 0); the percentile's range lies within them
                Assert.Equal(Math.Max(x.Max, 0), x.High, 5);
                Assert.True(y.High <= x.High + 1e-6 && y.Low >= x.Low - 1e-6, $"{x.Tensor}: {y} outside {x}");
            }
            Assert.Contains(a.Tensors.Zip(b.Tensors), p => p.Second.High < 0.95 * p.First.High);
            // A merged ReLU's tensor is non-negative: zero point 0, so the uint8 range clamps as the ReLU does.
            Assert.Contains(b.Tensors, t => t.ZeroPoint == 0 && t.Low == 0);
        }
        finally
        {
            DisposeAll(calibration);
        }
    }

    private sealed class Synchronous(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    // ---- staleness ----

    [Theory]
    [InlineData(WeightChange.Rebuild)]
    [InlineData(WeightChange.Refuse)]
    public void A_weight_change_after_quantising_is_refused_naming_the_weight(WeightChange onChange)
    {
        using var network = Deterministic(new ResNet20A());
        var calibration = Calibration(3, 32);
        try
        {
            using var engine = network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, OnWeightChange = onChange });
            using var input = Pictures("test", 2, 3, 32);
            using (engine.forward(input)) { }
            using (torch.no_grad()) network.layer2_0_conv1.weight!.mul_(1.5);
            var e = Assert.Throws<InvalidOperationException>(() => engine.forward(input));
            Assert.Contains("layer2.0.conv1.weight", e.Message);
            Assert.Contains("int8", e.Message);
            Assert.Contains("Int8Calibration", e.Message);
            Assert.Throws<InvalidOperationException>(() => engine.Refresh());
            Assert.Throws<InvalidOperationException>(() => engine.Run(input.data<float>().ToArray(), 2, 32, 32));
            Assert.Equal(1, engine.Builds);
        }
        finally
        {
            DisposeAll(calibration);
        }
    }

    // ---- bad calibration input and options ----

    public static TheoryData<string, string> BadCalibrations() => new()
    {
        { "none", "holds no batches" },
        { "empty batches", "with no pictures" },
        { "null batch", "batch 1 is null" },
        { "wrong channels", "batch 0 expects a tensor of shape [N, 3, 32, 32]" },
        { "wrong rank", "batch 0 expects a tensor of shape [N, 3, 32, 32]" },
        { "wrong size", "expects 32×32 pictures" },
        { "NaN", "batch 2 holds NaN or infinite values" },
        { "bytes", "is Byte, not float" },
        { "disposed", "batch 0 was disposed" },
    };

    [Theory]
    [MemberData(nameof(BadCalibrations))]
    public void Bad_calibration_is_one_clear_error_and_changes_nothing(string what, string expected)
    {
        using var network = Deterministic(new ResNet20AvgPool()); // a fixed 32×32 input (its shortcuts' pools need it)
        using var input = Pictures("test", 2, 3, 32);
        using var before = network.call(input);
        var made = new List<torch.Tensor>();
        torch.Tensor Keep(torch.Tensor t)
        {
            made.Add(t);
            return t;
        }
        IEnumerable<torch.Tensor> batches = what switch
        {
            "none" => Array.Empty<torch.Tensor>(),
            "empty batches" => new[] { Keep(torch.zeros(0, 3, 32, 32)), Keep(torch.zeros(0, 3, 32, 32)) },
            "null batch" => new[] { Keep(Pictures("a", 2, 3, 32)), null! },
            "wrong channels" => new[] { Keep(Pictures("a", 2, 1, 32)) },
            "wrong rank" => new[] { Keep(torch.zeros(3, 32, 32)) },
            "wrong size" => new[] { Keep(Pictures("a", 2, 3, 40)) },
            "NaN" => new[] { Keep(Pictures("a", 2, 3, 32)), Keep(Pictures("b", 2, 3, 32)), Keep(Pictures("c", 2, 3, 32).index_put_(float.NaN, 1, 2, 3, 4)) },
            "bytes" => new[] { Keep(torch.zeros(new long[] { 2, 3, 32, 32 }, torch.uint8)) },
            "disposed" => Disposed(),
            _ => throw new ArgumentException(what),
        };
        try
        {
            var e = Assert.ThrowsAny<ArgumentException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = batches }));
            _output.WriteLine(e.Message);
            Assert.Contains(expected, e.Message);
            Assert.Contains(what is "wrong size" or "wrong channels" or "wrong rank" ? "Int8Calibration for ResNet20AvgPool: batch" : "Int8Calibration", e.Message);
            using var after = network.call(input);
            Assert.Equal(before.data<float>().ToArray(), after.data<float>().ToArray()); // the network is as it was
            Assert.All(made, t => Assert.False(t.IsInvalid)); // the caller's batches are left alone
        }
        finally
        {
            DisposeAll(made);
        }

        static IEnumerable<torch.Tensor> Disposed()
        {
            var t = torch.zeros(2, 3, 32, 32);
            t.Dispose();
            yield return t;
        }
    }

    [Fact]
    public void Options_that_cannot_quantise_are_refused_naming_the_fix()
    {
        using var network = Deterministic(new ResNet20A());
        var calibration = Calibration(3, 32, batches: 1);
        try
        {
            var opset = Assert.ThrowsAny<ArgumentException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Opset = 11 }));
            Assert.Contains("opset 13 or later", opset.Message);
            var fold = Assert.ThrowsAny<ArgumentException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Fold = false }));
            Assert.Contains("Fold = false cannot be combined", fold.Message);
            var percentile = Assert.ThrowsAny<ArgumentException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Int8Percentile = 50 }));
            Assert.Contains("above 90 and at most 100", percentile.Message);
            var method = Assert.ThrowsAny<ArgumentException>(() => network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Int8Method = (CalibrationMethod)7 }));
            Assert.Contains("CalibrationMethod.Percentile", method.Message);
            using var half = Deterministic(new ResNet20A());
            half.half();
            var float16 = Assert.ThrowsAny<ArgumentException>(() => half.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration }));
            Assert.Contains("to(torch.float32)", float16.Message);
        }
        finally
        {
            DisposeAll(calibration);
        }
    }

    // ---- disposal ----

    [Fact]
    public void Disposing_releases_the_session_and_leaves_the_network_and_the_batches()
    {
        using var network = Deterministic(new ResNet20A());
        var calibration = Calibration(3, 32, batches: 2);
        try
        {
            var engine = network.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration, Int8ReduceRange = true });
            Assert.True(engine.Quantization!.ReducedRange);
            Assert.True(engine.HoldsSession);
            engine.Dispose();
            engine.Dispose();
            Assert.False(engine.HoldsSession);
            Assert.True(engine.IsDisposed);
            using var input = Pictures("test", 2, 3, 32);
            Assert.Throws<ObjectDisposedException>(() => engine.forward(input));
            Assert.Throws<ObjectDisposedException>(() => engine.ExportOnnx(Path.Combine(_folder, "gone.onnx")));
            Assert.All(calibration, t => Assert.False(t.IsInvalid));
            using var output = network.call(input);
            Assert.Equal(new long[] { 2, 10 }, output.shape);
        }
        finally
        {
            DisposeAll(calibration);
        }
    }
}
