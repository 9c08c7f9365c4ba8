using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;
using ResNetGen.Generator.Planning;

namespace ResNetGen.Generator.Diagnostics;

/// <summary>A problem found in a spec, before it is placed: the diagnostic, the argument at fault, the message's arguments.</summary>
internal sealed record SpecProblem(string Id, ArgumentSlot Slot, int Index, EquatableArray<string> Args);

/// <summary>The plan step's input: the spec, and whether the parse found an error that forbids generating (RNG0001, RNG0011).</summary>
internal sealed record PlanInput(NetworkSpec? Spec, bool Blocked)
{
    public static PlanInput From(ParseResult parse) => new(parse.Spec,
        parse.Diagnostics.Any(d => DiagnosticDescriptors.IsError(d.Id)));
}

/// <summary>The plan step's output: a plan where the spec allows one, and every problem the checks found (no locations).</summary>
internal sealed record PlanResult(NetworkPlan? Plan, EquatableArray<SpecProblem> Problems);

/// <summary>
/// Turns a spec into a plan and problems: the value rules first (RNG0002–RNG0006, RNG0012, which make a plan
/// meaningless), then the shape rules the planner found (RNG0007–RNG0009). It sees no locations, so moving an
/// attribute re-runs neither planning nor emission; <see cref="Place"/> puts the problems on the arguments at fault.
/// </summary>
internal static class Checker
{
    public static PlanResult Plan(PlanInput input)
    {
        var spec = input.Spec;
        if (spec is null) return new PlanResult(null, EquatableArray<SpecProblem>.Empty);
        var problems = new List<SpecProblem>();
        try
        {
            problems.AddRange(CheckValues(spec));
            if (problems.Count > 0) return new PlanResult(null, problems.ToEquatableArray());

            var (plan, issues) = Planner.Build(spec);
            foreach (var issue in issues)
                problems.Add(new SpecProblem(DiagnosticDescriptors.For(issue.Problem).Id, issue.Slot, 0, issue.Args));
            var blocking = input.Blocked || problems.Any(p => DiagnosticDescriptors.IsError(p.Id));
            return new PlanResult(blocking ? null : plan, problems.ToEquatableArray());
        }
        catch (System.Exception e) when (e is not System.OperationCanceledException)
        {
            problems.Add(new SpecProblem(DiagnosticDescriptors.InternalError.Id, ArgumentSlot.Attribute, 0,
                new[] { spec.Target.Name, e.GetType().Name + ": " + e.Message }.ToEquatableArray()));
            return new PlanResult(null, problems.ToEquatableArray());
        }
    }

    /// <summary>The parse's own diagnostics and the plan's problems, each on the argument at fault.</summary>
    public static IEnumerable<DiagnosticInfo> Place(ParseResult parse, PlanResult plan) =>
        parse.Diagnostics.Concat(plan.Problems.Select(p => new DiagnosticInfo(p.Id, SpecParser.Find(parse.Locations, p.Slot, p.Index), p.Args)));

