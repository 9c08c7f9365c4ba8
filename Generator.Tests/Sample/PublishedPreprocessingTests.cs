using System.Collections.Generic;
using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using ResNetGen.Generator.Tests.Torchvision;
using ResNetGen.Sample;
using SkiaSharp;
using Xunit;
using Xunit.Abstractions;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>
/// The sample's preprocessing of a published weight file against torchvision's and timm's own evaluation transforms on the
/// same pictures (Reference/preprocess, written by make_preprocess_reference.py with torchvision 0.14, PIL and timm):
/// several aspect ratios, pictures smaller than the resize and than the crop, grayscale, RGBA and a JPEG.
/// </summary>
public sealed class PublishedPreprocessingTests(ITestOutputHelper output)
{
    private static string Folder => Path.Combine(DeterministicWeights.ReferenceFolder, "preprocess");

    public static TheoryData<string, string, string> Cases()
    {
        var data = new TheoryData<string, string, string>();
        using var cases = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "cases.json")));
        foreach (var c in cases.RootElement.EnumerateArray())
            data.Add(c.GetProperty("picture").GetString()!, c.GetProperty("weights").GetString()!, c.GetProperty("expected").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Equals_the_published_transforms(string picture, string weights, string expected)
    {
        var entry = PublishedWeights.Find(weights) ?? throw new InvalidOperationException($"{weights} is not in the catalogue");
        var p = entry.Preprocessing;
        using var input = ImageFolder.Input(Path.Combine(Folder, picture), p);
        Assert.Equal(new long[] { 1, 3, p.Size, p.Size }, input.shape);
        var actual = input.data<float>().ToArray();

        using var reference = SKBitmap.Decode(Path.Combine(Folder, expected));
        Assert.Equal((p.Size, p.Size), (reference.Width, reference.Height));
        var rgba = reference.Copy(SKColorType.Rgba8888).GetPixelSpan().ToArray();
        var plane = p.Size * p.Size;
        double worstLevels = 0, sumNormalised = 0;
        for (var c = 0; c < 3; c++)
            for (var i = 0; i < plane; i++)
            {
                var want = (rgba[4 * i + c] / 255f - p.Mean[c]) / p.Std[c];
                var got = actual[c * plane + i];
                var difference = Math.Abs(got - want);
                sumNormalised += difference;
                worstLevels = Math.Max(worstLevels, difference * p.Std[c] * 255);
            }
        var mean = sumNormalised / (3 * plane);
        output.WriteLine(FormattableString.Invariant($"{picture} as {weights}: largest difference {worstLevels:0.###} grey levels, mean {mean:0.#####} normalised"));
        if (picture.EndsWith(".jpg", StringComparison.Ordinal))
            Assert.True(mean <= 0.02, $"{picture} as {weights}: mean difference {mean:0.####} normalised (JPEG decoders differ; bound 0.02)");
        else
        {
            // PIL's resampling is integer arithmetic on the same bytes: measured equal everywhere, so any difference is a defect.
            Assert.True(worstLevels == 0, $"{picture} as {weights}: {worstLevels:0.###} grey levels apart somewhere (PIL computes these bytes exactly)");
            Assert.True(mean <= 0.005, $"{picture} as {weights}: mean difference {mean:0.####} normalised (bound 0.005)");
        }
    }

    /// <summary>
    /// Every catalogue entry (27) on every PNG reference picture (11), byte for byte: the RGB bytes the sample resizes and
    /// crops for the network, hashed, against the SHA-256 of what torchvision's <c>Weights.transforms()</c> or timm's
    /// <c>create_transform</c> makes of the same picture (Reference/preprocess/catalogue_cases.json).
    /// </summary>
    [Fact]
    public void Every_catalogued_entry_prepares_every_png_picture_as_published()
    {
        using var cases = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "catalogue_cases.json")));
        var failures = new List<string>();
        var entries = new HashSet<string>();
        var count = 0;
        foreach (var c in cases.RootElement.EnumerateArray())
        {
            var (picture, weights) = (c.GetProperty("picture").GetString()!, c.GetProperty("weights").GetString()!);
            var entry = PublishedWeights.Find(weights) ?? throw new InvalidOperationException($"{weights} is not in the catalogue");
            var p = entry.Preprocessing;
            using var input = ImageFolder.Input(Path.Combine(Folder, picture), p);
            var values = input.data<float>().ToArray();
            var plane = p.Size * p.Size;
            var bytes = new byte[3 * plane];
            for (var i = 0; i < plane; i++)
            for (var ch = 0; ch < 3; ch++)
                bytes[3 * i + ch] = (byte)Math.Clamp(Math.Round((values[ch * plane + i] * p.Std[ch] + p.Mean[ch]) * 255), 0, 255);
            var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
            if (hash != c.GetProperty("sha256").GetString()) failures.Add($"{picture} as {weights}");
            entries.Add(weights);
            count++;
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {count} differ from PyTorch's bytes: {string.Join(", ", failures.Take(10))}");
        Assert.Equal(297, count);
        Assert.Equal(PublishedWeights.All.Select(e => e.Name).Order(StringComparer.Ordinal), entries.Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// Every catalogue entry against torchvision's <c>Weights.transforms()</c> and timm's <c>pretrained_cfg</c> as the
    /// reference script read them (Reference/preprocess/catalogue.json): the same names, sizes, resize, interpolation,
    /// mean and std, and torchvision's published accuracy.
    /// </summary>
    [Fact]
    public void The_catalogue_is_torchvisions_and_timms_own()
    {
        using var catalogue = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "catalogue.json")));
        var names = catalogue.RootElement.EnumerateArray().Select(e => e.GetProperty("name").GetString()!).ToList();
        Assert.Equal(names.OrderBy(n => n, StringComparer.Ordinal), PublishedWeights.All.Select(w => w.Name).OrderBy(n => n, StringComparer.Ordinal));
        foreach (var e in catalogue.RootElement.EnumerateArray())
        {
            var entry = PublishedWeights.Find(e.GetProperty("name").GetString()!)!;
            var p = entry.Preprocessing;
            var what = entry.Name;
            Assert.True(p.Problem() is null, $"{what}: {p.Problem()}");
            Assert.Equal(e.GetProperty("size").GetInt32(), p.Size);
            Assert.Equal(e.GetProperty("resize").GetInt32(), p.ResizeTo);
            Assert.Equal(e.GetProperty("interpolation").GetString(), p.Interpolation);
            Assert.Equal(e.GetProperty("mean").EnumerateArray().Select(v => (float)v.GetDouble()), p.Mean);
            Assert.Equal(e.GetProperty("std").EnumerateArray().Select(v => (float)v.GetDouble()), p.Std);
            if (e.GetProperty("top1").ValueKind == JsonValueKind.Number) Assert.Equal(e.GetProperty("top1").GetDouble(), entry.Top1);
            // Its text round-trips through a checkpoint's metadata.
            Assert.Equal(p.ToString(), Preprocessing.Parse(p.ToString())!.ToString());
        }
    }
}
