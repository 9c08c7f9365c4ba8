using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.PyTorch;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.MixedPrecision;

/// <summary>
/// The mixed-precision networks against PyTorch's own autocast (autocast_check.py on Debian's PyTorch 1.13, CPU,
/// bfloat16), on the same deterministic weights and input. For each network, autocast's distance from PyTorch's float32
/// output sets the bound: ResNetGen's bfloat16 output may be at most 2× as far from that float32 output, plus how far
/// ResNetGen's own float32 output is from PyTorch's (the two float32 builds, on their own kernels: where those differ, as
/// libtorch 2.10's limited oneDNN and PyTorch 1.13's full one on the Zen 5 VM, ResNetGen's bfloat16 error is measured from
/// a float32 that far away), plus 1e-3 of its largest value (at least one bfloat16 unit there), and must differ from ResNetGen's own float32 output by far more than two float32 builds do (so
/// bfloat16 really ran). The same for a train-mode output and for the float32 parameters' gradients of
/// sum(output × upstream), tensor by tensor.
/// </summary>
public static class AutocastReference
{
    /// <summary>The bound's factor on autocast's own distance from float32.</summary>
    public const double Factor = 2.0;

    /// <summary>
    /// The bound's allowance, relative to the largest float32 value; at least one unit in the last place of the low
    /// precision at that value (<see cref="Unit"/>): a logit computed in bfloat16 lands on its grid, and two kernel orders
    /// can round a sum to neighbouring points of it.
    /// </summary>
    public const double Allowance = 1e-3;

    /// <summary>The spacing of <paramref name="precision"/>'s values around <paramref name="value"/> (bfloat16 keeps 8 significant bits, float16 11).</summary>
    public static double Unit(double value, Precision precision) =>
        value <= 0 ? 0 : Math.Pow(2, Math.Floor(Math.Log2(value)) - (precision == Precision.Float16 ? 10 : 7));

    /// <summary>What one network's comparison measured: for each output kind, ours and autocast's distance from float32, its scale, and ours from autocast's.</summary>
    public sealed record Result(string Name, IReadOnlyDictionary<string, (double Ours, double Autocast, double Scale, double Apart)> Distances);

