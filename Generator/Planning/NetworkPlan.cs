using System.Collections.Generic;
using System.Linq;
using System.Globalization;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;

namespace ResNetGen.Generator.Planning;

/// <summary>A feature map's shape for one batch element: channels, height, width (or [C] once pooled).</summary>
internal readonly record struct Shape(int Channels, int Height, int Width, bool Pooled = false)
{
    public static Shape Vector(int channels) => new(channels, 1, 1, Pooled: true);

    /// <summary>As torchinfo writes it, with the batch dimension as <paramref name="batch"/>.</summary>
    public string Format(string batch = "N") => Pooled
        ? $"[{batch}, {Channels.ToString(CultureInfo.InvariantCulture)}]"
        : string.Format(CultureInfo.InvariantCulture, "[{0}, {1}, {2}, {3}]", batch, Channels, Height, Width);

    public override string ToString() => Format();
}

internal enum ModuleKind { Conv2d, BatchNorm2d, Linear, Conv1d, GroupNorm }

/// <summary>
/// One module with parameters, by its state_dict path (<c>layer1.0.conv1</c>). Every number is a literal the
/// emitter writes as is.
/// </summary>
internal sealed record ModulePlan(
    string Path,
    ModuleKind Kind,
    int InFeatures,
    int OutFeatures,
    int Kernel = 1,
    int Stride = 1,
    int Padding = 0,
    int Dilation = 1,
    int Groups = 1,
    bool ZeroInit = false,
    long Parameters = 0,
    long MultAdds = 0,
    Shape Output = default,
    bool Bias = false,
    bool Head = false,
    double StandardizeEps = 0)
{
    /// <summary>Whether it is a weight-standardised convolution (timm's StdConv2d), whose weight is standardised with <see cref="StandardizeEps"/> at each use.</summary>
    public bool Standardized => StandardizeEps > 0;

    /// <summary>The C# field that holds it: the path with '.' replaced by '_'.</summary>
    public string FieldName => FieldOf(Path);

    /// <summary>The C# field for a state_dict path.</summary>
    public static string FieldOf(string path) => path.Replace('.', '_');
}

internal enum StepKind
{
    /// <summary>Target = Norm(Module(Source)): a convolution and its batch-norm (folded into one after <c>FuseForInference</c>).</summary>
    ConvNorm,
    /// <summary>Target = Module(Source): the classifier.</summary>
    Linear,
    /// <summary>Target.relu_() in place.</summary>
    Relu,
    /// <summary>Target.add_(Other) in place: the residual add.</summary>
    Add,
    /// <summary>Target = max_pool2d(Source, 3, Stride, 1): 2 in torchvision's stem, 1 before a blur pool.</summary>
    MaxPool,
    /// <summary>Target = Module(Source): a convolution with no batch-norm right after it (ResNet-RS's stem pool with anti-aliasing).</summary>
    Conv,
    /// <summary>Target = Norm(Source): a batch-norm that does not follow its convolution directly.</summary>
    Norm,
    /// <summary>Target = Norm(Source): a group-norm (it never folds).</summary>
    GroupNorm,
    /// <summary>Target = max_pool2d(Source padded by one zero on each side, 3, 2, 0): BiT's fixed stem pool.</summary>
    ZeroPaddedMaxPool,
    /// <summary>Target = avg_pool2d(Source, 2, 2): anti-aliasing's 2×2 average at stride 2 (floors an odd size).</summary>
    AntiAliasPool,
    /// <summary>Target = Source reflect-padded by one, blurred per channel by [1, 2, 1]ᵀ[1, 2, 1] / 16 at Stride.</summary>
    Blur,
    /// <summary>Target = Module(Source as [N, C, 1, 1]) flattened: a classifier stored as a 1×1 convolution with bias (timm's resnetv2 head.fc).</summary>
    ConvHead,
    /// <summary>Target = Source with each sample's branch dropped at Rate in training (survivors scaled by 1 / (1 − Rate)); Source in eval.</summary>
    DropPath,
    /// <summary>Target = Source subsampled by Stride (rounding up) with PadChannels zero channels appended (shortcut A).</summary>
    ZeroPad,
    /// <summary>Target = avg_pool2d(Source with PadChannels zero channels appended, 2, 2) (shortcut A with average pooling).</summary>
    AvgPoolZeroPad,
    /// <summary>Target = Source averaged over height and width: [N, C].</summary>
    Pool,
    /// <summary>
    /// Target = the avg-down shortcut's pool of Source: 2×2 average, ceil mode, padding not counted, at Stride 2; at
    /// Stride 1 (a dilated stage) the same window over Source padded by one zero row and column ("same" padding).
    /// </summary>
    AvgDownPool,
    /// <summary>Target = Target × sigmoid(Gate(relu(Module(mean of Target)))): squeeze-excite, Module and Gate 1×1 convolutions with bias.</summary>
    SqueezeExcite,
    /// <summary>Target = Target × sigmoid(Module(mean of Target as a row)): efficient channel attention, Module a 1-D convolution.</summary>
    EfficientChannel,
    /// <summary>Target.Dispose(): its last use is behind.</summary>
    Release,
    /// <summary>Target takes Source's tensor, and the tensor Target held is disposed.</summary>
    Move,
    /// <summary>ForwardFeatures keeps Target as its feature Feature.</summary>
    Keep,
    /// <summary>ForwardFeatures stops here; forward goes on to the head.</summary>
    EndOfFeatures,
}

