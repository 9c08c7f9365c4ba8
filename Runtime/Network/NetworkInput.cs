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
    public static void Check(torch.Tensor input, int channels, string method) => Check(input, channels, method, null);

    /// <summary>
    /// As <see cref="Check(torch.Tensor, int, string)"/>, naming the one height and width <paramref name="size"/> in the
    /// expected shape where the caller accepts no other (and checking it).
    /// </summary>
    public static void Check(torch.Tensor input, int channels, string method, int? size)
    {
        if (input is null) throw new ArgumentNullException(nameof(input));
        if (input.dim() != 4 || input.shape[1] != channels)
            throw new ArgumentException(
                $"{method} expects a tensor of shape [N, {channels}, {(size is { } s ? $"{s}, {s}" : "H, W")}], but got [{string.Join(", ", input.shape)}]. " +
                (input.dim() == 3 ? "Add the batch dimension with input.unsqueeze(0)." : $"Pass a batch of {channels}-channel images."),
                nameof(input));
        CheckSize(size, input.shape[2], input.shape[3], method);
    }

    /// <summary>Throws unless a <paramref name="height"/>×<paramref name="width"/> input is the one <paramref name="size"/> accepted (none: any).</summary>
    public static void CheckSize(int? size, long height, long width, string method)
    {
        if (size is { } s && (height != s || width != s))
            throw new ArgumentException(
                $"{method} expects {s}×{s} pictures (the network's declared InputSize, which its shortcuts need), but got {height}×{width}. Resize them to {s}×{s}.", "input");
    }
}
