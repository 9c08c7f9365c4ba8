using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen.Training;

/// <summary>The picture operations of torchvision's TrivialAugmentWide and RandAugment.</summary>
public enum AugmentOp
{
    /// <summary>Unchanged.</summary>
    Identity,
    /// <summary>Horizontal shear by atan(magnitude), about the top-left corner.</summary>
    ShearX,
    /// <summary>Vertical shear by atan(magnitude), about the top-left corner.</summary>
    ShearY,
    /// <summary>Horizontal shift by the magnitude's integer part, in pixels.</summary>
    TranslateX,
    /// <summary>Vertical shift by the magnitude's integer part, in pixels.</summary>
    TranslateY,
    /// <summary>Rotation by the magnitude in degrees (counter-clockwise), about the centre.</summary>
    Rotate,
    /// <summary>Brightness × (1 + magnitude).</summary>
    Brightness,
    /// <summary>Saturation × (1 + magnitude) (a grayscale picture is unchanged).</summary>
    Color,
    /// <summary>Contrast × (1 + magnitude) about the mean grey.</summary>
    Contrast,
    /// <summary>Sharpness × (1 + magnitude) against a smoothed copy.</summary>
    Sharpness,
    /// <summary>Keeps the magnitude's number of high bits.</summary>
    Posterize,
    /// <summary>Inverts the values at or above the magnitude.</summary>
    Solarize,
    /// <summary>Stretches each channel to the full range.</summary>
    AutoContrast,
    /// <summary>Equalises each channel's histogram.</summary>
    Equalize,
}

/// <summary>
/// The operations of torchvision's automatic augmentations on uint8 picture tensors [C, H, W], op for op as
/// torchvision 0.14's tensor functions compute them (nearest interpolation, pixels shifted in from outside are 0):
/// affine grids and <c>grid_sample</c> for the geometric ones, blends in float32 truncated back to bytes for the colour
/// ones, bit masks, histograms.
/// </summary>
public static class AugmentOps
{
    /// <summary>The operations in torchvision's order (its augmentation spaces list them so).</summary>
    public static readonly IReadOnlyList<AugmentOp> All = Enum.GetValues<AugmentOp>();

