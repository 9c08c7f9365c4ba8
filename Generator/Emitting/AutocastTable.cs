using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ResNetGen.Generator.Planning;

namespace ResNetGen.Generator.Emitting;

/// <summary>
/// Where PyTorch's autocast (<c>aten/src/ATen/autocast_mode.cpp</c>) places each op a ResNet runs, per device, and which
/// of them a network uses: the table a generated file carries in its comments. The runtime applies the same rows
/// (<c>ResNetGen.AutocastOps</c>; a test holds the two equal).
/// </summary>
internal static class AutocastTable
{
    public const string Low = "low precision";
    public const string Float32 = "float32";
    public const string AsInput = "as its input";

    /// <summary>Op, CPU policy, CUDA policy: autocast's lists for the ops a generated network runs, in the runtime's order.</summary>
    public static readonly (string Op, string Cpu, string Cuda)[] Ops =
    {
        ("conv2d", Low, Low),
        ("conv1d", Low, Low),
        ("linear", Low, Low),
        ("batch_norm", AsInput, AsInput),
        ("group_norm", AsInput, Float32),
        ("reflection_pad2d", Float32, AsInput),
        ("relu", AsInput, AsInput),
        ("add", AsInput, AsInput),
        ("max_pool2d", AsInput, AsInput),
        ("avg_pool2d", AsInput, AsInput),
        ("mean", AsInput, AsInput),
        ("sigmoid", AsInput, AsInput),
        ("mul", AsInput, AsInput),
        ("constant_pad_nd", AsInput, AsInput),
        ("slice", AsInput, AsInput),
        ("bernoulli", AsInput, AsInput),
    };

    /// <summary>The rows <paramref name="plan"/> uses, each with what in the network runs it (<c>53 × convolution, head.fc</c>).</summary>
    public static IReadOnlyList<(string Op, string Where, string Cpu, string Cuda)> Rows(NetworkPlan plan)
    {
        var uses = new Dictionary<string, List<string>>();
        var counts = new Dictionary<(string Op, string What), int>();
        foreach (var step in plan.Steps)
        {
            foreach (var (op, what) in OpsOf(step))
            {
                if (!uses.TryGetValue(op, out var list)) uses[op] = list = new List<string>();
                if (!list.Contains(what)) list.Add(what);
                counts[(op, what)] = counts.TryGetValue((op, what), out var n) ? n + 1 : 1;
            }
        }
        return Ops.Where(o => uses.ContainsKey(o.Op))
            .Select(o => (o.Op, string.Join(", ", uses[o.Op].Select(w => Count(counts[(o.Op, w)], w))), o.Cpu, o.Cuda))
            .ToList();
    }

    /// <summary>The ops one step runs, each with what it is in the network; none for the steps that only move or dispose tensors.</summary>
    public static IEnumerable<(string Op, string What)> OpsOf(StepPlan step)
    {
        switch (step.Kind)
        {
            case StepKind.ConvNorm:
                yield return ("conv2d", "convolution");
                yield return ("batch_norm", "batch-norm (float32 statistics)");
                if (step.Standardize > 0) yield return ("batch_norm", "weight standardisation (over the float32 weight)");
                break;
            case StepKind.Conv:
                yield return ("conv2d", "convolution");
                if (step.Standardize > 0) yield return ("batch_norm", "weight standardisation (over the float32 weight)");
                break;
            case StepKind.Linear: yield return ("linear", step.Module!); break;
            case StepKind.ConvHead: yield return ("conv2d", step.Module!); break;
            case StepKind.Norm: yield return ("batch_norm", "batch-norm (float32 statistics)"); break;
            case StepKind.GroupNorm: yield return ("group_norm", "group-norm"); break;
            case StepKind.Relu: yield return ("relu", "ReLU"); break;
            case StepKind.Add: yield return ("add", "residual add"); break;
            case StepKind.MaxPool: yield return ("max_pool2d", "max-pool"); break;
            case StepKind.ZeroPaddedMaxPool:
                yield return ("constant_pad_nd", "stem padding");
                yield return ("max_pool2d", "max-pool");
                break;
            case StepKind.AntiAliasPool: yield return ("avg_pool2d", "anti-aliasing average"); break;
            case StepKind.AvgDownPool:
                yield return ("avg_pool2d", "avg-down shortcut");
                if (step.Stride == 1) yield return ("constant_pad_nd", "avg-down same padding");
                break;
            case StepKind.AvgPoolZeroPad:
                yield return ("constant_pad_nd", "zero-channel shortcut");
                yield return ("avg_pool2d", "shortcut average");
                break;
            case StepKind.ZeroPad:
                yield return ("slice", "shortcut subsampling");
                yield return ("constant_pad_nd", "zero-channel shortcut");
                break;
            case StepKind.Blur:
                yield return ("reflection_pad2d", "blur padding");
                yield return ("conv2d", "blur filter");
                break;
            case StepKind.Pool: yield return ("mean", "global pool"); break;
            case StepKind.SqueezeExcite:
                yield return ("mean", "squeeze-excite pool");
                yield return ("conv2d", "squeeze-excite convolution");
                yield return ("conv2d", "squeeze-excite convolution");
                yield return ("relu", "squeeze-excite ReLU");
                yield return ("sigmoid", "attention gate");
                yield return ("mul", "attention gate");
                break;
            case StepKind.EfficientChannel:
                yield return ("mean", "channel-attention pool");
                yield return ("conv1d", "channel-attention convolution");
                yield return ("sigmoid", "attention gate");
                yield return ("mul", "attention gate");
                break;
            case StepKind.DropPath:
                yield return ("bernoulli", "drop-path mask (training)");
                yield return ("mul", "drop path (training)");
                break;
        }
    }

    // "3 convolutions", "fc" (a module path stands alone), "1 residual add".
    private static string Count(int n, string what) =>
        what.IndexOf('.') >= 0 || what == "fc" ? what : n.ToString(CultureInfo.InvariantCulture) + " × " + what;
}
