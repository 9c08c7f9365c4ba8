using System;
using System.Collections.Generic;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>
/// A convolution with the batch-norm after it folded in, for inference, kept in step with its sources: before each
/// use it compares the convolution's and the batch-norm's tensors (which tensor, its version counter, dtype and
/// device) and the batch-norm's eps with what it was folded from, and folds again when any differs. So a weight
/// loaded, edited in place, replaced, converted or moved after <c>FuseForInference</c> shows in the next forward
/// and export. A weight-standardised convolution (timm's <c>StdConv2d</c>) folds its standardisation too, with or
/// without a batch-norm: the standardised weight is computed once per change instead of at every forward. A
/// generated network's <see cref="FoldSet"/> makes one per convolution, on first use.
/// </summary>
public sealed class FoldedConvolution : IDisposable
{
    private readonly Conv2d _conv;
    private readonly BatchNorm2d? _norm;
    private readonly double _standardizeEps;
    private torch.Tensor? _weight;
    private torch.Tensor? _bias;
    private TensorStamp[]? _sources;
    private double _eps;

    /// <summary>Folds <paramref name="norm"/> into <paramref name="conv"/> on first use.</summary>
    public FoldedConvolution(Conv2d conv, BatchNorm2d norm) : this(conv, norm ?? throw new ArgumentNullException(nameof(norm)), 0)
    {
    }

    /// <summary>
    /// Folds a weight-standardised convolution: its weight standardised with <paramref name="standardizeEps"/> (0: a plain
    /// convolution), then <paramref name="norm"/>, if any, folded in. Without a norm the bias is the convolution's, or zeros.
    /// </summary>
    public FoldedConvolution(Conv2d conv, BatchNorm2d? norm, double standardizeEps)
    {
        _conv = conv ?? throw new ArgumentNullException(nameof(conv));
        if (standardizeEps < 0 || double.IsNaN(standardizeEps)) throw new ArgumentOutOfRangeException(nameof(standardizeEps), standardizeEps, "an ε of 0 (plain) or more");
        if (norm is null && standardizeEps == 0) throw new ArgumentException("nothing to fold: no batch-norm and no weight standardisation", nameof(norm));
        _norm = norm;
        _standardizeEps = standardizeEps;
    }

    /// <summary>How many times it has folded (for tests and diagnostics).</summary>
    public int Folds { get; private set; }

    /// <summary>The convolution folded into.</summary>
    public Conv2d Convolution => _conv;

    /// <summary>The batch-norm folded in, if any.</summary>
    public BatchNorm2d? Norm => _norm;

    /// <summary>The ε of the weight standardisation folded in; 0 for a plain convolution.</summary>
    public double StandardizeEps => _standardizeEps;

    /// <summary>The folded weight and bias, folded again first if the sources changed.</summary>
    public (torch.Tensor Weight, torch.Tensor Bias) Current
    {
        get
        {
            Refresh();
            return (_weight!, _bias!);
        }
    }

    /// <summary>Runs the folded convolution on <paramref name="input"/>: the convolution's own geometry, the folded weight and bias.</summary>
    public torch.Tensor forward(torch.Tensor input) => forward(input, null);

    /// <summary>
    /// As <see cref="forward(torch.Tensor)"/> in a mixed-precision pass (none: exactly that): the fold is made in float32 as
    /// always, and its weight and bias are cast to the low precision once per pass.
    /// </summary>
    public torch.Tensor forward(torch.Tensor input, Autocast? pass)
    {
        var (weight, bias) = Current;
        if (pass is not null) return pass.Conv2d(input, pass.Weight(weight), bias, _conv, "folded conv2d");
        ConvolutionTrace.Record(input, _conv, "folded conv2d");
        return torch.nn.functional.conv2d(input, weight, bias, _conv.stride, _conv.padding, _conv.dilation, _conv.groups);
    }