    /// <summary><paramref name="op"/> at <paramref name="magnitude"/> on <paramref name="image"/> (uint8 [C, H, W]); a new tensor.</summary>
    public static torch.Tensor Apply(torch.Tensor image, AugmentOp op, double magnitude)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.dtype != torch.ScalarType.Byte || image.dim() != 3)
            throw new ArgumentException($"augmentation works on uint8 pictures [C, H, W], not {image.dtype} [{string.Join(", ", image.shape)}].", nameof(image));
        var (height, width) = (image.shape[1], image.shape[2]);
        using var scope = torch.NewDisposeScope();
        var result = op switch
        {
            AugmentOp.Identity => image.clone(),
            AugmentOp.ShearX => Affine(image, InverseAffine(-0.5 * width, -0.5 * height, 0, 0, 0, Degrees(Math.Atan(magnitude)), 0)),
            AugmentOp.ShearY => Affine(image, InverseAffine(-0.5 * width, -0.5 * height, 0, 0, 0, 0, Degrees(Math.Atan(magnitude)))),
            AugmentOp.TranslateX => Affine(image, InverseAffine(0, 0, 0, (int)magnitude, 0, 0, 0)),
            AugmentOp.TranslateY => Affine(image, InverseAffine(0, 0, 0, 0, (int)magnitude, 0, 0)),
            AugmentOp.Rotate => Affine(image, InverseAffine(0, 0, -magnitude, 0, 0, 0, 0)),
            AugmentOp.Brightness => Blend(image, torch.zeros_like(image), 1 + magnitude),
            AugmentOp.Color => image.shape[0] == 1 ? image.clone() : Blend(image, Grayscale(image), 1 + magnitude),
            AugmentOp.Contrast => Blend(image, (image.shape[0] == 3 ? Grayscale(image) : image).to(torch.float32).mean(new long[] { -3, -2, -1 }, keepdim: true), 1 + magnitude),
            AugmentOp.Sharpness => height <= 2 || width <= 2 ? image.clone() : Blend(image, Blurred(image), 1 + magnitude),
            AugmentOp.Posterize => Posterize(image, (int)magnitude),
            AugmentOp.Solarize => Solarize(image, magnitude),
            AugmentOp.AutoContrast => AutoContrast(image),
            AugmentOp.Equalize => torch.stack(Enumerable.Range(0, (int)image.shape[0]).Select(c => EqualizeChannel(image[c])).ToArray()),
            _ => throw new ArgumentOutOfRangeException(nameof(op), op, "not an augmentation operation"),
        };
        return result.MoveToOuterDisposeScope();
    }

    private static double Degrees(double radians) => radians * (180.0 / Math.PI);

    private static double Radians(double degrees) => degrees * (Math.PI / 180.0);

    /// <summary>torchvision's <c>_get_inverse_affine_matrix</c> (scale 1) about a centre given relative to the picture's middle.</summary>
    private static double[] InverseAffine(double cx, double cy, double angle, double tx, double ty, double shearX, double shearY)
    {
        var rot = Radians(angle);
        var sx = Radians(shearX);
        var sy = Radians(shearY);
        var a = Math.Cos(rot - sy) / Math.Cos(sy);
        var b = -Math.Cos(rot - sy) * Math.Tan(sx) / Math.Cos(sy) - Math.Sin(rot);
        var c = Math.Sin(rot - sy) / Math.Cos(sy);
        var d = -Math.Sin(rot - sy) * Math.Tan(sx) / Math.Cos(sy) + Math.Cos(rot);
        var m = new[] { d, -b, 0.0, -c, a, 0.0 };
        m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
        m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
        m[2] += cx;
        m[5] += cy;
        return m;
    }

    /// <summary>torchvision's tensor <c>affine</c>: its grid (<c>_gen_affine_grid</c>) and <c>grid_sample</c>, nearest, zeros outside, rounded back to bytes.</summary>
    private static torch.Tensor Affine(torch.Tensor image, double[] matrix)
    {
        var (h, w) = (image.shape[1], image.shape[2]);
        var theta = torch.tensor(matrix.Select(v => (float)v).ToArray(), new long[] { 1, 2, 3 });
        var grid = torch.empty(1, h, w, 3, torch.float32);
        grid[.., .., .., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1, w, torch.float32), false);
        grid[.., .., .., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1, h, torch.float32).unsqueeze_(-1), false);
        using var one = 1.0.ToScalar();
        grid[.., .., .., 2].fill_(one);
        var rescaled = theta.transpose(1, 2).div(torch.tensor(new[] { (float)(0.5 * w), (float)(0.5 * h) }));
        var sampling = grid.view(1, h * w, 3).bmm(rescaled).view(1, h, w, 2);
        var sampled = torch.nn.functional.grid_sample(image.unsqueeze(0).to(torch.float32), sampling,
            torch.GridSampleMode.Nearest, torch.GridSamplePaddingMode.Zeros, false);
        return sampled.squeeze(0).round().to(torch.uint8);
    }

    /// <summary>torchvision's <c>_blend</c> of uint8 pictures: (r·a + (1 − r)·b) in float32, clamped to [0, 255], truncated to bytes.</summary>
    private static torch.Tensor Blend(torch.Tensor first, torch.Tensor second, double ratio)
    {
        using var r = ratio.ToScalar();
        using var rest = (1.0 - ratio).ToScalar();
        using var one = 1.0.ToScalar();
        using var zero = 0.0.ToScalar();
        using var bound = 255.0.ToScalar();
        return first.mul(r).add_(second.mul(rest), one).clamp_(zero, bound).to(first.dtype);
    }

    /// <summary>torchvision's <c>rgb_to_grayscale</c> (0.2989 R + 0.587 G + 0.114 B, truncated), one channel; a one-channel picture copied.</summary>
    private static torch.Tensor Grayscale(torch.Tensor image)
    {
        if (image.shape[0] != 3) return image.clone();
        using var wr = 0.2989.ToScalar();
        using var wg = 0.587.ToScalar();
        using var wb = 0.114.ToScalar();
        using var one = 1.0.ToScalar();
        return image[0].mul(wr).add_(image[1].mul(wg), one).add_(image[2].mul(wb), one).to(image.dtype).unsqueeze(0);
    }

    /// <summary>torchvision's <c>_blurred_degenerate_image</c>: the interior smoothed by [1 1 1; 1 5 1; 1 1 1]/13 and rounded, the border kept.</summary>
    private static torch.Tensor Blurred(torch.Tensor image)
    {
        OneDnn.EnsureChecked(); // a convolution outside any network: the oneDNN check a generated network runs first (see OneDnn)
        var channels = image.shape[0];
        var kernel = torch.ones(3, 3, torch.float32);
        using var five = 5.0.ToScalar();
        kernel[1, 1].fill_(five);
        kernel = kernel.div(kernel.sum()).expand(channels, 1, 3, 3);
        var smoothed = torch.nn.functional.conv2d(image.unsqueeze(0).to(torch.float32), kernel, null, null, null, null, channels).squeeze(0).round().to(torch.uint8);
        var result = image.clone();
        result[.., 1..^1, 1..^1].copy_(smoothed, false);
        return result;
    }

    private static torch.Tensor Posterize(torch.Tensor image, int bits)
    {
        if (bits is < 0 or > 8) throw new ArgumentOutOfRangeException(nameof(bits), bits, "posterize keeps 0 to 8 bits");
        var mask = torch.tensor((byte)(256 - (1 << (8 - bits))), torch.uint8);
        return image.bitwise_and(mask);
    }

    private static torch.Tensor Solarize(torch.Tensor image, double threshold)
    {
        using var t = threshold.ToScalar();
        using var top = 255.ToScalar();
        using var minusOne = (-1).ToScalar(); // a - b as a + (−1)·b with the scalar held (TorchSharp's sub may make its own)
        var inverted = torch.full_like(image, top).add_(image, minusOne);
        return torch.where(image.ge(t), inverted, image);
    }

    private static torch.Tensor AutoContrast(torch.Tensor image)
    {
        using var bound = 255.0.ToScalar();
        using var zero = 0.0.ToScalar();
        using var minusOne = (-1.0).ToScalar(); // a − b as a + (−1)·b with the scalar held
        var minimum = image.amin(new long[] { -2, -1 }, true).to(torch.float32);
        var maximum = image.amax(new long[] { -2, -1 }, true).to(torch.float32);
        var scale = torch.full_like(minimum, bound).div_(maximum.add(minimum, minusOne));
        var flat = scale.isfinite().logical_not();
        minimum = torch.where(flat, torch.zeros_like(minimum), minimum);
        scale = torch.where(flat, torch.ones_like(scale), scale);
        return image.to(torch.float32).add_(minimum, minusOne).mul_(scale).clamp_(zero, bound).to(torch.uint8);
    }

    /// <summary>torchvision's <c>_scale_channel</c>: the histogram's cumulative lookup table, as PIL's equalize.</summary>
    private static torch.Tensor EqualizeChannel(torch.Tensor channel)
    {
        var histogram = torch.bincount(channel.reshape(-1), null, 256);
        using var zero = 0L.ToScalar();
        var nonzero = histogram.masked_select(histogram.ne(zero));
        var step = nonzero.numel() <= 1 ? 0 : nonzero[..^1].sum().item<long>() / 255;
        if (step == 0) return channel.clone();
        using var half = (step / 2).ToScalar();
        using var stepScalar = step.ToScalar();
        using var one = 1L.ToScalar();
        using var top = 255L.ToScalar();
        var lut = histogram.cumsum(0).add_(half, one).div_(stepScalar, torch.RoundingMode.floor);
        lut = torch.nn.functional.pad(lut, new long[] { 1, 0 }, PaddingModes.Constant, 0)[..^1].clamp_(zero, top);
        return lut.index_select(0, channel.reshape(-1).to(torch.int64)).view_as(channel).to(torch.uint8);
    }

    /// <summary>A magnitude table as torchvision makes it (float32 values).</summary>
    internal static double[] Linspace(double start, double end, int bins)
    {
        using var values = torch.linspace(start, end, bins, torch.float32);
        return values.data<float>().ToArray().Select(v => (double)v).ToArray();
    }

    /// <summary>Posterize's bits: 8 − round(i / ((bins − 1) / <paramref name="levels"/>)), in float32 as torchvision.</summary>
    internal static double[] PosterizeBits(int bins, double levels)
    {
        using var index = torch.arange(bins, torch.int64);
        using var divisor = ((bins - 1) / levels).ToScalar();
        using var bits = index.div(divisor).round();
        return bits.data<float>().ToArray().Select(v => 8 - (double)(int)v).ToArray();
    }
}

