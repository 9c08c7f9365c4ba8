using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Cifar;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.PyTorch;
using ResNetGen.Generator.Tests.Timm;
using Xunit;
using Xunit.Abstractions;
using Tv = ResNetGen.Generator.Tests.Torchvision;

namespace ResNetGen.Generator.Tests.MixedPrecision;

/// <summary>
/// Precision.BFloat16 against PyTorch's torch.autocast("cpu", dtype=torch.bfloat16) on Debian's PyTorch 1.13, through the
/// generated twins (see <see cref="AutocastReference"/> for the bound): eval outputs, train-mode outputs and every float32
/// parameter's gradient.
/// </summary>
public sealed class AutocastTests
{
    private readonly ITestOutputHelper _output;

    public AutocastTests(ITestOutputHelper output) => _output = output;

    private static readonly long[] ImageNet = PyTorchTwinTests.ImageNet;
    private static readonly long[] Cifar = PyTorchTwinTests.Cifar;

    // Each set runs in a child process (Isolated): bfloat16 runs libtorch kernels float32 never does, and one that crashes
    // natively must fail its test alone. The child prints each network's distances, shown here.

    [Fact]
    public void The_torchvision_models_resnet18_to_resnet152() => _output.WriteLine(Isolated.Run<AutocastTests>(nameof(Torchvision18To152)));

    /// <summary>
    /// The larger torchvision models, one child process each: together in one process their float64 twins held 18 GB
    /// at the end (memory grows model by model), enough to be killed on a 24 GB machine when other tests run beside it.
    /// </summary>
    [Theory]
    [InlineData("resnext50_32x4d")]
    [InlineData("resnext101_32x8d")]
    [InlineData("resnext101_64x4d")]
    [InlineData("wide_resnet50_2")]
    [InlineData("wide_resnet101_2")]
    public void The_torchvision_models_resnext_and_wide(string model) =>
        _output.WriteLine(Isolated.Run<AutocastTests>(nameof(TorchvisionModel), (ModelVariable, model)));

    private const string ModelVariable = "RESNETGEN_AUTOCAST_MODEL";

    [Fact]
    public void Timms_options_the_pre_activation_blocks_bit_and_the_cifar_shortcuts() => _output.WriteLine(Isolated.Run<AutocastTests>(nameof(TimmBitAndCifar)));

    internal static void Torchvision18To152() => Check(Tv.Family.Models.Take(5));

    internal static void TorchvisionModel()
    {
        var name = Environment.GetEnvironmentVariable(ModelVariable);
        var model = Tv.Family.Models.Where(p => p.Key == name).ToList();
        if (model.Count != 1) throw new InvalidOperationException($"{ModelVariable}={name}: not one of torchvision's models");
        Check(model);
    }

    private static void Check(IEnumerable<KeyValuePair<string, (Func<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> Create, long, long)>> models) =>
        Check(models.Select(p => new TwinCase(p.Key, p.Value.Create, ImageNet)).ToList());

    internal static void TimmBitAndCifar() => Check(PyTorchTwinTests.TimmCases().Concat(new[]
    {
        new TwinCase("resnet20_a", () => new ResNet20A(), Cifar), new TwinCase("resnet20_avgpool", () => new ResNet20AvgPool(), Cifar),
    }).ToList());

    [Fact]
    public void A_random_sample_of_valid_attributes() => _output.WriteLine(Isolated.Run<AutocastTests>(nameof(RandomSample)));

    /// <summary>12 valid draws of the random-configuration tests' generator (a seed of its own), compiled and loaded here; drop path's in eval only.</summary>
    internal static void RandomSample() => Check(Twins.RandomCases(new Random(20261203), 30, 12));

    private static void Check(IReadOnlyList<TwinCase> cases)
    {
        var folder = Directory.CreateTempSubdirectory("resnetgen-autocast-").FullName;
        try
        {
            Report(AutocastReference.Check(cases, folder));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void Report(IReadOnlyList<AutocastReference.Result> results)
    {
        foreach (var r in results)
        {
            var grads = r.Distances.Where(d => d.Key.StartsWith("grad ", StringComparison.Ordinal)).Select(d => d.Value.Ours / Math.Max(d.Value.Autocast, 1e-30)).ToList();
            string Ratio(string kind) => r.Distances.TryGetValue(kind, out var d)
                ? string.Format(CultureInfo.InvariantCulture, "{0}: from float32 ours {1:0.###e+0}, autocast {2:0.###e+0} (×{3:0.00}), ours from autocast {4:0.###e+0}", kind, d.Ours, d.Autocast,
                    d.Ours / d.Autocast, d.Apart)
                : "";
            Console.WriteLine($"{r.Name}: {Ratio("eval")}; {Ratio("train")}" + (grads.Count == 0 ? "" :
                string.Format(CultureInfo.InvariantCulture, "; gradients: median ×{0:0.00}, largest ×{1:0.00} over {2} tensors", grads.OrderBy(g => g).ElementAt(grads.Count / 2), grads.Max(), grads.Count)));
        }
    }
}
