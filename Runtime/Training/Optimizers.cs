using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen.Training;

/// <summary>
/// What a training loop asks of an optimiser: a learning rate it may change every step, a step, zeroed gradients.
/// <see cref="AdamW"/> and <see cref="Lamb"/> implement it (and the sample's Nesterov SGD).
/// </summary>
public interface IOptimizer : IDisposable
{
    /// <summary>The learning rate the next <see cref="Step"/> uses (a schedule sets it before each step).</summary>
    double LearningRate { get; set; }

    /// <summary>Updates every parameter that has a gradient.</summary>
    void Step();

    /// <summary>Zeroes every gradient.</summary>
    void ZeroGrad();
}

/// <summary>A parameter and the weight decay it gets.</summary>
/// <param name="Parameter">The parameter.</param>
/// <param name="WeightDecay">Its decay coefficient (0: none).</param>
public readonly record struct DecayedParameter(Parameter Parameter, double WeightDecay);

/// <summary>Helpers for the parameters an optimiser is given.</summary>
public static class ParameterGroups
{
    /// <summary>
    /// timm's <c>param_groups_weight_decay</c>: <paramref name="weightDecay"/> for every trainable parameter of two or more
    /// dimensions (convolution and linear weights), none for one-dimensional ones (biases, batch-norm and group-norm
    /// scales and shifts), as timm's recipes and torchvision's (<c>norm_weight_decay=0</c>) train. Frozen parameters
    /// (<c>requires_grad</c> false) are left out.
    /// </summary>
    public static IReadOnlyList<DecayedParameter> NoDecayForBiasesAndNorms(IEnumerable<(string Name, Parameter Parameter)> parameters, double weightDecay)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return parameters.Where(p => p.Parameter.requires_grad)
            .Select(p => new DecayedParameter(p.Parameter, p.Parameter.dim() <= 1 || p.Name.EndsWith(".bias", StringComparison.Ordinal) ? 0.0 : weightDecay))
            .ToList();
    }

    internal static List<DecayedParameter> Validate(IEnumerable<DecayedParameter> parameters, string optimizer)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var list = parameters.ToList();
        if (list.Count == 0) throw new ArgumentException($"{optimizer} was given no parameters: pass the trainable ones (parameters() of the network, or those requires_grad leaves on).", nameof(parameters));
        foreach (var p in list)
        {
            if (p.Parameter is null) throw new ArgumentException($"{optimizer} was given a null parameter.", nameof(parameters));
            if (!(p.WeightDecay >= 0) || double.IsInfinity(p.WeightDecay)) throw new ArgumentOutOfRangeException(nameof(parameters), p.WeightDecay, "weight decay must be 0 or a positive finite number");
            if (!p.Parameter.is_floating_point()) throw new ArgumentException($"{optimizer} updates floating-point parameters; one is {p.Parameter.dtype}.", nameof(parameters));
        }
        if (list.Select(p => p.Parameter.Handle).Distinct().Count() != list.Count) throw new ArgumentException($"{optimizer} was given a parameter twice.", nameof(parameters));
        return list;
    }

    internal static void CheckRate(double value, string name)
    {
        if (!(value >= 0) || double.IsInfinity(value)) throw new ArgumentOutOfRangeException(name, value, "must be 0 or a positive finite number");
    }

    internal static void CheckBeta(double value, string name)
    {
        if (!(value >= 0 && value < 1)) throw new ArgumentOutOfRangeException(name, value, "must be in [0, 1)");
    }

    internal static void ZeroGrad(IEnumerable<DecayedParameter> parameters)
    {
        foreach (var p in parameters)
        {
            using var grad = p.Parameter.grad;
            grad?.zero_();
        }
    }
}

/// <summary>
/// What <see cref="AdamW"/> and <see cref="Lamb"/> share: the parameters with their weight decay, the two moment buffers,
/// the coefficients and the step count.
/// </summary>
public abstract class MomentOptimizer : IOptimizer
{
    private protected readonly List<DecayedParameter> Parameters;
    private protected readonly torch.Tensor?[] Average;
    private protected readonly torch.Tensor?[] Squares;
    private bool _disposed;

