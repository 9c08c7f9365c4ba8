using System;
using System.Linq;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>The suite's one closeness rule: max |Δ| ≤ relative × max |expected| (1e-4 for float32 outputs).</summary>
public static class Tolerance
{
    public const double Float32 = 1e-4;

    public static void AssertClose(torch.Tensor expected, torch.Tensor actual, string what, double relative = Float32)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(torch.float64);
        var scale = e.abs().max().item<double>();
        var worst = (actual.to(torch.float64) - e).abs().max().item<double>();
        Assert.True(worst <= relative * scale, $"{what}: max |Δ| = {worst:G4} exceeds {relative:G2} × max |expected| = {relative * scale:G4}");
    }

    public static void AssertClose(float[] expected, torch.Tensor actual, string what)
    {
        var values = actual.contiguous().data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        var scale = expected.Max(Math.Abs);
        var worst = expected.Zip(values, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst <= Float32 * scale, $"{what}: max |Δ| = {worst:G4} exceeds {Float32:G2} × max |reference| = {Float32 * scale:G4}");
    }
}
