using System;
using System.Globalization;
using System.Linq;

namespace ResNetGen.Sample;

/// <summary>
/// How a picture becomes a fine-tuned network's input, as the pretrained weights were trained with it (timm's
/// pretrained_cfg, torchvision's transforms): the shorter side resized to <see cref="Size"/> / <see cref="CropPct"/> with
/// <see cref="Interpolation"/>, a <see cref="Size"/>² crop (random for training, central otherwise), each channel
/// normalised with <see cref="Mean"/> and <see cref="Std"/>. Checkpoints and ONNX models carry it as
/// <see cref="ToString"/>'s text.
/// </summary>
public sealed record Preprocessing(int Size, double CropPct, string Interpolation, float[] Mean, float[] Std)
{
    public static readonly float[] ImageNetMean = { 0.485f, 0.456f, 0.406f };
    public static readonly float[] ImageNetStd = { 0.229f, 0.224f, 0.225f };

    /// <summary>The interpolations a picture can be resized with: PIL's bilinear and bicubic (exactly as PIL computes them), and Mitchell's cubic.</summary>
    public static readonly string[] Interpolations = { "bilinear", "bicubic", "mitchell" };

    private const string Prefix = "resize-crop:";
    private const string LegacyPrefix = "imagenet-crop:";

    /// <summary>
    /// The shorter side pictures are resized to before the crop: timm's <c>floor(size / crop_pct)</c> (torchvision's 256
    /// for 224 at 0.875, 232 at 224/232; timm's 235 at 0.95), with a hair of slack for a fraction written as a decimal.
    /// </summary>
    public int ResizeTo => (int)Math.Floor(Size / CropPct + 1e-9);

    /// <summary>The same preprocessing at another size.</summary>
    public Preprocessing At(int size) => this with { Size = size };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Prefix}size={Size},crop_pct={CropPct:R},interpolation={Interpolation},mean={string.Join("/", Mean.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))},std={string.Join("/", Std.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))}");

    /// <summary>
    /// Reads <see cref="ToString"/>'s text, or the older <c>imagenet-crop:SIZE</c> (crop 0.875, Mitchell's cubic, ImageNet's
    /// normalisation); null for anything else.
    /// </summary>
    public static Preprocessing? Parse(string text)
    {
        if (text.StartsWith(LegacyPrefix, StringComparison.Ordinal))
            return int.TryParse(text.AsSpan(LegacyPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var legacy) && legacy is > 0 and <= 4096
                ? new Preprocessing(legacy, 0.875, "mitchell", ImageNetMean, ImageNetStd)
                : null;
        if (!text.StartsWith(Prefix, StringComparison.Ordinal)) return null;
        var fields = text.Substring(Prefix.Length).Split(',').Select(f => f.Split('=', 2)).Where(f => f.Length == 2).ToDictionary(f => f[0], f => f[1], StringComparer.Ordinal);
        try
        {
            var result = new Preprocessing(
                int.Parse(fields["size"], NumberStyles.None, CultureInfo.InvariantCulture),
                double.Parse(fields["crop_pct"], NumberStyles.Float, CultureInfo.InvariantCulture),
                fields["interpolation"],
                Floats(fields["mean"]),
                Floats(fields["std"]));
            return result.Problem() is null ? result : null;
        }
        catch (Exception e) when (e is FormatException or OverflowException or System.Collections.Generic.KeyNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Three numbers separated by '/' or ',' (0.485/0.456/0.406).</summary>
    public static float[] Floats(string text) =>
        text.Split('/', ',').Select(v => float.Parse(v.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>What is wrong with the values, as one sentence naming the fix; null if nothing.</summary>
    public string? Problem()
    {
        if (Size is < 32 or > 1024) return $"size {Size} is not 32 to 1024 pixels";
        if (!(CropPct > 0.3 && CropPct <= 1)) return FormattableString.Invariant($"crop fraction {CropPct} is not above 0.3 and at most 1 (torchvision's 0.875, timm's 0.875 to 1)");
        if (!Interpolations.Contains(Interpolation, StringComparer.Ordinal)) return $"interpolation '{Interpolation}' is not one of {string.Join(", ", Interpolations)}";
        if (Mean.Length != 3 || Std.Length != 3) return "mean and std need three numbers each, one per RGB channel (0.485/0.456/0.406)";
        if (Std.Any(s => !(s > 0)) || Mean.Any(m => !float.IsFinite(m))) return "std must be positive and mean finite";
        return null;
    }

    /// <summary>A short description for the console.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Interpolation} resize to {ResizeTo}, {Size}×{Size} crop (crop fraction {CropPct:0.###}), mean {string.Join("/", Mean)}, std {string.Join("/", Std)}");
}
