using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>
/// The few helpers a generated <c>forward</c> reads as words: a convolution with its batch-norm, and handing a
/// variable a new tensor while disposing the one it held. Generated files import it with <c>using static</c>.
/// </summary>
public static class Steps
{
    /// <summary>Gives <paramref name="variable"/> the tensor <paramref name="next"/> and disposes the one it held (unless it is the same).</summary>
    public static void Replace(ref torch.Tensor variable, torch.Tensor next)
    {
        var old = variable;
        variable = next;
        if (!ReferenceEquals(old, next)) old.Dispose();
    }

    /// <summary>
    /// The scalar 1, held for the life of the process. TorchSharp turns a number into a temporary <see cref="Scalar"/>
    /// whose finalizer frees it, and the garbage collector may run that finalizer while libtorch still reads it (seen as
    /// "Unknown scalar type" from <c>add_</c> in a training run); a static field is never finalized.
    /// </summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary><paramref name="sum"/> += <paramref name="other"/> in place (a residual add), with a scalar that cannot be freed underneath.</summary>
    public static void AddTo(torch.Tensor sum, torch.Tensor other) => sum.add_(other, One);

    /// <summary><paramref name="norm"/>(<paramref name="conv"/>(<paramref name="input"/>)), the convolution's output disposed; the input is not.</summary>
    public static torch.Tensor ConvNorm(torch.Tensor input, Conv2d conv, BatchNorm2d norm) => ConvNorm(input, conv, norm, (Autocast?)null);

    /// <summary>
    /// As <see cref="ConvNorm(torch.Tensor, Conv2d, BatchNorm2d)"/> in a mixed-precision pass (none: exactly that): the
    /// convolution in the low precision, the batch-norm on its output with float32 statistics, as autocast runs them.
    /// </summary>
    public static torch.Tensor ConvNorm(torch.Tensor input, Conv2d conv, BatchNorm2d norm, Autocast? pass)
    {
        using var convolved = Conv(input, conv, pass);
        return Norm(convolved, norm);
    }

    /// <summary><paramref name="conv"/>(<paramref name="input"/>): as its forward, or in the pass's low precision. The input is not disposed.</summary>
    public static torch.Tensor Conv(torch.Tensor input, Conv2d conv, Autocast? pass)
    {
        if (pass is not null) return pass.Conv2d(input, conv);
        ConvolutionTrace.Record(input, conv, "conv2d");
        return conv.forward(input);
    }

    /// <summary>The classifier: as its forward, or in the pass's low precision. The input is not disposed.</summary>
    public static torch.Tensor Linear(torch.Tensor input, Linear linear, Autocast? pass) => pass is null ? linear.forward(input) : pass.Linear(input, linear);

    /// <summary>A group-norm: as its forward, or where autocast runs it for the input's device. The input is not disposed.</summary>
    public static torch.Tensor GroupNorm(torch.Tensor input, GroupNorm norm, Autocast? pass) => pass is null ? norm.forward(input) : pass.GroupNorm(input, norm);

    /// <summary>
    /// What <c>BatchNorm2d.forward</c> computes (PyTorch's semantics: batch statistics in training, running statistics
    /// in eval, the running statistics and <c>num_batches_tracked</c> updated in training), without TorchSharp's
    /// <c>num_batches_tracked.add_(1)</c>, whose temporary scalar can be freed while libtorch reads it (see <see cref="One"/>).
    /// </summary>
    public static torch.Tensor Norm(torch.Tensor input, BatchNorm2d norm)
    {
        var factor = norm.momentum ?? 0.0;
        if (norm.training && norm.track_running_stats && norm.num_batches_tracked is { } tracked)
        {
            tracked.add_(One, One); // both scalars explicit: add_(Scalar) would pass a temporary alpha of its own
            factor = norm.momentum ?? 1.0 / tracked.item<long>(); // momentum null: a cumulative average, as PyTorch's None
        }
        var (mean, variance) = (norm.running_mean, norm.running_var);
        var useBatchStatistics = norm.training || mean is null || variance is null;
        var passRunning = !norm.training || norm.track_running_stats;
        return torch.nn.functional.batch_norm(input, passRunning ? mean : null, passRunning ? variance : null,
            norm.weight, norm.bias, useBatchStatistics, factor, norm.eps);
    }

