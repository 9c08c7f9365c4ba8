using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen.Generator.Tests.Timm;

// timm's ResNets (timm/models/resnet.py), declared as a user would. The generator runs on this project.
[ResNet(Block.Basic, 1, 1, 1, 1, Stem = Stem.DeepTiered, StemWidth = 32, Shortcut = Shortcut.AvgDown)] public partial class ResNet10t { }
[ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown)] public partial class ResNet18d { }
[ResNet(Block.Bottleneck, 2, 2, 2, 2, Stem = Stem.DeepTiered, Shortcut = Shortcut.AvgDown)] public partial class ResNet26t { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep)] public partial class ResNet50c { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32, Shortcut = Shortcut.AvgDown)] public partial class ResNet50d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 64)] public partial class ResNet50s { }
[ResNet(Block.Bottleneck, 3, 4, 23, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown)] public partial class ResNet101d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Attention = Attention.SqueezeExcite)] public partial class SeResNet50 { }
[ResNet(Block.Bottleneck, 2, 2, 2, 2, Groups = 32, WidthPerGroup = 4, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, Attention = Attention.SqueezeExcite)]
public partial class SeResNeXt26d_32x4d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4, Attention = Attention.SqueezeExcite)] public partial class SeResNeXt50_32x4d { }
[ResNet(Block.Bottleneck, 2, 2, 2, 2, Stem = Stem.DeepTiered, Shortcut = Shortcut.AvgDown, Attention = Attention.EfficientChannel)] public partial class EcaResNet26t { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, Attention = Attention.EfficientChannel)] public partial class EcaResNet50d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown, Attention = Attention.SqueezeExcite, AttentionRatio = 0.25)]
public partial class ResNetRs50 { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DilateStages = new[] { false, true, true })] public partial class ResNet50dOs8 { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, AntiAlias = AntiAlias.AvgPool)] public partial class ResNetAa50d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, AntiAlias = AntiAlias.BlurPool)] public partial class ResNetBlur50 { }
[ResNet(Block.Bottleneck, 3, 4, 23, 3, Groups = 32, WidthPerGroup = 8, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, AntiAlias = AntiAlias.AvgPool,
    Attention = Attention.SqueezeExcite)]
public partial class SeResNeXtAa101d_32x8d { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, AntiAlias = AntiAlias.BlurPool, DilateStages = new[] { false, false, true })] public partial class ResNetBlur50Os16 { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown, Attention = Attention.SqueezeExcite, AttentionRatio = 0.25,
    AntiAlias = AntiAlias.BlurPool)]
public partial class ResNetRs50Blur { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown, Attention = Attention.SqueezeExcite, AttentionRatio = 0.25,
    AntiAlias = AntiAlias.AvgPool)]
public partial class ResNetRs50Aa { }

// Pre-activation ResNets (timm's resnetv2.py), with batch-norm.
[ResNet(Block.PreActBasic, 2, 2, 2, 2)] public partial class ResNetV2_18 { }
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3)] public partial class ResNetV2_50 { }

