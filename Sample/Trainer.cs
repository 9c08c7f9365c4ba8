using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using ResNetGen.Training;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>
/// One epoch's figures; with float16 the loss scale at its end and the steps skipped in it (their gradients were not
/// finite, so they never reached the weights).
/// </summary>
public sealed record EpochResult(int Epoch, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy, double Seconds, double ImagesPerSecond,
    float LossScale = 1, long SkippedSteps = 0, double? EmaTestLoss = null, double? EmaTestAccuracy = null);

/// <summary>
/// The training recipe beyond SGD: the optimiser (sgd: Nesterov SGD, as before; adamw; lamb — the latter two without
/// weight decay on biases and norms, as timm), label smoothing, mixup and cutmix (Beta α; 0 is off; with either, the loss
/// is cross-entropy on the mixed soft targets), an exponential moving average of the weights (its decay; evaluated each
/// epoch and saved as the checkpoint), and gradient-norm clipping. The default is the sample's original recipe.
/// </summary>
public sealed record TrainRecipe(string Optimizer = "sgd", double LabelSmoothing = 0, double Mixup = 0, double Cutmix = 0, double? Ema = null, double? ClipGrad = null,
    string Augment = "none")
{
    /// <summary>The automatic augmentations by name.</summary>
    public static readonly IReadOnlyList<string> Augments = new[] { "none", "trivialaugment", "randaugment" };

    /// <summary>The augmentation <see cref="Augment"/> names (null for none).</summary>
    public AutoAugment? Policy() => Augment switch
    {
        "trivialaugment" => new TrivialAugmentWide(),
        "randaugment" => new RandAugment(),
        "none" => null,
        _ => throw new SampleException($"unknown augmentation '{Augment}': use {string.Join(", ", Augments)}."),
    };

    /// <summary>The optimisers by name.</summary>
    public static readonly IReadOnlyList<string> Optimizers = new[] { "sgd", "adamw", "lamb" };

    /// <summary>The sample's original recipe: Nesterov SGD, nothing else.</summary>
    public static readonly TrainRecipe Original = new();

    /// <summary>The recipes <c>--recipe</c> names: the original, and the combination measured best for ResNet-20 on Fashion-MNIST at 10 epochs.</summary>
    public static readonly IReadOnlyDictionary<string, TrainRecipe> Named = new Dictionary<string, TrainRecipe>
    {
        ["original"] = Original,
        ["fashion"] = new(LabelSmoothing: 0.1, ClipGrad: 1.0),
    };

    /// <summary>One line: what differs from the original recipe.</summary>
    public string Describe()
    {
        var parts = new List<string> { Optimizer switch { "adamw" => "AdamW", "lamb" => "LAMB", _ => "Nesterov SGD" } };
        if (Augment == "trivialaugment") parts.Add("TrivialAugmentWide");
        if (Augment == "randaugment") parts.Add("RandAugment (2 operations at magnitude 9)");
        if (LabelSmoothing > 0) parts.Add(FormattableString.Invariant($"label smoothing {LabelSmoothing}"));
        if (Mixup > 0) parts.Add(FormattableString.Invariant($"mixup α {Mixup}"));
        if (Cutmix > 0) parts.Add(FormattableString.Invariant($"cutmix α {Cutmix}"));
        if (ClipGrad is { } clip) parts.Add(FormattableString.Invariant($"gradients clipped to norm {clip}"));
        if (Ema is { } decay) parts.Add(FormattableString.Invariant($"EMA of the weights up to {decay} (evaluated and saved)"));
        return string.Join(", ", parts);
    }
}

/// <summary>Settings of a training run; <paramref name="Precision"/> is what the network computes in (training and evaluation).</summary>
public sealed record TrainSettings(int Epochs, int BatchSize, double LearningRate, double WeightDecay, long Seed, long? TrainLimit, long? TestLimit,
    Precision Precision = Precision.Float32, TrainRecipe? Recipe = null, string? PrecisionReason = null);

