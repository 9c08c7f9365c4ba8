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

internal enum ModuleKind { Conv2d, BatchNorm2d, Linear }

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
    bool Bias = false,
    bool ZeroInit = false,
    long Parameters = 0,
    long MultAdds = 0,
    Shape Output = default)
{
    /// <summary>The C# field that holds it: the path with '.' replaced by '_'.</summary>
    public string FieldName => FieldOf(Path);

    /// <summary>The C# field for a state_dict path.</summary>
    public static string FieldOf(string path) => path.Replace('.', '_');
}

internal enum OpKind
{
    /// <summary>Result = Module.forward(Arg).</summary>
    Call,
    /// <summary>Arg.relu_() in place; Result is Arg.</summary>
    ReluInPlace,
    /// <summary>Arg.add_(Other) in place; Result is Arg.</summary>
    AddInPlace,
    /// <summary>Result = max_pool2d(Arg, 3, 2, 1).</summary>
    MaxPool,
    /// <summary>Result = Arg subsampled by Stride (rounding up) with zero channels appended (shortcut A).</summary>
    ZeroPadShortcut,
    /// <summary>Result = avg_pool2d(Arg with zero channels appended, 2, 2) (shortcut A with average pooling).</summary>
    AvgPoolZeroPadShortcut,
    /// <summary>Result = Arg averaged over height and width: [N, C].</summary>
    GlobalAveragePool,
    /// <summary>Result = the folded convolution of Module (with the batch-norm Other folded in) applied to Arg.</summary>
    FusedCall,
}

/// <summary>
/// One step of the straight-line forward pass, on numbered tensors (0 is the input). <see cref="Dispose"/> lists the
/// tensors whose last use this is: the emitter disposes them right after.
/// </summary>
internal sealed record OpPlan(
    OpKind Kind,
    int Result,
    int Arg,
    int Other = -1,
    string? Module = null,
    int Stride = 1,
    int PadChannels = 0,
    Shape Shape = default,
    EquatableArray<int> Dispose = default,
    string? Comment = null,
    string? Norm = null);

/// <summary>One named output of <c>ForwardFeatures</c>: the stem or a stage, and the tensor that holds it.</summary>
internal sealed record FeaturePlan(string Name, int Tensor, Shape Shape);

/// <summary>A row of the compile-time summary table.</summary>
internal sealed record SummaryRow(int Depth, string Name, string Type, Shape Shape, long Parameters, bool ShowShape = true);

/// <summary>
/// The whole network, unrolled: every module in registration order (the state_dict's order), every forward step,
/// static shapes at <see cref="InputSize"/>, and the totals. Emitting reads this and decides nothing.
/// </summary>
internal sealed record NetworkPlan(
    TargetClass Target,
    string AttributeText,
    string Description,
    int InChannels,
    int InputSize,
    int NumClasses,
    EquatableArray<ModulePlan> Modules,
    EquatableArray<OpPlan> Ops,
    int OutputTensor,
    Shape OutputShape,
    EquatableArray<FeaturePlan> Features,
    EquatableArray<SummaryRow> SummaryRows,
    long ParameterCount,
    long MultAdds)
{
    /// <summary>The forward steps up to the last stage, keeping every feature map alive (for <c>ForwardFeatures</c>).</summary>
    public EquatableArray<OpPlan> FeatureOps { get; init; } = EquatableArray<OpPlan>.Empty;

    /// <summary>The forward steps with each batch-norm folded into the convolution before it (after <c>FuseForInference</c>).</summary>
    public EquatableArray<OpPlan> FusedOps { get; init; } = EquatableArray<OpPlan>.Empty;

    /// <summary>The folded steps of <see cref="FusedOps"/>: each convolution (Module) with the batch-norm (Norm) folded into it.</summary>
    public IEnumerable<OpPlan> Fusions => FusedOps.Where(o => o.Kind == OpKind.FusedCall);
}

/// <summary>The plan step's output: a plan where the spec allows one, and every diagnostic the checks found.</summary>
internal sealed record PlanResult(NetworkPlan? Plan, EquatableArray<DiagnosticInfo> Diagnostics);