// BiT (timm's _create_resnetv2_bit): the fixed stem, group-norm of 32 groups, convolutions weight-standardised with ε 1e-8.
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_50x1_Bit { }
[ResNet(Block.PreActBottleneck, 3, 4, 23, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_101x1_Bit { }

// BiT's wider models: the width factor as BaseWidth (64 × factor). Too large to run in the tests; their counts are checked.
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3, BaseWidth = 192, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_50x3_Bit { }
[ResNet(Block.PreActBottleneck, 3, 8, 36, 3, BaseWidth = 128, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_152x2_Bit { }
[ResNet(Block.PreActBottleneck, 3, 4, 23, 3, BaseWidth = 192, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_101x3_Bit { }

// Stochastic depth, at the rates make_timm_reference.py asked timm for.
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = 0.2)] public partial class ResNet50dDropPath { }
[ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = 0.1)] public partial class ResNet18dDropPath { }

/// <summary>The family by timm's names, with timm's parameter counts (make_timm_reference.py prints them).</summary>
public static class TimmFamily
{
    public static readonly IReadOnlyDictionary<string, (Func<torch.nn.Module<torch.Tensor, torch.Tensor>> Create, long Parameters, long GeneratedConstant)> Models =
        new Dictionary<string, (Func<torch.nn.Module<torch.Tensor, torch.Tensor>>, long, long)>
        {
            ["resnet10t"] = (() => new ResNet10t(), 5_435_488, ResNet10t.ParameterCount),
            ["resnet18d"] = (() => new ResNet18d(), 11_708_744, ResNet18d.ParameterCount),
            ["resnet26t"] = (() => new ResNet26t(), 16_011_872, ResNet26t.ParameterCount),
            ["resnet50c"] = (() => new ResNet50c(), 25_576_264, ResNet50c.ParameterCount),
            ["resnet50d"] = (() => new ResNet50d(), 25_576_264, ResNet50d.ParameterCount),
            ["resnet50s"] = (() => new ResNet50s(), 25_680_808, ResNet50s.ParameterCount),
            ["resnet101d"] = (() => new ResNet101d(), 44_568_392, ResNet101d.ParameterCount),
            ["seresnet50"] = (() => new SeResNet50(), 28_088_024, SeResNet50.ParameterCount),
            ["seresnext26d_32x4d"] = (() => new SeResNeXt26d_32x4d(), 16_809_512, SeResNeXt26d_32x4d.ParameterCount),
            ["seresnext50_32x4d"] = (() => new SeResNeXt50_32x4d(), 27_559_896, SeResNeXt50_32x4d.ParameterCount),
            ["ecaresnet26t"] = (() => new EcaResNet26t(), 16_011_916, EcaResNet26t.ParameterCount),
            ["ecaresnet50d"] = (() => new EcaResNet50d(), 25_576_350, EcaResNet50d.ParameterCount),
            ["resnetrs50"] = (() => new ResNetRs50(), 35_691_912, ResNetRs50.ParameterCount),
            ["resnet50d_os8"] = (() => new ResNet50dOs8(), 25_576_264, ResNet50dOs8.ParameterCount),
            ["resnetaa50d"] = (() => new ResNetAa50d(), 25_576_264, ResNetAa50d.ParameterCount),
            ["resnetblur50"] = (() => new ResNetBlur50(), 25_557_032, ResNetBlur50.ParameterCount),
            ["seresnextaa101d_32x8d"] = (() => new SeResNeXtAa101d_32x8d(), 93_588_280, SeResNeXtAa101d_32x8d.ParameterCount),
            ["resnetblur50_os16"] = (() => new ResNetBlur50Os16(), 25_557_032, ResNetBlur50Os16.ParameterCount),
            ["resnetrs50_blur"] = (() => new ResNetRs50Blur(), 35_691_912, ResNetRs50Blur.ParameterCount),
            ["resnetrs50_aa"] = (() => new ResNetRs50Aa(), 35_691_912, ResNetRs50Aa.ParameterCount),
            ["resnetv2_18"] = (() => new ResNetV2_18(), 11_687_720, ResNetV2_18.ParameterCount),
            ["resnetv2_50"] = (() => new ResNetV2_50(), 25_549_352, ResNetV2_50.ParameterCount),
            ["resnetv2_50x1_bit"] = (() => new ResNetV2_50x1_Bit(), 25_549_352, ResNetV2_50x1_Bit.ParameterCount),
            ["resnetv2_101x1_bit"] = (() => new ResNetV2_101x1_Bit(), 44_541_480, ResNetV2_101x1_Bit.ParameterCount),
        };

    public static IEnumerable<object[]> Names()
    {
        foreach (var name in Models.Keys) yield return new object[] { name };
    }

    /// <summary>The models make_timm_reference.py ran forward and backward in training mode.</summary>
    public static IEnumerable<object[]> Trained() =>
        new[] { "resnet18d", "seresnext26d_32x4d", "ecaresnet26t", "resnetrs50", "resnetaa50d", "resnetblur50_os16", "resnetv2_18", "resnetv2_50", "resnetv2_50x1_bit", "resnetv2_101x1_bit" }.Select(n => new object[] { n });
}
