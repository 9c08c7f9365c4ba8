using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.PyTorch;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.MixedPrecision;

/// <summary>
/// GradScaler against PyTorch's on the same gradients (grad_scaler_check.py): the scale, the growth tracker, which steps
/// are skipped and the parameter after each step, exactly; and its refusals.
/// </summary>
public sealed class GradScalerTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-scaler-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private sealed record Case(string Name, double InitScale, double GrowthFactor, double BackoffFactor, int GrowthInterval, double Lr, float[] Start, object[][] Grads);

    private static readonly Case[] Cases =
    {
        // PyTorch's defaults: an inf and a NaN gradient each skip their step and halve the scale.
        new("defaults", 65536, 2, 0.5, 2000, 0.1, new[] { 1f, 2f, 3f },
            new[] { new object[] { 0.5, 0.25, 1 }, new object[] { 1, "inf", 0 }, new object[] { 0.5, 0.5, 0.5 }, new object[] { "nan", 1, 1 }, new object[] { 0.125, 0, -2 } }),
        // Growth after three clean steps, a −inf in between that backs off and restarts the count.
        new("grow", 4, 2, 0.5, 3, 0.01, new[] { 1f, -1f },
            new[] { new object[] { 1, 2 }, new object[] { 3, 4 }, new object[] { 5, 6 }, new object[] { 1, 1 }, new object[] { 1, "-inf" }, new object[] { 2, 2 },
                new object[] { 2, 2 }, new object[] { 2, 2 }, new object[] { 1, 1 }, new object[] { 1, 1 }, new object[] { 1, 1 } }),
        // A scale that would grow past float32's largest stays; a gradient that the scale overflows is skipped.
        new("overflow", 1.7e38, 2, 0.5, 1, 0.1, new[] { 1f },
            new[] { new object[] { 1e-38 }, new object[] { 1e-38 }, new object[] { 4 }, new object[] { 1e-30 }, new object[] { 1e-30 } }),
    };

    private static float Value(object v) => v switch
    {
        "inf" => float.PositiveInfinity,
        "-inf" => float.NegativeInfinity,
        "nan" => float.NaN,
        _ => Convert.ToSingle(v, System.Globalization.CultureInfo.InvariantCulture),
    };

    [Fact]
    public void Skips_grows_and_backs_off_as_pytorchs_gradscaler_on_the_same_gradients()
    {
        var casesPath = Path.Combine(_folder, "cases.json");
        File.WriteAllText(casesPath, JsonSerializer.Serialize(Cases.Select(c => new Dictionary<string, object>
        {
            ["name"] = c.Name, ["init_scale"] = c.InitScale, ["growth_factor"] = c.GrowthFactor, ["backoff_factor"] = c.BackoffFactor,
            ["growth_interval"] = c.GrowthInterval, ["lr"] = c.Lr, ["start"] = c.Start, ["grads"] = c.Grads,
        })));
        var script = Path.Combine(Repository.Root(), "Generator.Tests", "MixedPrecision", "grad_scaler_check.py");
        var lines = Twins.RunPython(_folder, script, casesPath).Split('\n').Where(l => l.StartsWith("{", StringComparison.Ordinal)).ToList();
        Assert.Equal(Cases.Length, lines.Count);
        foreach (var (c, line) in Cases.Zip(lines))
        {
            using var reference = JsonDocument.Parse(line);
            Assert.Equal(c.Name, reference.RootElement.GetProperty("name").GetString());
            var expected = reference.RootElement.GetProperty("steps").EnumerateArray().ToList();
            var actual = Run(c);
            Assert.Equal(expected.Count, actual.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                var where = $"{c.Name}, step {i + 1}";
                Assert.True((float)expected[i].GetProperty("scale").GetDouble() == actual[i].Scale, $"{where}: scale {actual[i].Scale}, PyTorch's {expected[i].GetProperty("scale")}");
                Assert.True(expected[i].GetProperty("tracker").GetInt32() == actual[i].Tracker, $"{where}: growth tracker {actual[i].Tracker}");
                Assert.True(expected[i].GetProperty("stepped").GetBoolean() == actual[i].Stepped, $"{where}: stepped {actual[i].Stepped}");
                Assert.Equal(expected[i].GetProperty("p").EnumerateArray().Select(e => (float)e.GetDouble()), actual[i].P);
            }
        }
    }

    /// <summary>The case with this scaler and an SGD step p −= lr·g (as torch.optim.SGD without momentum computes it).</summary>
    private static List<(float Scale, int Tracker, bool Stepped, float[] P)> Run(Case c)
    {
        var scaler = new GradScaler(c.InitScale, c.GrowthFactor, c.BackoffFactor, c.GrowthInterval);
        using var p = new TorchSharp.Modules.Parameter(torch.tensor(c.Start));
        using var step = (-c.Lr).ToScalar();
        var result = new List<(float, int, bool, float[])>();
        foreach (var g in c.Grads)
        {
            p.grad = null;
            using (var scope = torch.NewDisposeScope())
            {
                var loss = p.mul(torch.tensor(g.Select(Value).ToArray())).sum();
                using var scaled = scaler.ScaleLoss(loss);
                scaled.backward();
                var stepped = scaler.Step(new[] { p }, () =>
                {
                    using var noGrad = torch.no_grad();
                    using var grad = p.grad!;
                    p.add_(grad, step);
                });
                scaler.Update();
                Assert.Equal(stepped, !scaler.LastStepSkipped);
                result.Add((scaler.Scale, scaler.GrowthTracker, stepped, p.data<float>().ToArray()));
            }
        }
        Assert.Equal(c.Grads.Length, scaler.StepsTaken + scaler.StepsSkipped);
        return result;
    }

    [Fact]
    public void Unscale_lets_the_true_gradients_be_read_once_per_step_and_the_stages_are_kept()
    {
        var scaler = new GradScaler(initScale: 1024);
        using var p = new TorchSharp.Modules.Parameter(torch.ones(3));
        using (var loss = p.sum())
        using (var scaled = scaler.ScaleLoss(loss))
            scaled.backward();
        using (var grad = p.grad!) Assert.Equal(new[] { 1024f, 1024f, 1024f }, grad.data<float>().ToArray());
        scaler.Unscale(new[] { p });
        using (var grad = p.grad!) Assert.Equal(new[] { 1f, 1f, 1f }, grad.data<float>().ToArray()); // clipping would see these
        Assert.Contains("already been called", Assert.Throws<InvalidOperationException>(() => scaler.Unscale(new[] { p })).Message);
        var calls = 0;
        Assert.True(scaler.Step(new[] { p }, () => calls++)); // not unscaled a second time
        using (var grad = p.grad!) Assert.Equal(new[] { 1f, 1f, 1f }, grad.data<float>().ToArray());
        Assert.Equal(1, calls);
        Assert.Contains("Step has already been called", Assert.Throws<InvalidOperationException>(() => scaler.Step(new[] { p }, () => calls++)).Message);
        Assert.Contains("after Step", Assert.Throws<InvalidOperationException>(() => scaler.Unscale(new[] { p })).Message);
        scaler.Update();
        Assert.Contains("call Step (or Unscale) after backward", Assert.Throws<InvalidOperationException>(() => scaler.Update()).Message);
        scaler.Update(8f);
        Assert.Equal(8f, scaler.Scale);
    }

    [Fact]
    public void Bad_settings_and_float16_gradients_are_refused_and_disabled_scaling_steps_always()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradScaler(initScale: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradScaler(growthFactor: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradScaler(backoffFactor: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradScaler(growthInterval: 0));
        var scaler = new GradScaler();
        using var half = new TorchSharp.Modules.Parameter(torch.ones(2, torch.ScalarType.Float16));
        using (var loss = half.sum()) loss.backward();
        var e = Assert.Throws<InvalidOperationException>(() => scaler.Unscale(new[] { half }));
        Assert.Contains("set the network's Precision to Float16 instead of converting it with half()", e.Message);

        var off = new GradScaler(enabled: false);
        using var p = new TorchSharp.Modules.Parameter(torch.ones(1));
        using (var loss = p.sum())
        using (var scaled = off.ScaleLoss(loss))
        {
            Assert.Equal(1f, scaled.item<float>());
            p.grad = torch.tensor(new[] { float.NaN });
        }
        Assert.True(off.Step(new[] { p }, () => { }));
        off.Update();
        Assert.Equal(65536f, off.Scale);
    }
}
