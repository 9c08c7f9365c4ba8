using System;
using System.Linq;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>
/// The sample's declared networks (what <c>--arch NAME</c> builds) against the test suite's own declarations of the same
/// models, which the torchvision and timm tests check against torchvision and timm themselves (keys, shapes and
/// outputs): a drift in a sample declaration (a stem width, a shortcut, an attention option) fails here, not on a
/// user's real weights.
/// </summary>
public sealed class DeclaredNetworksTests
{
    public static TheoryData<string> Names() => new() { "resnet18", "resnet50", "resnet50d", "seresnext50_32x4d", "resnetv2_50x1_bit" };

    private static torch.nn.Module<torch.Tensor, torch.Tensor> Verified(string name) => name switch
    {
        "resnet18" => new ResNet18(),
        "resnet50" => new ResNet50(),
        "resnet50d" => new Timm.ResNet50d(),
        "seresnext50_32x4d" => new Timm.SeResNeXt50_32x4d(),
        "resnetv2_50x1_bit" => new Timm.ResNetV2_50x1_Bit(),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Names))]
    public void The_sample_builds_the_checked_network(string name)
    {
        using var declared = Sample.Architecture.Named(name).Create(1000);
        using var verified = Verified(name);
        string Describe(torch.nn.Module m) => string.Join("\n", m.state_dict().Select(p => $"{p.Key} {p.Value.dtype} [{string.Join(",", p.Value.shape)}]").OrderBy(l => l, StringComparer.Ordinal));
        Assert.Equal(Describe(verified), Describe(declared));
        DeterministicWeights.Apply(declared);
        DeterministicWeights.Apply(verified);
        declared.eval();
        verified.eval();
        using var input = DeterministicWeights.Input(2, 3, 64, 64);
        using var noGrad = torch.no_grad();
        using var a = verified.call(input);
        using var b = declared.call(input);
        Assert.Equal(a.data<float>().ToArray(), b.data<float>().ToArray()); // the same generated code: the same bits
    }
}
