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
}
