using System;
using System.Collections.Generic;
using System.Linq;
using ResNetGen.Benchmarks.Peers;
using TorchSharp;
using static TorchSharp.torch;

namespace ResNetGen.Benchmarks;

/// <summary>
/// One measured operation: set up once, then run repeatedly. Shared by the BenchmarkDotNet classes (time) and the
/// memory probe (peak resident memory, each case in a process of its own).
/// </summary>
public sealed class Case : IDisposable
{
    private readonly List<IDisposable> _owned = new();

    private Case(string name, Action run)
    {
        Name = name;
        Run = run;
    }

    public string Name { get; }

    /// <summary>Nominal floating-point work of one run of a case, in GFLOP (2 per multiply-add; a training step counts 3 passes).</summary>
    public static double Gflop(string name) => name.Split('/')[0] switch
    {
        "mm-2048" => 2.0 * 2048 * 2048 * 2048 / 1e9,
        "resnet50-infer" => 2.0 * ResNet50.MultAdds * 8 / 1e9,
        "resnet18-infer" => 2.0 * ResNet18.MultAdds * 8 / 1e9,
        "resnet50-infer-b1" => 2.0 * ResNet50.MultAdds / 1e9,
        "resnet18-infer-b1" => 2.0 * ResNet18.MultAdds / 1e9,
        "bit50-infer" => 2.0 * ResNetV2_50x1_Bit.MultAdds * 8 / 1e9,
        "resnet50-train" => 3 * 2.0 * ResNet50.MultAdds * 8 / 1e9,
        "resnet18-train" => 3 * 2.0 * ResNet18.MultAdds * 8 / 1e9,
        "resnet20-train" => 3 * 2.0 * ResNet20.MultAdds * 128 / 1e9,
        _ => double.NaN,
    };

