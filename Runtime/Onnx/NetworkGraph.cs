using System;
using System.Collections.Generic;
using System.Globalization;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>What a <see cref="GraphStep"/> computes.</summary>
public enum GraphStepKind
{
    /// <summary>A convolution and the batch-norm after it (one folded convolution after <c>FuseForInference</c>).</summary>
    ConvNorm,
    /// <summary>The classifier.</summary>
    Linear,
    /// <summary>ReLU.</summary>
    Relu,
    /// <summary>The residual add of two tensors.</summary>
    Add,
    /// <summary>The ImageNet stem's 3×3 stride-2 max-pool.</summary>
    MaxPool,
    /// <summary>Shortcut A: subsample, append zero channels.</summary>
    ZeroPad,
    /// <summary>Shortcut A with average pooling.</summary>
    AvgPoolZeroPad,
    /// <summary>Global average pooling to [N, C].</summary>
    Pool,
    /// <summary>The avg-down shortcut's 2×2 average pool (Other: its stride).</summary>
    AvgDownPool,
    /// <summary>A convolution alone (Module), its batch-norm elsewhere.</summary>
    Conv,
    /// <summary>A batch-norm alone (Norm).</summary>
    Norm,
    /// <summary>Anti-aliasing's average pool (Other: stride and size).</summary>
    AntiAliasPool,
    /// <summary>Anti-aliasing's blur pool (Other: stride; Module: channels).</summary>
    Blur,
    /// <summary>A classifier stored as a 1×1 convolution with bias (Module), on pooled [N, C].</summary>
    ConvHead,
    /// <summary>Squeeze-excite (Module: the reducing convolution; Norm: the expanding one).</summary>
    SqueezeExcite,
    /// <summary>Efficient channel attention (Module: its 1-D convolution).</summary>
    EfficientChannel,
    /// <summary>A group-norm (Norm).</summary>
    GroupNorm,
    /// <summary>BiT's fixed stem pool: one zero of padding, then a 3×3 stride-2 max-pool without padding.</summary>
    ZeroPaddedMaxPool,
}

