using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The int8 engine in the sample: calibration pictures for predict --engine onnxruntime-int8, export --int8 and bench.
public sealed partial class SampleApp
{
    /// <summary>Pictures an int8 engine calibrates on unless --calibration-count says otherwise: a few hundred, as ONNX Runtime's quantiser advises.</summary>
    public const int DefaultCalibrationCount = 256;

    private const int CalibrationBatch = 32;

    /// <summary>
    /// The calibration batches for <paramref name="classifier"/>: up to <paramref name="count"/> pictures of
    /// <paramref name="folder"/> (and its subfolders, in a fixed shuffled order so that every class is drawn), prepared as
    /// the checkpoint prepares its inputs; without a folder, for the sample's Fashion-MNIST ResNet-20, its own training
    /// images. Returns them with a line saying where they came from. The caller disposes the tensors.
    /// </summary>
    private (List<torch.Tensor> Batches, string Source) CalibrationBatches(Classifier classifier, string? folder, int count, long maxPixels, string? data)
    {
        if (folder is null)
        {
            if (classifier.Preprocess != Classifier.FashionMnistPreprocess)
                throw new SampleException("the int8 engine needs calibration pictures: add --calibration DIR, a folder of a few hundred pictures like those it will see "
                                          + "(the fine-tuning folder's train/ will do).");
            using var fashion = FashionMnist.Load(data, maxPixels);
            using var generator = new torch.Generator(17);
            using var order = torch.randperm(fashion.TrainCount, generator: generator);
            var take = (int)Math.Min(count, fashion.TrainCount);
            var batches = new List<torch.Tensor>();
            for (var start = 0; start < take; start += CalibrationBatch)
            {
                using var indices = order.narrow(0, start, Math.Min(CalibrationBatch, take - start));
                using var bytes = fashion.TrainImages.index_select(0, indices);
                batches.Add(FashionMnist.Normalize(bytes, torch.CPU));
            }
            return (batches, $"{take:N0} Fashion-MNIST training images ({fashion.Source})");
        }
        if (File.Exists(folder)) throw new SampleException($"--calibration {folder}: a file, not a folder. Give a folder of pictures.");
        if (!Directory.Exists(folder)) throw new SampleException($"--calibration {folder}: no such folder. Give a folder of a few hundred pictures like those the network will see.");
        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Where(ImageFolder.IsPicture)
            .OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new SampleException($"--calibration {folder}: no PNG or JPEG pictures in it or its subfolders.");
        // A fixed shuffle, so a folder of class subfolders gives every class, not the first one's pictures alone.
        var random = new Random(17);
        var chosen = files.OrderBy(_ => random.Next()).Take(count).ToList();
        var prepared = new List<torch.Tensor>();
        var unreadable = new List<string>();
        var result = new List<torch.Tensor>();
        try
        {
            foreach (var file in chosen)
            {
                if (_cancel.IsCancellationRequested) throw new OperationCanceledException();
                try
                {
                    prepared.Add(Classifier.Prepare(classifier.Preprocess, file, maxPixels).Input);
                }
                catch (SampleException e)
                {
                    unreadable.Add(e.Message);
                }
                if (prepared.Count == CalibrationBatch) Flush();
            }
            Flush();
        }
        catch
        {
            foreach (var t in prepared.Concat(result)) t.Dispose();
            throw;
        }
        if (result.Count == 0)
            throw new SampleException($"--calibration {folder}: none of its {chosen.Count} pictures could be read; the first: {unreadable[0]}");
        var skipped = unreadable.Count == 0 ? "" : $"; {unreadable.Count} unreadable skipped, the first: {unreadable[0]}";
        return (result, $"{chosen.Count - unreadable.Count:N0} pictures of {folder}{skipped}");

        void Flush()
        {
            if (prepared.Count == 0) return;
            result.Add(torch.cat(prepared, 0));
            foreach (var t in prepared) t.Dispose();
            prepared.Clear();
        }
    }

    /// <summary>
    /// <paramref name="classifier"/>'s int8 engine, calibrated on the pictures <paramref name="request"/> names (see
    /// <see cref="CalibrationBatches"/>), with a progress line while it calibrates and one line saying what it did.
    /// </summary>
    private OnnxRuntimeEngine Int8Engine(Classifier classifier, Int8Request request, long maxPixels, string? data = null, int opset = DefaultOpset)
    {
        var (batches, source) = CalibrationBatches(classifier, request.Folder, request.Count, maxPixels, data);
        var clock = Stopwatch.StartNew();
        OnnxRuntimeEngine engine = null!;
        try
        {
            _console.Progress().AutoClear(true).Start(context =>
            {
                var task = context.AddTask("calibrating int8", maxValue: batches.Sum(b => b.shape[0]));
                engine = Sample.Architecture.Generated(classifier.Network).ToOnnxRuntime(new OnnxRuntimeOptions
                {
                    Int8Calibration = batches,
                    Int8Method = request.Method,
                    Int8Percentile = request.Percentile,
                    Opset = opset,
                    Int8Progress = new Reporter(done => task.Value = done),
                });
            });
        }
        finally
        {
            foreach (var batch in batches) batch.Dispose();
        }
        var q = engine.Quantization!;
        var method = q.Method == CalibrationMethod.Percentile ? FormattableString.Invariant($"percentile ({q.Percentile}%)") : "min-max";
        var reduced = q.ReducedRange ? "; weights within ±63 (this CPU has no VNNI)" : "";
        _console.MarkupLine(Markup.Escape(FormattableString.Invariant(
            $"Quantised to int8 in {clock.Elapsed.TotalSeconds:0.0} s from {source}: {method} ranges, {q.IntegerNodes} convolutions, adds and pools on 8-bit tensors; float32: {string.Join(", ", q.FloatOps)}{reduced}.")));
        return engine;
    }

    private sealed class Reporter(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    /// <summary>A number of calibration pictures given on the command line: 1 to 100,000.</summary>
    private static bool ValidCalibrationCount(int count) => count is >= 1 and <= 100_000;
}