    private protected MomentOptimizer(IEnumerable<DecayedParameter> parameters, string name, double learningRate, double beta1, double beta2, double eps)
    {
        Parameters = ParameterGroups.Validate(parameters, name);
        ParameterGroups.CheckRate(learningRate, nameof(learningRate));
        ParameterGroups.CheckBeta(beta1, nameof(beta1));
        ParameterGroups.CheckBeta(beta2, nameof(beta2));
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "must be positive");
        (LearningRate, Beta1, Beta2, Eps) = (learningRate, beta1, beta2, eps);
        Average = new torch.Tensor?[Parameters.Count];
        Squares = new torch.Tensor?[Parameters.Count];
    }

    /// <inheritdoc />
    public double LearningRate { get; set; }

    /// <summary>The first moment's decay.</summary>
    public double Beta1 { get; }

    /// <summary>The second moment's decay.</summary>
    public double Beta2 { get; }

    /// <summary>Added to the denominator.</summary>
    public double Eps { get; }

    /// <summary>Steps taken (PyTorch keeps one per parameter; here all step together).</summary>
    public long Steps { get; private set; }

    /// <inheritdoc />
    public void ZeroGrad() => ParameterGroups.ZeroGrad(Parameters);

    /// <inheritdoc />
    public void Step()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ParameterGroups.CheckRate(LearningRate, nameof(LearningRate));
        using var noGrad = torch.no_grad();
        Steps++;
        Update(1 - Math.Pow(Beta1, Steps), Math.Sqrt(1 - Math.Pow(Beta2, Steps)));
    }

    /// <summary>One step with the bias corrections 1 − β₁ᵗ and √(1 − β₂ᵗ), gradients off.</summary>
    private protected abstract void Update(double biasCorrection1, double biasCorrection2Sqrt);

    /// <summary>Parameter <paramref name="i"/>'s moment buffers, made on first use.</summary>
    private protected (torch.Tensor Average, torch.Tensor Squares) Moments(int i, torch.Tensor parameter) =>
        (Average[i] ??= torch.zeros_like(parameter).DetachFromDisposeScope(), Squares[i] ??= torch.zeros_like(parameter).DetachFromDisposeScope());

    /// <summary>Frees the moment buffers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in Average.Concat(Squares)) t?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// Adam with decoupled weight decay, op for op as <c>torch.optim.AdamW</c> (PyTorch's defaults: learning rate 1e-3,
/// betas 0.9 and 0.999, ε 1e-8, weight decay 1e-2; no amsgrad). Each step: θ ← θ·(1 − lr·λ); m ← β₁m + (1 − β₁)g;
/// v ← β₂v + (1 − β₂)g²; θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε). Scalar-safe: every coefficient lives in a
/// <see cref="Scalar"/> held until the step ends (TorchSharp's own optimisers pass temporaries the garbage collector
/// can free while libtorch reads them).
/// </summary>
public sealed class AdamW : MomentOptimizer
{
    /// <summary>AdamW over <paramref name="parameters"/>, all with weight decay <paramref name="weightDecay"/>.</summary>
    public AdamW(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 1e-2)
        : this((parameters ?? throw new ArgumentNullException(nameof(parameters))).Select(p => new DecayedParameter(p, weightDecay)), learningRate, beta1, beta2, eps)
    {
    }

    /// <summary>AdamW over <paramref name="parameters"/>, each with its own weight decay (see <see cref="ParameterGroups"/>).</summary>
    public AdamW(IEnumerable<DecayedParameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
        : base(parameters, nameof(AdamW), learningRate, beta1, beta2, eps)
    {
    }

    private protected override void Update(double biasCorrection1, double biasCorrection2Sqrt)
    {
        using var beta1 = Beta1.ToScalar();
        using var oneMinusBeta1 = (1 - Beta1).ToScalar();
        using var beta2 = Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - Beta2).ToScalar();
        using var correction2 = biasCorrection2Sqrt.ToScalar();
        using var eps = Eps.ToScalar();
        using var one = 1.0.ToScalar(); // add_(Scalar) alone passes a temporary alpha of its own: both held here
        using var stepSize = (-(LearningRate / biasCorrection1)).ToScalar();
        for (var i = 0; i < Parameters.Count; i++)
        {
            var (parameter, weightDecay) = Parameters[i];
            using var grad = parameter.grad;
            if (grad is null) continue;
            if (weightDecay != 0)
            {
                using var shrink = (1 - LearningRate * weightDecay).ToScalar();
                parameter.mul_(shrink);
            }
            var (average, squares) = Moments(i, parameter);
            average.mul_(beta1).add_(grad, oneMinusBeta1);
            squares.mul_(beta2).addcmul_(grad, grad, oneMinusBeta2);
            using var root = squares.sqrt();
            using var denominator = root.div_(correction2).add_(eps, one);
            parameter.addcdiv_(average, denominator, stepSize);
        }
    }
}

