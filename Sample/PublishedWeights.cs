using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace ResNetGen.Sample;

/// <summary>
/// A published weight file the sample knows, keyed by what a user holds: torchvision's file name (which carries the first
/// eight hex digits of the file's SHA-256) or timm's tag. Each carries the preprocessing its accuracy was measured with —
/// torchvision's <c>Weights.transforms()</c>, timm's <c>pretrained_cfg</c> — read from torchvision 0.14 and timm 1.0.
/// </summary>
/// <param name="Name">The file name or tag.</param>
/// <param name="Network">The network's name (torchvision's or timm's), e.g. <c>resnet50</c>.</param>
/// <param name="Preprocessing">Resize, crop, interpolation, mean and std of its evaluation.</param>
/// <param name="Classes">Where its class names come from.</param>
/// <param name="Sha256Prefix">The hash prefix in a torchvision file name, checked when the file is loaded; null for timm's tags.</param>
/// <param name="Top1">Its published ImageNet top-1 accuracy at that preprocessing, where it is known.</param>
public sealed record PublishedWeights(string Name, string Network, Preprocessing Preprocessing, string Classes, string? Sha256Prefix, double? Top1)
{
    private static readonly float[] Half = { 0.5f, 0.5f, 0.5f };

    private static Preprocessing Crop(int resize, int size, string interpolation, float[]? mean = null, float[]? std = null) =>
        new(size, (double)size / resize, interpolation, mean ?? Preprocessing.ImageNetMean, std ?? Preprocessing.ImageNetStd);

    private static Preprocessing Timm(int size, double cropPct, string interpolation, float[]? mean = null, float[]? std = null) =>
        new(size, cropPct, interpolation, mean ?? Preprocessing.ImageNetMean, std ?? Preprocessing.ImageNetStd);

    private static PublishedWeights Torchvision(string file, double top1, int resize = 256) =>
        new(file, file[..file.LastIndexOf('-')], Crop(resize, 224, "bilinear"), "ImageNet-1k (torchvision's class names)", file[(file.LastIndexOf('-') + 1)..^4], top1);

    /// <summary>Every entry: torchvision's ResNet files (V1 evaluated at 256 → 224, V2 at 232 → 224) and timm's tags.</summary>
    public static IReadOnlyList<PublishedWeights> All { get; } = new[]
    {
        Torchvision("resnet18-f37072fd.pth", 69.758),
        Torchvision("resnet34-b627a593.pth", 73.314),
        Torchvision("resnet50-0676ba61.pth", 76.13),
        Torchvision("resnet50-11ad3fa6.pth", 80.858, 232),
        Torchvision("resnet101-63fe2227.pth", 77.374),
        Torchvision("resnet101-cd907fc2.pth", 81.886, 232),
        Torchvision("resnet152-394f9c45.pth", 78.312),
        Torchvision("resnet152-f82ba261.pth", 82.284, 232),
        Torchvision("resnext50_32x4d-7cdf4587.pth", 77.618),
        Torchvision("resnext50_32x4d-1a0047aa.pth", 81.198, 232),
        Torchvision("resnext101_32x8d-8ba56ff5.pth", 79.312),
        Torchvision("resnext101_32x8d-110c445d.pth", 82.834, 232),
        Torchvision("resnext101_64x4d-173b62eb.pth", 83.246, 232),
        Torchvision("wide_resnet50_2-95faca4d.pth", 78.468),
        Torchvision("wide_resnet50_2-9ba9bcbe.pth", 81.602, 232),
        Torchvision("wide_resnet101_2-32ee1156.pth", 78.848),
        Torchvision("wide_resnet101_2-d733dc28.pth", 82.51, 232),
        new("resnet18.a1_in1k", "resnet18", Timm(224, 0.95, "bicubic"), "ImageNet-1k", null, null),
        new("resnet18.tv_in1k", "resnet18", Timm(224, 0.875, "bilinear"), "ImageNet-1k", null, null),
        new("resnet50.a1_in1k", "resnet50", Timm(224, 0.95, "bicubic"), "ImageNet-1k", null, null),
        new("resnet50.a1h_in1k", "resnet50", Timm(176, 0.9, "bicubic"), "ImageNet-1k", null, null),
        new("resnet50.tv_in1k", "resnet50", Timm(224, 0.875, "bilinear"), "ImageNet-1k", null, null),
        new("resnet50.tv2_in1k", "resnet50", Timm(176, 0.875, "bilinear"), "ImageNet-1k", null, null),
        new("resnet50d.ra2_in1k", "resnet50d", Timm(224, 0.875, "bicubic"), "ImageNet-1k", null, null),
        new("seresnext50_32x4d.racm_in1k", "seresnext50_32x4d", Timm(224, 0.875, "bicubic"), "ImageNet-1k", null, null),
        new("resnetv2_50x1_bit.goog_in21k_ft_in1k", "resnetv2_50x1_bit", Timm(448, 1.0, "bilinear", Half, Half), "ImageNet-1k", null, null),
        new("resnetv2_50x1_bit.goog_in21k", "resnetv2_50x1_bit", Timm(224, 0.875, "bilinear", Half, Half), "ImageNet-21k (21,843 classes)", null, null),
    };

    /// <summary>The entry for a weight file's path or name, or a timm tag (a timm <c>model.safetensors</c> carries no tag: give it with --weights).</summary>
    public static PublishedWeights? Find(string pathOrName)
    {
        var name = Path.GetFileName(pathOrName);
        return All.FirstOrDefault(w => string.Equals(w.Name, name, StringComparison.Ordinal));
    }

    /// <summary>The names a user can give, for messages.</summary>
    public static string Names => string.Join(", ", All.Select(w => w.Name));

    /// <summary>
    /// Throws unless <paramref name="path"/>'s SHA-256 begins with the prefix its torchvision name carries (a renamed,
    /// truncated or altered download); nothing for a timm entry.
    /// </summary>
    public void CheckHash(string path)
    {
        if (Sha256Prefix is null) return;
        using var stream = File.OpenRead(path);
        var hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream)).ToLowerInvariant();
        if (!hash.StartsWith(Sha256Prefix, StringComparison.Ordinal))
            throw new SampleException($"{path}: its SHA-256 begins {hash[..8]}, but torchvision's {Name} begins {Sha256Prefix}: the file is not that download (truncated, altered or renamed). Download it again.");
    }
}