    /// <summary>Folds again if the sources changed since the last fold; returns whether it did.</summary>
    public bool Refresh()
    {
        var now = Sources();
        var normEps = _norm?.eps ?? 0;
        if (_sources is not null && _eps == normEps && Same(_sources, now)) return false;
        using (torch.no_grad())
        {
            var weight = _conv.weight ?? throw new InvalidOperationException("the convolution has no weight");
            using var standardized = _standardizeEps > 0 ? Steps.StandardizeWeight(weight, _standardizeEps) : null;
            var source = standardized ?? weight;
            var (w, b) = _norm is null
                ? (source.detach().clone(), _conv.bias is { } convBias ? convBias.detach().clone() : torch.zeros(weight.shape[0], weight.dtype, weight.device))
                : Fold(source, _conv.bias, _norm.running_mean!, _norm.running_var!, _norm.eps, _norm.weight, _norm.bias);
            var (oldWeight, oldBias) = (_weight, _bias);
            // The fold outlives the forward that made it: out of any dispose scope the caller runs it in (a forward inside
            // torch.NewDisposeScope() would otherwise free the cached fold at the scope's end, and the next one fail).
            _weight = w.DetachFromDisposeScope();
            _bias = b.DetachFromDisposeScope();
            oldWeight?.Dispose();
            oldBias?.Dispose();
        }
        _sources = now;
        _eps = normEps;
        Folds++;
        return true;
    }

    /// <summary>
    /// PyTorch's <c>fuse_conv_bn_weights</c>, op for op: w·γ/√(σ²+ε) and (b − μ)/√(σ²+ε)·γ + β. Written here rather than
    /// called from TorchSharp, whose version passes ε as a temporary scalar the garbage collector may finalize while
    /// libtorch still reads it (seen as an intermittent "Expected false to be true" in Scalar::toFloat); every scalar
    /// and intermediate here is held until the fold is done, and disposed then.
    /// </summary>
    internal static (torch.Tensor Weight, torch.Tensor Bias) Fold(torch.Tensor convWeight, torch.Tensor? convBias, torch.Tensor mean,
        torch.Tensor variance, double eps, torch.Tensor? gamma, torch.Tensor? beta)
    {
        using var one = 1.ToScalar();
        using var minusOne = (-1).ToScalar();
        using var epsilon = torch.tensor(eps, dtype: variance.dtype, device: variance.device);
        using var shifted = variance.add(epsilon, one);
        using var rsqrt = shifted.rsqrt();
        using var scale = gamma is null ? rsqrt.alias() : gamma.mul(rsqrt);
        using var column = scale.reshape(-1, 1, 1, 1);
        using var weight = convWeight.mul(column);
        using var bias = convBias is null ? torch.zeros_like(mean) : convBias.detach();
        using var centred = bias.add(mean, minusOne); // b − μ, as sub computes it
        using var normalised = centred.mul(rsqrt);
        using var scaled = gamma is null ? normalised.alias() : normalised.mul(gamma);
        using var shiftedBias = beta is null ? scaled.alias() : scaled.add(beta, one);
        return (As(weight, convWeight.dtype), As(shiftedBias, bias.dtype));

        static torch.Tensor As(torch.Tensor t, torch.ScalarType dtype) => t.dtype == dtype ? t.detach() : t.to(dtype);
    }

    /// <summary>Forgets what the fold was made from; the next use folds again.</summary>
    public void Release() => _sources = null;

    /// <summary>Disposes the folded weight and bias (not the sources).</summary>
    public void Dispose()
    {
        _sources = null;
        _weight?.Dispose();
        _bias?.Dispose();
        _weight = _bias = null;
    }

    private TensorStamp[] Sources() => new[]
    {
        TensorStamp.Of(_conv.weight), TensorStamp.Of(_conv.bias), TensorStamp.Of(_norm?.weight), TensorStamp.Of(_norm?.bias),
        TensorStamp.Of(_norm?.running_mean), TensorStamp.Of(_norm?.running_var),
    };

    private static bool Same(TensorStamp[] a, TensorStamp[] b) => TensorStamp.FirstChange(a, b) < 0;

}