    public Action Run { get; }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
    }

    public static readonly string[] Names =
    {
        "mm-2048",
        "resnet50-infer/torchvision", "resnet50-infer/torchvision-no-scope", "resnet50-infer/handwritten", "resnet50-infer/handwritten-channels-last",
        "resnet50-infer/generated", "resnet50-infer/generated-channels-last", "resnet50-infer/generated-inference-mode", "resnet50-infer/generated-fused",
        "resnet50-infer/engine", "resnet50-infer/onnxruntime",
        "resnet50-infer/generated-bf16", "resnet50-infer/generated-channels-last-bf16", "resnet50-infer/generated-bf16-whole",
        "resnet50-infer/generated-channels-last-bf16-whole",
        "resnet50-infer/engine-int8",
        "resnet50-infer-b1/torchvision", "resnet50-infer-b1/engine", "resnet50-infer-b1/engine-int8",
        "resnet18-infer/torchvision", "resnet18-infer/torchvision-no-scope", "resnet18-infer/generated", "resnet18-infer/generated-fused",
        "resnet18-infer/engine", "resnet18-infer/onnxruntime", "resnet18-infer/engine-int8",
        "resnet18-infer-b1/torchvision", "resnet18-infer-b1/engine", "resnet18-infer-b1/engine-int8",
        "bit50-infer/peer", "bit50-infer/generated-fused",
        "resnet50-train/torchvision", "resnet50-train/torchvision-no-scope", "resnet50-train/handwritten", "resnet50-train/generated",
        "resnet50-train/generated-channels-last", "resnet50-train/generated-bf16", "resnet50-train/generated-channels-last-bf16",
        "resnet18-train/torchvision", "resnet18-train/torchvision-no-scope", "resnet18-train/generated",
        "resnet20-train/handwritten", "resnet20-train/handwritten-no-scope", "resnet20-train/generated", "resnet20-train/generated-channels-last",
        "resnet20-train/generated-bf16",
        "generator/resnet152", "generator/resnet1202",
    };

    /// <summary>
    /// The case of <paramref name="family"/> every other is measured against: TorchSharp's own <c>TorchVision</c> model in a
    /// DisposeScope (what a user would pick instead), or where it has none (the CIFAR ResNet-20, BiT) the hand-written
    /// or timm-style peer; null when <paramref name="cases"/> leaves it out.
    /// </summary>
    /// <summary>
    /// The float32 case a low-precision case is the same computation of (<c>generated-channels-last-bf16</c> →
    /// <c>generated-channels-last</c>), for the in-round bfloat16/float32 ratio; null for any other case.
    /// </summary>
    public static string? Float32Of(string name) =>
        name.EndsWith("-bf16", StringComparison.Ordinal) ? name[..^"-bf16".Length]
        : name.EndsWith("-bf16-whole", StringComparison.Ordinal) ? name[..^"-bf16-whole".Length]
        : null;

    public static string? PeerOf(string family, IEnumerable<string> cases)
    {
        var members = cases.Where(c => c.StartsWith(family + "/", StringComparison.Ordinal)).ToList();
        return new[] { "torchvision", "handwritten", "peer" }.Select(v => family + "/" + v).FirstOrDefault(members.Contains);
    }

    public static Case Create(string name)
    {
        torch.manual_seed(0);
        var (family, variant) = name.Split('/') is { Length: 2 } parts ? (parts[0], parts[1]) : (name, "");
        switch (family)
        {
            case "mm-2048":
            {
                var a = torch.randn(2048, 2048);
                var b = torch.randn(2048, 2048);
                var c = new Case(name, () => torch.mm(a, b).Dispose());
                c._owned.AddRange(new IDisposable[] { a, b });
                return c;
            }
            case "resnet50-infer":
                return Inference(name, variant, () => new ResNet50(), () => PeerResNet.ResNet50(), () => torchvision.models.resnet50());
            case "resnet18-infer":
                return Inference(name, variant, () => new ResNet18(), null, () => torchvision.models.resnet18());
            case "resnet50-infer-b1":
                return Inference(name, variant, () => new ResNet50(), () => PeerResNet.ResNet50(), () => torchvision.models.resnet50(), batch: 1);
            case "resnet18-infer-b1":
                return Inference(name, variant, () => new ResNet18(), null, () => torchvision.models.resnet18(), batch: 1);
            case "bit50-infer":
                return Bit(name, variant);
            case "resnet50-train":
                return Training(name, variant, () => new ResNet50(), () => PeerResNet.ResNet50(), () => torchvision.models.resnet50(), batch: 8, size: 224, classes: 1000);
            case "resnet18-train":
                return Training(name, variant, () => new ResNet18(), null, () => torchvision.models.resnet18(), batch: 8, size: 224, classes: 1000);
            case "resnet20-train":
                return Training(name, variant, () => new ResNet20(), () => PeerResNet.ResNet20(), null, batch: 128, size: 32, classes: 10);
            case "generator":
                return Generator(name, variant);
            default:
                throw new ArgumentException($"unknown case '{name}'; the cases are: {string.Join(", ", Names)}");
        }
    }

    /// <summary>A full generator run (parse, plan, check, emit) on a one-class project, as a cold build does it.</summary>
    private static Case Generator(string name, string variant)
    {
        var attribute = variant switch
        {
            "resnet152" => "[ResNet(Block.Bottleneck, 3, 8, 36, 3)]",
            "resnet1202" => "[ResNet(Block.Basic, 200, 200, 200, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.ZeroPad)]",
            _ => throw new ArgumentException($"unknown variant '{variant}'"),
        };
        var tree = Microsoft.CodeAnalysis.CSharp.CSharpSyntaxTree.ParseText($"using ResNetGen;\n{attribute}\npublic partial class Net {{ }}");
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(System.IO.Path.PathSeparator)
            .Where(p => System.IO.Path.GetFileName(p) is "System.Runtime.dll" or "System.Private.CoreLib.dll" or "netstandard.dll")
            .Append(typeof(ResNetAttribute).Assembly.Location)
            .Select(p => Microsoft.CodeAnalysis.MetadataReference.CreateFromFile(p));
        var compilation = Microsoft.CodeAnalysis.CSharp.CSharpCompilation.Create("User", new[] { tree }, references);
        return new Case(name, () =>
        {
            var driver = Microsoft.CodeAnalysis.CSharp.CSharpGeneratorDriver.Create(new ResNetGen.Generator.ResNetGenerator());
            var result = driver.RunGenerators(compilation).GetRunResult();
            // The network's file and its PyTorch twin's.
            if (result.GeneratedTrees.Length != 2) throw new InvalidOperationException("the generator produced no source: " + string.Join("; ", result.Diagnostics));
        });
    }

    /// <summary>Copies the generated network's weights into the peer: the same state_dict keys on both sides.</summary>
    internal static void SameWeights(torch.nn.Module from, torch.nn.Module to)
    {
        var source = from.state_dict();
        var target = to.state_dict();
        if (!source.Keys.OrderBy(k => k).SequenceEqual(target.Keys.OrderBy(k => k)))
            throw new InvalidOperationException("the peer's state_dict keys differ from the generated network's");
        using var noGrad = torch.no_grad();
        foreach (var (key, tensor) in source) target[key].copy_(tensor);
    }

    /// <summary>
    /// Eval at <paramref name="batch"/> (8 unless said), 224×224, on one set of weights: the peers (TorchVision's model, with
    /// and without a DisposeScope; the hand-written one) run the generated network's weights; the engine and ONNX Runtime
    /// run its folded graph, the int8 engine its quantised graph.
    /// </summary>
    private static Case Inference<TNetwork>(string name, string variant, Func<TNetwork> createGenerated,
        Func<torch.nn.Module<Tensor, Tensor>>? createHandwritten, Func<torch.nn.Module<Tensor, Tensor>> createTorchVision, int batch = 8)
        where TNetwork : torch.nn.Module<Tensor, Tensor>, IResNet
    {
        var input = torch.randn(batch, 3, 224, 224);
        var generated = createGenerated();
        generated.eval();
        Case c;
        // A peer on the generated network's weights; a case owns what it creates.
        Case OnPeer(torch.nn.Module<Tensor, Tensor> peer, Tensor x, bool scope, params IDisposable[] owned)
        {
            SameWeights(generated, peer);
            peer.eval();
            var peerCase = new Case(name, scope
                ? () =>
                {
                    using var disposeScope = torch.NewDisposeScope();
                    using var noGrad = torch.no_grad();
                    peer.call(x);
                }
                : () =>
                {
                    // What a user who does not know about scopes writes: the result disposed, the intermediates left to the GC.
                    using var noGrad = torch.no_grad();
                    peer.call(x).Dispose();
                });
            peerCase._owned.Add(peer);
            peerCase._owned.AddRange(owned);
            return peerCase;
        }
        Case UnderNoGrad() => new(name, () =>
        {
            using var noGrad = torch.no_grad();
            generated.call(input).Dispose();
        });
        Func<torch.nn.Module<Tensor, Tensor>> Handwritten() => createHandwritten ?? throw new ArgumentException($"unknown variant '{variant}'");
        switch (variant)
        {
            case "torchvision":
                c = OnPeer(createTorchVision(), input, scope: true);
                break;
            case "torchvision-no-scope":
                c = OnPeer(createTorchVision(), input, scope: false);
                break;
            case "handwritten":
                c = OnPeer(Handwritten()(), input, scope: true);
                break;
            case "handwritten-channels-last":
            {
                // The hand-written peer on a channels-last input its user laid out by hand (once, untimed).
                var nhwc = TensorLayout.ForCompute(input, ActivationLayout.ChannelsLast);
                c = OnPeer(Handwritten()(), nhwc, scope: true, nhwc);
                break;
            }
            case "generated":
                c = UnderNoGrad();
                break;
            case "generated-channels-last":
                // The generated forward computing channels-last on request (the default computes in the input's NCHW layout).
                generated.ActivationLayout = ActivationLayout.ChannelsLast;
                c = UnderNoGrad();
                break;
            case "generated-bf16":
            case "generated-channels-last-bf16":
                // Mixed precision: float32 weights cast once per forward, convolutions in bfloat16, float32 logits.
                generated.Precision = Precision.BFloat16;
                if (variant.Contains("channels-last", StringComparison.Ordinal)) generated.ActivationLayout = ActivationLayout.ChannelsLast;
                c = UnderNoGrad();
                break;
            case "generated-bf16-whole":
            case "generated-channels-last-bf16-whole":
            {
                // What a TorchSharp user can do today: the whole network and its input converted to bfloat16 (no float32
                // master weights, batch-norm in bfloat16, bfloat16 logits). The bound of what the casts may cost.
                generated.to(torch.ScalarType.BFloat16);
                if (variant.Contains("channels-last", StringComparison.Ordinal)) generated.ActivationLayout = ActivationLayout.ChannelsLast;
                var low = input.to(torch.ScalarType.BFloat16);
                c = new Case(name, () =>
                {
                    using var noGrad = torch.no_grad();
                    generated.call(low).Dispose();
                });
                c._owned.Add(low);
                break;
            }
            case "generated-inference-mode":
                c = new Case(name, () =>
                {
                    using var mode = torch.inference_mode();
                    generated.call(input).Dispose();
                });
                break;
            case "generated-fused":
                generated.FuseForInference();
                c = UnderNoGrad();
                break;
            case "engine":
            {
                // ResNetGen's fastest path: the generated network's own ONNX Runtime engine, tensors in and out.
                var engine = generated.ToOnnxRuntime();
                c = new Case(name, () => engine.forward(input).Dispose());
                c._owned.Add(engine);
                break;
            }
            case "engine-int8":
            {
                // The int8 engine: the same folded graph quantised (QDQ) on ONNX Runtime's integer kernels. Calibrated on four
                // batches of random pictures: the speed does not depend on the values (accuracy does; the README measures it).
                var calibration = Enumerable.Range(0, 4).Select(_ => torch.randn(8, 3, 224, 224)).ToList();
                var engine = generated.ToOnnxRuntime(new OnnxRuntimeOptions { Int8Calibration = calibration });
                foreach (var t in calibration) t.Dispose();
                c = new Case(name, () => engine.forward(input).Dispose());
                c._owned.Add(engine);
                break;
            }
            case "onnxruntime":
            {
                // The exported, folded file on ONNX Runtime's CPU provider as its own API serves it: default session options,
                // an input OrtValue made once over the batch's array, the outputs disposed after each run.
                generated.FuseForInference();
                var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"resnetgen-bench-{Environment.ProcessId}-{name.Replace('/', '-')}.onnx");
                generated.ExportOnnx(path);
                var session = new Microsoft.ML.OnnxRuntime.InferenceSession(path);
                System.IO.File.Delete(path);
                var value = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(input.data<float>().ToArray(), new long[] { batch, 3, 224, 224 });
                var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
                var inputNames = new[] { "input" };
                var outputNames = new[] { "logits" };
                var inputs = new[] { value };
                c = new Case(name, () => session.Run(runOptions, inputNames, inputs, outputNames).Dispose());
                c._owned.AddRange(new IDisposable[] { session, value, runOptions });
                break;
            }
            default:
                throw new ArgumentException($"unknown variant '{variant}'");
        }
        c._owned.AddRange(new IDisposable[] { generated, input });
        return c;
    }

    /// <summary>
    /// resnetv2_50x1_bit in eval, batch 8 at 224: the peer standardises every convolution's weight at each forward (what
    /// timm's StdConv2d does); fused, each weight is standardised once (group-norms do not fold, so that is all the fold does).
    /// </summary>
    private static Case Bit(string name, string variant)
    {
        var input = torch.randn(8, 3, 224, 224);
        var network = new ResNetV2_50x1_Bit();
        network.eval();
        if (variant == "generated-fused") network.FuseForInference();
        else if (variant != "peer") throw new ArgumentException($"unknown variant '{variant}'");
        var c = new Case(name, () =>
        {
            using var noGrad = torch.no_grad();
            network.call(input).Dispose();
        });
        c._owned.AddRange(new IDisposable[] { network, input });
        return c;
    }

    private static Case Training(string name, string variant, Func<torch.nn.Module<Tensor, Tensor>> createGenerated,
        Func<torch.nn.Module<Tensor, Tensor>>? createHandwritten, Func<torch.nn.Module<Tensor, Tensor>>? createTorchVision, int batch, int size, int classes)
    {
        var input = torch.randn(batch, 3, size, size);
        var labels = torch.randint(0, classes, new long[] { batch });
        var generated = createGenerated();
        torch.nn.Module<Tensor, Tensor> network = generated;
        if (variant.StartsWith("generated-channels-last", StringComparison.Ordinal)) ((IResNet)generated).ActivationLayout = ActivationLayout.ChannelsLast;
        if (variant.EndsWith("-bf16", StringComparison.Ordinal)) ((IResNet)generated).Precision = Precision.BFloat16; // the same step in mixed precision
        if (variant.StartsWith("generated", StringComparison.Ordinal) && variant is not ("generated" or "generated-channels-last" or "generated-bf16" or "generated-channels-last-bf16"))
            throw new ArgumentException($"unknown variant '{variant}'");
        if (!variant.StartsWith("generated", StringComparison.Ordinal))
        {
            var create = variant.StartsWith("torchvision", StringComparison.Ordinal) ? createTorchVision
                : variant.StartsWith("handwritten", StringComparison.Ordinal) ? createHandwritten : null;
            network = create?.Invoke() ?? throw new ArgumentException($"unknown variant '{variant}'");
            if (variant.EndsWith("-bf16", StringComparison.Ordinal)) throw new ArgumentException($"unknown variant '{variant}'");
            SameWeights(generated, network);
            generated.Dispose();
        }
        network.train();
        var optimizer = torch.optim.SGD(network.parameters(), 0.01, momentum: 0.9);
        Action step = variant switch
        {
            "torchvision" or "handwritten" => () =>
            {
                using var scope = torch.NewDisposeScope();
                optimizer.zero_grad();
                var loss = torch.nn.functional.cross_entropy(network.call(input), labels);
                loss.backward();
                optimizer.step();
            },
            // No DisposeScope (the -no-scope peers, the generated network): what a user who forgets one gets. The generated
            // forward disposes its own intermediates.
            _ => () =>
            {
                optimizer.zero_grad();
                using var logits = network.call(input);
                using var loss = torch.nn.functional.cross_entropy(logits, labels);
                loss.backward();
                optimizer.step();
            },
        };
        var c = new Case(name, step);
        c._owned.AddRange(new IDisposable[] { optimizer, network, input, labels });
        return c;
    }
}
