using System;
using System.Collections.Generic;
using TorchSharp;

namespace ResNetGen.Generator.Tests.Torchvision;

// The ten torchvision models, declared as a user would. The generator runs on this project.
[ResNet(Block.Basic, 2, 2, 2, 2)] public partial class ResNet18 { }
[ResNet(Block.Basic, 3, 4, 6, 3)] public partial class ResNet34 { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3)] public partial class ResNet50 { }
[ResNet(Block.Bottleneck, 3, 4, 23, 3)] public partial class ResNet101 { }
[ResNet(Block.Bottleneck, 3, 8, 36, 3)] public partial class ResNet152 { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4)] public partial class ResNeXt50_32x4d { }
[ResNet(Block.Bottleneck, 3, 4, 23, 3, Groups = 32, WidthPerGroup = 8)] public partial class ResNeXt101_32x8d { }
[ResNet(Block.Bottleneck, 3, 4, 23, 3, Groups = 64, WidthPerGroup = 4)] public partial class ResNeXt101_64x4d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, WidthPerGroup = 128)] public partial class WideResNet50_2 { }
[ResNet(Block.Bottleneck, 3, 4, 23, 3, WidthPerGroup = 128)] public partial class WideResNet101_2 { }

[ResNet(Block.Basic, 2, 2, 2, 2, ZeroInitResidual = true)] public partial class ResNet18ZeroInit { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, ZeroInitResidual = true, NumClasses = 0)] public partial class ResNet50Backbone { }

/// <summary>The family by torchvision's names, with torchvision's parameter counts.</summary>
public static class Family
{
    public static readonly IReadOnlyDictionary<string, (Func<torch.nn.Module<torch.Tensor, torch.Tensor>> Create, long Parameters, long GeneratedConstant)> Models =
        new Dictionary<string, (Func<torch.nn.Module<torch.Tensor, torch.Tensor>>, long, long)>
        {
            ["resnet18"] = (() => new ResNet18(), 11_689_512, ResNet18.ParameterCount),
            ["resnet34"] = (() => new ResNet34(), 21_797_672, ResNet34.ParameterCount),
            ["resnet50"] = (() => new ResNet50(), 25_557_032, ResNet50.ParameterCount),
            ["resnet101"] = (() => new ResNet101(), 44_549_160, ResNet101.ParameterCount),
            ["resnet152"] = (() => new ResNet152(), 60_192_808, ResNet152.ParameterCount),
            ["resnext50_32x4d"] = (() => new ResNeXt50_32x4d(), 25_028_904, ResNeXt50_32x4d.ParameterCount),
            ["resnext101_32x8d"] = (() => new ResNeXt101_32x8d(), 88_791_336, ResNeXt101_32x8d.ParameterCount),
            ["resnext101_64x4d"] = (() => new ResNeXt101_64x4d(), 83_455_272, ResNeXt101_64x4d.ParameterCount),
            ["wide_resnet50_2"] = (() => new WideResNet50_2(), 68_883_240, WideResNet50_2.ParameterCount),
            ["wide_resnet101_2"] = (() => new WideResNet101_2(), 126_886_696, WideResNet101_2.ParameterCount),
        };

    public static IEnumerable<object[]> Names()
    {
        foreach (var name in Models.Keys) yield return new object[] { name };
    }
}
