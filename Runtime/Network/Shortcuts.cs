using TorchSharp;

namespace ResNetGen;

/// <summary>The parameter-free shortcuts of the original ResNet paper (option A), used by generated forwards.</summary>
public static class Shortcuts
{
    /// <summary>
    /// Option A: <c>x[:, :, ::stride, ::stride]</c> (rounds up, like <c>MaxPool2d(1, stride)</c>) with
    /// <paramref name="padChannels"/> zero channels appended. Returns a new tensor; <paramref name="x"/> is untouched.
    /// </summary>
    public static torch.Tensor ZeroPad(torch.Tensor x, int stride, int padChannels)
    {
        if (stride == 1) return torch.nn.functional.pad(x, new long[] { 0, 0, 0, 0, 0, padChannels });
        using var rows = x.slice(2, 0, x.shape[2], stride);
        using var sampled = rows.slice(3, 0, x.shape[3], stride);
        return torch.nn.functional.pad(sampled, new long[] { 0, 0, 0, 0, 0, padChannels });
    }

    /// <summary>
    /// Option A with average pooling: <paramref name="padChannels"/> zero channels appended, then
    /// <c>AvgPool2d(2, 2)</c> where <paramref name="stride"/> is 2 (floors an odd size). An odd size is refused unless
    /// <paramref name="branchFloors"/> says the block's residual branch floors it too (anti-aliasing's average pool).
    /// </summary>
    public static torch.Tensor AvgPoolZeroPad(torch.Tensor x, int stride, int padChannels, bool branchFloors = false)
    {
        if (stride != 1 && !branchFloors && (x.shape[2] % stride != 0 || x.shape[3] % stride != 0))
            throw new System.ArgumentException(
                $"The AvgPoolZeroPad shortcut needs feature maps divisible by {stride}, but got {x.shape[2]}×{x.shape[3]}: " +
                "average pooling would floor it while the strided convolution rounds up. " +
                "Feed an input whose size stays even through every stage (the declared InputSize is checked at build time), or use Shortcut.ZeroPad.",
                nameof(x));
        var padded = torch.nn.functional.pad(x, new long[] { 0, 0, 0, 0, 0, padChannels });
        if (stride == 1) return padded;
        using (padded) return torch.nn.functional.avg_pool2d(padded, stride, stride);
    }

    /// <summary>
    /// The pool of ResNet-D's avg-down shortcut (timm's <c>downsample_avg</c>): at <paramref name="stride"/> 2,
    /// <c>AvgPool2d(2, 2, ceil_mode: true, count_include_pad: false)</c> (an odd size rounds up, as the strided convolution
    /// does); at stride 1 (a dilated stage), timm's <c>AvgPool2dSame(2, 1)</c>: one zero row and column appended, then a
    /// 2×2 average that counts them. Returns a new tensor; <paramref name="x"/> is untouched.
    /// </summary>
    public static torch.Tensor AvgDown(torch.Tensor x, int stride)
    {
        if (stride == 2) return torch.nn.functional.avg_pool2d(x, 2, 2, ceil_mode: true, count_include_pad: false);
        using var padded = torch.nn.functional.pad(x, new long[] { 0, 1, 0, 1 });
        return torch.nn.functional.avg_pool2d(padded, 2, 1, ceil_mode: true, count_include_pad: false);
    }
}
