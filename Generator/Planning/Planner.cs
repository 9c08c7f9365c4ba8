using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;

namespace ResNetGen.Generator.Planning;

/// <summary>The shape problems the planner can find; the checker maps each to its diagnostic (RNG0007–RNG0009).</summary>
internal enum ShapeProblem
{
    /// <summary>RNG0007: a feature map's height or width reaches 0.</summary>
    VanishingFeatureMap,
    /// <summary>RNG0008: a block's shortcut and residual branch disagree in shape.</summary>
    ShortcutMismatch,
    /// <summary>RNG0009: a stage receives a 1×1 feature map.</summary>
    NoSpatialContext,
    /// <summary>RNG0016: a blur pool receives a map too small for its reflect padding.</summary>
    TooSmallToBlur,
    /// <summary>RNG0017: group-norm's groups do not divide a layer's channels.</summary>
    NormGroupsDoNotDivide,
}

/// <summary>A shape problem found while planning, before it is placed on an attribute argument.</summary>
internal sealed record ShapeIssue(ShapeProblem Problem, ArgumentSlot Slot, EquatableArray<string> Args);

/// <summary>
/// Expands a spec into the unrolled network: torchvision's <c>_make_layer</c> logic, block by block, with exact
/// convolution and pooling arithmetic for the static shapes. Pure: no Roslyn, no TorchSharp.
/// </summary>
internal static class Planner
{
    public const int Expansion = 4;

    /// <summary>The width of a bottleneck's 3×3 convolution, exactly as torchvision computes it.</summary>
    public static int BottleneckWidth(int planes, int widthPerGroup, int groups) =>
        (int)(planes * (widthPerGroup / 64.0)) * groups;

