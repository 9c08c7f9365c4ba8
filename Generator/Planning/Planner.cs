using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;

namespace ResNetGen.Generator.Planning;

/// <summary>A shape problem found while planning, before it is placed on an attribute argument.</summary>
internal sealed record ShapeIssue(string Id, ArgumentSlot Slot, EquatableArray<string> Args);

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
        private readonly List<OpPlan> _ops = new();
        private readonly List<FeaturePlan> _features = new();
        private readonly List<SummaryRow> _rows = new();
        public readonly List<ShapeIssue> Issues = new();
        private int _nextTensor = 1;

        public Builder(NetworkSpec spec)
        {
            _spec = spec;
            _size = spec.EffectiveInputSize;
        }

        public NetworkPlan Run()
        {
            var x = 0;
            var shape = new Shape(_spec.InChannels, _size, _size);
            (x, shape) = Stem(x, shape);
            _features.Add(new FeaturePlan("Stem", x, shape));

            var inplanes = _spec.BaseWidth;
            var dilation = 1;
            var expansion = _spec.Block == BlockKind.Bottleneck ? Expansion : 1;
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
                var name = "layer" + (stage + 1).ToString(CultureInfo.InvariantCulture);
                if (stage > 0 && !reportedNoContext && shape.Height == 1 && shape.Width == 1)
                {
                    reportedNoContext = true;
                    Issues.Add(Issue("RNG0009", _spec.InputSize != 0 ? ArgumentSlot.InputSize : ArgumentSlot.Attribute, Size, name));
                }
                var stageRow = _rows.Count;
                _rows.Add(new SummaryRow(1, name, "Stage", default, 0));
                long stageParams = 0;
                for (var block = 0; block < _spec.Layers[stage]; block++)
                {
                    var blockName = name + "." + block.ToString(CultureInfo.InvariantCulture);
                    var first = block == 0;
                    var before = TotalParameters();
                    (x, shape) = _spec.Block == BlockKind.Bottleneck
                        ? Bottleneck(blockName, x, shape, planes, first ? stride : 1, first ? previousDilation : dilation, inplanes)
                        : Basic(blockName, x, shape, planes, first ? stride : 1, inplanes);
                    var blockParams = TotalParameters() - before;
                    stageParams += blockParams;
                    _rows.Add(new SummaryRow(2, block.ToString(CultureInfo.InvariantCulture),
                        _spec.Block == BlockKind.Bottleneck ? "Bottleneck" : "BasicBlock", shape, blockParams));
                    inplanes = planes * expansion;
                }
                _rows[stageRow] = new SummaryRow(1, name, "Stage", shape, stageParams);
                _features.Add(new FeaturePlan("Layer" + (stage + 1).ToString(CultureInfo.InvariantCulture), x, shape));
            }
            var featureTensors = _features.Select(f => f.Tensor).ToList();
            var lastFeatureOp = _ops.Count;

            var pooled = Shape.Vector(shape.Channels);
            x = Emit(OpKind.GlobalAveragePool, x, pooled, comment: "avgpool: global average over height and width");
            _rows.Add(new SummaryRow(1, "avgpool", "AdaptiveAvgPool2d", pooled, 0));
            if (_spec.NumClasses > 0)
            {
                var fc = AddModule(new ModulePlan("fc", ModuleKind.Linear, shape.Channels, _spec.NumClasses, Bias: true,
                    Parameters: (long)shape.Channels * _spec.NumClasses + _spec.NumClasses,
                    MultAdds: (long)shape.Channels * _spec.NumClasses,
                    Output: Shape.Vector(_spec.NumClasses)));
                x = Call(fc, x);
                shape = fc.Output;
                _rows.Add(new SummaryRow(1, "fc", "Linear", shape, fc.Parameters));
            }
            else
            {
                shape = pooled;
            }

            var ops = WithDisposal(_ops, x, keep: new HashSet<int>());
            var featureOps = WithDisposal(_ops.Take(lastFeatureOp).ToList(), -1, keep: new HashSet<int>(featureTensors));
            return new NetworkPlan(
                _spec.Target,
                _spec.AttributeText,
                Describe(),
                _spec.InChannels,
                _size,
                _spec.NumClasses,
                _modules.ToEquatableArray(),
                ops.ToEquatableArray(),
                x,
                shape,
                _features.ToEquatableArray(),
                _rows.ToEquatableArray(),
                TotalParameters(),
                _modules.Sum(m => m.MultAdds))
            {
                FeatureOps = featureOps.ToEquatableArray(),
                FusedOps = WithDisposal(Fold(_ops, _modules), x, keep: new HashSet<int>()).ToEquatableArray(),
            };
        }

        private string Size => _size.ToString(CultureInfo.InvariantCulture);

        private long TotalParameters() => _modules.Sum(m => m.Parameters);

        private string Describe()
        {
            var block = _spec.Block == BlockKind.Bottleneck ? "Bottleneck" : "BasicBlock";
            var layers = string.Join("-", _spec.Layers.Select(l => l.ToString(CultureInfo.InvariantCulture)));
            var text = $"{block} {layers}";
            if (_spec.Groups != 1 || _spec.WidthPerGroup != 64)
                text += string.Format(CultureInfo.InvariantCulture, ", {0} groups × width {1}", _spec.Groups, _spec.WidthPerGroup);
            return text;
        }

        private (int, Shape) Stem(int x, Shape shape)
        {
            var cifar = _spec.Stem == StemKind.Cifar;
            var conv1 = Conv("conv1", shape, _spec.BaseWidth, cifar ? 3 : 7, cifar ? 1 : 2, cifar ? 1 : 3);
            x = Call(conv1, x);
            _rows.Add(new SummaryRow(1, "conv1", "Conv2d", conv1.Output, conv1.Parameters));
            var bn1 = Norm("bn1", conv1.Output);
            x = Call(bn1, x);
            _rows.Add(new SummaryRow(1, "bn1", "BatchNorm2d", bn1.Output, bn1.Parameters));
            x = Relu(x, bn1.Output);
            _rows.Add(new SummaryRow(1, "relu", "ReLU", bn1.Output, 0));
            shape = bn1.Output;
            if (!cifar)
            {
                var pooled = new Shape(shape.Channels, ConvOut(shape.Height, 3, 2, 1), ConvOut(shape.Width, 3, 2, 1));
                CheckNotEmpty("maxpool", pooled);
                x = Emit(OpKind.MaxPool, x, pooled, comment: "maxpool: 3×3, stride 2, padding 1");
                _rows.Add(new SummaryRow(1, "maxpool", "MaxPool2d", pooled, 0));
                shape = pooled;
            }
            return (x, shape);
        }

        private (int, Shape) Basic(string name, int x, Shape shape, int planes, int stride, int inplanes)
        {
            var conv1 = Conv(name + ".conv1", shape, planes, 3, stride, 1);
            var t = Call(conv1, x);
            var bn1 = Norm(name + ".bn1", conv1.Output);
            t = Relu(Call(bn1, t), bn1.Output);
            var conv2 = Conv(name + ".conv2", bn1.Output, planes, 3, 1, 1);
            t = Call(conv2, t);
            var bn2 = Norm(name + ".bn2", conv2.Output, zeroInit: _spec.ZeroInitResidual);
            t = Call(bn2, t);
            return Residual(name, x, shape, t, bn2.Output, stride, inplanes, planes);
        }

        private (int, Shape) Bottleneck(string name, int x, Shape shape, int planes, int stride, int dilation, int inplanes)
        {
            var width = BottleneckWidth(planes, _spec.WidthPerGroup, _spec.Groups);
            var strideOn1x1 = _spec.StrideAt == StrideAtKind.Conv1x1;
            var conv1 = Conv(name + ".conv1", shape, width, 1, strideOn1x1 ? stride : 1, 0);
            var t = Call(conv1, x);
            var bn1 = Norm(name + ".bn1", conv1.Output);
            t = Relu(Call(bn1, t), bn1.Output);
            var conv2 = Conv(name + ".conv2", bn1.Output, width, 3, strideOn1x1 ? 1 : stride, dilation, dilation, _spec.Groups);
            t = Call(conv2, t);
            var bn2 = Norm(name + ".bn2", conv2.Output);
            t = Relu(Call(bn2, t), bn2.Output);
            var conv3 = Conv(name + ".conv3", bn2.Output, planes * Expansion, 1, 1, 0);
            t = Call(conv3, t);
            var bn3 = Norm(name + ".bn3", conv3.Output, zeroInit: _spec.ZeroInitResidual);
            t = Call(bn3, t);
            return Residual(name, x, shape, t, bn3.Output, stride, inplanes, planes * Expansion);
        }

        /// <summary>The shortcut, the in-place add and the final ReLU of a block.</summary>
        private (int, Shape) Residual(string name, int x, Shape inShape, int branch, Shape branchShape, int stride, int inplanes, int outplanes)
        {
            var changes = stride != 1 || inplanes != outplanes;
            int shortcut;
            Shape shortcutShape;
            string reason = "";
            switch (_spec.Shortcut)
            {
                case ShortcutKind.Projection when changes:
                case ShortcutKind.AllProjection:
                {
                    var conv = Conv(name + ".downsample.0", inShape, outplanes, 1, stride, 0);
                    shortcut = Call(conv, x);
                    var bn = Norm(name + ".downsample.1", conv.Output);
                    shortcut = Call(bn, shortcut);
                    shortcutShape = bn.Output;
                    break;
                }
                case ShortcutKind.ZeroPad when changes:
                    shortcutShape = new Shape(outplanes, Subsample(inShape.Height, stride), Subsample(inShape.Width, stride));
                    shortcut = Emit(OpKind.ZeroPadShortcut, x, shortcutShape, stride: stride, padChannels: outplanes - inplanes,
                        comment: $"shortcut: subsample by {stride}, append {outplanes - inplanes} zero channels");
                    break;
                case ShortcutKind.AvgPoolZeroPad when changes:
                    shortcutShape = stride == 1
                        ? new Shape(outplanes, inShape.Height, inShape.Width)
                        : new Shape(outplanes, ConvOut(inShape.Height, 2, 2, 0), ConvOut(inShape.Width, 2, 2, 0));
                    CheckNotEmpty(name + ".shortcut", shortcutShape);
                    shortcut = Emit(OpKind.AvgPoolZeroPadShortcut, x, shortcutShape, stride: stride, padChannels: outplanes - inplanes,
                        comment: $"shortcut: append {outplanes - inplanes} zero channels, then {(stride == 1 ? "no pooling" : "2×2 average pooling")}");
                    reason = "2×2 average pooling floors an odd size while the strided convolution rounds it up";
                    break;
                default:
                    shortcut = x;
                    shortcutShape = inShape;
                    break;
            }
            if (shortcutShape != branchShape)
            {
                Issues.Add(Issue("RNG0008", _spec.Shortcut == ShortcutKind.AvgPoolZeroPad ? ArgumentSlot.Shortcut : ArgumentSlot.Attribute,
                    Size, name, branchShape.Format(), shortcutShape.Format(),
                    reason.Length > 0 ? reason : "the shapes differ",
                    _spec.Shortcut == ShortcutKind.AvgPoolZeroPad
                        ? "Use an InputSize whose feature maps stay even, or Shortcut.ZeroPad (which rounds up like the convolution)."
                        : "Use another InputSize or Shortcut."));
            }
            var sum = Emit(OpKind.AddInPlace, branch, branchShape, other: shortcut, comment: $"{name}: residual add");
            var result = Relu(sum, branchShape);
            return (result, branchShape);
        }

        private ModulePlan Conv(string path, Shape input, int outChannels, int kernel, int stride, int padding, int dilation = 1, int groups = 1)
        {
            var output = new Shape(outChannels,
                ConvOut(input.Height, kernel, stride, padding, dilation),
                ConvOut(input.Width, kernel, stride, padding, dilation));
            CheckNotEmpty(path, output);
            long weights = (long)outChannels * (input.Channels / groups) * kernel * kernel;
            return AddModule(new ModulePlan(path, ModuleKind.Conv2d, input.Channels, outChannels, kernel, stride, padding, dilation, groups,
                Parameters: weights,
                MultAdds: weights * Math.Max(0, output.Height) * Math.Max(0, output.Width),
                Output: output));
        }

        private ModulePlan Norm(string path, Shape shape, bool zeroInit = false) =>
            AddModule(new ModulePlan(path, ModuleKind.BatchNorm2d, shape.Channels, shape.Channels, ZeroInit: zeroInit,
                Parameters: 2L * shape.Channels, Output: shape));

        private ModulePlan AddModule(ModulePlan module)
        {
            _modules.Add(module);
            return module;
        }

        private void CheckNotEmpty(string layer, Shape shape)
        {
            if (shape.Height > 0 && shape.Width > 0) return;
            if (Issues.Any(i => i.Id == "RNG0007")) return; // the first vanishing layer is the one to fix
            Issues.Add(Issue("RNG0007", _spec.InputSize != 0 ? ArgumentSlot.InputSize : ArgumentSlot.Attribute, Size, layer, shape.Format()));
        }

        private int Call(ModulePlan module, int x) =>
            Emit(OpKind.Call, x, module.Output, module: module.Path, comment: module.Path);

        private int Relu(int x, Shape shape)
        {
            _ops.Add(new OpPlan(OpKind.ReluInPlace, x, x, Shape: shape));
            return x;
        }

        private int Emit(OpKind kind, int x, Shape shape, int other = -1, string? module = null, int stride = 1, int padChannels = 0, string? comment = null)
        {
            var result = kind == OpKind.AddInPlace ? x : _nextTensor++;
            _ops.Add(new OpPlan(kind, result, x, other, module, stride, padChannels, shape, Comment: comment));
            return result;
        }

        private static ShapeIssue Issue(string id, ArgumentSlot slot, params string[] args) => new(id, slot, args.ToEquatableArray());
    }

    /// <summary>
    /// Folds each batch-norm into the convolution whose output it reads: the pair becomes one step producing the
    /// batch-norm's tensor, and the convolution's own tensor disappears.
    /// </summary>
    private static List<OpPlan> Fold(List<OpPlan> ops, List<ModulePlan> modules)
    {
        var kinds = modules.ToDictionary(m => m.Path, m => m.Kind);
        var result = new List<OpPlan>(ops.Count);
        for (var i = 0; i < ops.Count; i++)
        {
            var op = ops[i];
            if (op.Kind == OpKind.Call && kinds[op.Module!] == ModuleKind.Conv2d
                && i + 1 < ops.Count && ops[i + 1] is { Kind: OpKind.Call } next && next.Arg == op.Result && kinds[next.Module!] == ModuleKind.BatchNorm2d)
            {
                result.Add(new OpPlan(OpKind.FusedCall, next.Result, op.Arg, Module: op.Module, Norm: next.Module, Shape: next.Shape,
                    Comment: $"{op.Module} with {next.Module} folded in"));
                i++;
                continue;
            }
            result.Add(op);
        }
        return result;
    }

    /// <summary>
    /// Exact liveness: each tensor is disposed right after the op that reads it last, tensor 0 included (the forward's
    /// own handle on the input, never the caller's). The returned tensor and the tensors in <paramref name="keep"/> are
    /// never disposed.
    /// </summary>
    private static List<OpPlan> WithDisposal(List<OpPlan> ops, int output, HashSet<int> keep)
    {
        var lastUse = new Dictionary<int, int>();
        for (var i = 0; i < ops.Count; i++)
        {
            lastUse[ops[i].Arg] = i;
            if (ops[i].Other >= 0) lastUse[ops[i].Other] = i;
            lastUse[ops[i].Result] = Math.Max(i, lastUse.TryGetValue(ops[i].Result, out var u) ? u : i);
        }
        var result = new List<OpPlan>(ops.Count);
        for (var i = 0; i < ops.Count; i++)
        {
            var op = ops[i];
            var dispose = new List<int>();
            foreach (var t in op.Other >= 0 ? new[] { op.Arg, op.Other } : new[] { op.Arg })
            {
                // An in-place op's argument lives on as its result.
                if (t == op.Result) continue;
                if (t != output && !keep.Contains(t) && lastUse[t] == i && !dispose.Contains(t)) dispose.Add(t);
            }
            result.Add(op with { Dispose = dispose.ToEquatableArray() });
        }
        return result;
    }
}
