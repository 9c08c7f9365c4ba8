using System;
using System.Collections.Generic;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's eval: accuracy of a checkpoint on the test set, on TorchSharp or an engine, and what int8 costs.
public sealed partial class SampleApp
{
    /// <summary>How eval computes: the engine, and for the int8 engine its calibration.</summary>
    private sealed record EvalEngine(string Engine, string? Images, Int8Request Int8, long MaxPixels = PictureReader.DefaultMaxPixels);

    private int Eval(torch.Device device, string? dataFolder, string checkpointPath, long? limit, EvalEngine? how = null)
    {
        how ??= new EvalEngine("torchsharp", null, new Int8Request(null, DefaultCalibrationCount));
        if (how.Engine == "torchsharp" && how.Images is null)
        {
            using var resnet20 = LoadNetwork(checkpointPath, device);
            using var data = FashionMnist.Load(dataFolder, how.MaxPixels);
            _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
            var (loss, accuracy, perClass) = Trainer.Evaluate(resnet20, data, limit, device);
            var table = new Table().AddColumns("class", "accuracy");
            for (var c = 0; c < 10; c++) table.AddRow(FashionMnist.Classes[c], P(perClass[c]));
            table.AddRow("[bold]all[/]", $"[bold]{P(accuracy)}[/]");
            _console.Write(table);
            _console.MarkupLine($"Test loss {F(loss)}, accuracy {P(accuracy)} on {Math.Min(data.TestCount, limit ?? long.MaxValue):N0} images ({Markup.Escape(checkpointPath)}).");
            return 0;
        }
        if (how.Engine != "torchsharp" && device.type != DeviceType.CPU)
            throw new SampleException($"--engine {how.Engine} computes on the CPU: drop --device cuda, or use --engine torchsharp.");
        if (how.Engine != "onnxruntime-int8" && how.Int8.Folder is not null)
            throw new SampleException("--calibration is for --engine onnxruntime-int8: add it, or drop --calibration.");

        using var classifier = LoadClassifier(checkpointPath, device, null, null);
        var test = how.Images is null
            ? (ITrainingData)FashionMnist.Load(dataFolder, how.MaxPixels)
            : ImageFolder.Open(how.Images, Preprocessing.Parse(classifier.Preprocess)
                                           ?? throw new SampleException($"{checkpointPath} is train's Fashion-MNIST network: evaluate it without --images."),
                maxPixels: how.MaxPixels);
        using var owned = test as IDisposable;
        if (!test.Classes.SequenceEqual(classifier.Classes))
            throw new SampleException($"{checkpointPath} knows the classes {string.Join(", ", classifier.Classes)}, but the data has {string.Join(", ", test.Classes)}: evaluate it on the data it was trained for.");
        _console.MarkupLine($"Data: {Markup.Escape(how.Images is null ? ((FashionMnist)test).Source : how.Images + "/val")}.");
        var network = Sample.Architecture.Generated(classifier.Network);
        var count = Math.Min(test.TestCount, limit ?? long.MaxValue);

        var engines = new List<(string Name, Func<torch.Tensor, torch.Tensor> Logits)>();
        var disposables = new List<IDisposable>();
        try
        {
            if (how.Engine == "torchsharp")
                engines.Add(("TorchSharp", x =>
                {
                    using var noGrad = torch.no_grad();
                    using var onDevice = x.to(device);
                    using var logits = classifier.Network.call(onDevice);
                    return logits.cpu();
                }));
            else
            {
                var floats = network.ToOnnxRuntime();
                disposables.Add(floats);
                engines.Add((how.Engine == "onnxruntime" ? "ONNX Runtime" : "float32 engine", floats.forward));
            }
            if (how.Engine == "onnxruntime-int8")
            {
                // A fine-tuned checkpoint calibrates on its folder's training pictures unless told otherwise.
                var request = how.Images is not null && how.Int8.Folder is null ? how.Int8 with { Folder = System.IO.Path.Combine(how.Images, "train") } : how.Int8;
                var int8 = Int8Engine(classifier, request, how.MaxPixels, dataFolder);
                disposables.Add(int8);
                engines.Add(("int8 engine", int8.forward));
            }

            // One pass over the test pictures, every engine on each batch.
            var labels = new List<long>();
            var predictions = engines.Select(_ => new List<long>()).ToArray();
            for (long start = 0; start < count && !_cancel.IsCancellationRequested; start += test.TestBatchSize)
            {
                var (images, batchLabels) = test.TestBatch(start, Math.Min(test.TestBatchSize, count - start), torch.CPU);
                using (images)
                using (batchLabels)
                {
                    labels.AddRange(batchLabels.data<long>().ToArray());
                    for (var e = 0; e < engines.Count; e++)
                    {
                        using var output = engines[e].Logits(images);
                        using var best = output.argmax(1);
                        predictions[e].AddRange(best.data<long>().ToArray());
                    }
                }
            }
            if (_cancel.IsCancellationRequested) return 130;
            double Accuracy(List<long> p) => p.Zip(labels).Count(x => x.First == x.Second) / (double)labels.Count;

            var table = new Table().AddColumn("class");
            foreach (var (name, _) in engines) table.AddColumn(name);
            for (var c = 0; c < test.Classes.Count; c++)
            {
                var members = Enumerable.Range(0, labels.Count).Where(i => labels[i] == c).ToList();
                table.AddRow(new[] { Markup.Escape(test.Classes[c]) }.Concat(predictions.Select(p =>
                    members.Count == 0 ? "–" : P(members.Count(i => p[i] == c) / (double)members.Count))).ToArray());
            }
            table.AddRow(new[] { "[bold]all[/]" }.Concat(predictions.Select(p => $"[bold]{P(Accuracy(p))}[/]")).ToArray());
            _console.Write(table);
            _console.MarkupLine($"Accuracy on {labels.Count:N0} pictures ({Markup.Escape(checkpointPath)}): "
                                + string.Join(", ", engines.Select((e, i) => $"{Markup.Escape(e.Name)} {P(Accuracy(predictions[i]))}")) + ".");
            if (engines.Count == 2)
            {
                var (a, b) = (Accuracy(predictions[0]), Accuracy(predictions[1]));
                var agree = predictions[0].Zip(predictions[1]).Count(p => p.First == p.Second);
                _console.MarkupLine(Markup.Escape(FormattableString.Invariant(
                    $"int8 against float32: accuracy {100 * b:0.00}% against {100 * a:0.00}% ({100 * (b - a):+0.00;-0.00;0.00} points); the same class for {agree:N0} of {labels.Count:N0} pictures ({100.0 * agree / labels.Count:0.00}%).")));
            }
            return 0;
        }
        finally
        {
            foreach (var d in Enumerable.Reverse(disposables)) d.Dispose();
        }
    }

}
