using System;
using TorchSharp;

namespace ResNetGen;

/// <summary>The run-time input check of generated networks, for what the build could not prove.</summary>
public static class NetworkInput
{
    /// <summary>
    /// Throws unless <paramref name="input"/> is [N, <paramref name="channels"/>, H, W]; <paramref name="method"/> names
    /// the call for the message (<c>ResNet50.forward</c>, <c>ResNet50.ForwardFeatures</c>).
    /// </summary>
    public static void Check(torch.Tensor input, int channels, string method)
    {
        if (input is null) throw new ArgumentNullException(nameof(input));
        if (input.dim() == 4 && input.shape[1] == channels) return;
        throw new ArgumentException(
            $"{method} expects a tensor of shape [N, {channels}, H, W], but got [{string.Join(", ", input.shape)}]. " +
            (input.dim() == 3 ? "Add the batch dimension with input.unsqueeze(0)." : $"Pass a batch of {channels}-channel images."),
            nameof(input));
    }
}
