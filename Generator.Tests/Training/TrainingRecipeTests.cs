using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Torchvision;
using ResNetGen.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using AdamW = ResNetGen.Training.AdamW;

namespace ResNetGen.Generator.Tests.Training;

/// <summary>
/// ResNetGen.Training against PyTorch 1.13 and timm on the same tensors (Reference/training, written by
/// make_training_reference.py from DeterministicWeights' streams): AdamW step for step against torch.optim.AdamW, Lamb
/// against timm's (with and without its gradient clipping), the EMA against timm's ModelEmaV3 with warm-up, the losses and
/// their gradients against F.cross_entropy(label_smoothing) and timm's soft-target and binary losses, mixup and cutmix for
/// a fixed λ and box against timm's Mixup, and gradient clipping against clip_grad_norm_.
/// </summary>
public class TrainingRecipeTests
{
    private static readonly (string Name, long[] Shape)[] Shapes = { ("w", new long[] { 4, 3 }), ("b", new long[] { 5 }), ("k", new long[] { 2, 3, 3, 3 }) };
    private const int Steps = 5;

    private static torch.Tensor Values(string key, long[] shape, double scale = 1.0) =>
        torch.tensor(DeterministicWeights.Uniform(key, shape.Aggregate(1L, (a, b) => a * b)).Select(v => (float)(v * scale)).ToArray(), shape);

    private static Dictionary<string, Parameter> Parameters() =>
        Shapes.ToDictionary(s => s.Name, s => new Parameter(Values("param." + s.Name, s.Shape)));

    private static void AssertMatches(string file, IReadOnlyList<torch.Tensor> actual, string what, double relative = 2e-6)
    {
        var expected = DeterministicWeights.ReadFloats(Path.Combine("training", file));
        var values = actual.SelectMany(t => t.detach().to(torch.float64).contiguous().data<double>().ToArray()).ToArray();
        Assert.Equal(expected.Length, values.Length);
        Tolerance.Compare(expected.Select(v => (double)v).ToArray(), values, new long[] { values.Length }, what, relative);
    }

    /// <summary>The optimiser's five steps with PyTorch's gradients and learning rates (0.01 × step), the parameters after each.</summary>
    private static List<torch.Tensor> Run(Func<Dictionary<string, Parameter>, IOptimizer> create, double gradScale = 1.0)
    {
        var parameters = Parameters();
        using var optimizer = create(parameters);
        var after = new List<torch.Tensor>();
        for (var step = 1; step <= Steps; step++)
        {
            optimizer.LearningRate = 0.01 * step;
            foreach (var (name, shape) in Shapes) parameters[name].grad = Values($"grad{step}.{name}", shape, gradScale);
            optimizer.Step();
            after.AddRange(Shapes.Select(s => parameters[s.Name].detach().clone()));
        }
        return after;
    }

    [Fact]
    public void AdamW_steps_as_torch_optim_AdamW() =>
        AssertMatches("adamw.bin", Run(p => new AdamW(p.Values, learningRate: 0.01)), "AdamW against torch.optim.AdamW");

    private static IEnumerable<DecayedParameter> Groups(Dictionary<string, Parameter> p) =>
        new[] { new DecayedParameter(p["w"], 0.01), new DecayedParameter(p["k"], 0.01), new DecayedParameter(p["b"], 0.0) };

    [Fact]
    public void Lamb_steps_as_timms_with_its_gradient_clipping_and_without_trust_for_undecayed_parameters() =>
        AssertMatches("lamb.bin", Run(p => new Lamb(Groups(p), learningRate: 0.01), gradScale: 3.0), "Lamb against timm's");

    [Fact]
    public void Lamb_without_clipping_and_with_trust_clipping_steps_as_timms() =>
        AssertMatches("lamb_noclip.bin", Run(p => new Lamb(Groups(p), learningRate: 0.01, maxGradNorm: null, trustClip: true), gradScale: 3.0), "Lamb (no clip, trust clip) against timm's");