/// <summary>
/// An automatic augmentation of a batch of uint8 pictures [N, C, H, W]: each picture gets its own operations, drawn from
/// the caller's generator in torchvision's order of draws (so with a generator seeded as torchvision's global one, the
/// same operations and magnitudes).
/// </summary>
public abstract class AutoAugment
{
    /// <summary>Augments every picture of <paramref name="images"/>; a new tensor.</summary>
    public torch.Tensor Apply(torch.Tensor images, torch.Generator generator)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(generator);
        if (images.dtype != torch.ScalarType.Byte || images.dim() != 4)
            throw new ArgumentException($"augmentation works on uint8 pictures [N, C, H, W], not {images.dtype} [{string.Join(", ", images.shape)}].", nameof(images));
        using var scope = torch.NewDisposeScope();
        var pictures = Enumerable.Range(0, (int)images.shape[0]).Select(i => AugmentOne(images[i], generator)).ToArray();
        return torch.stack(pictures).MoveToOuterDisposeScope();
    }

    /// <summary>One picture [C, H, W].</summary>
    public abstract torch.Tensor AugmentOne(torch.Tensor image, torch.Generator generator);

    private protected static long Draw(long high, torch.Generator generator)
    {
        using var drawn = torch.randint(high, new long[] { 1 }, torch.int64, generator: generator);
        return drawn.item<long>();
    }

    private protected static bool Signed(AugmentOp op) => op is not (AugmentOp.Identity or AugmentOp.Posterize or AugmentOp.Solarize or AugmentOp.AutoContrast or AugmentOp.Equalize);

    private protected static bool HasMagnitude(AugmentOp op) => op is not (AugmentOp.Identity or AugmentOp.AutoContrast or AugmentOp.Equalize);
}

