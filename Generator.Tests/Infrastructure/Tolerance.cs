using System;
using System.Linq;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>
/// The suite's closeness rules. Every comparison first fails on any NaN or infinity in either argument (.NET's
/// <c>Enumerable.Max</c> orders NaN below every number, so a maximum alone cannot see one). Then:
/// <list type="number">
/// <item>max |Δ| ≤ relative × max |expected| (1e-4 for float32 outputs);</item>
/// <item>for a batch of two or more outputs ([N, …], N ≥ 2): the same with each output minus the batch mean, within
/// <see cref="Contrast"/> of that difference's own largest value. With random weights a deep network's logits share a
/// large offset, and rule 1 alone forgives errors of a few percent in the part that depends on the input.</item>
/// </list>
/// </summary>
public static class Tolerance
{
    public const double Float32 = 1e-4;

    /// <summary>Rule 2's bound, relative to the largest deviation of the expected outputs from their batch mean.</summary>
    public const double Contrast = 2e-3;

    public static void AssertClose(torch.Tensor expected, torch.Tensor actual, string what, double relative = Float32)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(torch.float64).cpu();
        var a = actual.to(torch.float64).cpu();
        Compare(e.contiguous().data<double>().ToArray(), a.contiguous().data<double>().ToArray(), actual.shape, what, relative);
    }

    public static void AssertClose(float[] expected, torch.Tensor actual, string what)
    {
        using var scope = torch.NewDisposeScope();
        var values = actual.to(torch.float64).cpu().contiguous().data<double>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        Compare(expected.Select(v => (double)v).ToArray(), values, actual.shape, what, Float32);
    }

    /// <summary>Both rules on flat values of the given shape (rule 2 where the first dimension is a batch of two or more).</summary>
    internal static void Compare(double[] expected, double[] actual, long[] shape, string what, double relative)
    {
        Assert.Equal(expected.Length, actual.Length);
        AssertFinite(expected, what + " (expected)");
        AssertFinite(actual, what);
        var scale = MaxAbs(expected);
        var worst = MaxAbs(expected.Zip(actual, (e, a) => e - a));
        Assert.True(worst <= relative * scale, $"{what}: max |Δ| = {worst:G4} exceeds {relative:G2} × max |expected| = {relative * scale:G4}");

        if (shape.Length < 2 || shape[0] < 2) return;
        var batch = (int)shape[0];
        var expectedContrast = FromBatchMean(expected, batch);
        var actualContrast = FromBatchMean(actual, batch);
        var spread = MaxAbs(expectedContrast);
        var contrastError = MaxAbs(expectedContrast.Zip(actualContrast, (e, a) => e - a));
        // Where the outputs hardly differ between inputs (a spread at rounding level), rounding itself sets the bound.
        var bound = Math.Max(Contrast * spread, 1e-2 * relative * scale);
        Assert.True(contrastError <= bound,
            $"{what}: the outputs' differences from their batch mean are off by {contrastError:G4}, more than {Contrast:G2} × their largest {spread:G4} "
            + $"(the part that depends on the input is wrong even though max |Δ| = {worst:G4} passes)");
    }

    /// <summary>Fails on the first NaN or infinity, naming where it is.</summary>
    public static void AssertFinite(double[] values, string what)
    {
        for (var i = 0; i < values.Length; i++)
            Assert.True(double.IsFinite(values[i]), $"{what}: element {i} of {values.Length} is {values[i]}");
    }

    /// <summary>The largest |v|, for finite values (checked before).</summary>
    private static double MaxAbs(System.Collections.Generic.IEnumerable<double> values)
    {
        var max = 0.0;
        foreach (var v in values) max = Math.Max(max, Math.Abs(v));
        return max;
    }

    /// <summary>Each element minus the mean of its position over the batch (the first dimension).</summary>
    private static double[] FromBatchMean(double[] values, int batch)
    {
        var per = values.Length / batch;
        var result = new double[values.Length];
        for (var j = 0; j < per; j++)
        {
            var mean = 0.0;
            for (var b = 0; b < batch; b++) mean += values[b * per + j];
            mean /= batch;
            for (var b = 0; b < batch; b++) result[b * per + j] = values[b * per + j] - mean;
        }
        return result;
    }
}