    [Fact]
    public void The_defaults_are_pytorchs_and_timms()
    {
        var parameters = Parameters();
        using var adamw = new AdamW(parameters.Values);
        Assert.Equal((1e-3, 0.9, 0.999, 1e-8), (adamw.LearningRate, adamw.Beta1, adamw.Beta2, adamw.Eps));
        using var lamb = new Lamb(parameters.Values);
        Assert.Equal((1e-3, 0.9, 0.999, 1e-6, (double?)1.0, false, false), (lamb.LearningRate, lamb.Beta1, lamb.Beta2, lamb.Eps, lamb.MaxGradNorm, lamb.TrustClip, lamb.AlwaysAdapt));
        // timm's param_groups_weight_decay: no decay for one-dimensional parameters and biases, frozen ones left out.
        using var network = new Torchvision.ResNet18();
        network.conv1.weight!.requires_grad = false;
        var groups = ParameterGroups.NoDecayForBiasesAndNorms(network.named_parameters(), 0.05);
        Assert.Equal(network.parameters().Count() - 1, groups.Count);
        Assert.Equal(0.05, groups.Single(g => g.Parameter.Handle == network.fc.weight!.Handle).WeightDecay);
        Assert.Equal(0.0, groups.Single(g => g.Parameter.Handle == network.fc.bias!.Handle).WeightDecay);
        Assert.Equal(0.0, groups.Single(g => g.Parameter.Handle == network.bn1.weight!.Handle).WeightDecay);
    }