    /// <summary>Output size of a convolution or pooling window along one axis (libtorch's floor arithmetic).</summary>
    public static int ConvOut(int size, int kernel, int stride, int padding, int dilation = 1) =>
        FloorDiv(size + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1;

    private static int FloorDiv(int a, int b) => (int)Math.Floor(a / (double)b);

    /// <summary>Size after subsampling with <c>x[..., ::stride]</c> (what <c>MaxPool2d(1, stride)</c> does): rounds up.</summary>
    public static int Subsample(int size, int stride) => (size + stride - 1) / stride;

    public static (NetworkPlan Plan, List<ShapeIssue> Issues) Build(NetworkSpec spec)
    {
        var builder = new Builder(spec);
        return (builder.Run(), builder.Issues);
    }

    private sealed class Builder
    {
        private readonly NetworkSpec _spec;
        private readonly int _size;
        private readonly List<ModulePlan> _modules = new();
        private readonly List<StepPlan> _steps = new();
        private readonly List<FeaturePlan> _features = new();
        private readonly List<SummaryRow> _rows = new();
        public readonly List<ShapeIssue> Issues = new();

        public Builder(NetworkSpec spec)
        {
            _spec = spec;
            _size = spec.EffectiveInputSize;
        }

        public NetworkPlan Run()
        {
            var shape = new Shape(_spec.InChannels, _size, _size);
            shape = _spec.PreAct ? PreActStem(shape) : Stem(shape);
            Keep("Stem", shape);

            var inplanes = _spec.StemChannels;
            var dilation = 1;
            var expansion = _spec.Expands ? Expansion : 1;
            var blockType = _spec.Block switch
            {
                BlockKind.Bottleneck => "Bottleneck", BlockKind.PreActBasic => "PreActBasic", BlockKind.PreActBottleneck => "PreActBottleneck", _ => "BasicBlock",
            };
            var reportedNoContext = false;
            for (var stage = 0; stage < _spec.Layers.Count; stage++)
            {
                var planes = checked(_spec.BaseWidth << stage);
                var stride = stage == 0 ? 1 : 2;
                var previousDilation = dilation;
                var dilate = stage > 0 && stage - 1 < _spec.DilateStages.Count && _spec.DilateStages[stage - 1];
                if (dilate)
                {
                    dilation *= stride;
                    stride = 1;
                }
                // timm's resnetv2 names its stages stages.0, stages.1, … and their blocks blocks.0, …; torchvision layer1.0, ….
                var name = _spec.PreAct ? "stages." + stage.ToString(CultureInfo.InvariantCulture) : "layer" + (stage + 1).ToString(CultureInfo.InvariantCulture);
                if (stage > 0 && !reportedNoContext && shape.Height == 1 && shape.Width == 1)
                {
                    reportedNoContext = true;
                    Issues.Add(Issue(ShapeProblem.NoSpatialContext, _spec.InputSize != 0 ? ArgumentSlot.InputSize : ArgumentSlot.Attribute, Size, name));
                }
                var stageRow = _rows.Count;
                _rows.Add(new SummaryRow(1, name, "Stage", default, 0));
                long stageParams = 0;
                for (var block = 0; block < _spec.Layers[stage]; block++)
                {
                    var blockName = name + (_spec.PreAct ? ".blocks." : ".") + block.ToString(CultureInfo.InvariantCulture);
                    var first = block == 0;
                    var before = TotalParameters();
                    _stageDilation = dilation;
                    shape = _spec.Block switch
                    {
                        BlockKind.Bottleneck => Bottleneck(blockName, shape, planes, first ? stride : 1, first ? previousDilation : dilation, inplanes),
                        BlockKind.PreActBasic or BlockKind.PreActBottleneck => PreActBlock(blockName, shape, planes, first ? stride : 1, inplanes),
                        _ => Basic(blockName, shape, planes, first ? stride : 1, inplanes),
                    };
                    var blockParams = TotalParameters() - before;
                    stageParams += blockParams;
                    _rows.Add(new SummaryRow(2, block.ToString(CultureInfo.InvariantCulture), blockType, shape, blockParams));
                    inplanes = planes * expansion;
                }
                _rows[stageRow] = new SummaryRow(1, name, "Stage", shape, stageParams);
                if (_spec.PreAct && stage == _spec.Layers.Count - 1)
                {
                    // The pre-activation network's last norm and ReLU (timm's resnetv2 norm), part of its features.
                    var norm = Norm("norm", shape);
                    NormStep(X, X, norm, "norm");
                    Relu(X, shape);
                    _rows.Add(new SummaryRow(1, "norm", _spec.Norm == NormKind.GroupNorm ? "GroupNormAct" : "BatchNormAct2d", shape, norm.Parameters));
                }
                Keep("Layer" + (stage + 1).ToString(CultureInfo.InvariantCulture), shape);
            }
            _steps.Add(new StepPlan(StepKind.EndOfFeatures, X));

            var pooled = Shape.Vector(shape.Channels);
            Step(StepKind.Pool, X, X, pooled, comment: "avgpool: global average over height and width");
            _rows.Add(new SummaryRow(1, "avgpool", "AdaptiveAvgPool2d", pooled, 0));
            shape = pooled;
            if (_spec.NumClasses > 0)
            {
                // torchvision's fc (Linear), or timm's resnetv2 head.fc: the same classifier stored as a 1×1 convolution
                // with bias, applied to the pooled [N, C, 1, 1].
                var preact = _spec.PreAct;
                var head = AddModule(new ModulePlan(preact ? "head.fc" : "fc", preact ? ModuleKind.Conv2d : ModuleKind.Linear, shape.Channels, _spec.NumClasses,
                    Parameters: (long)shape.Channels * _spec.NumClasses + _spec.NumClasses,
                    MultAdds: (long)shape.Channels * _spec.NumClasses,
                    Output: Shape.Vector(_spec.NumClasses), Bias: preact, Head: preact));
                Step(preact ? StepKind.ConvHead : StepKind.Linear, X, X, head.Output, module: head.Path,
                    comment: preact ? "head.fc: a 1×1 convolution on the pooled features" : "fc");
                shape = head.Output;
                _rows.Add(new SummaryRow(1, head.Path, preact ? "Conv2d" : "Linear", shape, head.Parameters));
            }

            return new NetworkPlan(
                _spec.Target,
                _spec.AttributeText,
                Describe(),
                _spec.InChannels,
                _size,
                _spec.NumClasses,
                _modules.ToEquatableArray(),
                _steps.ToEquatableArray(),
                shape,
                _features.ToEquatableArray(),
                _rows.ToEquatableArray(),
                TotalParameters(),
                _modules.Sum(m => m.MultAdds),
                KnownModels.Name(_spec));
        }

        private const string X = "x", Branch = "branch", Identity = "identity";

        /// <summary>The dilation of the stage being planned (after its stride was replaced, where it was): avg-down's pool depends on it.</summary>
        private int _stageDilation = 1;

        private void Keep(string name, Shape shape)
        {
            _steps.Add(new StepPlan(StepKind.Keep, X, Feature: _features.Count));
            _features.Add(new FeaturePlan(name, shape));
        }

        private string Size => _size.ToString(CultureInfo.InvariantCulture);

        private long TotalParameters() => _modules.Sum(m => m.Parameters);

        private string Describe()
        {
            var block = _spec.Block switch
            {
                BlockKind.Bottleneck => "Bottleneck", BlockKind.PreActBasic => "pre-activation BasicBlock", BlockKind.PreActBottleneck => "pre-activation Bottleneck", _ => "BasicBlock",
            };
            var layers = string.Join("-", _spec.Layers.Select(l => l.ToString(CultureInfo.InvariantCulture)));
            var text = $"{block} {layers}";
            if (_spec.Groups != 1 || _spec.WidthPerGroup != 64)
                text += string.Format(CultureInfo.InvariantCulture, ", {0} groups × width {1}", _spec.Groups, _spec.WidthPerGroup);
            if (_spec.DeepStem)
                text += string.Format(CultureInfo.InvariantCulture, ", {0} stem of width {1}", _spec.Stem == StemKind.DeepTiered ? "tiered deep" : "deep", _spec.StemWidth);
            if (_spec.StemPool == StemPoolKind.Conv) text += ", convolution for the stem pool";
            if (_spec.Shortcut == ShortcutKind.AvgDown) text += ", avg-down shortcuts";
            if (_spec.Attention == AttentionKind.SqueezeExcite)
                text += string.Format(CultureInfo.InvariantCulture, ", squeeze-excite (ratio {0:0.####})", _spec.AttentionRatio);
            if (_spec.Attention == AttentionKind.EfficientChannel) text += ", efficient channel attention";
            if (_spec.AntiAlias == AntiAliasKind.AvgPool) text += ", average-pool anti-aliasing";
            if (_spec.AntiAlias == AntiAliasKind.BlurPool) text += ", blur-pool anti-aliasing";
            if (_spec.DropPath > 0) text += string.Format(CultureInfo.InvariantCulture, ", drop path up to {0:0.####}", _spec.DropPath);
            if (_spec.Stem == StemKind.Fixed) text += ", fixed stem";
            if (_spec.Norm == NormKind.GroupNorm) text += string.Format(CultureInfo.InvariantCulture, ", group-norm ({0} groups)", _spec.NormGroups);
            if (_spec.WeightStandardization)
                text += ", weight-standardised convolutions (eps " + _spec.WeightStandardizationEps.ToString("0.#######E+0", CultureInfo.InvariantCulture) + ")";
            return text;
        }

        private Shape Stem(Shape shape)
        {
            var cifar = _spec.Stem == StemKind.Cifar;
            ModulePlan conv1;
            if (_spec.DeepStem)
            {
                // timm's deep stems: conv1 is a Sequential of three 3×3 convolutions (keys conv1.0, conv1.1, conv1.3,
                // conv1.4, conv1.6: the ReLUs at 2 and 5 hold no weights); bn1 follows the third.
                var first = _spec.Stem == StemKind.DeepTiered ? 3 * (_spec.StemWidth / 4) : _spec.StemWidth;
                var c0 = Conv("conv1.0", shape, first, 3, 2, 1);
                var n0 = Norm("conv1.1", c0.Output);
                ConvNorm(X, X, c0, n0);
                Relu(X, n0.Output);
                var c1 = Conv("conv1.3", n0.Output, _spec.StemWidth, 3, 1, 1);
                var n1 = Norm("conv1.4", c1.Output);
                ConvNorm(X, X, c1, n1);
                Relu(X, n1.Output);
                conv1 = Conv("conv1.6", n1.Output, _spec.StemChannels, 3, 1, 1);
                _rows.Add(new SummaryRow(1, "conv1", "Sequential", conv1.Output, c0.Parameters + n0.Parameters + c1.Parameters + n1.Parameters + conv1.Parameters));
            }
            else
            {
                conv1 = Conv("conv1", shape, _spec.BaseWidth, cifar ? 3 : 7, cifar ? 1 : 2, cifar ? 1 : 3);
                _rows.Add(new SummaryRow(1, "conv1", "Conv2d", conv1.Output, conv1.Parameters));
            }
            var bn1 = Norm("bn1", conv1.Output);
            ConvNorm(X, X, conv1, bn1);
            _rows.Add(new SummaryRow(1, "bn1", "BatchNorm2d", bn1.Output, bn1.Parameters));
            Relu(X, bn1.Output);
            _rows.Add(new SummaryRow(1, "relu", "ReLU", bn1.Output, 0));
            shape = bn1.Output;
            if (cifar) return shape;
            if (_spec.StemPool == StemPoolKind.Conv)
            {
                // ResNet-RS: the max-pool replaced by a strided 3×3 convolution, batch-norm and ReLU (keys maxpool.0, maxpool.1);
                // with anti-aliasing the convolution runs at stride 1 and the pool between it and the batch-norm (maxpool.2).
                if (_spec.AntiAlias == AntiAliasKind.None)
                {
                    var conv = Conv("maxpool.0", shape, shape.Channels, 3, 2, 1);
                    var norm = Norm("maxpool.1", conv.Output);
                    ConvNorm(X, X, conv, norm);
                    Relu(X, norm.Output);
                    _rows.Add(new SummaryRow(1, "maxpool", "Sequential", norm.Output, conv.Parameters + norm.Parameters));
                    return norm.Output;
                }
                var unstrided = Conv("maxpool.0", shape, shape.Channels, 3, 1, 1);
                ConvStep(X, X, unstrided, "maxpool.0: 3×3 convolution at stride 1");
                var smoothed = AntiAliasPool(X, "maxpool.1", unstrided.Output, 2);
                var stemNorm = Norm("maxpool.2", smoothed);
                NormStep(X, X, stemNorm, "maxpool.2");
                Relu(X, smoothed);
                _rows.Add(new SummaryRow(1, "maxpool", "Sequential", smoothed, unstrided.Parameters + stemNorm.Parameters));
                return smoothed;
            }
            switch (_spec.AntiAlias)
            {
                case AntiAliasKind.AvgPool:
                {
                    // timm: the max-pool replaced by the anti-aliasing pool itself.
                    var averaged = AntiAliasPool(X, "maxpool", shape, 2);
                    _rows.Add(new SummaryRow(1, "maxpool", "AvgPool2d", averaged, 0));
                    return averaged;
                }
                case AntiAliasKind.BlurPool:
                {
                    // timm: a 3×3 max-pool at stride 1, then the blur takes the stride (maxpool.0, maxpool.1).
                    Step(StepKind.MaxPool, X, X, shape, stride: 1, comment: "maxpool.0: 3×3, stride 1, padding 1");
                    var blurred = AntiAliasPool(X, "maxpool.1", shape, 2);
                    _rows.Add(new SummaryRow(1, "maxpool", "Sequential", blurred, 0));
                    return blurred;
                }
            }
            return StemMaxPool("maxpool", shape);
        }

        /// <summary>The stem's 3×3 stride-2 max-pool with padding 1, named <paramref name="name"/> in comments and the summary.</summary>
        private Shape StemMaxPool(string name, Shape shape)
        {
            var pooled = new Shape(shape.Channels, ConvOut(shape.Height, 3, 2, 1), ConvOut(shape.Width, 3, 2, 1));
            CheckNotEmpty(name, pooled);
            Step(StepKind.MaxPool, X, X, pooled, stride: 2, comment: $"{name}: 3×3, stride 2, padding 1");
            _rows.Add(new SummaryRow(1, name, "MaxPool2d", pooled, 0));
            return pooled;
        }

        /// <summary>
        /// The anti-aliasing pool at <paramref name="stride"/> on <paramref name="target"/>, in place of a strided
        /// convolution's stride (timm's create_aa): the 2×2 average (nothing at stride 1, where timm's AvgPool2d(1) is an
        /// identity) or the binomial blur (at stride 1 too). Returns the shape after it.
        /// </summary>
        private Shape AntiAliasPool(string target, string path, Shape shape, int stride)
        {
            switch (_spec.AntiAlias)
            {
                case AntiAliasKind.AvgPool when stride != 1:
                {
                    var output = new Shape(shape.Channels, ConvOut(shape.Height, stride, stride, 0), ConvOut(shape.Width, stride, stride, 0));
                    CheckNotEmpty(path, output);
                    Step(StepKind.AntiAliasPool, target, target, output, stride: stride, comment: $"{path}: {stride}×{stride} average, stride {stride}");
                    return output;
                }
                case AntiAliasKind.BlurPool:
                {
                    if ((shape.Height < 2 || shape.Width < 2) && shape.Height > 0 && shape.Width > 0 && !Issues.Any(i => i.Problem == ShapeProblem.TooSmallToBlur))
                        Issues.Add(Issue(ShapeProblem.TooSmallToBlur, _spec.InputSize != 0 ? ArgumentSlot.InputSize : ArgumentSlot.AntiAlias, Size, path, shape.Format()));
                    var output = new Shape(shape.Channels, ConvOut(shape.Height, 3, stride, 1), ConvOut(shape.Width, 3, stride, 1));
                    CheckNotEmpty(path, output);
                    Step(StepKind.Blur, target, target, output, stride: stride, comment: $"{path}: 3×3 binomial blur, stride {stride}, reflect padding");
                    return output;
                }
                default:
                    return shape;
            }
        }

        /// <summary>
        /// The pre-activation stem (timm's resnetv2, stem_type ''): the 7×7 stride-2 convolution (stem.conv) and the 3×3
        /// stride-2 max-pool with no norm between, as the first block normalises; or the CIFAR stem's 3×3 convolution alone.
        /// </summary>
        private Shape PreActStem(Shape shape)
        {
            var cifar = _spec.Stem == StemKind.Cifar;
            var conv = Conv("stem.conv", shape, _spec.BaseWidth, cifar ? 3 : 7, cifar ? 1 : 2, cifar ? 1 : 3);
            ConvStep(X, X, conv, "stem.conv");
            _rows.Add(new SummaryRow(1, "stem.conv", conv.Standardized ? "StdConv2d" : "Conv2d", conv.Output, conv.Parameters));
            if (cifar) return conv.Output;
            if (_spec.Stem != StemKind.Fixed) return StemMaxPool("stem.pool", conv.Output);
            // BiT's fixed stem: one zero of padding on each side (stem.pad), then the 3×3 stride-2 max-pool without padding.
            // The size is the padded max-pool's; the values differ where the convolution's output is negative.
            var padded = new Shape(conv.Output.Channels, conv.Output.Height + 2, conv.Output.Width + 2);
            _rows.Add(new SummaryRow(1, "stem.pad", "ConstantPad2d", padded, 0));
            var pooled = new Shape(padded.Channels, ConvOut(padded.Height, 3, 2, 0), ConvOut(padded.Width, 3, 2, 0));
            CheckNotEmpty("stem.pool", pooled);
            Step(StepKind.ZeroPaddedMaxPool, X, X, pooled, stride: 2, comment: "stem.pad, stem.pool: zero padding of 1, then 3×3, stride 2");
            _rows.Add(new SummaryRow(1, "stem.pool", "MaxPool2d", pooled, 0));
            return pooled;
        }

        /// <summary>A convolution alone, weight-standardised where the network's convolutions are.</summary>
        private void ConvStep(string target, string source, ModulePlan conv, string comment) =>
            _steps.Add(new StepPlan(StepKind.Conv, target, source, Module: conv.Path, Shape: conv.Output, Comment: comment, Standardize: conv.StandardizeEps));

        /// <summary>A norm that does not follow its convolution directly: batch-norm or group-norm.</summary>
        private void NormStep(string target, string source, ModulePlan norm, string comment) =>
            _steps.Add(new StepPlan(norm.Kind == ModuleKind.GroupNorm ? StepKind.GroupNorm : StepKind.Norm, target, source, Norm: norm.Path, Shape: norm.Output, Comment: comment));

        /// <summary>
        /// A convolution and the norm right after it: one ConvNorm step for a batch-norm (FuseForInference folds it), two
        /// steps for a group-norm, whose statistics are each sample's own and cannot fold into the convolution.
        /// </summary>
        private void ConvThenNorm(string target, string source, ModulePlan conv, ModulePlan norm)
        {
            if (norm.Kind == ModuleKind.BatchNorm2d)
            {
                ConvNorm(target, source, conv, norm);
                return;
            }
            ConvStep(target, source, conv, conv.Path);
            NormStep(target, target, norm, norm.Path);
        }

        /// <summary>
        /// timm's PreActBasic / PreActBottleneck: norm1 and ReLU on the input (x_preact), the projection (if any) from
        /// x_preact, then convolutions each after a norm and ReLU, the sum with the shortcut, and no ReLU after it.
        /// Modules register as timm's do: downsample first.
        /// </summary>
        private Shape PreActBlock(string name, Shape shape, int planes, int stride, int inplanes)
        {
            var bottleneck = _spec.Block == BlockKind.PreActBottleneck;
            var outplanes = bottleneck ? planes * Expansion : planes;
            ModulePlan? downsample = null;
            if (stride != 1 || inplanes != outplanes) downsample = Conv(name + ".downsample.conv", shape, outplanes, 1, stride, 0);
            var norm1 = Norm(name + ".norm1", shape);
            NormStep(Preact, X, norm1, $"{name}.norm1: pre-activation");
            Relu(Preact, shape);
            if (downsample is not null) ConvStep(Identity, Preact, downsample, downsample.Path);
            // timm: mid_chs = make_divisible(out_chs × bottle_ratio), 0.25 for the bottleneck, 1 for the basic block. Each
            // convolution but the last is followed directly by the next norm (conv1 → norm2, conv2 → norm3): those pairs are
            // ConvNorm steps, so FuseForInference folds them (group-norms do not fold); norm1 (after the residual sum) and the
            // last convolution stay as they are. Modules register in timm's order all the same: conv1, norm2, conv2, norm3, conv3.
            var width = MakeDivisible(bottleneck ? outplanes * 0.25 : outplanes);
            var conv1 = Conv(name + ".conv1", shape, width, bottleneck ? 1 : 3, bottleneck ? 1 : stride, bottleneck ? 0 : 1);
            var norm2 = Norm(name + ".norm2", conv1.Output);
            ConvThenNorm(Branch, Preact, conv1, norm2);
            _steps.Add(new StepPlan(StepKind.Release, Preact));
            Relu(Branch, norm2.Output);
            var current = norm2.Output;
            if (bottleneck)
            {
                var conv2 = Conv(name + ".conv2", current, width, 3, stride, 1);
                var norm3 = Norm(name + ".norm3", conv2.Output);
                ConvThenNorm(Branch, Branch, conv2, norm3);
                Relu(Branch, norm3.Output);
                current = norm3.Output;
            }
            // ZeroInitResidual = true (timm's zero_init_last, off by default in resnetv2): the block's last convolution starts at 0.
            var last = Conv($"{name}.conv{(bottleneck ? "3" : "2")}", current, outplanes, bottleneck ? 1 : 3, 1, bottleneck ? 0 : 1, zeroInit: _spec.ZeroInitLastNorm);
            ConvStep(Branch, Branch, last, last.Path);
            current = last.Output;
            var shortcut = downsample is null ? X : Identity;
            var shortcutShape = downsample?.Output ?? shape;
            if (shortcutShape != current)
                Issues.Add(Issue(ShapeProblem.ShortcutMismatch, ArgumentSlot.Attribute, Size, name, current.Format(), shortcutShape.Format(), "the shapes differ", "Use another InputSize."));
            _steps.Add(new StepPlan(StepKind.Add, Branch, Other: shortcut, Shape: current, Comment: $"{name}: residual add, no ReLU after it"));
            if (downsample is not null) _steps.Add(new StepPlan(StepKind.Release, Identity));
            _steps.Add(new StepPlan(StepKind.Move, X, Branch, Comment: $"{name} output"));
            return current;
        }

        private const string Preact = "preact";

        /// <summary>
        /// timm's make_divisible(v, 8, round_limit): max(8, int(v + 4) // 8 * 8), plus 8 where that falls below
        /// round_limit × v (0.9 by default: never 10% below v; 0 never adds).
        /// </summary>
        public static int MakeDivisible(double v, double roundLimit = 0.9)
        {
            var rounded = Math.Max(8, (int)Math.Floor(v + 4) / 8 * 8);
            return rounded < roundLimit * v ? rounded + 8 : rounded;
        }

        private Shape Basic(string name, Shape shape, int planes, int stride, int inplanes)
        {
            var antiAlias = _spec.AntiAlias != AntiAliasKind.None && stride == 2;
            var conv1 = Conv(name + ".conv1", shape, planes, 3, antiAlias ? 1 : stride, 1);
            var bn1 = Norm(name + ".bn1", conv1.Output);
            ConvNorm(Branch, X, conv1, bn1);
            Relu(Branch, bn1.Output);
            var middle = antiAlias ? AntiAliasPool(Branch, name + ".aa", bn1.Output, stride) : bn1.Output;
            var conv2 = Conv(name + ".conv2", middle, planes, 3, 1, 1);
            var bn2 = Norm(name + ".bn2", conv2.Output, zeroInit: _spec.ZeroInitLastNorm);
            ConvNorm(Branch, Branch, conv2, bn2);
            Attend(name, bn2.Output);
            DropPath(bn2.Output);
            return Residual(name, shape, bn2.Output, stride, inplanes, planes);
        }

        private int _blockIndex;

        /// <summary>Stochastic depth on the branch: timm's linear schedule, 0 at the first block, DropPath at the last.</summary>
        private void DropPath(Shape shape)
        {
            var blocks = _spec.Layers.Sum();
            var rate = blocks > 1 ? _spec.DropPath * _blockIndex / (blocks - 1) : 0.0;
            _blockIndex++;
            if (rate <= 0) return;
            _steps.Add(new StepPlan(StepKind.DropPath, Branch, Branch, Shape: shape, Rate: rate,
                Comment: "drop path at " + rate.ToString("0.####", CultureInfo.InvariantCulture) + " in training"));
        }

        private Shape Bottleneck(string name, Shape shape, int planes, int stride, int dilation, int inplanes)
        {
            var width = BottleneckWidth(planes, _spec.WidthPerGroup, _spec.Groups);
            var strideOn1x1 = _spec.StrideAt == StrideAtKind.Conv1x1;
            var conv1 = Conv(name + ".conv1", shape, width, 1, strideOn1x1 ? stride : 1, 0);
            var bn1 = Norm(name + ".bn1", conv1.Output);
            ConvNorm(Branch, X, conv1, bn1);
            Relu(Branch, bn1.Output);
            // timm's use_aa: where the block downsamples or its first dilation differs from the stage's.
            var antiAlias = _spec.AntiAlias != AntiAliasKind.None && !strideOn1x1 && (stride == 2 || dilation != _stageDilation);
            var conv2 = Conv(name + ".conv2", bn1.Output, width, 3, strideOn1x1 || antiAlias ? 1 : stride, dilation, dilation, _spec.Groups);
            var bn2 = Norm(name + ".bn2", conv2.Output);
            ConvNorm(Branch, Branch, conv2, bn2);
            Relu(Branch, bn2.Output);
            var middle = antiAlias ? AntiAliasPool(Branch, name + ".aa", bn2.Output, stride) : bn2.Output;
            var conv3 = Conv(name + ".conv3", middle, planes * Expansion, 1, 1, 0);
            var bn3 = Norm(name + ".bn3", conv3.Output, zeroInit: _spec.ZeroInitLastNorm);
            ConvNorm(Branch, Branch, conv3, bn3);
            Attend(name, bn3.Output);
            DropPath(bn3.Output);
            return Residual(name, shape, bn3.Output, stride, inplanes, planes * Expansion);
        }

        /// <summary>The shortcut, the in-place add and the final ReLU of a block; the block's output becomes x.</summary>
        private Shape Residual(string name, Shape inShape, Shape branchShape, int stride, int inplanes, int outplanes)
        {
            var changes = stride != 1 || inplanes != outplanes;
            var shortcut = X;
            var shortcutShape = inShape;
            string reason = "";
            switch (_spec.Shortcut)
            {
                case ShortcutKind.Projection when changes:
                case ShortcutKind.AllProjection:
                {
                    var conv = Conv(name + ".downsample.0", inShape, outplanes, 1, stride, 0);
                    var bn = Norm(name + ".downsample.1", conv.Output);
                    ConvNorm(Identity, X, conv, bn);
                    shortcut = Identity;
                    shortcutShape = bn.Output;
                    break;
                }
                case ShortcutKind.AvgDown when changes:
                {
                    // timm's downsample_avg: no pool where neither stride nor dilation changes the size; a 2×2 average at
                    // the stride, or (in a dilated stage) at stride 1 with "same" padding; then a 1×1 convolution and batch-norm.
                    var source = X;
                    var pooledShape = inShape;
                    if (stride != 1 || _stageDilation != 1)
                    {
                        var poolStride = _stageDilation == 1 ? stride : 1;
                        pooledShape = poolStride == 1 ? inShape : new Shape(inShape.Channels, CeilPool(inShape.Height), CeilPool(inShape.Width));
                        CheckNotEmpty(name + ".downsample.0", pooledShape);
                        Step(StepKind.AvgDownPool, Identity, X, pooledShape, stride: poolStride,
                            comment: poolStride == 1 ? "downsample.0: 2×2 average, stride 1, same padding" : "downsample.0: 2×2 average, stride 2, ceil mode");
                        source = Identity;
                    }
                    var conv = Conv(name + ".downsample.1", pooledShape, outplanes, 1, 1, 0);
                    var bn = Norm(name + ".downsample.2", conv.Output);
                    ConvNorm(Identity, source, conv, bn);
                    shortcut = Identity;
                    shortcutShape = bn.Output;
                    reason = "the 2×2 average pool keeps a dilated stage's size while the block's strided convolution halves it";
                    break;
                }
                case ShortcutKind.ZeroPad when changes:
                    shortcutShape = new Shape(outplanes, Subsample(inShape.Height, stride), Subsample(inShape.Width, stride));
                    Step(StepKind.ZeroPad, Identity, X, shortcutShape, stride: stride, padChannels: outplanes - inplanes,
                        comment: $"shortcut: subsample by {stride}, append {outplanes - inplanes} zero channels");
                    shortcut = Identity;
                    break;
                case ShortcutKind.AvgPoolZeroPad when changes:
                    shortcutShape = stride == 1
                        ? new Shape(outplanes, inShape.Height, inShape.Width)
                        : new Shape(outplanes, ConvOut(inShape.Height, 2, 2, 0), ConvOut(inShape.Width, 2, 2, 0));
                    CheckNotEmpty(name + ".shortcut", shortcutShape);
                    _steps.Add(new StepPlan(StepKind.AvgPoolZeroPad, Identity, X, Stride: stride, PadChannels: outplanes - inplanes, Shape: shortcutShape,
                        Comment: $"shortcut: append {outplanes - inplanes} zero channels, then {(stride == 1 ? "no pooling" : "2×2 average pooling")}",
                        BranchFloors: stride != 1 && _spec.AntiAlias == AntiAliasKind.AvgPool));
                    shortcut = Identity;
                    reason = "2×2 average pooling floors an odd size while the strided convolution rounds it up";
                    break;
            }
            if (_spec.AntiAlias == AntiAliasKind.AvgPool && stride == 2 && (branchShape.Height < shortcutShape.Height || branchShape.Width < shortcutShape.Width))
            {
                Issues.Add(Issue(ShapeProblem.ShortcutMismatch, ArgumentSlot.AntiAlias, Size, name, branchShape.Format(), shortcutShape.Format(),
                    "anti-aliasing's 2×2 average floors an odd size while the shortcut rounds it up",
                    "Use an InputSize whose feature maps stay even, or AntiAlias.BlurPool (which rounds up like the shortcut)."));
            }
            else if (shortcutShape != branchShape)
            {
                Issues.Add(Issue(ShapeProblem.ShortcutMismatch, _spec.Shortcut is ShortcutKind.AvgPoolZeroPad or ShortcutKind.AvgDown ? ArgumentSlot.Shortcut : ArgumentSlot.Attribute,
                    Size, name, branchShape.Format(), shortcutShape.Format(),
                    reason.Length > 0 ? reason : "the shapes differ",
                    _spec.Shortcut switch
                    {
                        ShortcutKind.AvgPoolZeroPad => "Use an InputSize whose feature maps stay even, or Shortcut.ZeroPad (which rounds up like the convolution).",
                        ShortcutKind.AvgDown => "Dilate every stage after the first dilated one (as timm's output_stride does), or use Shortcut.Projection.",
                        _ => "Use another InputSize or Shortcut.",
                    }));
            }
            _steps.Add(new StepPlan(StepKind.Add, Branch, Other: shortcut, Shape: branchShape, Comment: $"{name}: residual add"));
            if (shortcut == Identity) _steps.Add(new StepPlan(StepKind.Release, Identity));
            Relu(Branch, branchShape);
            _steps.Add(new StepPlan(StepKind.Move, X, Branch, Comment: $"{name} output"));
            return branchShape;
        }

        /// <summary>2×2 average pooling at stride 2 in ceil mode: every window starts inside the input, so the size rounds up.</summary>
        private static int CeilPool(int size) => size < 1 ? 0 : (size + 1) / 2;

        /// <summary>The block's channel attention, on the branch after its last batch-norm (timm's <c>se</c>).</summary>
        private void Attend(string name, Shape shape)
        {
            switch (_spec.Attention)
            {
                case AttentionKind.SqueezeExcite:
                {
                    var reduced = SqueezeWidth(shape.Channels, _spec.AttentionRatio);
                    var pooled = new Shape(shape.Channels, 1, 1);
                    var fc1 = Conv(name + ".se.fc1", pooled, reduced, 1, 1, 0, bias: true);
                    var fc2 = Conv(name + ".se.fc2", fc1.Output, shape.Channels, 1, 1, 0, bias: true);
                    _steps.Add(new StepPlan(StepKind.SqueezeExcite, Branch, Branch, Module: fc1.Path, Gate: fc2.Path, Shape: shape,
                        Comment: $"se: squeeze {shape.Channels.ToString(CultureInfo.InvariantCulture)} → {reduced.ToString(CultureInfo.InvariantCulture)} → excite"));
                    break;
                }
                case AttentionKind.EfficientChannel:
                {
                    var kernel = EcaKernel(shape.Channels);
                    var conv = AddModule(new ModulePlan(name + ".se.conv", ModuleKind.Conv1d, 1, 1, kernel, Padding: (kernel - 1) / 2,
                        Parameters: kernel, MultAdds: (long)kernel * shape.Channels, Output: Shape.Vector(shape.Channels)));
                    _steps.Add(new StepPlan(StepKind.EfficientChannel, Branch, Branch, Module: conv.Path, Shape: shape,
                        Comment: $"se: 1-D convolution of {kernel.ToString(CultureInfo.InvariantCulture)} over the channels"));
                    break;
                }
            }
        }

        /// <summary>Squeeze-excite's width: timm's make_divisible(channels × ratio, 8, round_limit=0), in double as Python computes it.</summary>
        public static int SqueezeWidth(int channels, double ratio) => MakeDivisible(channels * ratio, roundLimit: 0);

        /// <summary>timm's EcaModule kernel: t = int(|log2(C) + 1| / 2), made odd, at least 3.</summary>
        public static int EcaKernel(int channels)
        {
            var t = (int)(Math.Abs(Math.Log(channels, 2) + 1) / 2);
            return Math.Max(t % 2 != 0 ? t : t + 1, 3);
        }

        private ModulePlan Conv(string path, Shape input, int outChannels, int kernel, int stride, int padding, int dilation = 1, int groups = 1, bool bias = false,
            bool zeroInit = false)
        {
            var output = new Shape(outChannels,
                ConvOut(input.Height, kernel, stride, padding, dilation),
                ConvOut(input.Width, kernel, stride, padding, dilation));
            CheckNotEmpty(path, output);
            long weights = (long)outChannels * (input.Channels / groups) * kernel * kernel;
            // Weight standardisation (timm's StdConv2d) applies to every convolution it is allowed with: the pre-activation
            // networks' stem, blocks and shortcuts (their classifier is made elsewhere).
            return AddModule(new ModulePlan(path, ModuleKind.Conv2d, input.Channels, outChannels, kernel, stride, padding, dilation, groups,
                Parameters: weights + (bias ? outChannels : 0),
                MultAdds: weights * Math.Max(0, output.Height) * Math.Max(0, output.Width),
                Output: output, Bias: bias, ZeroInit: zeroInit, StandardizeEps: _spec.StandardizeEps));
        }

        /// <summary>A norm of the network's kind over <paramref name="shape"/>'s channels; group-norm's groups must divide them (RNG0017, the first layer named).</summary>
        private ModulePlan Norm(string path, Shape shape, bool zeroInit = false)
        {
            if (_spec.Norm != NormKind.GroupNorm)
                return AddModule(new ModulePlan(path, ModuleKind.BatchNorm2d, shape.Channels, shape.Channels, ZeroInit: zeroInit,
                    Parameters: 2L * shape.Channels, Output: shape));
            if (shape.Channels % _spec.NormGroups != 0 && !Issues.Any(i => i.Problem == ShapeProblem.NormGroupsDoNotDivide))
            {
                var divisors = Enumerable.Range(1, shape.Channels).Where(d => shape.Channels % d == 0 && d <= _spec.NormGroups).Max();
                Issues.Add(Issue(ShapeProblem.NormGroupsDoNotDivide, ArgumentSlot.NormGroups, path, shape.Channels.ToString(CultureInfo.InvariantCulture),
                    _spec.NormGroups.ToString(CultureInfo.InvariantCulture),
                    $"Use a NormGroups that divides every normalised layer's channels (the largest up to {_spec.NormGroups.ToString(CultureInfo.InvariantCulture)} that divides {shape.Channels.ToString(CultureInfo.InvariantCulture)} is {divisors.ToString(CultureInfo.InvariantCulture)}), or widen the network (BaseWidth)."));
            }
            return AddModule(new ModulePlan(path, ModuleKind.GroupNorm, shape.Channels, shape.Channels, Groups: _spec.NormGroups, ZeroInit: zeroInit,
                Parameters: 2L * shape.Channels, Output: shape));
        }

        private ModulePlan AddModule(ModulePlan module)
        {
            _modules.Add(module);
            return module;
        }

        private void CheckNotEmpty(string layer, Shape shape)
        {
            if (shape.Height > 0 && shape.Width > 0) return;
            if (Issues.Any(i => i.Problem == ShapeProblem.VanishingFeatureMap)) return; // the first vanishing layer is the one to fix
            Issues.Add(Issue(ShapeProblem.VanishingFeatureMap, _spec.InputSize != 0 ? ArgumentSlot.InputSize : ArgumentSlot.Attribute, Size, layer, shape.Format()));
        }

        private void ConvNorm(string target, string source, ModulePlan conv, ModulePlan norm) =>
            _steps.Add(new StepPlan(StepKind.ConvNorm, target, source, Module: conv.Path, Norm: norm.Path, Shape: norm.Output,
                Comment: $"{conv.Path}, {norm.Path.Substring(norm.Path.LastIndexOf('.') + 1)}", Standardize: conv.StandardizeEps));

        private void Relu(string target, Shape shape) => _steps.Add(new StepPlan(StepKind.Relu, target, Shape: shape, Comment: "relu"));

        private void Step(StepKind kind, string target, string source, Shape shape, string? module = null, int stride = 1, int padChannels = 0, string? comment = null) =>
            _steps.Add(new StepPlan(kind, target, source, Module: module, Stride: stride, PadChannels: padChannels, Shape: shape, Comment: comment));

        private static ShapeIssue Issue(ShapeProblem problem, ArgumentSlot slot, params string[] args) => new(problem, slot, args.ToEquatableArray());
    }
}
