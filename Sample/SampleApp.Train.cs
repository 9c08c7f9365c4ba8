using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's train: Fashion-MNIST training with live progress, checkpoints and curves.
public sealed partial class SampleApp
{
    private int Train(torch.Device device, string? dataFolder, TrainSettings settings, string output, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        torch.manual_seed(settings.Seed);
        using var data = FashionMnist.Load(dataFolder, maxPixels);
        _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
        Directory.CreateDirectory(output);
        var checkpointPath = CheckpointPath(null, output);
        using var network = new ResNet20();
        network.to(device);
        var trainCount = Math.Min(data.TrainCount, settings.TrainLimit ?? long.MaxValue);
        _console.MarkupLine($"Training ResNet20 on {trainCount:N0} images for {settings.Epochs} epoch(s), batch {settings.BatchSize}, peak learning rate {settings.LearningRate.ToString(CultureInfo.InvariantCulture)}, on {device.type.ToString().ToLowerInvariant()}. Ctrl+C stops after the current batch and keeps the last epoch's checkpoint.");
        _console.MarkupLine(Markup.Escape(PrecisionLine(settings.Precision, device, settings.PrecisionReason)));
        _console.MarkupLine(Markup.Escape(RecipeLine(settings)));

        var results = RunEpochs(network, data, settings, device, result => SaveCheckpoint(network, checkpointPath, result), "test");
        return Finish(results, checkpointPath, Path.Combine(output, CurvesFile), "ResNet-20 on Fashion-MNIST", "test");
    }

