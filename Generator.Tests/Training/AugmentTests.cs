using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Torchvision;
using ResNetGen.Training;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Training;

/// <summary>
/// The augmentations against torchvision 0.14 on the same uint8 pictures (Reference/training, make_training_reference.py):
/// each of the 14 operations at its magnitudes and signs on a grayscale 28×28 and a colour 20×24 picture, byte for byte;
/// and TrivialAugmentWide and RandAugment over 24 pictures each from a generator seeded as torchvision's global one was —
/// the same operations, magnitudes and signs drawn, the same bytes out.
/// </summary>
public class AugmentTests
{
    private static string File(string name) => Path.Combine(DeterministicWeights.ReferenceFolder, "training", name);

    private static readonly (string Name, long[] Shape)[] Pictures = { ("gray", new long[] { 1, 28, 28 }), ("colour", new long[] { 3, 20, 24 }) };

    private static torch.Tensor Picture(string which) =>
        torch.tensor(System.IO.File.ReadAllBytes(File($"augment_{which}.bin")), Pictures.Single(p => p.Name == which).Shape);

    private static long Size(string which) => Pictures.Single(p => p.Name == which).Shape.Aggregate(1L, (a, b) => a * b);

    [Fact]
    public void Every_operation_is_torchvisions_byte_for_byte()
    {
        var expected = System.IO.File.ReadAllBytes(File("augment_ops.bin"));
        var offset = 0L;
        var failures = new List<string>();
        var ops = new HashSet<AugmentOp>();
        foreach (var line in System.IO.File.ReadAllLines(File("augment_ops.txt")).Where(l => l.Length > 0))
        {
            var parts = line.Split(' ');
            var (op, magnitude, which) = (Enum.Parse<AugmentOp>(parts[0]), double.Parse(parts[1], CultureInfo.InvariantCulture), parts[2]);
            using var image = Picture(which);
            using var result = AugmentOps.Apply(image, op, magnitude);
            Assert.Equal(image.shape, result.shape);
            Assert.Equal(torch.ScalarType.Byte, result.dtype);
            var ours = result.data<byte>().ToArray();
            var theirs = expected.AsSpan((int)offset, ours.Length).ToArray();
            offset += ours.Length;
            var differing = ours.Zip(theirs).Count(p => p.First != p.Second);
            if (differing > 0) failures.Add($"{line}: {differing} of {ours.Length} bytes differ (largest {ours.Zip(theirs).Max(p => Math.Abs(p.First - p.Second))})");
            ops.Add(op);
        }
        Assert.Equal(expected.Length, offset);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Equal(AugmentOps.All.Count, ops.Count); // all 14 checked
    }

    [Fact]
    public void TrivialAugmentWide_and_RandAugment_draw_and_apply_as_torchvision()
    {
        var expected = System.IO.File.ReadAllBytes(File("augment_policies.bin"));
        var offset = 0L;
        foreach (var (policy, seed) in new (AutoAugment, ulong)[] { (new TrivialAugmentWide(), 11), (new RandAugment(), 12) })
        foreach (var (which, _) in Pictures)
        {
            using var image = Picture(which);
            using var generator = new torch.Generator(seed);
            var changed = 0;
            for (var i = 0; i < 24; i++)
            {
                using var result = policy.AugmentOne(image, generator);
                var ours = result.data<byte>().ToArray();
                var theirs = expected.AsSpan((int)offset, ours.Length).ToArray();
                offset += ours.Length;
                Assert.True(ours.SequenceEqual(theirs), $"{policy.GetType().Name} on the {which} picture, draw {i}: {ours.Zip(theirs).Count(p => p.First != p.Second)} bytes differ");
                if (!ours.SequenceEqual(image.data<byte>().ToArray())) changed++;
            }
            Assert.True(changed >= 12, $"{policy.GetType().Name} changed only {changed} of 24 {which} pictures");
        }
        Assert.Equal(expected.Length, offset);
    }

    [Fact]
    public void A_batch_is_augmented_picture_by_picture_and_bad_input_is_refused()
    {
        using var gray = Picture("gray");
        using var batch = torch.stack(Enumerable.Repeat(gray, 6).ToArray());
        using var generator = new torch.Generator(11);
        using var augmented = new TrivialAugmentWide().Apply(batch, generator);
        Assert.Equal(batch.shape, augmented.shape);
        // The same draws one picture at a time give the same pictures.
        using var again = new torch.Generator(11);
        var policy = new TrivialAugmentWide();
        for (var i = 0; i < 6; i++)
        {
            using var one = policy.AugmentOne(gray, again);
            Assert.True(one.equal(augmented[i]).all().item<bool>());
        }
        Assert.Contains("uint8 pictures", Assert.Throws<ArgumentException>(() => new RandAugment().Apply(torch.zeros(2, 1, 4, 4), generator)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RandAugment(magnitude: 31));
    }
}