    /// <summary>
    /// Checks <paramref name="cases"/> (the twins' cases: a network, an input shape, whether to train) in
    /// <paramref name="folder"/>; returns each one's distances for the test's own report.
    /// </summary>
    public static IReadOnlyList<Result> Check(IReadOnlyList<TwinCase> cases, string folder, Precision precision = Precision.BFloat16)
    {
        var manifest = new List<Dictionary<string, object>>();
        var ours = new Dictionary<string, Dictionary<string, (float[] Fp32, float[] Mixed, long[] Shape)>>();
        var parameterOrder = new Dictionary<string, List<(string Name, long[] Shape)>>();
        foreach (var c in cases)
        {
            using var network = c.Create();
            var resnet = (IResNet)network;
            var source = (string)network.GetType().GetField("PyTorchSource")!.GetValue(null)!;
            File.WriteAllText(Path.Combine(folder, c.Name + "_twin.py"), source);
            using var input = DeterministicWeights.Input(c.InputShape);
            DeterministicWeights.WriteFloats(Path.Combine(folder, c.Name + ".input.bin"), input);
            var outputs = new Dictionary<string, (float[], float[], long[])>();
            var (eval32, shape) = Eval(network, resnet, input, Precision.Float32);
            var (evalMixed, _) = Eval(network, resnet, input, precision);
            outputs["eval"] = (eval32, evalMixed, shape);
            if (c.Train)
            {
                using var upstream = DeterministicWeights.Input(shape).mul_(0.1); // the loss: sum(output × upstream)
                DeterministicWeights.WriteFloats(Path.Combine(folder, c.Name + ".upstream.bin"), upstream);
                var (train32, grads32) = Train(network, resnet, input, upstream, Precision.Float32);
                var (trainMixed, gradsMixed) = Train(network, resnet, input, upstream, precision);
                outputs["train"] = (train32, trainMixed, shape);
                foreach (var (name, _) in grads32) outputs["grad " + name] = (grads32[name].Values, gradsMixed[name].Values, grads32[name].Shape);
                parameterOrder[c.Name] = grads32.Select(g => (g.Key, g.Value.Shape)).ToList();
            }
            ours[c.Name] = outputs;
            manifest.Add(new Dictionary<string, object>
            {
                ["name"] = c.Name, ["module"] = c.Name + "_twin.py", ["input"] = c.Name + ".input.bin", ["input_shape"] = c.InputShape,
                ["upstream"] = c.Name + ".upstream.bin", ["train"] = c.Train, ["dtype"] = precision == Precision.Float16 ? "float16" : "bfloat16",
            });
        }
        var manifestPath = Path.Combine(folder, "manifest.json");
        File.WriteAllText(manifestPath, JsonSerializer.Serialize(manifest));
        var output = Twins.RunPython(folder, Path.Combine(Repository.Root(), "Generator.Tests", "PyTorch", "autocast_check.py"), manifestPath);
        var failures = output.Split('\n').Where(l => l.StartsWith("FAIL ", StringComparison.Ordinal)).ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));

        var results = new List<Result>();
        var problems = new List<string>();
        void Ran(string what, double distance, double builds, double scale)
        {
            if (scale > 0 && !(distance > 10 * builds && distance > 1e-6 * scale))
                problems.Add($"{what}: ResNetGen's {precision} is only {distance:G4} from float32 (float32 builds differ by {builds:G4}): did it compute in {precision}?");
        }
        foreach (var c in cases)
        {
            Assert.Contains("ok " + c.Name, output);
            var distances = new Dictionary<string, (double, double, double, double)>();
            var theirs = new Dictionary<string, (float[] Fp32, float[] Autocast)>
            {
                ["eval"] = (Read(folder, c.Name, "eval.fp32"), Read(folder, c.Name, "eval.autocast")),
            };
            if (c.Train)
            {
                theirs["train"] = (Read(folder, c.Name, "train.fp32"), Read(folder, c.Name, "train.autocast"));
                var names = JsonSerializer.Deserialize<List<JsonElement>>(File.ReadAllText(Path.Combine(folder, c.Name + ".grads.json")))!
                    .Select(e => (Name: e[0].GetString()!, Count: e[1].EnumerateArray().Aggregate(1L, (a, d) => a * d.GetInt64()))).ToList();
                Assert.Equal(parameterOrder[c.Name].Select(p => p.Name), names.Select(n => n.Name));
                var (all32, allAutocast) = (Read(folder, c.Name, "grads.fp32"), Read(folder, c.Name, "grads.autocast"));
                long offset = 0;
                foreach (var (name, count) in names)
                {
                    theirs["grad " + name] = (all32.Skip((int)offset).Take((int)count).ToArray(), allAutocast.Skip((int)offset).Take((int)count).ToArray());
                    offset += count;
                }
                Assert.Equal(all32.Length, offset);
            }
            foreach (var (kind, (fp32, autocast)) in theirs)
            {
                var (oursFp32, oursMixed, _) = ours[c.Name][kind];
                var what = $"{c.Name} {kind}";
                Assert.Equal(fp32.Length, oursMixed.Length);
                Assert.True(oursMixed.All(float.IsFinite), $"{what}: ResNetGen's {precision} values hold NaN or infinity");
                var scale = MaxAbs(fp32, null);
                var autocastDistance = MaxAbs(autocast, fp32);
                var oursDistance = MaxAbs(oursMixed, fp32);
                var builds = MaxAbs(oursFp32, fp32); // two float32 builds of the same network
                // |ours − PyTorch's float32| ≤ |ours − our float32| + |our float32 − PyTorch's float32|: the second term is the builds'.
                var bound = Factor * autocastDistance + builds + Math.Max(Allowance * scale, Unit(scale, precision));
                if (!(oursDistance <= bound)) problems.Add(
                    $"{what}: ResNetGen's {precision} is {oursDistance:G4} from PyTorch's float32, more than {Factor} × autocast's {autocastDistance:G4} + the float32 builds' {builds:G4} + {bound - Factor * autocastDistance - builds:G4}");
                // bfloat16 really ran: much further from float32 than two float32 builds are from each other. For the outputs;
                // a single gradient tensor of a train-mode batch-norm over few values can differ between float32 builds by a
                // tenth of what bfloat16 moves it, so the gradients are held to it together, below.
                if (!kind.StartsWith("grad ", StringComparison.Ordinal))
                    Ran(what, oursDistance, builds, scale);
                distances[kind] = (oursDistance, autocastDistance, scale, MaxAbs(oursMixed, autocast));
            }
            if (c.Train)
            {
                var grads = ours[c.Name].Where(o => o.Key.StartsWith("grad ", StringComparison.Ordinal)).Select(o => o.Value).ToList();
                var fp32 = theirs.Where(o => o.Key.StartsWith("grad ", StringComparison.Ordinal)).SelectMany(o => o.Value.Fp32).ToArray();
                Ran($"{c.Name} gradients", MaxAbs(grads.SelectMany(g => g.Mixed).ToArray(), fp32),
                    MaxAbs(grads.SelectMany(g => g.Fp32).ToArray(), fp32), MaxAbs(fp32, null));
            }
            results.Add(new Result(c.Name, distances));
        }
        Assert.True(problems.Count == 0, $"{problems.Count} comparisons out of bounds:\n" + string.Join("\n", problems.Take(40)));
        return results;
    }

    private static (float[] Values, long[] Shape) Eval(torch.nn.Module<torch.Tensor, torch.Tensor> network, IResNet resnet, torch.Tensor input, Precision precision)
    {
        DeterministicWeights.Apply(network);
        resnet.Precision = precision;
        network.eval();
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.Equal(torch.ScalarType.Float32, output.dtype);
        return (output.data<float>().ToArray(), output.shape);
    }

    private static (float[] Output, Dictionary<string, (float[] Values, long[] Shape)> Grads) Train(torch.nn.Module<torch.Tensor, torch.Tensor> network,
        IResNet resnet, torch.Tensor input, torch.Tensor upstream, Precision precision)
    {
        DeterministicWeights.Apply(network); // the same weights and running statistics for each run
        resnet.Precision = precision;
        network.train();
        foreach (var p in network.parameters()) p.grad = null;
        using var scope = torch.NewDisposeScope();
        var output = network.call(input);
        Assert.Equal(torch.ScalarType.Float32, output.dtype);
        output.mul(upstream).sum().backward();
        var grads = new Dictionary<string, (float[], long[])>();
        foreach (var (name, p) in network.named_parameters())
        {
            Assert.Equal(torch.ScalarType.Float32, p.dtype);
            var grad = p.grad ?? throw new Xunit.Sdk.XunitException($"{name} got no gradient in {precision}");
            Assert.Equal(torch.ScalarType.Float32, grad.dtype);
            grads[name] = (grad.data<float>().ToArray(), p.shape);
        }
        return (output.data<float>().ToArray(), grads);
    }

    private static float[] Read(string folder, string name, string kind) => DeterministicWeights.ReadFloats(Path.Combine(folder, $"{name}.{kind}.out"));

    private static double MaxAbs(float[] a, float[]? b)
    {
        var worst = 0.0;
        for (var i = 0; i < a.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - (double)(b?[i] ?? 0f)));
        return worst;
    }
}