    /// <summary>
    /// Weight standardisation as timm's <c>StdConv2d</c> computes it: <paramref name="weight"/> [O, I, k, k] seen as one
    /// sample of O channels ([1, O, I·k·k]) through a training-mode batch-norm without statistics or affine parameters, so
    /// each output channel's weights become (w − mean) / √(biased variance + <paramref name="eps"/>). Differentiable; a new
    /// tensor in <paramref name="weight"/>'s dtype and shape, contiguous.
    /// </summary>
    public static torch.Tensor StandardizeWeight(torch.Tensor weight, double eps)
    {
        using var rows = weight.reshape(1, weight.shape[0], -1);
        using var standardized = torch.nn.functional.batch_norm(rows, null, null, null, null, true, 0.0, eps);
        return standardized.reshape(weight.shape);
    }

    /// <summary>
    /// A weight-standardised convolution (timm's <c>StdConv2d</c>): <paramref name="conv"/>'s geometry and bias with its
    /// weight standardised by <see cref="StandardizeWeight"/>. The input is not disposed.
    /// </summary>
    public static torch.Tensor StandardizedConv(torch.Tensor input, Conv2d conv, double eps) => StandardizedConv(input, conv, eps, null);

    /// <summary>
    /// As <see cref="StandardizedConv(torch.Tensor, Conv2d, double)"/> in a mixed-precision pass: the weight standardised in
    /// float32 (a batch-norm over the float32 weight, as autocast leaves it), the convolution in the low precision.
    /// </summary>
    public static torch.Tensor StandardizedConv(torch.Tensor input, Conv2d conv, double eps, Autocast? pass)
    {
        using var weight = StandardizeWeight(conv.weight ?? throw new ArgumentException("the convolution has no weight", nameof(conv)), eps);
        if (pass is not null) return pass.Conv2d(input, weight, conv.bias, conv, "standardized conv2d");
        ConvolutionTrace.Record(input, conv, "standardized conv2d");
        return torch.nn.functional.conv2d(input, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups);
    }

    /// <summary><paramref name="norm"/>(a weight-standardised <paramref name="conv"/>(<paramref name="input"/>)); the convolution's output is disposed.</summary>
    public static torch.Tensor ConvNorm(torch.Tensor input, Conv2d conv, BatchNorm2d norm, double eps) => ConvNorm(input, conv, norm, eps, null);

    /// <summary>As <see cref="ConvNorm(torch.Tensor, Conv2d, BatchNorm2d, double)"/> in a mixed-precision pass (none: exactly that).</summary>
    public static torch.Tensor ConvNorm(torch.Tensor input, Conv2d conv, BatchNorm2d norm, double eps, Autocast? pass)
    {
        using var convolved = StandardizedConv(input, conv, eps, pass);
        return Norm(convolved, norm);
    }

    /// <summary>
    /// BiT's fixed stem pool (timm's resnetv2 <c>stem_type='fixed'</c>): <paramref name="x"/> padded by one zero on each
    /// side, then a 3×3 max-pool at stride 2 without padding. Unlike the padded max-pool, a border of negative values
    /// pools with the zeros. The input is not disposed.
    /// </summary>
    public static torch.Tensor ZeroPaddedMaxPool(torch.Tensor x)
    {
        using var padded = torch.nn.functional.pad(x, new long[] { 1, 1, 1, 1 }, PaddingModes.Constant, 0.0);
        return torch.nn.functional.max_pool2d(padded, 3, 2);
    }

    /// <summary>
    /// Squeeze-and-excitation (timm's <c>SEModule</c>): <paramref name="x"/> × sigmoid(<paramref name="expand"/>(relu(
    /// <paramref name="reduce"/>(mean of <paramref name="x"/> over height and width)))). Returns a new tensor; the input
    /// is not disposed (autograd needs it for the gate's gradient).
    /// </summary>
    public static torch.Tensor SqueezeExcite(torch.Tensor x, Conv2d reduce, Conv2d expand) => SqueezeExcite(x, reduce, expand, null);

    /// <summary>As <see cref="SqueezeExcite(torch.Tensor, Conv2d, Conv2d)"/> in a mixed-precision pass: its two convolutions in the low precision.</summary>
    public static torch.Tensor SqueezeExcite(torch.Tensor x, Conv2d reduce, Conv2d expand, Autocast? pass)
    {
        using var pooled = x.mean(new long[] { 2, 3 }, keepdim: true);
        using var reduced = Conv(pooled, reduce, pass);
        using var activated = reduced.relu();
        using var expanded = Conv(activated, expand, pass);
        using var gate = expanded.sigmoid();
        return x.mul(gate);
    }