/// <summary>
/// One statement of the forward pass (for a ConvNorm or Conv step, <c>Standardize</c> is its convolution's
/// weight-standardisation ε, 0 for a plain one), on named variables: <c>x</c> (the running activation), <c>branch</c> (a block's
/// residual branch) and <c>identity</c> (its shortcut, where one is computed). The emitter writes the statements as
/// C# and derives the ONNX graph table from the same list: there is no second copy of the sequence.
/// </summary>
internal sealed record StepPlan(
    StepKind Kind,
    string Target,
    string Source = "",
    string? Other = null,
    string? Module = null,
    string? Norm = null,
    string? Gate = null,
    int Stride = 1,
    int PadChannels = 0,
    Shape Shape = default,
    string? Comment = null,
    int Feature = -1,
    double Rate = 0,
    bool BranchFloors = false,
    double Standardize = 0)
{
    /// <summary>Whether the step computes a new tensor (rather than disposing, moving or keeping one).</summary>
    public bool Computes => Kind is not (StepKind.Release or StepKind.Move or StepKind.Keep or StepKind.EndOfFeatures);

    /// <summary>Whether the step changes nothing in eval mode (so the exported graph has no node for it).</summary>
    public bool TrainingOnly => Kind == StepKind.DropPath;
}

/// <summary>One named output of <c>ForwardFeatures</c>: the stem or a stage.</summary>
internal sealed record FeaturePlan(string Name, Shape Shape);

/// <summary>A row of the compile-time summary table.</summary>
internal sealed record SummaryRow(int Depth, string Name, string Type, Shape Shape, long Parameters);

/// <summary>
/// The whole network, unrolled: every module in registration order (the state_dict's order), every forward step,
/// static shapes at <see cref="InputSize"/>, and the totals; <c>KnownAs</c> names the torchvision or timm constructor
/// that builds the same network, where one does. Emitting reads this and decides nothing.
/// </summary>
internal sealed record NetworkPlan(
    TargetClass Target,
    string AttributeText,
    string Description,
    int InChannels,
    int InputSize,
    int NumClasses,
    EquatableArray<ModulePlan> Modules,
    EquatableArray<StepPlan> Steps,
    Shape OutputShape,
    EquatableArray<FeaturePlan> Features,
    EquatableArray<SummaryRow> SummaryRows,
    long ParameterCount,
    long MultAdds,
    string? KnownAs = null);
