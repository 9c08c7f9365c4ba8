using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.Loader;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ResNetGen.Generator.Tests.Cifar;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Kernels;
using ResNetGen.Generator.Tests.Timm;
using TorchSharp;
using Xunit;
using Tv = ResNetGen.Generator.Tests.Torchvision;

namespace ResNetGen.Generator.Tests.PyTorch;

[ResNet(Block.Basic, 2, 2, 2, 2, NumClasses = 0)] public partial class TwinHeadless { }
[ResNet(Block.Basic, 1, 1, 1, 1, InChannels = 1, NumClasses = 7, InputSize = 64)] public partial class TwinOneChannel { }
[ResNet(Block.Bottleneck, 1, 1, 1, 1, DilateStages = new[] { false, true, true }, NumClasses = 10, InputSize = 64)] public partial class TwinDilated { }

/// <summary>Every generated network's PyTorch twin (PyTorchSource) against the C# network, on Debian's PyTorch.</summary>
public sealed class PyTorchTwinTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-twins-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    internal static readonly long[] ImageNet = { 2, 3, 64, 64 };
    internal static readonly long[] Cifar = { 2, 3, 32, 32 };

    [Fact]
    public void The_ten_torchvision_models() => Twins.Check(
        Tv.Family.Models.Select(p => new TwinCase(p.Key, p.Value.Create, ImageNet)).ToList(), _folder);

    [Fact]
    public void Every_cifar_shortcut_option_a_dilated_a_headless_and_a_one_channel_network() => Twins.Check(new[]
    {
        new TwinCase("resnet20_a", () => new ResNet20A(), Cifar), new TwinCase("resnet20_b", () => new ResNet20B(), Cifar),
        new TwinCase("resnet20_c", () => new ResNet20C(), Cifar), new TwinCase("resnet20_avgpool", () => new ResNet20AvgPool(), Cifar),
        new TwinCase("resnet50_v1", () => new ResNet50v1(), ImageNet), new TwinCase("dilated", () => new TwinDilated(), ImageNet),
        new TwinCase("headless", () => new TwinHeadless(), ImageNet), new TwinCase("one_channel", () => new TwinOneChannel(), new long[] { 2, 1, 64, 64 }),
    }, _folder);

    /// <summary>timm's options, the pre-activation blocks and BiT: the cases the twins and the autocast comparison share.</summary>
    internal static TwinCase[] TimmCases() => new[]
    {
        new TwinCase("resnet10t", () => new ResNet10t(), ImageNet), new TwinCase("seresnext26d_32x4d", () => new SeResNeXt26d_32x4d(), ImageNet),
        new TwinCase("ecaresnet26t", () => new EcaResNet26t(), ImageNet), new TwinCase("resnetrs50_blur", () => new ResNetRs50Blur(), ImageNet),
        new TwinCase("resnetrs50_aa", () => new ResNetRs50Aa(), ImageNet), new TwinCase("resnet50d_os8", () => new ResNet50dOs8(), ImageNet),
        new TwinCase("resnetblur50_os16", () => new ResNetBlur50Os16(), ImageNet),
        // Drop path draws its own random masks on each side: eval only.
        new TwinCase("every_timm_option", () => new EveryTimmOption(), ImageNet, Train: false),
        new TwinCase("resnetv2_18", () => new ResNetV2_18(), ImageNet), new TwinCase("preact_cifar", () => new PreActResNet18Cifar(), Cifar),
        new TwinCase("resnetv2_50x1_bit", () => new ResNetV2_50x1_Bit(), ImageNet), new TwinCase("small_bit", () => new SmallBit(), ImageNet),
        new TwinCase("standardized_bn", () => new StandardizedBatchNorm(), Cifar),
    };

    [Fact]
    public void Timms_options_the_pre_activation_blocks_and_bit() => Twins.Check(TimmCases(), _folder);

    [Fact]
    public void A_random_sample_of_valid_attributes()
    {
        var output = Isolated.Run<PyTorchTwinTests>(nameof(RandomSample));
        // All 16 compared (the first 40 draws hold more than 16 valid ones), and most also in train mode (not those with drop path).
        var counts = System.Text.RegularExpressions.Regex.Match(output, @"twins of (\d+) random valid attributes equal their networks, (\d+) also in train mode");
        Assert.True(counts.Success, output);
        Assert.Equal(16, int.Parse(counts.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.InRange(int.Parse(counts.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), 8, 16);
    }

    /// <summary>In a child process (the networks are compiled and loaded here): 16 valid draws of the random-configuration tests' generator.</summary>
    internal static void RandomSample()
    {
        var cases = Twins.RandomCases(new Random(20261130), 40, 16);
        var folder = Directory.CreateTempSubdirectory("resnetgen-random-twins-").FullName;
        (int Eval, int Train) compared;
        try
        {
            compared = Twins.Check(cases, folder);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
        Console.WriteLine($"twins of {compared.Eval} random valid attributes equal their networks, {compared.Train} also in train mode");
    }

    [Fact]
    public void An_exported_set_checks_itself_without_its_weights_and_catches_a_wrong_output()
    {
        // What RESNETGEN_TWIN_EXPORT writes, for checking the twins on another PyTorch (README): no weight files, the C#
        // outputs beside the twins; twin_check.py rebuilds the deterministic weights and compares by the suite's rules.
        var set = Path.Combine(_folder, "exported");
        Twins.CheckAndCopy(new[] { new TwinCase("resnet20_a", () => new ResNet20A(), Cifar), new TwinCase("one_channel", () => new TwinOneChannel(), new long[] { 2, 1, 64, 64 }) },
            Directory.CreateDirectory(Path.Combine(_folder, "here")).FullName, exportTo: set);
        Assert.Empty(Directory.GetFiles(set, "*.safetensors"));
        var script = Path.Combine(Repository.Root(), "Generator.Tests", "PyTorch", "twin_check.py");
        var output = Twins.RunPython(set, script, Path.Combine(set, "manifest.json"));
        Assert.Contains("ok resnet20_a", output);
        Assert.Contains("ok one_channel", output);

        // One C# logit moved by 1e-4 of the largest: the set now fails that case, naming the rule, and passes the other.
        var expected = Path.Combine(set, "resnet20_a.cs.eval.out");
        var values = Tv.DeterministicWeights.ReadFloats(expected);
        values[3] += 1e-4f * values.Max(Math.Abs);
        File.WriteAllBytes(expected, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        output = Twins.RunPython(set, script, Path.Combine(set, "manifest.json"));
        Assert.Contains("FAIL resnet20_a: eval output: max |difference|", output);
        Assert.Contains("ok one_channel", output);
    }

    [Fact]
    public void Twins_match_their_snapshots()
    {
        // The Python itself, as a reviewer reads it (accept a change with RESNETGEN_ACCEPT_SNAPSHOTS=1).
        Snapshot.Verify("resnet18_twin", Tv.ResNet18.PyTorchSource, "py");
        Snapshot.Verify("resnetv2_50x1_bit_twin", ResNetV2_50x1_Bit.PyTorchSource, "py");
        Snapshot.Verify("resnet20_a_twin", ResNet20A.PyTorchSource, "py");
    }

    [Fact]
    public void The_twin_says_which_torchvision_or_timm_model_it_equals_and_imports_neither()
    {
        Assert.Contains("The same network as torchvision.models.resnet50(): its weights load into either.", Tv.ResNet50.PyTorchSource);
        Assert.Contains("The same network as timm.create_model('resnetv2_50x1_bit'): its weights load into either.", ResNetV2_50x1_Bit.PyTorchSource);
        Assert.DoesNotContain("The same network as", ResNet20A.PyTorchSource);
        Assert.DoesNotContain("The same network as", TwinHeadless.PyTorchSource); // torchvision has no headless resnet18
        foreach (var source in new[] { Tv.ResNet50.PyTorchSource, ResNet20A.PyTorchSource, ResNetV2_50x1_Bit.PyTorchSource, EveryTimmOption.PyTorchSource })
        {
            var imports = source.Split('\n').Where(l => l.StartsWith("import ", StringComparison.Ordinal) || l.StartsWith("from ", StringComparison.Ordinal)).ToList();
            Assert.Equal(new[] { "import torch", "import torch.nn as nn", "import torch.nn.functional as F" }, imports);
            Assert.All(source.Split('\n'), l => Assert.True(l.Length <= 160, l));
            Assert.Contains("def build(num_classes=NUM_CLASSES):", source);
        }
    }
}
