using System;
using TorchSharp;

namespace ResNetGen.Training;

/// <summary>
/// The classification losses of modern recipes, as PyTorch and timm compute them: cross-entropy with label smoothing,
/// cross-entropy on soft targets (what mixup and cutmix give) and binary cross-entropy on (smoothed) targets.
/// </summary>
public static class Losses
{
    /// <summary>
    /// <c>F.cross_entropy(logits, labels, label_smoothing=ε)</c>: (1 − ε)·NLL + ε·mean over classes of −log softmax,
    /// averaged over the batch. <paramref name="labels"/> are class indices [N] (int64).
    /// </summary>
    public static torch.Tensor CrossEntropy(torch.Tensor logits, torch.Tensor labels, double labelSmoothing = 0.0)
    {
        CheckLogits(logits, nameof(logits));
        ArgumentNullException.ThrowIfNull(labels);
        if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "must be in [0, 1]");
        return torch.nn.functional.cross_entropy(logits, labels, null, -100, torch.nn.Reduction.Mean, labelSmoothing);
    }

    /// <summary>timm's <c>SoftTargetCrossEntropy</c>: mean over the batch of Σ −target·log softmax(logits); <paramref name="targets"/> [N, C] sum to 1 per row.</summary>
    public static torch.Tensor SoftTargetCrossEntropy(torch.Tensor logits, torch.Tensor targets)
    {
        CheckLogits(logits, nameof(logits));
        CheckTargets(logits, targets);
        using var scope = torch.NewDisposeScope();
        var logProbabilities = torch.nn.functional.log_softmax(logits, -1);
        var perSample = (targets.neg() * logProbabilities).sum(-1);
        return perSample.mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// timm's <c>BinaryCrossEntropy</c>: each class a sigmoid against its target, averaged over batch and classes. Class
    /// indices [N] become one-hot targets smoothed as timm does (ε/C off, 1 − ε + ε/C on); soft targets [N, C] (mixup's)
    /// are used as they are. With <paramref name="targetThreshold"/>, targets above it become 1 and the rest 0.
    /// </summary>
    public static torch.Tensor BinaryCrossEntropy(torch.Tensor logits, torch.Tensor targets, double smoothing = 0.1, double? targetThreshold = null)
    {
        CheckLogits(logits, nameof(logits));
        ArgumentNullException.ThrowIfNull(targets);
        if (!(smoothing >= 0 && smoothing < 1)) throw new ArgumentOutOfRangeException(nameof(smoothing), smoothing, "must be in [0, 1)");
        using var scope = torch.NewDisposeScope();
        var dense = targets.shape.Length == 2 && targets.shape[1] == logits.shape[1]
            ? targets
            : OneHot(targets, logits.shape[1], smoothing, logits.dtype);
        if (dense.shape[0] != logits.shape[0]) throw new ArgumentException($"{dense.shape[0]} targets for {logits.shape[0]} samples.", nameof(targets));
        if (targetThreshold is { } threshold)
        {
            using var t = threshold.ToScalar();
            dense = dense.gt(t).to(dense.dtype);
        }
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, dense, null, torch.nn.Reduction.Mean, null).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// timm's <c>one_hot</c> with smoothing: [N] class indices to [N, C] rows of ε/C with 1 − ε + ε/C at the class
    /// (ε = 0: plain one-hot).
    /// </summary>
    public static torch.Tensor OneHot(torch.Tensor labels, long classes, double smoothing = 0.0, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (labels.dtype != torch.ScalarType.Int64) throw new ArgumentException($"class indices are int64, not {labels.dtype}.", nameof(labels));
        if (classes < 1) throw new ArgumentOutOfRangeException(nameof(classes), classes, "must be at least 1");
        var off = smoothing / classes;
        var on = 1 - smoothing + off;
        using var column = labels.view(-1, 1);
        using var onValue = on.ToScalar();
        using var offValue = off.ToScalar();
        using var ons = torch.full(new[] { labels.numel(), 1 }, onValue, dtype, labels.device);
        var result = torch.full(new[] { labels.numel(), classes }, offValue, dtype, labels.device);
        return result.scatter_(1, column, ons);
    }

    private static void CheckLogits(torch.Tensor logits, string name)
    {
        ArgumentNullException.ThrowIfNull(logits, name);
        if (logits.dim() != 2) throw new ArgumentException($"logits are [N, classes], not [{string.Join(", ", logits.shape)}].", name);
        if (!logits.is_floating_point()) throw new ArgumentException($"logits are floating point, not {logits.dtype}.", name);
    }

    private static void CheckTargets(torch.Tensor logits, torch.Tensor targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        if (targets.dim() != 2 || targets.shape[0] != logits.shape[0] || targets.shape[1] != logits.shape[1])
            throw new ArgumentException($"soft targets are [N, classes] as the logits [{string.Join(", ", logits.shape)}], not [{string.Join(", ", targets.shape)}]; for class indices use CrossEntropy.", nameof(targets));
    }
}
