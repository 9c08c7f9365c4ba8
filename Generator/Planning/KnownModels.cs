using System.Linq;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;

namespace ResNetGen.Generator.Planning;

/// <summary>
/// The torchvision and timm constructors that build exactly the network an attribute declares (the same keys, shapes
/// and computation; the class count and the input size aside), so that the PyTorch twin can say which.
/// </summary>
internal static class KnownModels
{
    private static readonly TargetClass Anonymous = new(null, "_", EquatableArray<ContainingType>.Empty);

    private static NetworkSpec Spec(BlockKind block, params int[] layers) => new(Anonymous, block, layers.ToEquatableArray());

    private static readonly (string Name, NetworkSpec Spec)[] Models =
    {
        ("torchvision.models.resnet18", Spec(BlockKind.Basic, 2, 2, 2, 2)),
        ("torchvision.models.resnet34", Spec(BlockKind.Basic, 3, 4, 6, 3)),
        ("torchvision.models.resnet50", Spec(BlockKind.Bottleneck, 3, 4, 6, 3)),
        ("torchvision.models.resnet101", Spec(BlockKind.Bottleneck, 3, 4, 23, 3)),
        ("torchvision.models.resnet152", Spec(BlockKind.Bottleneck, 3, 8, 36, 3)),
        ("torchvision.models.resnext50_32x4d", Spec(BlockKind.Bottleneck, 3, 4, 6, 3) with { Groups = 32, WidthPerGroup = 4 }),
        ("torchvision.models.resnext101_32x8d", Spec(BlockKind.Bottleneck, 3, 4, 23, 3) with { Groups = 32, WidthPerGroup = 8 }),
        ("torchvision.models.resnext101_64x4d", Spec(BlockKind.Bottleneck, 3, 4, 23, 3) with { Groups = 64, WidthPerGroup = 4 }),
        ("torchvision.models.wide_resnet50_2", Spec(BlockKind.Bottleneck, 3, 4, 6, 3) with { WidthPerGroup = 128 }),
        ("torchvision.models.wide_resnet101_2", Spec(BlockKind.Bottleneck, 3, 4, 23, 3) with { WidthPerGroup = 128 }),
        ("timm.create_model('resnet50d')", Spec(BlockKind.Bottleneck, 3, 4, 6, 3) with { Stem = StemKind.Deep, Shortcut = ShortcutKind.AvgDown }),
        ("timm.create_model('seresnext50_32x4d')", Spec(BlockKind.Bottleneck, 3, 4, 6, 3) with { Groups = 32, WidthPerGroup = 4, Attention = AttentionKind.SqueezeExcite }),
        ("timm.create_model('resnetv2_18')", Spec(BlockKind.PreActBasic, 2, 2, 2, 2)),
        ("timm.create_model('resnetv2_50')", Spec(BlockKind.PreActBottleneck, 3, 4, 6, 3)),
        ("timm.create_model('resnetv2_50x1_bit')", Spec(BlockKind.PreActBottleneck, 3, 4, 6, 3) with
            { Stem = StemKind.Fixed, Norm = NormKind.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8 }),
        ("timm.create_model('resnetv2_101x1_bit')", Spec(BlockKind.PreActBottleneck, 3, 4, 23, 3) with
            { Stem = StemKind.Fixed, Norm = NormKind.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8 }),
    };

    /// <summary>The constructor that builds <paramref name="spec"/>'s network, e.g. <c>torchvision.models.resnet50</c>; null if none does.</summary>
    public static string? Name(NetworkSpec spec)
    {
        var normal = Normal(spec);
        foreach (var (name, model) in Models)
        {
            if (Normal(model) == normal) return name;
        }
        return null;
    }

    /// <summary>The spec without what does not change the network's keys or computation: names, sizes, initialisation, how it was written.</summary>
    private static NetworkSpec Normal(NetworkSpec spec) => spec with
    {
        Target = Anonymous,
        NumClasses = spec.NumClasses == 0 ? 0 : 1000,
        InputSize = 0,
        ZeroInitResidual = false,
        ZeroInitResidualGiven = false,
        DilateStages = spec.DilateStages.Any(d => d) ? spec.DilateStages : EquatableArray<bool>.Empty,
        DilateStagesGiven = false,
        StemWidthGiven = false,
        AttentionRatioGiven = false,
        NormGroupsGiven = false,
        WeightStandardizationEpsGiven = false,
        AttributeText = "",
    };
}
