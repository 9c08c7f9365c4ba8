using System;

namespace ResNetGen.Sample;

/// <summary>
/// Resizing as PIL's <c>Image.resize</c> does it with <c>BILINEAR</c> or <c>BICUBIC</c> — what torchvision's and timm's
/// eval transforms call on a PIL picture — so that a picture becomes the input the published accuracy was measured on:
/// an antialiased separable filter (its support widened by the shrink factor, so every source pixel counts), each output
/// pixel's weights normalised to sum to one and held as fixed-point integers with 22 fraction bits, the horizontal pass
/// first, rounded and clamped to a byte, then the vertical pass on those bytes. A pass whose size does not change is
/// skipped, as PIL skips it.
/// </summary>
public static class PilResample
{
    // Fraction bits of the fixed-point weights: 32 bits less 8 for a byte and 2 for the sign and the negative lobes.
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>The filters by name: bilinear (the triangle, support 1) and bicubic (Keys' cubic with a = −0.5, support 2).</summary>
    public static bool Supports(string interpolation) => interpolation is "bilinear" or "bicubic";

    private static double Triangle(double x)
    {
        x = Math.Abs(x);
        return x < 1 ? 1 - x : 0;
    }

    private static double Cubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
        return 0;
    }

    /// <summary>
    /// Resizes <paramref name="planes"/> (one byte plane per channel, <paramref name="width"/>×<paramref name="height"/>
    /// each, row-major) to <paramref name="newWidth"/>×<paramref name="newHeight"/> with <paramref name="interpolation"/>.
    /// </summary>
    public static byte[] Resize(byte[] planes, int channels, int width, int height, int newWidth, int newHeight, string interpolation)
    {
        Func<double, double> filter = interpolation switch
        {
            "bilinear" => Triangle,
            "bicubic" => Cubic,
            _ => throw new ArgumentException($"PIL's resampling here is bilinear or bicubic, not {interpolation}", nameof(interpolation)),
        };
        var support = interpolation == "bilinear" ? 1.0 : 2.0;
        if (planes.Length != channels * width * height) throw new ArgumentException($"{planes.Length} bytes for {channels}×{width}×{height}", nameof(planes));
        if (newWidth <= 0 || newHeight <= 0) throw new ArgumentOutOfRangeException(nameof(newWidth), $"{newWidth}×{newHeight} is not a picture size");

        var current = planes;
        var (w, h) = (width, height);
        if (newWidth != width)
        {
            var (bounds, weights, taps) = Coefficients(width, newWidth, filter, support);
            var result = new byte[channels * newWidth * h];
            for (var c = 0; c < channels; c++)
                for (var y = 0; y < h; y++)
                {
                    var row = c * w * h + y * w;
                    var target = c * newWidth * h + y * newWidth;
                    for (var x = 0; x < newWidth; x++)
                    {
                        var (first, count) = (bounds[2 * x], bounds[2 * x + 1]);
                        var sum = 1 << (PrecisionBits - 1);
                        for (var k = 0; k < count; k++) sum += current[row + first + k] * weights[x * taps + k];
                        result[target + x] = Clip(sum);
                    }
                }
            (current, w) = (result, newWidth);
        }
        if (newHeight != height)
        {
            var (bounds, weights, taps) = Coefficients(height, newHeight, filter, support);
            var result = new byte[channels * w * newHeight];
            for (var c = 0; c < channels; c++)
                for (var y = 0; y < newHeight; y++)
                {
                    var (first, count) = (bounds[2 * y], bounds[2 * y + 1]);
                    var target = c * w * newHeight + y * w;
                    for (var x = 0; x < w; x++)
                    {
                        var sum = 1 << (PrecisionBits - 1);
                        var column = c * w * h + x;
                        for (var k = 0; k < count; k++) sum += current[column + (first + k) * w] * weights[y * taps + k];
                        result[target + x] = Clip(sum);
                    }
                }
            current = result;
        }
        return ReferenceEquals(current, planes) ? (byte[])planes.Clone() : current;
    }

    // A fixed-point sum back to a byte: below zero is 0, at or past 256 is 255, else its integer part.
    private static byte Clip(int sum) => sum <= 0 ? (byte)0 : sum >= (256 << PrecisionBits) ? (byte)255 : (byte)(sum >> PrecisionBits);

    /// <summary>
    /// For each output pixel, the first source pixel it reads and how many, and their weights as fixed-point integers
    /// (<c>taps</c> per output pixel): the filter centred on the output pixel's centre in source coordinates, widened by
    /// the shrink factor, its weights normalised to sum to one before rounding.
    /// </summary>
    private static (int[] Bounds, int[] Weights, int Taps) Coefficients(int inSize, int outSize, Func<double, double> filter, double support)
    {
        var scale = (double)inSize / outSize;
        var filterScale = Math.Max(scale, 1.0);
        support *= filterScale;
        var taps = (int)Math.Ceiling(support) * 2 + 1;
        var inverse = 1.0 / filterScale; // multiplied, not divided: the same roundings as PIL's
        var bounds = new int[2 * outSize];
        var weights = new int[outSize * taps];
        var k = new double[taps];
        for (var x = 0; x < outSize; x++)
        {
            var centre = (x + 0.5) * scale;
            var first = Math.Max((int)(centre - support + 0.5), 0);
            var count = Math.Min((int)(centre + support + 0.5), inSize) - first;
            var total = 0.0;
            for (var i = 0; i < count; i++)
            {
                k[i] = filter((i + first - centre + 0.5) * inverse);
                total += k[i];
            }
            for (var i = 0; i < count; i++)
            {
                var normalised = total != 0 ? k[i] / total : k[i];
                weights[x * taps + i] = (int)(normalised < 0 ? -0.5 + normalised * (1 << PrecisionBits) : 0.5 + normalised * (1 << PrecisionBits));
            }
            bounds[2 * x] = first;
            bounds[2 * x + 1] = count;
        }
        return (bounds, weights, taps);
    }
}