    /// <summary>
    /// Efficient channel attention (timm's <c>EcaModule</c>): <paramref name="x"/> × sigmoid(<paramref name="conv"/> over
    /// the channel means as one row [N, 1, C]). Returns a new tensor; the input is not disposed.
    /// </summary>
    public static torch.Tensor EfficientChannel(torch.Tensor x, Conv1d conv) => EfficientChannel(x, conv, null);

    /// <summary>As <see cref="EfficientChannel(torch.Tensor, Conv1d)"/> in a mixed-precision pass: its 1-D convolution in the low precision.</summary>
    public static torch.Tensor EfficientChannel(torch.Tensor x, Conv1d conv, Autocast? pass)
    {
        var (n, c) = (x.shape[0], x.shape[1]);
        using var pooled = x.mean(new long[] { 2, 3 });
        using var row = pooled.view(n, 1, c);
        if (pass is null) ConvolutionTrace.Record(row, conv, "conv1d");
        using var mixed = pass is null ? conv.forward(row) : pass.Conv1d(row, conv);
        using var gate = mixed.sigmoid();
        using var column = gate.view(n, c, 1, 1);
        return x.mul(column);
    }

    /// <summary>
    /// Anti-aliasing's blur pool (timm's <c>BlurPool2d</c>, filter size 3): <paramref name="x"/> reflect-padded by one on
    /// each side, then each channel convolved with the fixed binomial filter [1, 2, 1]ᵀ[1, 2, 1] / 16 at
    /// <paramref name="stride"/>. The filter is made in the input's dtype and on its device; it is not a parameter.
    /// </summary>
    public static torch.Tensor Blur(torch.Tensor x, int stride) => Blur(x, stride, null);

    /// <summary>
    /// As <see cref="Blur(torch.Tensor, int)"/> in a mixed-precision pass: the reflection padding where autocast runs it
    /// (float32 on a CPU; a copy, so the values are the same either way), the filtering convolution in the low precision.
    /// </summary>
    public static torch.Tensor Blur(torch.Tensor x, int stride, Autocast? pass)
    {
        var channels = x.shape[1];
        using var source = pass is null ? x.alias() : pass.For("reflection_pad2d", x);
        using var reflected = torch.nn.functional.pad(source, new long[] { 1, 1, 1, 1 }, PaddingModes.Reflect);
        using var padded = pass is null ? reflected.alias() : pass.For("conv2d", reflected);
        using var filter = BlurFilter(channels, padded.dtype, x.device); // exact in every float type
        ConvolutionTrace.Record(padded, null, "blur");
        return torch.nn.functional.conv2d(padded, filter, strides: new long[] { stride, stride }, groups: channels);
    }

    /// <summary>The blur pool's filter for <paramref name="channels"/> channels: [C, 1, 3, 3], each [1, 2, 1]ᵀ[1, 2, 1] / 16 (exact in any float type).</summary>
    public static torch.Tensor BlurFilter(long channels, torch.ScalarType dtype, torch.Device device)
    {
        var one = new[] { 1.0 / 16, 2.0 / 16, 1.0 / 16, 2.0 / 16, 4.0 / 16, 2.0 / 16, 1.0 / 16, 2.0 / 16, 1.0 / 16 };
        using var single = torch.tensor(one, new long[] { 1, 1, 3, 3 }, dtype, device);
        return single.repeat(channels, 1, 1, 1);
    }

    /// <summary>
    /// Stochastic depth as timm's <c>drop_path</c>: in training, each sample of <paramref name="x"/> is kept with
    /// probability 1 − <paramref name="rate"/> (drawn from libtorch's generator) and the kept ones scaled by 1 / (1 − rate);
    /// otherwise <paramref name="x"/> itself is returned (the same tensor, not a copy).
    /// </summary>
    public static torch.Tensor DropPath(torch.Tensor x, double rate, bool training)
    {
        if (!training || rate <= 0) return x;
        var keep = 1 - rate;
        var shape = new long[x.dim()];
        shape[0] = x.shape[0];
        for (var i = 1; i < shape.Length; i++) shape[i] = 1;
        using var mask = torch.empty(shape, x.dtype, x.device);
        mask.bernoulli_(keep);
        using var scale = keep.ToScalar(); // held, not a temporary the finalizer may free mid-call (see One)
        mask.div_(scale);
        return x.mul(mask);
    }

