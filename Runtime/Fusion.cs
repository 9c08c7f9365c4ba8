using System;
using TorchSharp;
using TorchSharp.Modules;

namespace ResNetGen;

/// <summary>Batch-norm folding for inference, used by generated <c>FuseForInference</c> methods.</summary>
public static class Fusion
{
    /// <summary>
    /// Fills <paramref name="folded"/> (a convolution like <paramref name="conv"/>, with bias) with
    /// <paramref name="conv"/>'s weights scaled and shifted by <paramref name="norm"/>'s eval-mode transform, on
    /// <paramref name="conv"/>'s device and dtype, and returns it.
    /// </summary>
    public static Conv2d Fold(Conv2d conv, BatchNorm2d norm, Conv2d folded)
    {
        if (conv is null) throw new ArgumentNullException(nameof(conv));
        if (norm is null) throw new ArgumentNullException(nameof(norm));
        if (folded is null) throw new ArgumentNullException(nameof(folded));
        var weight = conv.weight ?? throw new ArgumentException("the convolution has no weight", nameof(conv));
        using var noGrad = torch.no_grad();
        folded.to(weight.dtype).to(weight.device);
        var (w, b) = torch.nn.utils.fuse_conv_bn_weights(weight, conv.bias, norm.running_mean!, norm.running_var!, norm.eps, norm.weight, norm.bias);
        folded.weight = w;
        folded.bias = b;
        folded.eval();
        return folded;
    }
}