    /// <summary>The rules on the attribute's values alone.</summary>
    public static List<SpecProblem> CheckValues(NetworkSpec spec)
    {
        var result = new List<SpecProblem>();
        void Add(Microsoft.CodeAnalysis.DiagnosticDescriptor d, ArgumentSlot slot, int index, params string[] args) =>
            result.Add(new SpecProblem(d.Id, slot, index, args.ToEquatableArray()));
        string S(int v) => v.ToString(CultureInfo.InvariantCulture);

        void Enum<T>(ArgumentSlot slot, T value) where T : struct, System.Enum
        {
            if (System.Enum.IsDefined(typeof(T), value)) return;
            Add(DiagnosticDescriptors.UndefinedEnumValue, slot, 0, slot.ToString(), System.Convert.ToInt32(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture),
                slot.ToString(), string.Join(", ", System.Enum.GetNames(typeof(T)).Select(n => slot + "." + n)));
        }
        Enum(ArgumentSlot.Block, spec.Block);
        Enum(ArgumentSlot.Stem, spec.Stem);
        Enum(ArgumentSlot.Shortcut, spec.Shortcut);
        Enum(ArgumentSlot.StrideAt, spec.StrideAt);
        Enum(ArgumentSlot.StemPool, spec.StemPool);
        Enum(ArgumentSlot.Attention, spec.Attention);
        Enum(ArgumentSlot.AntiAlias, spec.AntiAlias);
        Enum(ArgumentSlot.Norm, spec.Norm);

        if (spec.Layers.Count == 0)
            Add(DiagnosticDescriptors.NoStages, ArgumentSlot.Attribute, 0, "The network has no stages");
        for (var i = 0; i < spec.Layers.Count; i++)
        {
            if (spec.Layers[i] < 1)
                Add(DiagnosticDescriptors.NoStages, ArgumentSlot.Layers, i, $"Stage layer{S(i + 1)} has {S(spec.Layers[i])} blocks");
        }

        if (spec.InChannels <= 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.InChannels, 0, $"InChannels is {S(spec.InChannels)}", "Use the input's channel count: 3 for RGB, 1 for grayscale.");
        if (spec.Groups <= 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.Groups, 0, $"Groups is {S(spec.Groups)}", "Use 1, or the ResNeXt cardinality (e.g. 32).");
        if (spec.WidthPerGroup <= 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.WidthPerGroup, 0, $"WidthPerGroup is {S(spec.WidthPerGroup)}", "Use 64, or the ResNeXt width per group (e.g. 4).");
        if (spec.BaseWidth <= 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.BaseWidth, 0, $"BaseWidth is {S(spec.BaseWidth)}", "Use 64 (torchvision) or 16 (the CIFAR ResNets).");
        if (spec.InputSize < 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.InputSize, 0, $"InputSize is {S(spec.InputSize)}", "Use the input's height and width, or leave it out for the stem's default (224, or 32 for Stem.Cifar).");
        if (spec.NumClasses < 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.NumClasses, 0, $"NumClasses is {S(spec.NumClasses)}", "Use the number of classes, or 0 for a backbone without classifier.");
        if (spec.Block == BlockKind.Bottleneck && spec.Groups > 0 && spec.WidthPerGroup > 0 && spec.BaseWidth > 0)
        {
            var width = Planner.BottleneckWidth(spec.BaseWidth, spec.WidthPerGroup, spec.Groups);
            if (width <= 0)
                Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.WidthPerGroup, 0,
                    $"The bottleneck width of layer1 is (int)({S(spec.BaseWidth)} × {S(spec.WidthPerGroup)} / 64) × {S(spec.Groups)} = {S(width)}",
                    "Raise WidthPerGroup or BaseWidth so that BaseWidth × WidthPerGroup ≥ 64.");
        }
        if (spec.BaseWidth > 0 && spec.Layers.Count > 0 && (spec.Layers.Count > 24 || (long)spec.BaseWidth << (spec.Layers.Count - 1) > 1 << 20))
        {
            var last = (System.Numerics.BigInteger)spec.BaseWidth << (spec.Layers.Count - 1);
            Add(DiagnosticDescriptors.TooManyChannels, ArgumentSlot.Layers, 0, S(spec.Layers.Count), S(spec.BaseWidth), last.ToString(CultureInfo.InvariantCulture));
        }