    /// <summary>
    /// A classifier stored as a 1×1 convolution with bias (timm's resnetv2 <c>head.fc</c>) on pooled features [N, C]:
    /// the convolution on [N, C, 1, 1], flattened to [N, classes].
    /// </summary>
    public static torch.Tensor ConvHead(torch.Tensor pooled, Conv2d head) => ConvHead(pooled, head, null);

    /// <summary>As <see cref="ConvHead(torch.Tensor, Conv2d)"/> in a mixed-precision pass: the 1×1 convolution in the low precision.</summary>
    public static torch.Tensor ConvHead(torch.Tensor pooled, Conv2d head, Autocast? pass)
    {
        using var column = pooled.view(pooled.shape[0], pooled.shape[1], 1, 1);
        using var logits = Conv(column, head, pass);
        return logits.flatten(1);
    }

    /// <summary>
    /// Keeps a stage output for <c>ForwardFeatures</c>: a handle of its own on <paramref name="x"/> (contiguous, a copy
    /// only when computed channels-last) in <paramref name="kept"/>[<paramref name="index"/>], when features are asked for.
    /// </summary>
    public static void Keep(torch.Tensor[]? kept, int index, torch.Tensor x) => Keep(kept, index, x, null);

    /// <summary>As <see cref="Keep(torch.Tensor[], int, torch.Tensor)"/>; in a mixed-precision pass the kept output is float32, as the logits are.</summary>
    public static void Keep(torch.Tensor[]? kept, int index, torch.Tensor x, Autocast? pass)
    {
        if (kept is null) return;
        kept[index] = TensorLayout.ToContiguous(Autocast.Output(x.alias(), pass));
    }
}

/// <summary>The per-module chores of a generated network, as loops over its table of modules.</summary>
public static class ModuleTable
{
    /// <summary>
    /// Registers <paramref name="modules"/> under their state_dict <paramref name="paths"/> (<c>layer1.0.conv1</c>),
    /// creating a <see cref="ModuleGroup"/> for each path prefix the first time it appears, so the keys and their
    /// order are torchvision's. <paramref name="registerTop"/> registers a top-level name on the network. Returns the
    /// groups created (the network disposes them).
    /// </summary>
    public static ModuleGroup[] Register(string[] paths, torch.nn.Module[] modules, Action<string, torch.nn.Module> registerTop)
    {
        if (paths.Length != modules.Length) throw new ArgumentException($"{paths.Length} paths for {modules.Length} modules");
        var groups = new Dictionary<string, ModuleGroup>(StringComparer.Ordinal);
        void Add(string path, torch.nn.Module module)
        {
            var dot = path.LastIndexOf('.');
            if (dot < 0) registerTop(path, module);
            else groups[path.Substring(0, dot)].Add(path.Substring(dot + 1), module);
        }
        for (var i = 0; i < paths.Length; i++)
        {
            var parts = paths[i].Split('.');
            for (var depth = 1; depth < parts.Length; depth++)
            {
                var prefix = string.Join(".", parts, 0, depth);
                if (groups.ContainsKey(prefix)) continue;
                var group = new ModuleGroup(prefix);
                groups.Add(prefix, group);
                Add(prefix, group);
            }
            Add(paths[i], modules[i]);
        }
        return groups.Values.ToArray();
    }