/// <summary>
/// One step of a generated network's graph, as data: the table a generated <c>ExportOnnx</c> hands to
/// <see cref="NetworkGraph.Write"/>. Tensors are numbered: 0 is the input, and each step's result is the next number.
/// Modules are indices into the network's table of modules.
/// </summary>
/// <param name="Kind">What the step computes.</param>
/// <param name="Input">The tensor it reads.</param>
/// <param name="Other">The second tensor (<see cref="GraphStepKind.Add"/>), or the stride (shortcuts).</param>
/// <param name="Module">The module (convolution or linear), or the zero channels appended (shortcuts).</param>
/// <param name="Norm">The batch-norm of a <see cref="GraphStepKind.ConvNorm"/>.</param>
/// <param name="StandardizeEps">For <see cref="GraphStepKind.Conv"/> and <see cref="GraphStepKind.ConvNorm"/>: the ε of the convolution's weight standardisation (timm's StdConv2d), 0 for a plain one.</param>
public readonly record struct GraphStep(GraphStepKind Kind, int Input, int Other = -1, int Module = -1, int Norm = -1, double StandardizeEps = 0)
{
    /// <summary>The weight-standardised convolution <paramref name="conv"/> (ε <paramref name="eps"/>) alone on <paramref name="input"/>.</summary>
    public static GraphStep StandardizedConv(int conv, int input, double eps) => new(GraphStepKind.Conv, input, Module: conv, StandardizeEps: eps);

    /// <summary>The weight-standardised convolution <paramref name="conv"/> (ε <paramref name="eps"/>) then the batch-norm <paramref name="norm"/>.</summary>
    public static GraphStep StandardizedConvNorm(int conv, int norm, int input, double eps) =>
        new(GraphStepKind.ConvNorm, input, Module: conv, Norm: norm, StandardizeEps: eps);

    /// <summary>The group-norm <paramref name="norm"/> on <paramref name="input"/>.</summary>
    public static GraphStep GroupNorm(int norm, int input) => new(GraphStepKind.GroupNorm, input, Norm: norm);

    /// <summary>BiT's fixed stem pool of <paramref name="input"/>.</summary>
    public static GraphStep ZeroPaddedMaxPool(int input) => new(GraphStepKind.ZeroPaddedMaxPool, input);

    /// <summary>Modules <paramref name="conv"/> then <paramref name="norm"/> on tensor <paramref name="input"/>.</summary>
    public static GraphStep ConvNorm(int conv, int norm, int input) => new(GraphStepKind.ConvNorm, input, Module: conv, Norm: norm);

    /// <summary>The linear module <paramref name="module"/> on <paramref name="input"/>.</summary>
    public static GraphStep Linear(int module, int input) => new(GraphStepKind.Linear, input, Module: module);

    /// <summary>ReLU of <paramref name="input"/>.</summary>
    public static GraphStep Relu(int input) => new(GraphStepKind.Relu, input);

    /// <summary><paramref name="a"/> + <paramref name="b"/>.</summary>
    public static GraphStep Add(int a, int b) => new(GraphStepKind.Add, a, b);

    /// <summary>3×3 stride-2 max-pool of <paramref name="input"/>.</summary>
    public static GraphStep MaxPool(int input, int stride = 2) => new(GraphStepKind.MaxPool, input, stride);

    /// <summary>The convolution <paramref name="conv"/> alone on tensor <paramref name="input"/>.</summary>
    public static GraphStep Conv(int conv, int input) => new(GraphStepKind.Conv, input, Module: conv);

    /// <summary>The batch-norm <paramref name="norm"/> alone on tensor <paramref name="input"/>.</summary>
    public static GraphStep BatchNorm(int norm, int input) => new(GraphStepKind.Norm, input, Norm: norm);

    /// <summary>Anti-aliasing's <paramref name="stride"/>×<paramref name="stride"/> average at that stride.</summary>
    public static GraphStep AntiAliasPool(int input, int stride) => new(GraphStepKind.AntiAliasPool, input, stride);

    /// <summary>The classifier <paramref name="head"/>, a 1×1 convolution, on pooled tensor <paramref name="input"/>.</summary>
    public static GraphStep ConvHead(int head, int input) => new(GraphStepKind.ConvHead, input, Module: head);

    /// <summary>Anti-aliasing's blur of <paramref name="channels"/> channels at <paramref name="stride"/>.</summary>
    public static GraphStep Blur(int input, int stride, int channels) => new(GraphStepKind.Blur, input, stride, channels);

    /// <summary>Shortcut A of <paramref name="input"/>: subsample by <paramref name="stride"/>, append <paramref name="channels"/> zero channels.</summary>
    public static GraphStep ZeroPad(int input, int stride, int channels) => new(GraphStepKind.ZeroPad, input, stride, channels);

    /// <summary>Shortcut A with average pooling.</summary>
    public static GraphStep AvgPoolZeroPad(int input, int stride, int channels) => new(GraphStepKind.AvgPoolZeroPad, input, stride, channels);

    /// <summary>Global average pooling of <paramref name="input"/>.</summary>
    public static GraphStep Pool(int input) => new(GraphStepKind.Pool, input);

    /// <summary>The avg-down shortcut's pool at <paramref name="stride"/> (2: ceil mode; 1: same padding).</summary>
    public static GraphStep AvgDownPool(int input, int stride) => new(GraphStepKind.AvgDownPool, input, stride);

    /// <summary>Squeeze-excite with modules <paramref name="reduce"/> and <paramref name="expand"/> on tensor <paramref name="input"/>.</summary>
    public static GraphStep SqueezeExcite(int reduce, int expand, int input) => new(GraphStepKind.SqueezeExcite, input, Module: reduce, Norm: expand);

    /// <summary>Efficient channel attention with the 1-D convolution <paramref name="conv"/> on tensor <paramref name="input"/>.</summary>
    public static GraphStep EfficientChannel(int conv, int input) => new(GraphStepKind.EfficientChannel, input, Module: conv);
}

