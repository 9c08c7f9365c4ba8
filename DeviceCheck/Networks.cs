// The networks the device check runs, declared as a user would: torchvision's ten, timm's family, the pre-activation
// networks and BiT (the same declarations as the tests' families), and two with drop path.
namespace ResNetGen.DeviceCheck;

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
[ResNet(Block.PreActBasic, 2, 2, 2, 2)] public partial class ResNetV2_18 { }
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3)] public partial class ResNetV2_50 { }
[ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_50x1_Bit { }
[ResNet(Block.PreActBottleneck, 3, 4, 23, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)]
public partial class ResNetV2_101x1_Bit { }
[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = 0.2)] public partial class ResNet50dDropPath { }
[ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DropPath = 0.1)] public partial class ResNet18dDropPath { }

/// <summary>A network of the check: its timm/torchvision name, how to build it, its twin's source, its family.</summary>
internal sealed record Model(string Name, string Family, System.Func<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> Create,
    string PyTorchSource, double DropPath = 0);

internal static class Models
{
    private static Model M<T>(string name, string family, string source, double dropPath = 0) where T : TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>, new() =>
        new(name, family, () => new T(), source, dropPath);

    public static readonly Model[] All =
    {
        M<ResNet18>("resnet18", "torchvision", ResNet18.PyTorchSource), M<ResNet34>("resnet34", "torchvision", ResNet34.PyTorchSource),
        M<ResNet50>("resnet50", "torchvision", ResNet50.PyTorchSource), M<ResNet101>("resnet101", "torchvision", ResNet101.PyTorchSource),
        M<ResNet152>("resnet152", "torchvision", ResNet152.PyTorchSource), M<ResNeXt50_32x4d>("resnext50_32x4d", "torchvision", ResNeXt50_32x4d.PyTorchSource),
        M<ResNeXt101_32x8d>("resnext101_32x8d", "torchvision", ResNeXt101_32x8d.PyTorchSource),
        M<ResNeXt101_64x4d>("resnext101_64x4d", "torchvision", ResNeXt101_64x4d.PyTorchSource),
        M<WideResNet50_2>("wide_resnet50_2", "torchvision", WideResNet50_2.PyTorchSource), M<WideResNet101_2>("wide_resnet101_2", "torchvision", WideResNet101_2.PyTorchSource),
        M<ResNet10t>("resnet10t", "timm", ResNet10t.PyTorchSource), M<ResNet18d>("resnet18d", "timm", ResNet18d.PyTorchSource),
        M<ResNet26t>("resnet26t", "timm", ResNet26t.PyTorchSource), M<ResNet50c>("resnet50c", "timm", ResNet50c.PyTorchSource),
        M<ResNet50d>("resnet50d", "timm", ResNet50d.PyTorchSource), M<ResNet50s>("resnet50s", "timm", ResNet50s.PyTorchSource),
        M<ResNet101d>("resnet101d", "timm", ResNet101d.PyTorchSource), M<SeResNet50>("seresnet50", "timm", SeResNet50.PyTorchSource),
        M<SeResNeXt26d_32x4d>("seresnext26d_32x4d", "timm", SeResNeXt26d_32x4d.PyTorchSource),
        M<SeResNeXt50_32x4d>("seresnext50_32x4d", "timm", SeResNeXt50_32x4d.PyTorchSource),
        M<EcaResNet26t>("ecaresnet26t", "timm", EcaResNet26t.PyTorchSource), M<EcaResNet50d>("ecaresnet50d", "timm", EcaResNet50d.PyTorchSource),
        M<ResNetRs50>("resnetrs50", "timm", ResNetRs50.PyTorchSource), M<ResNet50dOs8>("resnet50d_os8", "timm", ResNet50dOs8.PyTorchSource),
        M<ResNetAa50d>("resnetaa50d", "timm", ResNetAa50d.PyTorchSource), M<ResNetBlur50>("resnetblur50", "timm", ResNetBlur50.PyTorchSource),
        M<SeResNeXtAa101d_32x8d>("seresnextaa101d_32x8d", "timm", SeResNeXtAa101d_32x8d.PyTorchSource),
        M<ResNetBlur50Os16>("resnetblur50_os16", "timm", ResNetBlur50Os16.PyTorchSource),
        M<ResNetRs50Blur>("resnetrs50_blur", "timm", ResNetRs50Blur.PyTorchSource), M<ResNetRs50Aa>("resnetrs50_aa", "timm", ResNetRs50Aa.PyTorchSource),
        M<ResNetV2_18>("resnetv2_18", "preact/bit", ResNetV2_18.PyTorchSource), M<ResNetV2_50>("resnetv2_50", "preact/bit", ResNetV2_50.PyTorchSource),
        M<ResNetV2_50x1_Bit>("resnetv2_50x1_bit", "preact/bit", ResNetV2_50x1_Bit.PyTorchSource),
        M<ResNetV2_101x1_Bit>("resnetv2_101x1_bit", "preact/bit", ResNetV2_101x1_Bit.PyTorchSource),
        M<ResNet50dDropPath>("resnet50d_drop_path", "drop path", ResNet50dDropPath.PyTorchSource, 0.2),
        M<ResNet18dDropPath>("resnet18d_drop_path", "drop path", ResNet18dDropPath.PyTorchSource, 0.1),
    };

    /// <summary>The models named (exact names, or "torchvision", "timm", "preact/bit", "drop path" for a family; null: all).</summary>
    public static System.Collections.Generic.List<Model> Select(string? names)
    {
        if (names is null) return new(All);
        var wanted = names.Split(',', System.StringSplitOptions.RemoveEmptyEntries | System.StringSplitOptions.TrimEntries);
        var unknown = System.Linq.Enumerable.ToList(System.Linq.Enumerable.Where(wanted, w => !System.Linq.Enumerable.Any(All, m => m.Name == w || m.Family == w)));
        if (unknown.Count > 0)
            throw new System.ArgumentException($"no model '{string.Join("', '", unknown)}'. The models: {string.Join(", ", System.Linq.Enumerable.Select(All, m => m.Name))}; the families: torchvision, timm, preact/bit, drop path.");
        return System.Linq.Enumerable.ToList(System.Linq.Enumerable.Where(All, m => System.Linq.Enumerable.Any(wanted, w => m.Name == w || m.Family == w)));
    }
}
