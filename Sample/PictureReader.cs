using System;
using System.Globalization;
using System.IO;
using SkiaSharp;

namespace ResNetGen.Sample;

/// <summary>
/// The one way every command reads a picture, on a budget fixed before anything is decoded: the header first (SkiaSharp's
/// codec reads the size and format without decoding), a picture that declares more pixels than the budget refused with
/// its size named, a large but allowed JPEG decoded reduced (libjpeg's scaled decode) since every command shrinks
/// pictures to a few hundred pixels anyway, so memory per picture is bounded by the budget (4 bytes a pixel, PNG) or far
/// below it (JPEG), whatever the file claims; and any failure underneath — truncated
/// data, not an image, an allocation that fails — reported as that picture's problem (a <see cref="SampleException"/>
/// naming the file), never as a crash.
/// </summary>
public static class PictureReader
{
    /// <summary>
    /// The default budget: PIL's <c>Image.MAX_IMAGE_PIXELS</c> (89,478,485, what torchvision's loaders go by; PIL warns above
    /// it and refuses above twice it). <c>--max-pixels</c> raises or lowers it.
    /// </summary>
    public const long DefaultMaxPixels = 89_478_485;

    /// <summary>Pictures up to this many pixels (64 MB as RGBA) are decoded whole, as before; larger allowed JPEGs reduced.</summary>
    public const long WholeDecodePixels = 16L << 20;

    /// <summary>
    /// Reads <paramref name="path"/> as unpremultiplied RGBA, whole where it has at most <see cref="WholeDecodePixels"/> pixels
    /// or is not a JPEG, otherwise reduced but still at least <paramref name="shorter"/> pixels on its shorter side.
    /// </summary>
    public static SKBitmap Read(string path, int shorter, long maxPixels = DefaultMaxPixels)
    {
        if (!File.Exists(path)) throw new SampleException($"{path}: no such file");
        try
        {
            using var codec = SKCodec.Create(path, out var status);
            if (codec is null)
            {
                // A PNG header with no image data after it (SkiaSharp's codec needs the first IDAT): its declared size still says which refusal applies.
                if (PngSize(path) is { } declared) CheckBudget(path, declared.Width, declared.Height, maxPixels);
                throw new SampleException($"{path} is not a PNG or JPEG picture that can be decoded ({Describe(status)})");
            }
            var (width, height) = (codec.Info.Width, codec.Info.Height);
            CheckBudget(path, width, height, maxPixels);
            var pixels = (long)width * height;
            if (pixels <= WholeDecodePixels) return Whole(codec, path, width, height);
            // PNG has no reduced decode (and this SkiaSharp decodes it whole only): within the budget, at most 358 MB as RGBA.
            return codec.EncodedFormat == SKEncodedImageFormat.Jpeg ? ScaledJpeg(codec, path, shorter) : Whole(codec, path, width, height);
        }
        catch (SampleException)
        {
            throw;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // SkiaSharp's own failures ("Unable to allocate pixels for the bitmap", a native error) are the file's problem too.
            throw new SampleException($"{path} could not be decoded: {e.Message.TrimEnd('.')}");
        }
    }

    private static void CheckBudget(string path, long width, long height, long maxPixels)
    {
        if (width <= 0 || height <= 0) throw new SampleException($"{path} declares an empty picture ({width}×{height})");
        var pixels = width * height;
        if (pixels > maxPixels)
            throw new SampleException(
                $"{path} declares {width}×{height} pixels ({Megapixels(pixels)}), over the budget of {Megapixels(maxPixels)}, so it was not decoded. " +
                "If you trust the file, raise the budget with --max-pixels");
    }

    /// <summary>The width and height in a PNG's IHDR (the 24 bytes after the signature's start), or null if it is not a PNG.</summary>
    private static (long Width, long Height)? PngSize(string path)
    {
        var head = new byte[24];
        using (var file = File.OpenRead(path))
        {
            if (file.Read(head, 0, head.Length) < head.Length) return null;
        }
        ReadOnlySpan<byte> signature = new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, (byte)'I', (byte)'H', (byte)'D', (byte)'R' };
        if (!head.AsSpan(0, 16).SequenceEqual(signature)) return null;
        return (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(16)), System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(20)));
    }

    // 400 megapixels, 1.5 megapixels; below a tenth of a megapixel the count itself (a small --max-pixels is not "0.0 megapixels").
    internal static string Megapixels(long pixels) => pixels >= 100_000
        ? (pixels / 1e6).ToString(pixels < 10_000_000 ? "0.0" : "0", CultureInfo.InvariantCulture) + " megapixels"
        : pixels.ToString("N0", CultureInfo.InvariantCulture) + (pixels == 1 ? " pixel" : " pixels");

    private static string Describe(SKCodecResult result) => result switch
    {
        SKCodecResult.IncompleteInput => "truncated",
        SKCodecResult.InvalidInput => "invalid data",
        SKCodecResult.Unimplemented => "its content is neither PNG nor JPEG",
        _ => result.ToString(),
    };

    private static SKImageInfo Rgba(int width, int height) => new(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);

    private static SKBitmap Whole(SKCodec codec, string path, int width, int height)
    {
        var bitmap = new SKBitmap(Rgba(width, height));
        try
        {
            if (bitmap.GetPixels() == IntPtr.Zero) throw new SampleException($"{path} ({width}×{height}) could not be given memory to decode into");
            var result = codec.GetPixels(bitmap.Info, bitmap.GetPixels());
            if (result != SKCodecResult.Success) throw new SampleException($"{path} is not a PNG or JPEG picture that can be decoded ({Describe(result)})");
            return bitmap;
        }
        catch
        {
            bitmap.Dispose();
            throw;
        }
    }

    // libjpeg decodes at 1/8 to 8/8 of the size by scaling its DCT: the smallest scale that keeps the shorter side.
    private static SKBitmap ScaledJpeg(SKCodec codec, string path, int shorter)
    {
        var scale = Math.Max(1 / 8f, Math.Min(1f, (float)shorter / Math.Min(codec.Info.Width, codec.Info.Height)));
        var size = codec.GetScaledDimensions(scale);
        while (Math.Min(size.Width, size.Height) < shorter && scale < 1) size = codec.GetScaledDimensions(scale = Math.Min(1, scale + 1 / 8f));
        return Whole(codec, path, size.Width, size.Height);
    }
}
