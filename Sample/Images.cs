using System;
using System.IO;
using SkiaSharp;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>Pictures in and out: any PNG or JPEG to a Fashion-MNIST-like 28×28 tensor, and test images to PNG.</summary>
public static class Images
{
    /// <summary>
    /// Decodes <paramref name="path"/>, converts it to grayscale, resizes it to 28×28 and, when its border is
    /// light, inverts it (Fashion-MNIST shows light garments on black). Returns bytes [1, 1, 28, 28].
    /// </summary>
    public static (torch.Tensor Pixels, bool Inverted) Load(string path, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        using var decoded = PictureReader.Read(path, 28, maxPixels);
        var info = new SKImageInfo(28, 28, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var resized = decoded.Resize(info, new SKSamplingOptions(SKCubicResampler.Mitchell))
                            ?? throw new SampleException($"{path} could not be resized to 28×28.");
        var gray = new byte[28 * 28];
        double border = 0;
        for (var y = 0; y < 28; y++)
        for (var x = 0; x < 28; x++)
        {
            var c = resized.GetPixel(x, y);
            var alpha = c.Alpha / 255.0;
            var value = (0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue) * alpha + 255 * (1 - alpha); // transparent = white paper
            gray[y * 28 + x] = (byte)Math.Clamp(Math.Round(value), 0, 255);
            if (x == 0 || y == 0 || x == 27 || y == 27) border += gray[y * 28 + x];
        }
        var inverted = border / (4 * 27) > 127; // a light background: a photo or drawing, not Fashion-MNIST's black
        if (inverted) for (var i = 0; i < gray.Length; i++) gray[i] = (byte)(255 - gray[i]);
        return (torch.tensor(gray, new long[] { 1, 1, 28, 28 }), inverted);
    }

    /// <summary>Writes one 28×28 grayscale image (bytes) as a PNG.</summary>
    public static void SavePng(torch.Tensor image, string path)
    {
        var pixels = image.reshape(28 * 28).data<byte>().ToArray();
        using var bitmap = new SKBitmap(new SKImageInfo(28, 28, SKColorType.Gray8, SKAlphaType.Opaque));
        for (var y = 0; y < 28; y++)
        for (var x = 0; x < 28; x++)
        {
            var v = pixels[y * 28 + x];
            bitmap.SetPixel(x, y, new SKColor(v, v, v));
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        using var file = File.Create(path);
        data.SaveTo(file);
    }
}