    [Fact]
    public void Bad_arguments_are_refused_with_what_to_do()
    {
        var parameters = Parameters();
        Assert.Contains("no parameters", Assert.Throws<ArgumentException>(() => new AdamW(Array.Empty<Parameter>())).Message);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => new Lamb(new[] { parameters["w"], parameters["w"] })).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW(parameters.Values, beta1: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Lamb(parameters.Values, maxGradNorm: 0));
        using var adamw = new AdamW(parameters.Values) { LearningRate = double.NaN };
        Assert.Throws<ArgumentOutOfRangeException>(() => adamw.Step());
        adamw.Dispose();
        Assert.Throws<ObjectDisposedException>(() => adamw.Step());
    }

    [Fact]
    public void The_ema_averages_parameters_and_batch_norm_statistics_as_timms_ModelEmaV3_with_warmup()
    {
        using var model = torch.nn.Sequential(("0", torch.nn.Conv2d(3, 4, 3)), ("1", torch.nn.BatchNorm2d(4)));
        void Fill(int step)
        {
            using var noGrad = torch.no_grad();
            foreach (var (key, t) in model.state_dict())
            {
                if (t.is_floating_point())
                {
                    using var values = Values($"ema{step}.{key}", t.shape);
                    t.copy_(values);
                }
                else t.fill_(step);
            }
        }
        Fill(0);
        using var ema = new ModelEma(model, decay: 0.99, useWarmup: true, updateAfterStep: 1);
        var decays = File.ReadAllLines(Path.Combine(DeterministicWeights.ReferenceFolder, "training", "ema.decays.txt")).Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        var after = new List<torch.Tensor>();
        for (var step = 1; step <= 6; step++)
        {
            Fill(step);
            Assert.Equal(decays[step - 1], ema.DecayAt(step), 12);
            ema.Update(model, step);
            after.AddRange(ema.State.Where(s => s.Value.is_floating_point()).Select(s => s.Value.clone()));
        }
        AssertMatches("ema.bin", after, "the EMA against timm's ModelEmaV3");
        Assert.Equal(6L, ema.State.Single(s => s.Key == "1.num_batches_tracked").Value.item<long>()); // integer buffers copied
        Assert.Contains(ema.State, s => s.Key == "1.running_var"); // the statistics are averaged, not only the parameters

        // CopyTo: another instance gets the average; a different network is refused.
        using var other = torch.nn.Sequential(("0", torch.nn.Conv2d(3, 4, 3)), ("1", torch.nn.BatchNorm2d(4)));
        ema.CopyTo(other);
        Assert.True(other.state_dict()["1.running_mean"].equal(ema.State.Single(s => s.Key == "1.running_mean").Value).all().item<bool>());
        using var wrong = torch.nn.Sequential(("0", torch.nn.Conv2d(3, 5, 3)), ("1", torch.nn.BatchNorm2d(5)));
        Assert.Contains("not the averaged network", Assert.Throws<ArgumentException>(() => ema.CopyTo(wrong)).Message);
        // Without a step the decay is the constant one.
        Assert.Equal(0.99, ema.DecayAt(null));
    }

    [Fact]
    public void The_losses_and_their_gradients_are_pytorchs_and_timms()
    {
        using var labels = torch.tensor(new long[] { 0, 3, 4, 1, 1, 2 });
        using var softLogits = Values("soft-targets", new long[] { 6, 5 }, 3.0);
        using var soft = torch.nn.functional.softmax(softLogits, -1);
        var results = new List<torch.Tensor>();
        foreach (var loss in new Func<torch.Tensor, torch.Tensor>[]
                 {
                     x => Losses.CrossEntropy(x, labels, 0.1),
                     x => Losses.SoftTargetCrossEntropy(x, soft),
                     x => Losses.BinaryCrossEntropy(x, labels, 0.1),
                     x => Losses.BinaryCrossEntropy(x, soft, 0.1),
                 })
        {
            using var logits = Values("logits", new long[] { 6, 5 }, 4.0).requires_grad_();
            var value = loss(logits);
            value.backward();
            results.Add(value.reshape(1));
            results.Add(logits.grad!.clone());
        }
        AssertMatches("losses.bin", results, "the losses against F.cross_entropy(label_smoothing) and timm's");
        Assert.Contains("class indices", Assert.Throws<ArgumentException>(() => Losses.SoftTargetCrossEntropy(torch.zeros(6, 5), labels)).Message);
    }

    [Fact]
    public void Mixup_and_cutmix_mix_as_timm_for_a_given_lambda_and_box()
    {
        using var labels = torch.tensor(new long[] { 2, 0, 1, 2 });
        using var targets = Mixup.Targets(labels, 3, 0.7, 0.1);
        using var images = Values("mix-images", new long[] { 4, 3, 8, 10 });
        using var mixed = images.clone();
        Mixup.MixFlipped(mixed, 0.7);
        var box = File.ReadAllText(Path.Combine(DeterministicWeights.ReferenceFolder, "training", "mixup.box.txt")).Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        using var cut = images.clone();
        Mixup.PasteFlipped(cut, new CutmixBox(box[0], box[1], box[2], box[3]));
        AssertMatches("mixup.bin", new[] { targets, mixed, cut }, "mixup and cutmix against timm's", relative: 1e-7);
    }

    [Fact]
    public void Mixup_draws_lambda_and_boxes_as_timms_distributions_and_keeps_unmixed_batches()
    {
        var random = new Random(40);
        using var labels = torch.tensor(new long[] { 0, 1, 2, 3 });
        // Probability 0: nothing mixed, the targets are the smoothed one-hots.
        using (var images = torch.rand(4, 1, 6, 6))
        using (var copy = images.clone())
        {
            var (targets, lambda, box) = new Mixup(4, probability: 0).Apply(images, labels, random);
            Assert.Equal(1.0, lambda);
            Assert.Null(box);
            Assert.True(images.equal(copy).all().item<bool>());
            using (targets) Assert.Equal(0.1 / 4 + 0.9, targets[0, 0].item<float>(), 6);
        }
        // Mixup with α = 1: λ uniform on (0, 1).
        var lambdas = Enumerable.Range(0, 2000).Select(_ => Mixup.Beta(random, 1.0)).ToArray();
        Assert.InRange(lambdas.Average(), 0.47, 0.53);
        Assert.InRange(lambdas.Count(l => l < 0.25) / 2000.0, 0.22, 0.28);
        // Beta(0.2, 0.2) piles up near 0 and 1 (timm's cutmix recipes use small α too).
        var small = Enumerable.Range(0, 2000).Select(_ => Mixup.Beta(random, 0.2)).ToArray();
        Assert.InRange(small.Count(l => l < 0.1 || l > 0.9) / 2000.0, 0.55, 0.8);
        // Cutmix only: the box pasted is what λ says was pasted.
        var cutmix = new Mixup(4, mixupAlpha: 0, cutmixAlpha: 1.0, labelSmoothing: 0);
        for (var i = 0; i < 50; i++)
        {
            using var images = torch.arange(4 * 10 * 12, dtype: torch.float32).reshape(4, 1, 10, 12);
            using var original = images.clone();
            var (targets, lambda, box) = cutmix.Apply(images, labels, random);
            using (targets)
            {
                Assert.NotNull(box);
                var changed = images.ne(original)[0].sum().item<long>();
                Assert.Equal(box!.Value.Area, changed);
                Assert.Equal(1 - box.Value.Area / 120.0, lambda, 12);
                Assert.Equal(lambda, targets[0, 0].item<float>(), 5);
            }
        }
        Assert.Contains("even batch", Assert.Throws<ArgumentException>(() => cutmix.Apply(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype: torch.int64), random)).Message);
    }

    [Fact]
    public void Gradient_clipping_is_clip_grad_norm()
    {
        var parameters = Parameters();
        foreach (var (name, shape) in Shapes) parameters[name].grad = Values($"grad1.{name}", shape);
        var norm = Gradients.ClipNorm(parameters.Values, 0.5);
        AssertMatches("clip.bin", new[] { torch.tensor(new[] { (float)norm }) }.Concat(Shapes.Select(s => parameters[s.Name].grad!)).ToList(), "clip_grad_norm_");
        // Below the bound nothing changes.
        using var before = parameters["w"].grad!.clone();
        Gradients.ClipNorm(parameters.Values, 100);
        Assert.True(before.equal(parameters["w"].grad!).all().item<bool>());
    }

    /// <summary>
    /// The optimisers, with the rest of the recipe (augmentation, mixup, soft targets, clipping, EMA), under a garbage
    /// collector that runs all the time (a thread forcing collections and running the finalisers, and a collection
    /// between steps; three rounds): every Scalar they hand libtorch is alive until the step ends, so the results are
    /// those of a quiet run bit for bit. In a child process: a freed scalar can kill the process natively.
    /// </summary>
    [Fact]
    public void The_optimisers_hand_libtorch_no_collected_scalar_under_constant_garbage_collection() =>
        Assert.Contains("identical under collection", Isolated.Run<TrainingRecipeTests>(nameof(StressInThisProcess)));

    internal static void StressInThisProcess()
    {
        List<float[]> Train(bool stress)
        {
            using var stop = new System.Threading.CancellationTokenSource();
            var collector = stress ? new System.Threading.Thread(() => { while (!stop.IsCancellationRequested) { GC.Collect(); GC.WaitForPendingFinalizers(); } }) { IsBackground = true } : null;
            collector?.Start();
            var results = new List<float[]>();
            foreach (var create in new Func<IEnumerable<Parameter>, IOptimizer>[] { p => new AdamW(p, 0.01), p => new Lamb(p, 0.01) })
            {
                torch.manual_seed(7);
                using var network = new TinyResNet();
                using var optimizer = create(network.parameters());
                using var ema = new ModelEma(network, 0.9, useWarmup: true);
                using var pictures = torch.randint(0, 256, new long[] { 8, 3, 32, 32 }, torch.uint8);
                using var labels = torch.tensor(new long[] { 0, 1, 2, 0, 1, 2, 0, 1 });
                var mixup = new Mixup(3, mixupAlpha: 1.0, cutmixAlpha: 1.0, labelSmoothing: 0.1);
                var random = new Random(11);
                using var byteScale = 255.0.ToScalar();
                for (var step = 0; step < 30; step++)
                {
                    // the whole recipe: an augmentation (each operation in turn), mixup or cutmix, soft targets, clipping, EMA
                    var op = AugmentOps.All[step % AugmentOps.All.Count];
                    using var input = torch.stack(Enumerable.Range(0, 8).Select(i => AugmentOps.Apply(pictures[i], op, StressMagnitude(op))).ToArray())
                        .to(torch.float32).div_(byteScale);
                    var (targets, _, _) = mixup.Apply(input, labels, random);
                    optimizer.ZeroGrad();
                    using (targets)
                    using (var logits = network.call(input))
                    using (var loss = Losses.SoftTargetCrossEntropy(logits, targets))
                        loss.backward();
                    Gradients.ClipNorm(network.parameters(), 1.0);
                    if (stress) GC.Collect();
                    optimizer.Step();
                    ema.Update(network);
                }
                results.Add(network.parameters().SelectMany(p => p.detach().data<float>().ToArray())
                    .Concat(ema.State.SelectMany(s => s.Value.to(torch.float32).data<float>().ToArray())).ToArray());
            }
            stop.Cancel();
            collector?.Join();
            return results;
        }
        var quiet = Train(stress: false);
        for (var round = 0; round < 3; round++) // a freed scalar is read in one round of two or three: three rounds
        {
            var stressed = Train(stress: true);
            for (var i = 0; i < quiet.Count; i++) Assert.True(quiet[i].SequenceEqual(stressed[i]), $"optimiser {i}: different under collection (round {round + 1})");
        }
        Console.WriteLine("identical under collection");
    }

    private static double StressMagnitude(AugmentOp op) => op switch
    {
        AugmentOp.ShearX or AugmentOp.ShearY => 0.3,
        AugmentOp.TranslateX or AugmentOp.TranslateY => 5,
        AugmentOp.Rotate => 30,
        AugmentOp.Posterize => 4,
        AugmentOp.Solarize => 128,
        _ => 0.5,
    };
}

/// <summary>A small network for the stress test.</summary>
[ResNet(Block.Basic, 1, 1, 1, 1, BaseWidth = 8, NumClasses = 3, InputSize = 32)]
public partial class TinyResNet { }
