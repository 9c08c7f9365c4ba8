using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>One epoch's figures.</summary>
public sealed record EpochResult(int Epoch, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy, double Seconds, double ImagesPerSecond);

/// <summary>Settings of a training run.</summary>
public sealed record TrainSettings(int Epochs, int BatchSize, double LearningRate, double WeightDecay, long Seed, long? TrainLimit, long? TestLimit);

/// <summary>SGD with Nesterov momentum, a short warm-up then cosine decay, random crop and flip augmentation.</summary>
public static class Trainer
{
    /// <summary>Progress callback: epoch, batches done, batches in the epoch, running loss, running accuracy, images/s.</summary>
    public delegate void Progress(int epoch, int batch, int batches, double loss, double accuracy, double imagesPerSecond);

    public static List<EpochResult> Train(ResNet20 network, FashionMnist data, TrainSettings settings, torch.Device device,
        Progress progress, Action<EpochResult> epochDone, CancellationToken cancel)
    {
        var generator = new torch.Generator((ulong)settings.Seed);
        var trainCount = Math.Min(data.TrainCount, settings.TrainLimit ?? long.MaxValue);
        var batches = (int)((trainCount + settings.BatchSize - 1) / settings.BatchSize);
        var totalSteps = batches * settings.Epochs;
        var warmup = Math.Max(1, totalSteps / 50);
        using var optimizer = torch.optim.SGD(network.parameters(), settings.LearningRate, momentum: 0.9, weight_decay: settings.WeightDecay, nesterov: true);
        var results = new List<EpochResult>();
        var step = 0;
        for (var epoch = 1; epoch <= settings.Epochs; epoch++)
        {
            network.train();
            var clock = Stopwatch.StartNew();
            double lossSum = 0, correct = 0, seen = 0;
            using var order = torch.randperm(trainCount, generator: generator); // the first trainCount images, in a new order each epoch
            for (var b = 0; b < batches; b++)
            {
                if (cancel.IsCancellationRequested) return results;
                using var scope = torch.NewDisposeScope();
                var lr = step < warmup
                    ? settings.LearningRate * (step + 1) / warmup
                    : settings.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (step - warmup) / Math.Max(1, totalSteps - warmup)));
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                step++;

                var count = (int)Math.Min(settings.BatchSize, trainCount - (long)b * settings.BatchSize);
                var index = order.narrow(0, (long)b * settings.BatchSize, count);
                var images = Augment(FashionMnist.Normalize(data.TrainImages.index_select(0, index), device), generator);
                var labels = data.TrainLabels.index_select(0, index).to(device);
                optimizer.zero_grad();
                var logits = network.call(images);
                var loss = torch.nn.functional.cross_entropy(logits, labels);
                loss.backward();
                optimizer.step();

                lossSum += loss.item<float>() * count;
                correct += logits.argmax(1).eq(labels).sum().item<long>();
                seen += count;
                progress(epoch, b + 1, batches, lossSum / seen, correct / seen, seen / clock.Elapsed.TotalSeconds);
            }
            var trainSeconds = clock.Elapsed.TotalSeconds;
            var (testLoss, testAccuracy, _) = Evaluate(network, data, settings.TestLimit, device);
            var result = new EpochResult(epoch, lossSum / seen, correct / seen, testLoss, testAccuracy, clock.Elapsed.TotalSeconds, seen / trainSeconds);
            results.Add(result);
            epochDone(result);
        }
        return results;
    }

    /// <summary>Pads by 2 and crops back at a random offset (one per quarter batch), then flips a random half.</summary>
    private static torch.Tensor Augment(torch.Tensor images, torch.Generator generator)
    {
        var n = images.shape[0];
        var padded = torch.nn.functional.pad(images, new long[] { 2, 2, 2, 2 });
        var parts = new List<torch.Tensor>();
        var quarter = Math.Max(1, (n + 3) / 4);
        for (long start = 0; start < n; start += quarter)
        {
            var length = Math.Min(quarter, n - start);
            var offsets = torch.randint(0, 5, new long[] { 2 }, generator: generator).data<long>().ToArray();
            parts.Add(padded.narrow(0, start, length).narrow(2, offsets[0], 28).narrow(3, offsets[1], 28));
        }
        var cropped = torch.cat(parts, 0);
        var flip = torch.rand(new long[] { n, 1, 1, 1 }, generator: generator).to(images.device).lt(0.5);
        return torch.where(flip, cropped.flip(3), cropped);
    }

    /// <summary>Loss, accuracy and per-class accuracy on the test set (or its first <paramref name="limit"/> images).</summary>
    public static (double Loss, double Accuracy, double[] PerClass) Evaluate(ResNet20 network, FashionMnist data, long? limit, torch.Device device)
    {
        network.eval();
        var count = Math.Min(data.TestCount, limit ?? long.MaxValue);
        double lossSum = 0, correct = 0;
        var classCorrect = new double[10];
        var classTotal = new double[10];
        using var noGrad = torch.no_grad();
        for (long start = 0; start < count; start += 500)
        {
            using var scope = torch.NewDisposeScope();
            var length = Math.Min(500, count - start);
            var images = FashionMnist.Normalize(data.TestImages.narrow(0, start, length), device);
            var labels = data.TestLabels.narrow(0, start, length).to(device);
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