        if (spec.Block == BlockKind.Basic)
        {
            if (spec.Groups != 1 && spec.Groups > 0)
                Add(DiagnosticDescriptors.BasicBlockWidth, ArgumentSlot.Groups, 0, "Groups", S(spec.Groups));
            if (spec.WidthPerGroup != 64 && spec.WidthPerGroup > 0)
                Add(DiagnosticDescriptors.BasicBlockWidth, ArgumentSlot.WidthPerGroup, 0, "WidthPerGroup", S(spec.WidthPerGroup));
            var dilated = Enumerable.Range(0, spec.DilateStages.Count).Where(i => spec.DilateStages[i]).Select(i => "layer" + S(i + 2)).ToList();
            if (dilated.Count > 0)
                Add(DiagnosticDescriptors.BasicBlockDilation, ArgumentSlot.DilateStages, 0, string.Join(", ", dilated));
        }
        // timm's options (resnet.py): each means something only with the part it changes, and only within its range.
        if (spec.StemWidthGiven && !spec.DeepStem && System.Enum.IsDefined(typeof(StemKind), spec.Stem))
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.StemWidth, 0, "StemWidth", $"with Stem.{spec.Stem} (only the deep stems have a width of their own)",
                "Use Stem = Stem.Deep or Stem.DeepTiered, or remove StemWidth (BaseWidth sets this stem's channels).");
        if (spec.DeepStem && spec.StemWidth <= 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.StemWidth, 0, $"StemWidth is {S(spec.StemWidth)}", "Use 32 (timm's ResNet-C/D/T) or 64 (ResNet-S/E).");
        else if (spec.Stem == StemKind.DeepTiered && spec.StemWidth < 4)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.StemWidth, 0, $"The tiered stem's first width 3 × (StemWidth / 4) is 3 × ({S(spec.StemWidth)} / 4) = 0",
                "Use a StemWidth of at least 4 (timm uses 32).");
        if (spec.StemPool == StemPoolKind.Conv && spec.Stem == StemKind.Cifar)
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.StemPool, 0, "StemPool.Conv", "with Stem.Cifar, which has no pool to replace",
                "Remove StemPool, or use an ImageNet-style stem (Stem.ImageNet, Stem.Deep, Stem.DeepTiered).");
        if (spec.AttentionRatioGiven && spec.Attention != AttentionKind.SqueezeExcite && System.Enum.IsDefined(typeof(AttentionKind), spec.Attention))
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.AttentionRatio, 0, "AttentionRatio", $"with Attention.{spec.Attention} (only squeeze-excite has a reduction)",
                "Use Attention = Attention.SqueezeExcite, or remove AttentionRatio.");
        if (!(spec.AttentionRatio > 0 && spec.AttentionRatio <= 1))
            Add(DiagnosticDescriptors.OptionOutOfRange, ArgumentSlot.AttentionRatio, 0, "AttentionRatio", spec.AttentionRatio.ToString("R", CultureInfo.InvariantCulture), "(0, 1]",
                "Use 1.0 / 16 (squeeze-excite's default) or 0.25 (ResNet-RS).");
        if (spec.PreAct)
        {
            // What timm's pre-activation blocks (resnetv2.py) are built with here: projection shortcuts, the 3×3 stride,
            // one group, the ImageNet, fixed or CIFAR stem, no dilation; the rest of timm's options belong to resnet.py's blocks.
            var block = "Block." + spec.Block;
            void NotWith(ArgumentSlot slot, string option, string fix) =>
                Add(DiagnosticDescriptors.OptionDoesNotApply, slot, 0, option, $"with {block} (timm's pre-activation blocks do not take it)", fix);
            if (spec.Shortcut != ShortcutKind.Projection && System.Enum.IsDefined(typeof(ShortcutKind), spec.Shortcut))
                NotWith(ArgumentSlot.Shortcut, "Shortcut." + spec.Shortcut, "Remove Shortcut: the pre-activation blocks project where the shape changes.");
            if (spec.StrideAt != StrideAtKind.Conv3x3 && System.Enum.IsDefined(typeof(StrideAtKind), spec.StrideAt))
                NotWith(ArgumentSlot.StrideAt, "StrideAt." + spec.StrideAt, "Remove StrideAt.");
            if (spec.Groups != 1) NotWith(ArgumentSlot.Groups, "Groups", "Remove Groups.");
            if (spec.WidthPerGroup != 64) NotWith(ArgumentSlot.WidthPerGroup, "WidthPerGroup", "Remove WidthPerGroup (BaseWidth sets the widths).");
            if (spec.DilateStages.Any(d => d)) NotWith(ArgumentSlot.DilateStages, "DilateStages", "Remove DilateStages.");
            if (spec.DeepStem) NotWith(ArgumentSlot.Stem, "Stem." + spec.Stem, "Use Stem.ImageNet, Stem.Fixed or Stem.Cifar.");
            if (spec.StemPool != StemPoolKind.MaxPool) NotWith(ArgumentSlot.StemPool, "StemPool." + spec.StemPool, "Remove StemPool.");
            if (spec.Attention != AttentionKind.None) NotWith(ArgumentSlot.Attention, "Attention." + spec.Attention, "Remove Attention.");
            if (spec.AntiAlias != AntiAliasKind.None) NotWith(ArgumentSlot.AntiAlias, "AntiAlias." + spec.AntiAlias, "Remove AntiAlias.");
            if (spec.DropPath != 0) NotWith(ArgumentSlot.DropPath, "DropPath", "Remove DropPath (timm's resnetv2 schedules it by stage, which is not built yet).");
        }
        else if (System.Enum.IsDefined(typeof(BlockKind), spec.Block))
        {
            // BiT's parts (timm's resnetv2.py) are built for the pre-activation blocks, whose norms never fold into a
            // convolution; resnet.py's blocks fold every batch-norm.
            var block = "Block." + spec.Block;
            var fix = $"Use Block.PreAct{(spec.Expands ? "Bottleneck" : "Basic")} (BiT's blocks), or remove it.";
            if (spec.Norm == NormKind.GroupNorm)
                Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.Norm, 0, "Norm.GroupNorm", $"with {block} (group-norm is built for the pre-activation blocks)", fix);
            if (spec.WeightStandardization)
                Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.WeightStandardization, 0, "WeightStandardization",
                    $"with {block} (weight standardisation is built for the pre-activation blocks)", fix);
            if (spec.Stem == StemKind.Fixed)
                Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.Stem, 0, "Stem.Fixed", $"with {block} (BiT's fixed stem has no norm for these blocks' stems)",
                    $"Use Stem.ImageNet, or Block.PreAct{(spec.Expands ? "Bottleneck" : "Basic")}.");
        }
        if (spec.NormGroupsGiven && spec.Norm == NormKind.BatchNorm)
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.NormGroups, 0, "NormGroups", "with Norm.BatchNorm (only group-norm has groups)",
                "Use Norm = Norm.GroupNorm, or remove NormGroups.");
        if (spec.Norm == NormKind.GroupNorm && spec.NormGroups <= 0)
            Add(DiagnosticDescriptors.NonPositiveSize, ArgumentSlot.NormGroups, 0, $"NormGroups is {S(spec.NormGroups)}", "Use 32 (BiT's), or a number of groups that divides every layer's channels.");
        if (spec.WeightStandardizationEpsGiven && !spec.WeightStandardization)
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.WeightStandardizationEps, 0, "WeightStandardizationEps", "without WeightStandardization",
                "Add WeightStandardization = true, or remove WeightStandardizationEps.");
        if (!(spec.WeightStandardizationEps > 0 && spec.WeightStandardizationEps <= 0.1))
            Add(DiagnosticDescriptors.OptionOutOfRange, ArgumentSlot.WeightStandardizationEps, 0, "WeightStandardizationEps",
                spec.WeightStandardizationEps.ToString("R", CultureInfo.InvariantCulture), "(0, 0.1]", "Use 1e-6 (timm's StdConv2d default) or 1e-8 (BiT's models).");
        if (!(spec.DropPath >= 0 && spec.DropPath < 1))
            Add(DiagnosticDescriptors.OptionOutOfRange, ArgumentSlot.DropPath, 0, "DropPath", spec.DropPath.ToString("R", CultureInfo.InvariantCulture), "[0, 1)",
                "Use 0 (no stochastic depth) or a rate such as 0.05 (timm's ResNet-50 recipes) up to 0.2 for the deepest networks.");
        if (spec.AntiAlias != AntiAliasKind.None && spec.Stem == StemKind.Cifar && spec.Layers.Count < 2 && System.Enum.IsDefined(typeof(AntiAliasKind), spec.AntiAlias))
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.AntiAlias, 0, $"AntiAlias.{spec.AntiAlias}", "with Stem.Cifar and one stage (nothing is strided)",
                "Remove AntiAlias, or add stages.");
        if (spec.AntiAlias != AntiAliasKind.None && spec.Block == BlockKind.Bottleneck && spec.StrideAt == StrideAtKind.Conv1x1 && System.Enum.IsDefined(typeof(AntiAliasKind), spec.AntiAlias))
            Add(DiagnosticDescriptors.OptionDoesNotApply, ArgumentSlot.AntiAlias, 0, $"AntiAlias.{spec.AntiAlias}", "with StrideAt.Conv1x1 (anti-aliasing takes the stride of the 3×3 convolution)",
                "Remove StrideAt (timm strides the 3×3 convolution), or remove AntiAlias.");

        if (spec.DilateStagesGiven && spec.Layers.Count > 0 && spec.DilateStages.Count != spec.Layers.Count - 1)
            Add(DiagnosticDescriptors.DilateStagesLength, ArgumentSlot.DilateStages, 0,
                S(spec.DilateStages.Count), S(spec.Layers.Count), S(spec.Layers.Count - 1));
        return result;
    }
}
