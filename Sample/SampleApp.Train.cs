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
    private int Train(torch.Device device, string? dataFolder, TrainSettings settings, string output)
    {
        torch.manual_seed(settings.Seed);
        using var data = FashionMnist.Load(dataFolder);
        _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
        Directory.CreateDirectory(output);
        var checkpointPath = CheckpointPath(null, output);
        using var network = new ResNet20();
        network.to(device);
        var trainCount = Math.Min(data.TrainCount, settings.TrainLimit ?? long.MaxValue);
        _console.MarkupLine($"Training ResNet20 on {trainCount:N0} images for {settings.Epochs} epoch(s), batch {settings.BatchSize}, peak learning rate {settings.LearningRate.ToString(CultureInfo.InvariantCulture)}, on {device.type.ToString().ToLowerInvariant()}. Ctrl+C stops after the current batch and keeps the last epoch's checkpoint.");

        var table = new Table().AddColumns("epoch", "train loss", "train acc", "test loss", "test acc", "time", "images/s");
        List<EpochResult> results = new();
        _console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var tasks = Enumerable.Range(1, settings.Epochs).Select(e => ctx.AddTask($"epoch {e}/{settings.Epochs}", autoStart: e == 1)).ToList();
                results = Trainer.Train(network, data, settings, device,
                    (epoch, batch, batches, loss, accuracy, speed) =>
                    {
                        var task = tasks[epoch - 1];
                        if (!task.IsStarted) task.StartTask();
                        task.MaxValue = batches;
                        task.Value = batch;
                        task.Description = FormattableString.Invariant($"epoch {epoch}/{settings.Epochs}  loss {loss:0.000}  acc {100 * accuracy:0.0}%  {speed:0} img/s");
                    },
                    result =>
                    {
                        tasks[result.Epoch - 1].StopTask();
                        SaveCheckpoint(network, checkpointPath, result);
                        table.AddRow(result.Epoch.ToString(CultureInfo.InvariantCulture), F(result.TrainLoss), P(result.TrainAccuracy),
                            F(result.TestLoss), P(result.TestAccuracy), $"{result.Seconds:0.0} s", $"{result.ImagesPerSecond:0}");
                    },
                    _cancel);
            });
        _console.Write(table);
        if (results.Count > 0)
        {
            var curves = Path.Combine(output, CurvesFile);
            Curves.Save(results, curves);
            _console.MarkupLine($"Checkpoint (epoch {results[^1].Epoch}, test accuracy {P(results[^1].TestAccuracy)}): {Markup.Escape(checkpointPath)}");
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
            ["test_accuracy"] = result.TestAccuracy.ToString("0.0000", CultureInfo.InvariantCulture),
        };
        Safetensors.Write(path, network.state_dict(), metadata);
    }

    private ResNet20 LoadNetwork(string path, torch.Device device)
    {
        if (!File.Exists(path)) throw new SampleException($"{path}: no checkpoint there. Train one first (train), or pass --checkpoint.");
        var metadata = Safetensors.ReadMetadata(path);
        if (metadata.TryGetValue("architecture", out var architecture) && architecture != Architecture)
            throw new SampleException($"{path} holds weights for {architecture}, not {Architecture}. Pass a checkpoint written by this sample's train command.");
        var network = new ResNet20();
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
}