/// <summary>Writes a generated network's graph table as ONNX nodes.</summary>
public static class NetworkGraph
{
    /// <summary>
    /// Adds a node (or two) per step to <paramref name="onnx"/>, reading weights from <paramref name="modules"/> and
    /// naming nodes by <paramref name="paths"/>; with <paramref name="folds"/>, each convolution and batch-norm become
    /// one folded convolution. A weight-standardised convolution is written with its standardised weight (the graph
    /// is for inference, where the weight does not change), folded or not. Returns the name of the last tensor.
    /// </summary>
    public static string Write(OnnxGraphBuilder onnx, IReadOnlyList<GraphStep> steps, string[] paths, torch.nn.Module[] modules, FoldSet? folds)
    {
        var names = new List<string> { "input" };
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        string Next(string kind)
        {
            counts[kind] = counts.TryGetValue(kind, out var n) ? n + 1 : 1;
            return kind + "." + counts[kind].ToString(CultureInfo.InvariantCulture);
        }
        foreach (var step in steps)
        {
            var input = names[step.Input];
            var output = "x" + names.Count.ToString(CultureInfo.InvariantCulture);
            switch (step.Kind)
            {
                case GraphStepKind.ConvNorm:
                {
                    var conv = (Conv2d)modules[step.Module];
                    var norm = (BatchNorm2d)modules[step.Norm];
                    if (folds is not null)
                    {
                        var (weight, bias) = folds.For(conv, norm, step.StandardizeEps).Current;
                        Conv(onnx, paths[step.Module], input, output, conv, weight, bias);
                    }
                    else
                    {
                        using var standardized = Standardized(conv, step.StandardizeEps);
                        Conv(onnx, paths[step.Module], input, output + "_conv", conv, standardized ?? conv.weight!, conv.bias);
                        onnx.BatchNorm(paths[step.Norm], output + "_conv", output, norm);
                    }
                    break;
                }
                case GraphStepKind.Linear:
                    onnx.Linear(paths[step.Module], input, output, (Linear)modules[step.Module]);
                    break;
                case GraphStepKind.Relu:
                    onnx.Relu(Next("relu"), input, output);
                    break;
                case GraphStepKind.Add:
                    onnx.Add(Next("add"), input, names[step.Other], output);
                    break;
                case GraphStepKind.MaxPool:
                    onnx.MaxPool("maxpool", input, output, step.Other);
                    break;
                case GraphStepKind.Conv when step.StandardizeEps > 0 && folds is not null:
                {
                    var conv = (Conv2d)modules[step.Module];
                    var (weight, bias) = folds.For(conv, null, step.StandardizeEps).Current;
                    Conv(onnx, paths[step.Module], input, output, conv, weight, conv.bias is null ? null : bias);
                    break;
                }
                case GraphStepKind.Conv:
                {
                    var conv = (Conv2d)modules[step.Module];
                    using var standardized = Standardized(conv, step.StandardizeEps);
                    Conv(onnx, paths[step.Module], input, output, conv, standardized ?? conv.weight!, conv.bias);
                    break;
                }
                case GraphStepKind.GroupNorm:
                    onnx.GroupNorm(paths[step.Norm], input, output, (GroupNorm)modules[step.Norm]);
                    break;
                case GraphStepKind.ZeroPaddedMaxPool:
                    onnx.ZeroPaddedMaxPool("stem.pool", input, output);
                    break;
                case GraphStepKind.Norm:
                    onnx.BatchNorm(paths[step.Norm], input, output, (BatchNorm2d)modules[step.Norm]);
                    break;
                case GraphStepKind.AntiAliasPool:
                    onnx.AntiAliasPool(Next("aa"), input, output, step.Other);
                    break;
                case GraphStepKind.ConvHead:
                {
                    var head = (Conv2d)modules[step.Module];
                    onnx.ConvHead(paths[step.Module], input, output, head.weight!, head.bias!);
                    break;
                }
                case GraphStepKind.Blur:
                    onnx.Blur(Next("blur"), input, output, step.Other, step.Module);
                    break;
                case GraphStepKind.ZeroPad:
                    onnx.ZeroPadShortcut(Next("shortcut"), input, output, step.Other, step.Module);
                    break;
                case GraphStepKind.AvgPoolZeroPad:
                    onnx.AvgPoolZeroPadShortcut(Next("shortcut"), input, output, step.Other, step.Module);
                    break;
                case GraphStepKind.Pool:
                    onnx.GlobalAveragePool("avgpool", input, output);
                    break;
                case GraphStepKind.AvgDownPool:
                    onnx.AvgDownPool(Next("avgdown"), input, output, step.Other);
                    break;
                case GraphStepKind.SqueezeExcite:
                {
                    var (reduce, expand) = ((Conv2d)modules[step.Module], (Conv2d)modules[step.Norm]);
                    onnx.SqueezeExcite(paths[step.Module].Substring(0, paths[step.Module].LastIndexOf('.')), input, output,
                        paths[step.Module], reduce.weight!, reduce.bias!, paths[step.Norm], expand.weight!, expand.bias!);
                    break;
                }
                case GraphStepKind.EfficientChannel:
                {
                    var conv = (Conv1d)modules[step.Module];
                    onnx.EfficientChannel(paths[step.Module], input, output, conv.weight!, conv.padding![0]);
                    break;
                }
                default:
                    throw new ArgumentOutOfRangeException(nameof(steps), step.Kind, "unknown graph step");
            }
            names.Add(output);
            onnx.MarkStep(output);
        }
        return names[names.Count - 1];
    }

    /// <summary>The standardised weight of a weight-standardised convolution, without gradient; null for a plain one (ε 0).</summary>
    private static torch.Tensor? Standardized(Conv2d conv, double eps)
    {
        if (eps <= 0) return null;
        using var noGrad = torch.no_grad();
        return Steps.StandardizeWeight(conv.weight!, eps);
    }

    private static void Conv(OnnxGraphBuilder onnx, string name, string input, string output, Conv2d conv, torch.Tensor weight, torch.Tensor? bias) =>
        onnx.Conv(name, input, output, weight, bias, conv.kernel_size[0], conv.stride[0], conv.padding![0], conv.dilation[0], conv.groups);
}