/// <summary>
/// torchvision's <c>TrivialAugmentWide</c> (Müller and Hutter 2021): one operation a picture, chosen uniformly, at a
/// magnitude drawn uniformly from 31 bins of its wide range (shear to 0.99, translation to 32 pixels, rotation to 135°,
/// the colour factors to ±0.99, posterize to 2 bits, solarize down to 0), a random sign where it has one.
/// </summary>
public sealed class TrivialAugmentWide : AutoAugment
{
    private readonly Dictionary<AugmentOp, double[]> _magnitudes;

    /// <param name="bins">Magnitude bins (torchvision's default 31).</param>
    public TrivialAugmentWide(int bins = 31)
    {
        if (bins < 2) throw new ArgumentOutOfRangeException(nameof(bins), bins, "needs at least 2 bins");
        Bins = bins;
        var colour = AugmentOps.Linspace(0, 0.99, bins);
        _magnitudes = new Dictionary<AugmentOp, double[]>
        {
            [AugmentOp.ShearX] = colour, [AugmentOp.ShearY] = colour,
            [AugmentOp.TranslateX] = AugmentOps.Linspace(0, 32, bins), [AugmentOp.TranslateY] = AugmentOps.Linspace(0, 32, bins),
            [AugmentOp.Rotate] = AugmentOps.Linspace(0, 135, bins),
            [AugmentOp.Brightness] = colour, [AugmentOp.Color] = colour, [AugmentOp.Contrast] = colour, [AugmentOp.Sharpness] = colour,
            [AugmentOp.Posterize] = AugmentOps.PosterizeBits(bins, 6), [AugmentOp.Solarize] = AugmentOps.Linspace(255, 0, bins),
        };
    }

    /// <summary>Magnitude bins.</summary>
    public int Bins { get; }