    /// <summary>
    /// torchvision's initialisation, in module order (so the random draws are torchvision's): kaiming_normal (fan_out,
    /// ReLU) for convolutions; batch-norm and group-norm weight 1 and bias 0, weight 0 for the modules listed in
    /// <paramref name="zeroWeight"/> (ZeroInitResidual's last batch-norm of each block); linear layers keep their default.
    /// </summary>
    public static void InitializeAsTorchvision(torch.nn.Module[] modules, int[] zeroWeight, int smallHead = -1)
    {
        using var noGrad = torch.no_grad();
        for (var i = 0; i < modules.Length; i++)
        {
            switch (modules[i])
            {
                case Conv2d head when i == smallHead:
                    // timm's resnetv2: the classifier (a 1×1 convolution) from N(0, 0.01²), its bias 0.
                    torch.nn.init.normal_(head.weight!, 0.0, 0.01);
                    if (head.bias is { } headBias) torch.nn.init.zeros_(headBias);
                    break;
                case Conv2d conv:
                    torch.nn.init.kaiming_normal_(conv.weight!, mode: torch.nn.init.FanInOut.FanOut, nonlinearity: torch.nn.init.NonlinearityType.ReLU);
                    // ZeroInitResidual with pre-activation blocks (timm's zero_init_last): the block's last convolution starts at 0.
                    if (Array.IndexOf(zeroWeight, i) >= 0) torch.nn.init.zeros_(conv.weight!);
                    break;
                case BatchNorm2d norm:
                    if (Array.IndexOf(zeroWeight, i) >= 0) torch.nn.init.zeros_(norm.weight!);
                    else torch.nn.init.ones_(norm.weight!);
                    torch.nn.init.zeros_(norm.bias!);
                    break;
                case GroupNorm groupNorm:
                    torch.nn.init.ones_(groupNorm.weight!);
                    torch.nn.init.zeros_(groupNorm.bias!);
                    break;
            }
        }
    }

    /// <summary>
    /// torchvision's <c>trainable_layers</c>: the classifier and the last <paramref name="trainableStages"/> stages keep
    /// training (0: only the classifier; <paramref name="stageCount"/> + 1: everything, the stem included); every other
    /// parameter stops requiring gradients and every other batch-norm goes to eval mode. Returns those batch-norms, which
    /// the network keeps in eval mode through later <c>train()</c> calls, so their running statistics stay the pretrained ones.
    /// </summary>
    public static BatchNorm2d[] Freeze(string[] paths, torch.nn.Module[] modules, int stageCount, int trainableStages, string network)
    {
        if (trainableStages < 0 || trainableStages > stageCount + 1)
            throw new ArgumentOutOfRangeException(nameof(trainableStages), trainableStages,
                $"{network} has {stageCount} stages: trainableStages is 0 (only the classifier) to {stageCount} (every stage), or {stageCount + 1} (the stem too).");
        var frozen = new List<BatchNorm2d>();
        for (var i = 0; i < modules.Length; i++)
        {
            var stage = StageOf(paths[i], stageCount);
            var trainable = stage > stageCount || (stage >= 1 && stage > stageCount - trainableStages) || trainableStages == stageCount + 1;
            foreach (var parameter in modules[i].parameters()) parameter.requires_grad = trainable;
            if (!trainable && modules[i] is BatchNorm2d norm)
            {
                norm.eval();
                frozen.Add(norm);
            }
        }
        return frozen.ToArray();
    }

    /// <summary>Undoes <see cref="Freeze"/>'s gradients: every parameter trains again (the network then sets its modules' mode).</summary>
    public static void Unfreeze(torch.nn.Module[] modules)
    {
        foreach (var module in modules)
        {
            foreach (var parameter in module.parameters()) parameter.requires_grad = true;
        }
    }

    /// <summary>
    /// 0 for the stem, N for layerN (torchvision's names) or stages.N-1 (timm's resnetv2), past the last stage for the
    /// classifier (fc, head.fc) and for a pre-activation network's last norm, which only the classifier reads.
    /// </summary>
    private static int StageOf(string path, int stageCount)
    {
        if (path.StartsWith("layer", StringComparison.Ordinal))
        {
            var dot = path.IndexOf('.');
            return int.Parse(path.Substring(5, (dot < 0 ? path.Length : dot) - 5), System.Globalization.CultureInfo.InvariantCulture);
        }
        if (path.StartsWith("stages.", StringComparison.Ordinal))
        {
            var dot = path.IndexOf('.', 7);
            return 1 + int.Parse(path.Substring(7, (dot < 0 ? path.Length : dot) - 7), System.Globalization.CultureInfo.InvariantCulture);
        }
        var head = path is "fc" or "norm" || path.StartsWith("fc.", StringComparison.Ordinal) || path.StartsWith("head.", StringComparison.Ordinal);
        return head ? stageCount + 1 : 0;
    }

    /// <summary>Disposes every module and group.</summary>
    public static void DisposeAll(torch.nn.Module[] modules, ModuleGroup[] groups)
    {
        foreach (var module in modules) module.Dispose();
        foreach (var group in groups) group.Dispose();
    }
}
