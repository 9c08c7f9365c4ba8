using System;
using TorchSharp;

namespace ResNetGen.Training;

/// <summary>A cutmix box: rows [<see cref="Top"/>, <see cref="Bottom"/>) and columns [<see cref="Left"/>, <see cref="Right"/>).</summary>
public readonly record struct CutmixBox(int Top, int Bottom, int Left, int Right)
{
    /// <summary>The box's area in pixels.</summary>
    public int Area => (Bottom - Top) * (Right - Left);
}

/// <summary>
/// Mixup and cutmix per batch with mixed labels, as timm's <c>Mixup</c> in its default <c>batch</c> mode: with probability
/// <see cref="Probability"/> a batch is mixed with itself reversed — by mixup (x·λ + flip(x)·(1 − λ)) or cutmix (a box of
/// flip(x) pasted in, λ corrected to the area left) — λ drawn from Beta(α, α), cutmix chosen with
/// <see cref="SwitchProbability"/> when both are on; the targets become λ·onehot(y) + (1 − λ)·onehot(flip(y)), smoothed by
/// <see cref="LabelSmoothing"/>. Train on them with <see cref="Losses.SoftTargetCrossEntropy"/> or
/// <see cref="Losses.BinaryCrossEntropy"/>. Draws come from a <see cref="Random"/> of the caller's (timm uses numpy's
/// generator, so the draws differ; the mixing for a given λ and box is timm's).
/// </summary>
public sealed class Mixup
{
    /// <param name="classes">Classes of the labels.</param>
    /// <param name="mixupAlpha">Beta(α, α) of mixup's λ; 0 turns mixup off (timm's default 1.0).</param>
    /// <param name="cutmixAlpha">Beta(α, α) of cutmix's λ; 0 turns cutmix off (timm's default).</param>
    /// <param name="probability">Probability that a batch is mixed at all.</param>
    /// <param name="switchProbability">With both on, the probability of cutmix rather than mixup.</param>
    /// <param name="labelSmoothing">Smoothing of the mixed targets (timm's default 0.1).</param>
    /// <param name="correctLambda">Whether cutmix's λ becomes the share of the picture left unpasted (timm's default).</param>
    public Mixup(int classes, double mixupAlpha = 1.0, double cutmixAlpha = 0.0, double probability = 1.0, double switchProbability = 0.5,
        double labelSmoothing = 0.1, bool correctLambda = true)
    {
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), classes, "needs at least 2 classes");
        if (!(mixupAlpha >= 0) || double.IsInfinity(mixupAlpha)) throw new ArgumentOutOfRangeException(nameof(mixupAlpha), mixupAlpha, "must be 0 (off) or positive");
        if (!(cutmixAlpha >= 0) || double.IsInfinity(cutmixAlpha)) throw new ArgumentOutOfRangeException(nameof(cutmixAlpha), cutmixAlpha, "must be 0 (off) or positive");
        if (mixupAlpha == 0 && cutmixAlpha == 0) throw new ArgumentException("mixup and cutmix are both off (alpha 0): turn one on, or do not mix.");
        if (!(probability >= 0 && probability <= 1)) throw new ArgumentOutOfRangeException(nameof(probability), probability, "must be in [0, 1]");
        if (!(switchProbability >= 0 && switchProbability <= 1)) throw new ArgumentOutOfRangeException(nameof(switchProbability), switchProbability, "must be in [0, 1]");
        if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "must be in [0, 1)");
        (Classes, MixupAlpha, CutmixAlpha, Probability, SwitchProbability, LabelSmoothing, CorrectLambda) =
            (classes, mixupAlpha, cutmixAlpha, probability, switchProbability, labelSmoothing, correctLambda);
    }

    /// <summary>Classes of the labels.</summary>
    public int Classes { get; }

    /// <summary>Mixup's α (0: off).</summary>
    public double MixupAlpha { get; }

    /// <summary>Cutmix's α (0: off).</summary>
    public double CutmixAlpha { get; }

    /// <summary>Probability that a batch is mixed.</summary>
    public double Probability { get; }

    /// <summary>With both on, the probability of cutmix.</summary>
    public double SwitchProbability { get; }

    /// <summary>Smoothing of the targets.</summary>
    public double LabelSmoothing { get; }

    /// <summary>Whether cutmix's λ is corrected to the box actually pasted.</summary>
    public bool CorrectLambda { get; }

    /// <summary>
    /// Mixes <paramref name="images"/> [N, C, H, W] in place (N even, as timm requires) and returns the soft targets
    /// [N, classes] for <paramref name="labels"/> [N], with λ and whether cutmix was used.
    /// </summary>
    public (torch.Tensor Targets, double Lambda, CutmixBox? Box) Apply(torch.Tensor images, torch.Tensor labels, Random random)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(random);
        if (images.dim() != 4) throw new ArgumentException($"images are [N, C, H, W], not [{string.Join(", ", images.shape)}].", nameof(images));
        if (images.shape[0] % 2 != 0) throw new ArgumentException($"a batch of {images.shape[0]}: mixup needs an even batch size (each picture mixed with its mirror in the batch).", nameof(images));
        if (labels.numel() != images.shape[0]) throw new ArgumentException($"{labels.numel()} labels for {images.shape[0]} pictures.", nameof(labels));
        var lambda = 1.0;
        CutmixBox? box = null;
        if (random.NextDouble() < Probability)
        {
            var cutmix = MixupAlpha > 0 && CutmixAlpha > 0 ? random.NextDouble() < SwitchProbability : CutmixAlpha > 0;
            lambda = Beta(random, cutmix ? CutmixAlpha : MixupAlpha);
            if (lambda != 1.0)
            {
                if (cutmix)
                {
                    var drawn = Box(images.shape[2], images.shape[3], lambda, random);
                    box = drawn;
                    if (CorrectLambda) lambda = 1 - drawn.Area / (double)(images.shape[2] * images.shape[3]);
                    PasteFlipped(images, drawn);
                }
                else MixFlipped(images, lambda);
            }
        }
        return (Targets(labels, Classes, lambda, LabelSmoothing), lambda, box);
    }

    /// <summary>timm's <c>mixup_target</c>: λ·onehot(y) + (1 − λ)·onehot(flip(y)), each one-hot smoothed.</summary>
    public static torch.Tensor Targets(torch.Tensor labels, int classes, double lambda, double smoothing)
    {
        using var scope = torch.NewDisposeScope();
        var first = Losses.OneHot(labels, classes, smoothing);
        var flipped = labels.flip(0);
        var second = Losses.OneHot(flipped, classes, smoothing);
        using var l = lambda.ToScalar();
        using var rest = (1.0 - lambda).ToScalar();
        using var one = 1.0.ToScalar(); // add_(Tensor) alone passes a temporary alpha of its own
        return first.mul_(l).add_(second.mul_(rest), one).MoveToOuterDisposeScope();
    }

    /// <summary>Mixup in place, as timm: x ← x·λ + flip(x)·(1 − λ).</summary>
    public static void MixFlipped(torch.Tensor images, double lambda)
    {
        using var noGrad = torch.no_grad();
        using var l = lambda.ToScalar();
        using var rest = (1.0 - lambda).ToScalar();
        using var flipped = images.flip(0);
        using var one = 1.0.ToScalar();
        flipped.mul_(rest);
        images.mul_(l).add_(flipped, one);
    }

    /// <summary>Cutmix in place, as timm: the box of flip(x) pasted into x.</summary>
    public static void PasteFlipped(torch.Tensor images, CutmixBox box)
    {
        if (box.Area == 0) return;
        using var noGrad = torch.no_grad();
        using var flipped = images.flip(0);
        using var source = flipped[.., .., box.Top..box.Bottom, box.Left..box.Right];
        using var target = images[.., .., box.Top..box.Bottom, box.Left..box.Right];
        target.copy_(source, false);
    }

    /// <summary>
    /// timm's <c>rand_bbox</c>: a box of sides ⌊H·√(1 − λ)⌋ and ⌊W·√(1 − λ)⌋ centred on a uniformly drawn pixel, clipped to
    /// the picture.
    /// </summary>
    public static CutmixBox Box(long height, long width, double lambda, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        var ratio = Math.Sqrt(1 - lambda);
        var (cutH, cutW) = ((int)(height * ratio), (int)(width * ratio));
        var (cy, cx) = (random.Next((int)height), random.Next((int)width));
        return new CutmixBox(Math.Clamp(cy - cutH / 2, 0, (int)height), Math.Clamp(cy + cutH / 2, 0, (int)height),
            Math.Clamp(cx - cutW / 2, 0, (int)width), Math.Clamp(cx + cutW / 2, 0, (int)width));
    }

    /// <summary>A draw from Beta(α, α), as the ratio of two Gamma(α) draws (Marsaglia and Tsang).</summary>
    public static double Beta(Random random, double alpha)
    {
        var x = Gamma(random, alpha);
        var y = Gamma(random, alpha);
        return x + y == 0 ? 0.5 : x / (x + y);
    }

    private static double Gamma(Random random, double shape)
    {
        if (shape < 1) return Gamma(random, shape + 1) * Math.Pow(random.NextDouble(), 1 / shape);
        var d = shape - 1.0 / 3;
        var c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                // A standard normal by Box–Muller.
                x = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
                v = 1 + c * x;
            } while (v <= 0);
            v = v * v * v;
            var u = random.NextDouble();
            if (u < 1 - 0.0331 * x * x * x * x || Math.Log(u) < 0.5 * x * x + d * (1 - v + Math.Log(v))) return d * v;
        }
    }
}