    /// <inheritdoc />
    public override torch.Tensor AugmentOne(torch.Tensor image, torch.Generator generator)
    {
        var op = AugmentOps.All[(int)Draw(AugmentOps.All.Count, generator)];
        var magnitude = HasMagnitude(op) ? _magnitudes[op][Draw(Bins, generator)] : 0.0;
        if (Signed(op) && Draw(2, generator) == 1) magnitude = -magnitude;
        return AugmentOps.Apply(image, op, magnitude);
    }
}

/// <summary>
/// torchvision's <c>RandAugment</c> (Cubuk et al. 2020): <see cref="Operations"/> operations a picture, each chosen
/// uniformly, all at the fixed <see cref="Magnitude"/> bin of their ranges (shear to 0.3, translation to 150/331 of the
/// side, rotation to 30°, colour factors to ±0.9, posterize to 4 bits, solarize down to 0), a random sign where it has one.
/// </summary>
public sealed class RandAugment : AutoAugment
{
    /// <param name="operations">Operations a picture (torchvision's default 2).</param>
    /// <param name="magnitude">The magnitude bin (default 9 of 31).</param>
    /// <param name="bins">Magnitude bins.</param>
    public RandAugment(int operations = 2, int magnitude = 9, int bins = 31)
    {
        if (operations < 1) throw new ArgumentOutOfRangeException(nameof(operations), operations, "at least one operation");
        if (bins < 2) throw new ArgumentOutOfRangeException(nameof(bins), bins, "needs at least 2 bins");
        if (magnitude < 0 || magnitude >= bins) throw new ArgumentOutOfRangeException(nameof(magnitude), magnitude, $"a bin from 0 to {bins - 1}");
        (Operations, Magnitude, Bins) = (operations, magnitude, bins);
        double At(double end) => AugmentOps.Linspace(0, end, bins)[magnitude];
        var (shear, colour) = (At(0.3), At(0.9));
        _magnitudes = new Dictionary<AugmentOp, double>
        {
            [AugmentOp.ShearX] = shear, [AugmentOp.ShearY] = shear, [AugmentOp.Rotate] = At(30),
            [AugmentOp.Brightness] = colour, [AugmentOp.Color] = colour, [AugmentOp.Contrast] = colour, [AugmentOp.Sharpness] = colour,
            [AugmentOp.Posterize] = AugmentOps.PosterizeBits(bins, 4)[magnitude], [AugmentOp.Solarize] = AugmentOps.Linspace(255, 0, bins)[magnitude],
        };
    }

    // The magnitudes at this bin, made once (translations once per picture side): not a linspace per picture.
    private readonly Dictionary<AugmentOp, double> _magnitudes;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, double> _translations = new();

    /// <summary>Operations a picture.</summary>
    public int Operations { get; }

    /// <summary>The magnitude bin.</summary>
    public int Magnitude { get; }

    /// <summary>Magnitude bins.</summary>
    public int Bins { get; }

    /// <summary>The magnitude of <paramref name="op"/> at this bin for a picture of <paramref name="height"/>×<paramref name="width"/>.</summary>
    public double MagnitudeOf(AugmentOp op, long height, long width) => op switch
    {
        AugmentOp.TranslateX => Translation(width),
        AugmentOp.TranslateY => Translation(height),
        _ => _magnitudes.GetValueOrDefault(op),
    };

    private double Translation(long side) => _translations.GetOrAdd(side, s => AugmentOps.Linspace(0, 150.0 / 331.0 * s, Bins)[Magnitude]);

    /// <inheritdoc />
    public override torch.Tensor AugmentOne(torch.Tensor image, torch.Generator generator)
    {
        using var scope = torch.NewDisposeScope();
        var current = image;
        for (var i = 0; i < Operations; i++)
        {
            var op = AugmentOps.All[(int)Draw(AugmentOps.All.Count, generator)];
            var magnitude = MagnitudeOf(op, image.shape[1], image.shape[2]);
            if (Signed(op) && Draw(2, generator) == 1) magnitude = -magnitude;
            current = AugmentOps.Apply(current, op, magnitude);
        }
        return current.MoveToOuterDisposeScope(); // at least one operation: a new tensor
    }
}
