using System;
using System.Linq;
using TorchSharp;

namespace ResNetGen;

/// <summary>How a generated network lays out its activations in memory while it computes.</summary>
public enum ActivationLayout
{
    /// <summary>
    /// The default: the input's own layout (NCHW for an ordinary tensor), as PyTorch, torchvision and a hand-written
    /// TorchSharp module compute.
    /// </summary>
    AsGiven = 0,

    /// <summary>
    /// Channels-last (NHWC strides, same shape), the user's explicit choice: libtorch's oneDNN CPU convolutions ran
    /// 1.1–1.4× faster on it where its kernels work. It is the path oneDNN gets wrong on CPUs that describe their caches
    /// incompletely (see <see cref="OneDnn"/>, which guards against that); run the sample's <c>doctor</c> command to
    /// learn whether this machine computes it correctly.
    /// </summary>
    ChannelsLast = 1,
}

/// <summary>Memory-layout helpers used by generated forwards. Shapes and values never change; only strides do.</summary>
public static class TensorLayout
{
    /// <summary>
    /// Whether <paramref name="tensor"/> is a 4-D tensor laid out channels-last: its memory is ordered N, H, W, C
    /// while its shape stays [N, C, H, W]. The strides must be exactly those of a packed NHWC tensor, as libtorch's
    /// convolutions require before they keep the layout (a one-channel NCHW tensor does not count).
    /// </summary>
    public static bool IsChannelsLast(torch.Tensor tensor)
    {
        if (tensor is null) throw new ArgumentNullException(nameof(tensor));
        return tensor.dim() == 4 && tensor.stride().SequenceEqual(ChannelsLastStrides(tensor.shape));
    }

    /// <summary>Whether a generated network computes in channels-last for this input under <paramref name="layout"/>.</summary>
    public static bool UsesChannelsLast(torch.Tensor input, ActivationLayout layout)
    {
        if (input is null) throw new ArgumentNullException(nameof(input));
        return input.dim() == 4 && layout == ActivationLayout.ChannelsLast;
    }

    /// <summary>
    /// The tensor a generated forward computes on: a channels-last copy of <paramref name="input"/> when
    /// <paramref name="layout"/> asks for one and the input is not channels-last already, otherwise a new handle on
    /// the input's own storage. Either way the caller owns (and disposes) the result, never the input.
    /// Differentiable: gradients flow back to <paramref name="input"/>.
    /// </summary>
    public static torch.Tensor ForCompute(torch.Tensor input, ActivationLayout layout)
    {
        if (!UsesChannelsLast(input, layout) || IsChannelsLast(input)) return input.alias();
        // Strides set explicitly rather than through permute().contiguous(), which leaves a one-channel tensor's
        // strides as they were (its memory order is already N, H, W, C) and libtorch would then compute in NCHW.
        var result = torch.empty_strided(input.shape, ChannelsLastStrides(input.shape), dtype: input.dtype, device: input.device);
        return result.copy_(input); // differentiable: the gradient flows back to the input
    }

    /// <summary>The strides of a packed channels-last tensor of shape [N, C, H, W].</summary>
    public static long[] ChannelsLastStrides(long[] shape)
    {
        if (shape is null) throw new ArgumentNullException(nameof(shape));
        if (shape.Length != 4) throw new ArgumentException($"channels-last needs 4 dimensions [N, C, H, W], not {shape.Length}", nameof(shape));
        var (c, h, w) = (shape[1], shape[2], shape[3]);
        return new[] { h * w * c, 1, w * c, c };
    }

    /// <summary>
    /// <paramref name="tensor"/> in the standard contiguous (NCHW) layout: itself when it already is, otherwise a
    /// contiguous copy, in which case <paramref name="tensor"/> is disposed. Generated <c>ForwardFeatures</c> uses it so
    /// that the stage outputs it hands out support <c>view</c> and raw data access.
    /// </summary>
    public static torch.Tensor ToContiguous(torch.Tensor tensor)
    {
        if (tensor is null) throw new ArgumentNullException(nameof(tensor));
        if (tensor.is_contiguous()) return tensor;
        var copy = tensor.contiguous();
        tensor.Dispose();
        return copy;
    }
}