/// <summary>
/// LAMB as timm's <c>Lamb</c> computes it, with its defaults (learning rate 1e-3, betas 0.9 and 0.999, ε 1e-6, weight
/// decay 0.01, bias correction, gradient averaging, the global gradient norm clipped to 1.0, no trust clipping). Each
/// step: the gradients divided by max(1, ‖g‖/maxGradNorm) over all parameters (in place, as timm does); m and v as
/// Adam's; u = m̂ / (√v̂ + ε) + λθ; where the parameter has weight decay (or <see cref="AlwaysAdapt"/>), u scaled by the
/// trust ratio ‖θ‖/‖u‖ (1 where either norm is 0, at most 1 with <see cref="TrustClip"/>); θ ← θ − lr·u. Scalar-safe as
/// <see cref="AdamW"/>.
/// </summary>
public sealed class Lamb : MomentOptimizer
{
    /// <summary>LAMB over <paramref name="parameters"/>, all with weight decay <paramref name="weightDecay"/>.</summary>
    public Lamb(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weightDecay = 0.01,
        double? maxGradNorm = 1.0, bool trustClip = false, bool alwaysAdapt = false)
        : this((parameters ?? throw new ArgumentNullException(nameof(parameters))).Select(p => new DecayedParameter(p, weightDecay)), learningRate, beta1, beta2, eps,
            maxGradNorm, trustClip, alwaysAdapt)
    {
    }

    /// <summary>LAMB over <paramref name="parameters"/>, each with its own weight decay (see <see cref="ParameterGroups"/>).</summary>
    public Lamb(IEnumerable<DecayedParameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
        double? maxGradNorm = 1.0, bool trustClip = false, bool alwaysAdapt = false)
        : base(parameters, nameof(Lamb), learningRate, beta1, beta2, eps)
    {
        if (maxGradNorm is { } max && !(max > 0)) throw new ArgumentOutOfRangeException(nameof(maxGradNorm), maxGradNorm, "must be positive, or null for no clipping");
        (MaxGradNorm, TrustClip, AlwaysAdapt) = (maxGradNorm, trustClip, alwaysAdapt);
    }

    /// <summary>The global gradient norm above which the gradients are scaled down (null: never).</summary>
    public double? MaxGradNorm { get; }

    /// <summary>Whether the trust ratio is clipped at 1 (LAMBC).</summary>
    public bool TrustClip { get; }

    /// <summary>Whether parameters without weight decay get the trust ratio too (timm's default: no).</summary>
    public bool AlwaysAdapt { get; }

    private protected override void Update(double biasCorrection1, double biasCorrection2Sqrt)
    {
        using var scope = torch.NewDisposeScope();
        var withGrad = Parameters.Select((p, i) => (p.Parameter, p.WeightDecay, Index: i, Grad: p.Parameter.grad)).Where(p => p.Grad is not null).ToList();
        if (withGrad.Count == 0) return;
        torch.Tensor? clip = null;
        if (MaxGradNorm is { } max)
        {
            var norms = torch.stack(withGrad.Select(p => Gradients.L2Norm(p.Grad!)).ToArray());
            using var maxScalar = max.ToScalar();
            using var one = 1.0.ToScalar();
            clip = Gradients.L2Norm(norms).div_(maxScalar).clamp_min_(one);
        }
        using var beta1 = Beta1.ToScalar();
        using var oneMinusBeta1 = (1 - Beta1).ToScalar();
        using var beta2 = Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - Beta2).ToScalar();
        using var correction1 = biasCorrection1.ToScalar();
        using var correction2 = biasCorrection2Sqrt.ToScalar();
        using var eps = Eps.ToScalar();
        using var unit = 1.0.ToScalar(); // add_(Scalar) alone passes a temporary alpha of its own
        using var step = (-LearningRate).ToScalar();
        using var zero = 0.0.ToScalar();
        foreach (var (parameter, weightDecay, i, g) in withGrad)
        {
            var grad = g!;
            if (clip is not null) grad.div_(clip);
            var (average, squares) = Moments(i, parameter);
            average.mul_(beta1).add_(grad, oneMinusBeta1);
            squares.mul_(beta2).addcmul_(grad, grad, oneMinusBeta2);
            var denominator = squares.sqrt().div_(correction2).add_(eps, unit);
            var update = average.div(correction1).div_(denominator);
            if (weightDecay != 0)
            {
                using var decay = weightDecay.ToScalar();
                update.add_(parameter, decay);
            }
            if (weightDecay != 0 || AlwaysAdapt)
            {
                var weightNorm = parameter.norm(2.0f);
                var updateNorm = update.norm(2.0f);
                var ones = torch.ones_like(weightNorm);
                var ratio = torch.where(weightNorm.gt(zero), torch.where(updateNorm.gt(zero), weightNorm / updateNorm, ones), ones);
                if (TrustClip) ratio = torch.minimum(ratio, ones);
                update.mul_(ratio);
            }
            parameter.add_(update, step);
        }
    }
}