    /// <summary>Trains with a live progress bar per epoch and a table of the epochs; <paramref name="epochDone"/> saves each epoch's checkpoint.</summary>
    private List<EpochResult> RunEpochs(torch.nn.Module<torch.Tensor, torch.Tensor> network, ITrainingData data, TrainSettings settings, torch.Device device,
        Action<EpochResult> epochDone, string evaluatedOn)
    {
        var table = new Table().AddColumns("epoch", "train loss", "train acc", $"{evaluatedOn} loss", $"{evaluatedOn} acc", "time", "images/s");
        var scaled = settings.Precision == Precision.Float16;
        if (scaled) table.AddColumns("loss scale", "skipped steps");
        var averaged = settings.Recipe?.Ema is not null;
        if (averaged) table.AddColumns($"EMA {evaluatedOn} acc");
        List<EpochResult> results = new();
        _console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                // Each epoch's bar is added when the epoch starts: a redirected log then reads in order, with no bars
                // at 0% for the epochs still to come.
                var tasks = new ProgressTask?[settings.Epochs];
                results = Trainer.Train(network, data, settings, device,
                    (epoch, batch, batches, loss, accuracy, speed) =>
                    {
                        var description = FormattableString.Invariant($"epoch {epoch}/{settings.Epochs}  loss {loss:0.000}  acc {100 * accuracy:0.0}%  {speed:0} img/s");
                        var task = tasks[epoch - 1] ??= ctx.AddTask(description, maxValue: batches); // made with its first figures
                        task.Value = batch;
                        task.Description = description;
                    },
                    result =>
                    {
                        tasks[result.Epoch - 1]?.StopTask();
                        epochDone(result);
                        var cells = new List<string> { result.Epoch.ToString(CultureInfo.InvariantCulture), F(result.TrainLoss), P(result.TrainAccuracy),
                            F(result.TestLoss), P(result.TestAccuracy), $"{result.Seconds:0.0} s", $"{result.ImagesPerSecond:0}" };
                        if (scaled) cells.AddRange(new[] { result.LossScale.ToString("0", CultureInfo.InvariantCulture), result.SkippedSteps.ToString(CultureInfo.InvariantCulture) });
                        if (averaged) cells.Add(P(result.EmaTestAccuracy ?? double.NaN));
                        table.AddRow(cells.ToArray());
                    },
                    _cancel);
            });
        _console.Write(table);
        _console.MarkupLine(SpeedNote);
        return results;
    }

    /// <summary>The line that says which recipe trains: the optimiser and what else is on, with the learning rate and weight decay.</summary>
    internal static string RecipeLine(TrainSettings settings) =>
        FormattableString.Invariant($"Recipe: {(settings.Recipe ?? TrainRecipe.Original).Describe()}; peak learning rate {settings.LearningRate}, weight decay {settings.WeightDecay}.");

    /// <summary>The precision names of --precision, as the command line takes them.</summary>
    internal static readonly IReadOnlyDictionary<string, Precision> Precisions = new Dictionary<string, Precision>
    {
        ["fp32"] = Precision.Float32, ["bf16"] = Precision.BFloat16, ["fp16"] = Precision.Float16,
    };

    /// <summary>The --precision name of <paramref name="precision"/> (fp32, bf16, fp16), as lines and checkpoints write it.</summary>
    internal static string PrecisionName(Precision precision) => Precisions.First(p => p.Value == precision).Key;

    /// <summary>
    /// The line that says which precision ran, and what it means on this device; after the reason on a line of its own
    /// where --precision auto chose it.
    /// </summary>
    internal static string PrecisionLine(Precision precision, torch.Device device, string? autoReason = null)
    {
        var chosen = autoReason is null ? "" : $"Precision auto chose {PrecisionName(precision)}: {autoReason.TrimEnd('.')}.{Environment.NewLine}";
        return chosen + precision switch
        {
            Precision.BFloat16 => "Precision: bf16, mixed: convolutions and the classifier in bfloat16 over float32 weights, batch-norm statistics in float32, as torch.autocast computes" +
                                  (Autocast.Slower(precision, device) is not null ? " (here slower than fp32: this CPU, as oneDNN runs, has no bfloat16 arithmetic)." : "."),
            Precision.Float16 => "Precision: fp16, mixed: convolutions and the classifier in float16 over float32 weights, with dynamic loss scaling (steps whose gradients overflow are skipped)" +
                                 (Autocast.Slower(precision, device) is not null ? " (here many times slower than fp32: this CPU has no float16 arithmetic; bf16 is a CPU's fast low precision)." : "."),
            _ => "Precision: fp32, float32 throughout.",
        };
    }

    /// <summary>What the images/s column measures, and why two runs can disagree (the README's "Training speed" has the figures).</summary>
    internal const string SpeedNote =
        "[grey]images/s: training steps only (no evaluation); epoch 1 includes one-time warm-up. On a shared VM the same run can be up to 2× slower at another moment: compare epochs within a run, or use bench.[/]";

    /// <summary>Writes the curves and says where the checkpoint is; exit code 130 if Ctrl+C stopped the run.</summary>
    private int Finish(List<EpochResult> results, string checkpointPath, string curves, string title, string evaluatedOn)
    {
        if (results.Count > 0)
        {
            Curves.Save(results, curves, title, evaluatedOn);
            var last = results[^1];
            _console.MarkupLine(last.EmaTestAccuracy is { } averaged
                ? $"Checkpoint (epoch {last.Epoch}, the weights' moving average: {evaluatedOn} accuracy {P(averaged)}; the trained weights scored {P(last.TestAccuracy)}): {Markup.Escape(checkpointPath)}"
                : $"Checkpoint (epoch {last.Epoch}, {evaluatedOn} accuracy {P(last.TestAccuracy)}): {Markup.Escape(checkpointPath)}");
            _console.MarkupLine($"Curves: {Markup.Escape(curves)}");
        }
        if (_cancel.IsCancellationRequested)
        {
            _console.MarkupLine(results.Count > 0
                ? $"[yellow]Interrupted.[/] The checkpoint of epoch {results[^1].Epoch} is intact."
                : "[yellow]Interrupted[/] before the first epoch ended; no checkpoint was written.");
            return 130;
        }
        return 0;
    }

    private static void SaveCheckpoint(ResNet20 network, string path, EpochResult result)
    {
        // Safetensors.Write writes beside the file and renames it into place: an interruption never leaves half a checkpoint.
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["architecture"] = Architecture,
            ["dataset"] = "fashion-mnist",
            ["epoch"] = result.Epoch.ToString(CultureInfo.InvariantCulture),
            ["test_accuracy"] = (result.EmaTestAccuracy ?? result.TestAccuracy).ToString("0.0000", CultureInfo.InvariantCulture),
            ["precision"] = PrecisionName(network.Precision),
        };
        if (result.EmaTestAccuracy is not null) metadata["ema"] = "the saved weights are the moving average";
        Safetensors.Write(path, network.state_dict(), metadata);
    }

    private ResNet20 LoadNetwork(string path, torch.Device device)
    {
        if (!File.Exists(path)) throw new SampleException($"{path}: no checkpoint there. Train one first (train), or pass --checkpoint.");
        var metadata = Safetensors.ReadMetadata(path);
        if (metadata.TryGetValue("architecture", out var architecture) && architecture != Architecture)
            throw new SampleException(Sample.Architecture.Find(architecture) is not null && metadata.ContainsKey(Classifier.ClassesKey)
                ? $"{path} is a fine-tuned {architecture}; eval measures train's {Architecture} on Fashion-MNIST (finetune reports its own validation accuracy each epoch, and predict and export take its checkpoint)."
                : $"{path} holds weights for {architecture}, not {Architecture}. Pass a checkpoint written by this sample's train command.");
        try
        {
            return LoadCheckpoint(new ResNet20(), path, device);
        }
        catch (WeightFileException e) when (!metadata.ContainsKey("architecture") && MismatchedKeys(e) is { } keys)
        {
            // Not train's network, and no metadata to say whose: the command line's way to say it is --arch.
            throw new SampleException($"{path} does not hold train's {Architecture} weights ({keys}), and names no architecture in its metadata. "
                                      + $"For another network's weights (timm's model.safetensors, say), predict and export take --arch NAME: {Sample.Architecture.Names}.");
        }
    }

    /// <summary>Loads the safetensors checkpoint at <paramref name="path"/> into <paramref name="network"/> (disposed if that fails), on <paramref name="device"/>, in eval mode.</summary>
    private static T LoadCheckpoint<T>(T network, string path, torch.Device device) where T : torch.nn.Module
    {
        try
        {
            Safetensors.Load(network, path);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.to(device);
        network.eval();
        return network;
    }

    /// <summary>
    /// The checkpoint at <paramref name="path"/> as predict and export use it: train's ResNet-20 or a network finetune
    /// wrote, told apart by the architecture its metadata names; a checkpoint without that name (timm's or torchvision's
    /// weights as .safetensors) is read as <paramref name="arch"/>, with classes numbered or named by <paramref name="labels"/>.
    /// </summary>
    private Classifier LoadClassifier(string path, torch.Device device, string? arch = null, string? labels = null, string? weights = null)
    {
        if (!File.Exists(path)) throw new SampleException($"{path}: no checkpoint there. Train one first (train or finetune), or pass --checkpoint.");
        var metadata = Safetensors.ReadMetadata(path);
        var named = metadata.TryGetValue("architecture", out var architecture) ? architecture : null;
        if (arch is not null)
        {
            var asked = Sample.Architecture.Named(arch);
            if (named is not null && named != asked.ClassName)
                throw new SampleException($"--arch {arch}: {path} says it holds {named} weights. Leave --arch out for the sample's own checkpoints.");
            return Noted(LoadFineTuned(asked, path, metadata, device, labels, weights));
        }
        if (named is not null && Sample.Architecture.Find(named) is { } known)
            return Noted(LoadFineTuned(known, path, metadata, device, labels, weights));
        if (weights is not null)
            throw new SampleException($"--weights {weights}: {path} is train's Fashion-MNIST network, which has its own preprocessing; drop --weights.");
        var network = LoadNetwork(path, device);
        return new Classifier(network, FashionMnist.Classes, Classifier.FashionMnistPreprocess, (to, opset, meta) =>
        {
            network.FuseForInference();
            return network.ExportOnnx(to, opset, meta);
        });

        Classifier Noted(Classifier classifier)
        {
            if (classifier.PreprocessNote is { } note) _console.MarkupLine(Markup.Escape(note));
            return classifier;
        }
    }
}