/// <summary>
/// One tensor as something was made from it: the object itself (held, so its storage cannot be reused), its version
/// counter, dtype and device. What folds and engines compare to know their sources unchanged.
/// </summary>
internal readonly record struct TensorStamp(torch.Tensor? Tensor, long Version, torch.ScalarType Dtype, DeviceType Device, int DeviceIndex)
{
    public static TensorStamp Of(torch.Tensor? tensor) => tensor is null
        ? default
        : new TensorStamp(tensor, LibTorchNative.Version(tensor), tensor.dtype, tensor.device_type, tensor.device_index);

    // Without a version counter (a libtorch that does not export it) nothing can prove a tensor unchanged: not the same.
    public bool Matches(TensorStamp other)
    {
        if (!ReferenceEquals(Tensor, other.Tensor)) return false;
        if (Tensor is null) return true;
        return Version >= 0 && Version == other.Version && Dtype == other.Dtype && Device == other.Device && DeviceIndex == other.DeviceIndex;
    }

    /// <summary>What changed between <paramref name="then"/> and <paramref name="now"/>, in words, for an error message.</summary>
    public static string Describe(TensorStamp then, TensorStamp now) =>
        !ReferenceEquals(then.Tensor, now.Tensor) ? "replaced by another tensor"
        : then.Dtype != now.Dtype ? $"converted from {then.Dtype} to {now.Dtype}"
        : then.Device != now.Device || then.DeviceIndex != now.DeviceIndex ? "moved to another device"
        : now.Version < 0 ? "not provably unchanged (this libtorch does not export the version counter)"
        : "changed in place (loaded, edited or trained)";

    /// <summary>The index of the first stamp that differs, or -1 where all match (arrays of different lengths differ at the end of the shorter).</summary>
    public static int FirstChange(TensorStamp[] a, TensorStamp[] b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++)
        {
            if (!a[i].Matches(b[i])) return i;
        }
        return a.Length == b.Length ? -1 : n;
    }
}

/// <summary>
/// A generated network's folds after <c>FuseForInference</c>: one <see cref="FoldedConvolution"/> per convolution,
/// made the first time a forward or an export asks for it, so the network declares no field per fold.
/// </summary>
public sealed class FoldSet : IDisposable
{
    private readonly Dictionary<Conv2d, FoldedConvolution> _folds = new(ReferenceEqualityComparer.Instance);

    /// <summary>The folds made so far, in the order first used.</summary>
    public IReadOnlyCollection<FoldedConvolution> Folds => _folds.Values;

    /// <summary>The fold of <paramref name="norm"/> into <paramref name="conv"/>.</summary>
    public FoldedConvolution For(Conv2d conv, BatchNorm2d norm) => For(conv, norm, 0);

    /// <summary>The fold of a convolution weight-standardised with <paramref name="standardizeEps"/> (0: plain) and of <paramref name="norm"/> (if any).</summary>
    public FoldedConvolution For(Conv2d conv, BatchNorm2d? norm, double standardizeEps)
    {
        if (!_folds.TryGetValue(conv, out var fold)) _folds.Add(conv, fold = new FoldedConvolution(conv, norm, standardizeEps));
        else if (!ReferenceEquals(fold.Norm, norm) || fold.StandardizeEps != standardizeEps)
            throw new InvalidOperationException("a convolution is folded two different ways");
        return fold;
    }

    /// <summary>Runs <paramref name="conv"/> with <paramref name="norm"/> folded in on <paramref name="input"/>.</summary>
    public torch.Tensor Apply(torch.Tensor input, Conv2d conv, BatchNorm2d norm) => For(conv, norm).forward(input);

    /// <summary>As <see cref="Apply(torch.Tensor, Conv2d, BatchNorm2d)"/> in a mixed-precision pass (none: exactly that).</summary>
    public torch.Tensor Apply(torch.Tensor input, Conv2d conv, BatchNorm2d norm, Autocast? pass) => For(conv, norm).forward(input, pass);

    /// <summary>Runs the weight-standardised <paramref name="conv"/>, with <paramref name="norm"/> (if any) folded in, on <paramref name="input"/>.</summary>
    public torch.Tensor Apply(torch.Tensor input, Conv2d conv, BatchNorm2d? norm, double standardizeEps) => For(conv, norm, standardizeEps).forward(input);

    /// <summary>As <see cref="Apply(torch.Tensor, Conv2d, BatchNorm2d?, double)"/> in a mixed-precision pass (none: exactly that).</summary>
    public torch.Tensor Apply(torch.Tensor input, Conv2d conv, BatchNorm2d? norm, double standardizeEps, Autocast? pass) =>
        For(conv, norm, standardizeEps).forward(input, pass);

    /// <summary>Makes every fold fold again before its next use (training changes what they fold).</summary>
    public void ReleaseAll()
    {
        foreach (var fold in _folds.Values) fold.Release();
    }

    /// <summary>Disposes every fold's weight and bias.</summary>
    public void Dispose()
    {
        foreach (var fold in _folds.Values) fold.Dispose();
        _folds.Clear();
    }
}
