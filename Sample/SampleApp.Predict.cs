using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's predict: classes of pictures, with TorchSharp or ONNX Runtime.
public sealed partial class SampleApp
{
    private int Predict(torch.Device device, string[] inputs, string checkpointPath, int top, string? onnxModel = null, string? arch = null, string? labels = null)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input)) files.AddRange(Directory.EnumerateFiles(input).Where(ImageFolder.IsPicture).OrderBy(f => f, StringComparer.Ordinal));
            else if (File.Exists(input)) files.Add(input);
            else throw new SampleException($"{input}: no such file or folder.");
        }
        if (files.Count == 0) throw new SampleException($"{string.Join(", ", inputs)}: no PNG or JPEG files there.");

        IReadOnlyList<string> classes;
        string preprocess;
        Func<torch.Tensor, float[]> classify;
        IDisposable owner;
        if (onnxModel is not null)
        {
            var session = OpenOnnx(onnxModel);
            owner = session;
            var metadata = session.ModelMetadata.CustomMetadataMap;
            classes = Classifier.ClassesFrom(metadata) ?? FashionMnist.Classes; // a model exported before the metadata: the sample's Fashion-MNIST
            preprocess = metadata.TryGetValue(Classifier.PreprocessKey, out var p) ? p : Classifier.FashionMnistPreprocess;
            classify = input =>
            {
                var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(input.contiguous().data<float>().ToArray(), input.shape.Select(d => (int)d).ToArray());
                using var results = session.Run(new[] { Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("input", tensor) });
                var logits = results.First().AsEnumerable<float>().ToArray();
                var max = logits.Max();
                var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
                var sum = exp.Sum();
                return exp.Select(e => (float)(e / sum)).ToArray();
            };
            _console.MarkupLine($"Running {Markup.Escape(onnxModel)} on ONNX Runtime.");
        }
        else
        {
            var classifier = LoadClassifier(checkpointPath, device, arch, labels);
            owner = classifier;
            (classes, preprocess) = (classifier.Classes, classifier.Preprocess);
            classify = input =>
            {
                using var noGrad = torch.no_grad();
                using var onDevice = input.to(device);
                using var logits = classifier.Network.call(onDevice);
                using var probabilities = torch.nn.functional.softmax(logits, 1).cpu();
                return probabilities[0].data<float>().ToArray();
            };
        }
        using var _ = owner;
        var table = new Table().AddColumns("picture", "prediction");
        var notes = new SortedSet<string>(StringComparer.Ordinal);
        var failed = new List<string>();
        top = Math.Min(top, classes.Count);
        foreach (var file in files)
        {
            if (_cancel.IsCancellationRequested) break;
            try
            {
                var (input, note) = Classifier.Prepare(preprocess, file);
                using (input)
                {
                    var p = classify(input);
                    var best = Enumerable.Range(0, classes.Count).OrderByDescending(i => p[i]).Take(top)
                        .Select(i => FormattableString.Invariant($"{classes[i]} {100 * p[i]:0.0}%"));
                    var mark = note is null ? "" : $" [grey]({Markup.Escape(note.Split(':')[0])}*)[/]";
                    if (note is not null) notes.Add(note);
                    table.AddRow(Markup.Escape(Path.GetFileName(file)) + mark, Markup.Escape(string.Join(", ", best)));
                }
            }
            catch (SampleException e) // one unreadable picture is reported in its row; the others are still classified
            {
                failed.Add(e.Message);
                table.AddRow(Markup.Escape(Path.GetFileName(file)), "[red]unreadable[/]");
            }
        }
        _console.Write(table);
        foreach (var note in notes) _console.MarkupLine($"[grey]* {Markup.Escape(note)}.[/]");
        if (failed.Count == 1) throw new SampleException(failed[0]);
        if (failed.Count > 1) throw new SampleException($"{failed.Count} of {files.Count} pictures could not be read; the first: {failed[0]}");
        return _cancel.IsCancellationRequested ? 130 : 0;
    }

    private static Microsoft.ML.OnnxRuntime.InferenceSession OpenOnnx(string path)
    {
        if (!File.Exists(path)) throw new SampleException($"{path}: no such ONNX model. Write one with the export command.");
        try
        {
            return new Microsoft.ML.OnnxRuntime.InferenceSession(path);
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            throw new SampleException($"{path} is not an ONNX model ONNX Runtime can load: {e.Message.Split('\n')[0]}");
        }
    }
}
