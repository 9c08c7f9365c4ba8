using ResNetGen.Generator.Model;

namespace ResNetGen.Generator.Parsing;

// These mirror the public enums of ResNetGen.Runtime value for value; the generator cannot load that assembly.
internal enum BlockKind { Basic = 0, Bottleneck = 1, PreActBasic = 2, PreActBottleneck = 3 }

internal enum StemKind { ImageNet = 0, Cifar = 1, Deep = 2, DeepTiered = 3, Fixed = 4 }

internal enum NormKind { BatchNorm = 0, GroupNorm = 1 }

internal enum StemPoolKind { MaxPool = 0, Conv = 1 }

internal enum AttentionKind { None = 0, SqueezeExcite = 1, EfficientChannel = 2 }

internal enum AntiAliasKind { None = 0, AvgPool = 1, BlurPool = 2 }

internal enum ShortcutKind { Projection = 0, ZeroPad = 1, AllProjection = 2, AvgPoolZeroPad = 3, AvgDown = 4 }

internal enum StrideAtKind { Conv3x3 = 0, Conv1x1 = 1 }

/// <summary>One type that encloses the target class, outermost first, as the emitter must re-declare it.</summary>
internal sealed record ContainingType(string Keyword, string Name);

/// <summary>The class the attribute sits on, by name only.</summary>
internal sealed record TargetClass(string? Namespace, string Name, EquatableArray<ContainingType> ContainingTypes)
{
    /// <summary>Fully qualified metadata-style name, e.g. <c>Models.Outer.ResNet50</c>.</summary>
    public string FullName
    {
        get
        {
            var prefix = Namespace is null ? "" : Namespace + ".";
            foreach (var type in ContainingTypes) prefix += type.Name + ".";
            return prefix + Name;
        }
    }

    /// <summary>Hint name for the generated file: <c>{Namespace}.{Class}.g.cs</c>.</summary>
    public string HintName => FullName + ".g.cs";
}

/// <summary>Which attribute argument a diagnostic points at.</summary>
internal enum ArgumentSlot
{
    Attribute, Block, Layers, NumClasses, InChannels, Groups, WidthPerGroup, BaseWidth, Stem, Shortcut, StrideAt,
    DilateStages, ZeroInitResidual, InputSize, StemWidth, StemPool, Attention, AttentionRatio, AntiAlias, DropPath,
    Norm, NormGroups, WeightStandardization, WeightStandardizationEps,
}

/// <summary>Where one attribute argument was written, for diagnostics.</summary>
internal sealed record ArgumentLocation(ArgumentSlot Slot, int Index, LocationInfo Location);

/// <summary>
/// What the user asked for: the attribute's arguments as plain values. Holds no Roslyn symbol or syntax node,
/// so the incremental pipeline compares it by value and caches the steps after it.
/// </summary>
internal sealed record NetworkSpec(
    TargetClass Target,
    BlockKind Block,
    EquatableArray<int> Layers,
    int NumClasses = 1000,
    int InChannels = 3,
    int Groups = 1,
    int WidthPerGroup = 64,
    int BaseWidth = 64,
    StemKind Stem = StemKind.ImageNet,
    ShortcutKind Shortcut = ShortcutKind.Projection,
    StrideAtKind StrideAt = StrideAtKind.Conv3x3,
    EquatableArray<bool> DilateStages = default,
    bool ZeroInitResidual = false,
    int InputSize = 0,
    int StemWidth = 32,
    StemPoolKind StemPool = StemPoolKind.MaxPool,
    AttentionKind Attention = AttentionKind.None,
    double AttentionRatio = 1.0 / 16,
    AntiAliasKind AntiAlias = AntiAliasKind.None,
    double DropPath = 0,
    NormKind Norm = NormKind.BatchNorm,
    int NormGroups = 32,
    bool WeightStandardization = false,
    double WeightStandardizationEps = 1e-6)
{
    /// <summary>Whether <see cref="NormGroups"/> was written (it means something only with group-norm).</summary>
    public bool NormGroupsGiven { get; init; }

    /// <summary>Whether <see cref="WeightStandardizationEps"/> was written (it means something only with weight standardisation).</summary>
    public bool WeightStandardizationEpsGiven { get; init; }

    /// <summary>The ε of the weight-standardised convolutions, or 0 where the convolutions are plain.</summary>
    public double StandardizeEps => WeightStandardization ? WeightStandardizationEps : 0;

    /// <summary>The attribute as written, for comments in the generated file.</summary>
    public string AttributeText { get; init; } = "";

    /// <summary>Whether <see cref="DilateStages"/> was given as an array (even an empty one), so that its length is checked.</summary>
    public bool DilateStagesGiven { get; init; }

    /// <summary>Whether <see cref="StemWidth"/> was written (it means something only with a deep stem).</summary>
    public bool StemWidthGiven { get; init; }

    /// <summary>Whether <see cref="ZeroInitResidual"/> was written (otherwise timm's options bring timm's zero_init_last).</summary>
    public bool ZeroInitResidualGiven { get; init; }

    /// <summary>Whether the blocks are the pre-activation ones (He et al. 2016's v2, timm's resnetv2.py).</summary>
    public bool PreAct => Block is BlockKind.PreActBasic or BlockKind.PreActBottleneck;

    /// <summary>Whether the blocks end in a 1×1 expansion by 4.</summary>
    public bool Expands => Block is BlockKind.Bottleneck or BlockKind.PreActBottleneck;

    /// <summary>Whether any of timm's options is used (a network of timm's family rather than torchvision's).</summary>
    public bool UsesTimmOptions => PreAct || DeepStem || StemPool != StemPoolKind.MaxPool || Shortcut == ShortcutKind.AvgDown
                                   || Attention != AttentionKind.None || AntiAlias != AntiAliasKind.None || DropPath > 0;

    /// <summary>
    /// Whether each block's last batch-norm weight (a pre-activation block's last convolution) starts at 0: as written,
    /// else timm's default: zero_init_last for resnet.py's networks of timm's options, not for resnetv2.py's pre-activation
    /// ones (ResNetV2's zero_init_last=False), and torchvision's (not) for the rest.
    /// </summary>
    public bool ZeroInitLastNorm => ZeroInitResidualGiven ? ZeroInitResidual : UsesTimmOptions && !PreAct;

    /// <summary>Whether <see cref="AttentionRatio"/> was written (it means something only with squeeze-excite).</summary>
    public bool AttentionRatioGiven { get; init; }

    /// <summary>Whether the stem is one of timm's three-convolution stems.</summary>
    public bool DeepStem => Stem is StemKind.Deep or StemKind.DeepTiered;

    /// <summary>The stem's output channels: 2 × StemWidth for the deep stems, BaseWidth otherwise.</summary>
    public int StemChannels => DeepStem ? 2 * StemWidth : BaseWidth;

    /// <summary>The square input size the static shapes are computed at: <see cref="InputSize"/> or the stem's default.</summary>
    public int EffectiveInputSize => InputSize != 0 ? InputSize : Stem == StemKind.Cifar ? 32 : 224;
}

/// <summary>The parse step's output: the spec (when the attribute could be read), argument locations, and diagnostics.</summary>
internal sealed record ParseResult(
    NetworkSpec? Spec,
    EquatableArray<ArgumentLocation> Locations,
    EquatableArray<DiagnosticInfo> Diagnostics);
