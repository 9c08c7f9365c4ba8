using System;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>
/// A convolution with the batch-norm after it folded in, for inference, kept in step with its sources: before each
/// use it compares the convolution's and the batch-norm's tensors (which tensor, its version counter, dtype and
/// device) and the batch-norm's eps with what it was folded from, and folds again when any differs. So a weight
/// loaded, edited in place, replaced, converted or moved after <c>FuseForInference</c> shows in the next forward
/// and export. Generated <c>FuseForInference</c> methods make one per convolution.
/// </summary>
public sealed class FoldedConvolution : IDisposable
{
    private readonly Conv2d _conv;
    private readonly BatchNorm2d _norm;
    private readonly Conv2d _folded;
    private Source[]? _sources;
    private double _eps;

    /// <summary>Folds <paramref name="norm"/> into <paramref name="conv"/>, in <paramref name="folded"/> (a like convolution with bias), on first use.</summary>
    public FoldedConvolution(Conv2d conv, BatchNorm2d norm, Conv2d folded)
    {
        _conv = conv ?? throw new ArgumentNullException(nameof(conv));
        _norm = norm ?? throw new ArgumentNullException(nameof(norm));
        _folded = folded ?? throw new ArgumentNullException(nameof(folded));
        _folded.eval();
    }

    /// <summary>How many times it has folded (for tests and diagnostics).</summary>
    public int Folds { get; private set; }

    /// <summary>The folded convolution, folded again first if its sources changed.</summary>
    public Conv2d Current
    {
        get
        {
            Refresh();
            return _folded;
        }
    }

    /// <summary>Runs the folded convolution on <paramref name="input"/>.</summary>
    public torch.Tensor forward(torch.Tensor input) => Current.forward(input);

    /// <summary>Folds again if the sources changed since the last fold; returns whether it did.</summary>
    public bool Refresh()
    {
        var now = Sources();
        if (_sources is not null && _eps == _norm.eps && Same(_sources, now)) return false;
        using (torch.no_grad())
        {
            var weight = _conv.weight ?? throw new InvalidOperationException("the convolution has no weight");
            var (w, b) = torch.nn.utils.fuse_conv_bn_weights(weight, _conv.bias, _norm.running_mean!, _norm.running_var!, _norm.eps, _norm.weight, _norm.bias);
            var (oldWeight, oldBias) = (_folded.weight, _folded.bias);
            _folded.weight = w;
            _folded.bias = b;
            oldWeight?.Dispose();
            oldBias?.Dispose();
        }
        _sources = now;
        _eps = _norm.eps;
        Folds++;
        return true;
    }

    /// <summary>Forgets what the fold was made from; the next use folds again.</summary>
    public void Release() => _sources = null;

    /// <summary>Calls <see cref="Release"/> on each fold.</summary>
    public static void ReleaseAll(FoldedConvolution[] folds)
    {
        foreach (var fold in folds ?? throw new ArgumentNullException(nameof(folds))) fold.Release();
    }

    /// <summary>Disposes each fold.</summary>
    public static void DisposeAll(FoldedConvolution[] folds)
    {
        foreach (var fold in folds ?? throw new ArgumentNullException(nameof(folds))) fold.Dispose();
    }

    /// <summary>Disposes the folded convolution (not its sources).</summary>
    public void Dispose()
    {
        _sources = null;
        _folded.Dispose();
    }

    private Source[] Sources() => new[]
    {
        Source.Of(_conv.weight), Source.Of(_conv.bias), Source.Of(_norm.weight), Source.Of(_norm.bias),
        Source.Of(_norm.running_mean), Source.Of(_norm.running_var),
    };

    private static bool Same(Source[] a, Source[] b)
    {
        for (var i = 0; i < a.Length; i++)
        {
            if (!a[i].Matches(b[i])) return false;
        }
        return true;
    }

    /// <summary>One source tensor as it was folded: the object itself (held, so its storage cannot be reused), its version, dtype and device.</summary>
    private readonly record struct Source(torch.Tensor? Tensor, long Version, torch.ScalarType Dtype, DeviceType Device, int DeviceIndex)
    {
        public static Source Of(torch.Tensor? tensor) => tensor is null
            ? default
            : new Source(tensor, LibTorchNative.Version(tensor), tensor.dtype, tensor.device_type, tensor.device_index);

        // Without a version counter (a libtorch that does not export it) nothing can prove a tensor unchanged: fold again.
        public bool Matches(Source other)
        {
            if (!ReferenceEquals(Tensor, other.Tensor)) return false;
            if (Tensor is null) return true;
            return Version >= 0 && Version == other.Version && Dtype == other.Dtype && Device == other.Device && DeviceIndex == other.DeviceIndex;
        }
    }
}