/// <summary>
/// SGD with Nesterov momentum over the trainable parameters, a short warm-up then cosine decay, the data's own augmentation;
/// in the settings' precision, float16 with dynamic loss scaling (<see cref="GradScaler"/>).
/// </summary>
public static class Trainer
{
    /// <summary>Progress callback: epoch, batches done, batches in the epoch, running loss, running accuracy, images/s.</summary>
    public delegate void Progress(int epoch, int batch, int batches, double loss, double accuracy, double imagesPerSecond);

    /// <summary>
    /// Trains the parameters of <paramref name="network"/> that require gradients (all of them, unless the backbone is
    /// frozen) and evaluates after each epoch.
    /// </summary>
    public static List<EpochResult> Train(torch.nn.Module<torch.Tensor, torch.Tensor> network, ITrainingData data, TrainSettings settings, torch.Device device,
        Progress progress, Action<EpochResult> epochDone, CancellationToken cancel)
    {
        var generator = new torch.Generator((ulong)settings.Seed);
        var trainCount = Math.Min(data.TrainCount, settings.TrainLimit ?? long.MaxValue);
        var batches = (int)((trainCount + settings.BatchSize - 1) / settings.BatchSize);
        var totalSteps = batches * settings.Epochs;
        var warmup = Math.Max(1, totalSteps / 50);
        var recipe = settings.Recipe ?? TrainRecipe.Original;
        var named = network.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        var trainable = named.Select(p => p.parameter).ToList();
        using IOptimizer optimizer = recipe.Optimizer switch
        {
            "adamw" => new AdamW(ParameterGroups.NoDecayForBiasesAndNorms(named, settings.WeightDecay), settings.LearningRate),
            "lamb" => new Lamb(ParameterGroups.NoDecayForBiasesAndNorms(named, settings.WeightDecay), settings.LearningRate),
            "sgd" => new NesterovSgd(trainable, momentum: 0.9, weightDecay: settings.WeightDecay),
            _ => throw new SampleException($"unknown optimizer '{recipe.Optimizer}': use {string.Join(", ", TrainRecipe.Optimizers)}."),
        };
        var mixup = recipe.Mixup > 0 || recipe.Cutmix > 0 ? new Mixup(data.Classes.Count, recipe.Mixup, recipe.Cutmix, labelSmoothing: recipe.LabelSmoothing) : null;
        var mixRandom = new Random(unchecked((int)settings.Seed));
        // With timm's warm-up: the decay grows as 1 − (1 + step)^(−2/3) up to the one asked for, so that the average of a
        // short run (a new classifier fine-tuned for a few hundred steps) is not dominated by its random start.
        using var ema = recipe.Ema is { } emaDecay ? new ModelEma(network, emaDecay, useWarmup: true) : null;
        SetPrecision(network, settings.Precision);
        // float16's gradients underflow without loss scaling; bfloat16 has float32's range and needs none.
        var scaler = new GradScaler(enabled: settings.Precision == Precision.Float16);
        var augmentation = data.Augmentation;
        data.Augmentation = recipe.Policy();
        try
        {
            return TrainEpochs();
        }
        finally
        {
            data.Augmentation = augmentation;
        }

        List<EpochResult> TrainEpochs()
        {
            var results = new List<EpochResult>();
            var step = 0;
            for (var epoch = 1; epoch <= settings.Epochs; epoch++)
            {
                network.train();
                var clock = Stopwatch.StartNew();
                double lossSum = 0, correct = 0, seen = 0;
                var skippedBefore = scaler.StepsSkipped;
                using var order = torch.randperm(trainCount, generator: generator); // the first trainCount images, in a new order each epoch
                for (var b = 0; b < batches; b++)
                {
                    if (cancel.IsCancellationRequested) return results;
                    using var scope = torch.NewDisposeScope();
                    var lr = step < warmup
                        ? settings.LearningRate * (step + 1) / warmup
                        : settings.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (step - warmup) / Math.Max(1, totalSteps - warmup)));
                    optimizer.LearningRate = lr;
                    step++;

                    var count = (int)Math.Min(settings.BatchSize, trainCount - (long)b * settings.BatchSize);
                    var (images, labels) = data.TrainBatch(order.narrow(0, (long)b * settings.BatchSize, count), generator, device);
                    optimizer.ZeroGrad();
                    // Mixup and cutmix mix a batch with itself reversed: an odd last batch is left as it is (timm drops it).
                    var targets = mixup is not null && count % 2 == 0 ? mixup.Apply(images, labels, mixRandom).Targets : null;
                    var logits = network.call(images);
                    var loss = targets is not null ? Losses.SoftTargetCrossEntropy(logits, targets) : Losses.CrossEntropy(logits, labels, recipe.LabelSmoothing);
                    scaler.ScaleLoss(loss).backward();
                    scaler.Step(trainable, () =>
                    {
                        if (recipe.ClipGrad is { } clip) Gradients.ClipNorm(trainable, clip); // after unscaling, as PyTorch's recipe clips
                        optimizer.Step();
                    });
                    scaler.Update();
                    ema?.Update(network, step);

                    lossSum += loss.item<float>() * count;
                    correct += logits.argmax(1).eq(labels).sum().item<long>();
                    seen += count;
                    progress(epoch, b + 1, batches, lossSum / seen, correct / seen, seen / clock.Elapsed.TotalSeconds);
                }
                var trainSeconds = clock.Elapsed.TotalSeconds;
                var (testLoss, testAccuracy, _) = Evaluate(network, data, settings.TestLimit, device);
                var result = new EpochResult(epoch, lossSum / seen, correct / seen, testLoss, testAccuracy, clock.Elapsed.TotalSeconds, seen / trainSeconds,
                    scaler.Enabled ? scaler.Scale : 1, scaler.StepsSkipped - skippedBefore);
                if (ema is null)
                {
                    results.Add(result);
                    epochDone(result);
                    continue;
                }
                // The averaged weights in the network while they are evaluated and saved, the trained ones back after.
                using (var live = new ModelEma(network, decay: 0.0))
                {
                    ema.CopyTo(network);
                    var (emaLoss, emaAccuracy, _) = Evaluate(network, data, settings.TestLimit, device);
                    result = result with { EmaTestLoss = emaLoss, EmaTestAccuracy = emaAccuracy };
                    results.Add(result);
                    epochDone(result);
                    if (epoch < settings.Epochs) live.CopyTo(network);
                }
            }
            return results; // with an EMA, the network ends holding the averaged weights, as saved
        }
    }

    /// <summary>Sets what a generated network computes in; any other module computes as it is, so only Float32 is accepted for it.</summary>
    public static void SetPrecision(torch.nn.Module network, Precision precision)
    {
        if (network is IResNet resnet) resnet.Precision = precision;
        else if (precision != Precision.Float32) throw new SampleException($"{network.GetType().Name} is not a generated network: it trains in float32 only.");
    }

    /// <summary>Loss, accuracy and per-class accuracy on the test images (or their first <paramref name="limit"/>).</summary>
    public static (double Loss, double Accuracy, double[] PerClass) Evaluate(torch.nn.Module<torch.Tensor, torch.Tensor> network, ITrainingData data, long? limit, torch.Device device)
    {
        network.eval();
        var count = Math.Min(data.TestCount, limit ?? long.MaxValue);
        var classes = data.Classes.Count;
        double lossSum = 0, correct = 0;
        var classCorrect = new double[classes];
        var classTotal = new double[classes];
        using var noGrad = torch.no_grad();
        for (long start = 0; start < count; start += data.TestBatchSize)
        {
            using var scope = torch.NewDisposeScope();
            var length = Math.Min(data.TestBatchSize, count - start);
            var (images, labels) = data.TestBatch(start, length, device);
            var logits = network.call(images);
            lossSum += torch.nn.functional.cross_entropy(logits, labels).item<float>() * length;
            var predicted = logits.argmax(1).cpu().data<long>().ToArray();
            var truth = labels.cpu().data<long>().ToArray();
            for (var i = 0; i < predicted.Length; i++)
            {
                classTotal[truth[i]]++;
                if (predicted[i] == truth[i])
                {
                    correct++;
                    classCorrect[truth[i]]++;
                }
            }
        }
        return (lossSum / count, correct / count, classCorrect.Zip(classTotal, (c, t) => t == 0 ? 0 : c / t).ToArray());
    }
}
