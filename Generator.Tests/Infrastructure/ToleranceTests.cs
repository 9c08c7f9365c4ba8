using System.Linq;
using TorchSharp;
using Xunit;
using Xunit.Sdk;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>The closeness rules themselves: what they must catch, and that equal outputs pass.</summary>
public class ToleranceTests
{
    /// <summary>Two rows of ten logits sharing a large offset, as a deep network with random weights gives them.</summary>
    private static float[] Logits() =>
        Enumerable.Range(0, 20).Select(i => 100f + (i < 10 ? 1 : -1) * 0.75f * (float)System.Math.Sin(i + 1)).ToArray();

    private static torch.Tensor AsOutput(float[] values) => torch.tensor(values, new long[] { 2, 10 });

    [Fact]
    public void Equal_outputs_pass_both_overloads()
    {
        var expected = Logits();
        using var actual = AsOutput(expected);
        Tolerance.AssertClose(expected, actual, "equal");
        using var same = AsOutput(expected);
        Tolerance.AssertClose(same, actual, "equal tensors");
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void One_non_finite_value_in_an_otherwise_equal_output_fails(float planted)
    {
        var expected = Logits();
        var damaged = (float[])expected.Clone();
        damaged[13] = planted;
        using var actual = AsOutput(damaged);
        var error = Assert.ThrowsAny<XunitException>(() => Tolerance.AssertClose(expected, actual, "planted"));
        Assert.Contains("element 13 of 20", error.Message);
        using var expectedTensor = AsOutput(expected);
        Assert.ThrowsAny<XunitException>(() => Tolerance.AssertClose(expectedTensor, actual, "planted"));
        // In the expected values too: a reference that holds a NaN proves nothing.
        Assert.ThrowsAny<XunitException>(() => Tolerance.AssertClose(damaged, expectedTensor, "planted in the reference"));
        Assert.ThrowsAny<XunitException>(() => Tolerance.AssertClose(actual, expectedTensor, "planted in the reference"));
    }

    [Fact]
    public void A_small_error_in_the_part_that_depends_on_the_input_fails_though_the_offset_hides_it()
    {
        // The rows differ by ±1.5 around 100; scaling that difference by 1.005 moves every logit by at most 0.0075,
        // under rule 1's 1e-4 × 100.75, but it is half a percent of what the input decides.
        var expected = Logits();
        var actual = expected.Select(v => 100f + (v - 100f) * 1.005f).ToArray();
        var worst = expected.Zip(actual, (e, a) => System.Math.Abs(e - a)).Max();
        Assert.True(worst <= Tolerance.Float32 * expected.Max(), "the planted error is one that rule 1 forgives");
        using var output = AsOutput(actual);
        var error = Assert.ThrowsAny<XunitException>(() => Tolerance.AssertClose(expected, output, "offset"));
        Assert.Contains("differences from their batch mean", error.Message);
    }

    [Fact]
    public void A_single_output_is_judged_by_the_first_rule_alone()
    {
        var expected = Logits().Take(10).ToArray();
        var actual = expected.Select(v => v + 0.005f).ToArray(); // 5e-5 of the largest: within rule 1
        using var output = torch.tensor(actual, new long[] { 1, 10 });
        Tolerance.AssertClose(expected, output, "one row");
    }
}
