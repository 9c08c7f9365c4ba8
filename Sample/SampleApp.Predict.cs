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
    /// <summary>From how many pictures predict's auto choice builds the ONNX Runtime engine: measured on a 2-core Xeon, ResNet-50's engine
    /// builds in about 1 s and then saves about 90 ms a picture against TorchSharp at batch 1, so it pays back near ten.</summary>
    private const int EngineThreshold = 10;

    private int Predict(torch.Device device, string[] inputs, string checkpointPath, int top, string? onnxModel = null, string? arch = null, string? labels = null,
        string engine = "auto", long maxPixels = PictureReader.DefaultMaxPixels, Int8Request? int8 = null, string? weights = null)
    {
        int8 ??= new Int8Request(null, DefaultCalibrationCount);
        var quantise = engine == "onnxruntime-int8";
        if (!quantise && int8.Folder is not null) throw new SampleException("--calibration is for --engine onnxruntime-int8: add it, or drop --calibration.");
        if (quantise && onnxModel is not null)
            throw new SampleException("--onnx runs a model as it was exported: export one with export --int8, then predict --onnx MODEL (without --engine).");
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
            if (weights is not null) throw new SampleException("--onnx runs a model with the preprocessing in its metadata: drop --weights (export takes it).");
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
            var classifier = LoadClassifier(checkpointPath, device, arch, labels, weights);
            (classes, preprocess) = (classifier.Classes, classifier.Preprocess);
            if (engine is "onnxruntime" or "onnxruntime-int8" && device.type != DeviceType.CPU)
            {
                classifier.Dispose();
                throw new SampleException($"--engine {engine} computes on the CPU: drop --device cuda, or use --engine torchsharp.");
            }
            var useEngine = engine is "onnxruntime" or "onnxruntime-int8" || engine == "auto" && device.type == DeviceType.CPU && files.Count >= EngineThreshold;
            OnnxRuntimeEngine? served = null;
            string? noEngine = null;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            if (quantise)
            {
                try
                {
                    served = Int8Engine(classifier, int8, maxPixels);
                }
                catch
                {
                    classifier.Dispose();
                    throw;
                }
            }
            else if (useEngine)
            {
                try
                {
                    served = Sample.Architecture.Generated(classifier.Network).ToOnnxRuntime();
                }
                catch (InvalidOperationException e) when (engine == "auto" && e.Message.StartsWith("ONNX Runtime's native library is not in this application", StringComparison.Ordinal))
                {
                    // auto's choice, not the user's: where this build has no ONNX Runtime (a trimmed publish without it), TorchSharp computes.
                    useEngine = false;
                    noEngine = " (ONNX Runtime's native library is not in this build)";
                }
            }
            if (useEngine)
            {
                served ??= Sample.Architecture.Generated(classifier.Network).ToOnnxRuntime();
                owner = new Owners(served, classifier);
                classify = input =>
                {
                    using var logits = served.forward(input);
                    using var probabilities = torch.nn.functional.softmax(logits, 1);
                    return probabilities[0].data<float>().ToArray();
                };
                _console.MarkupLine(FormattableString.Invariant($"Running {Markup.Escape(checkpointPath)} on ONNX Runtime in this process (the network's {(quantise ? "int8 " : "")}engine, built in {clock.Elapsed.TotalSeconds:0.0} s)."));
            }
            else
            {
                owner = classifier;
                classify = input =>
                {
                    using var noGrad = torch.no_grad();
                    using var onDevice = input.to(device);
                    using var logits = classifier.Network.call(onDevice);
                    using var probabilities = torch.nn.functional.softmax(logits, 1).cpu();
                    return probabilities[0].data<float>().ToArray();
                };
                var why = noEngine ?? (engine == "torchsharp" ? "" : device.type != DeviceType.CPU ? " (on the GPU)"
                    : $" (fewer than {EngineThreshold} pictures: ONNX Runtime's engine would not pay back its build; --engine onnxruntime to use it)");
                _console.MarkupLine($"Running {Markup.Escape(checkpointPath)} on TorchSharp{Markup.Escape(why)}.");
            }
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
                var (input, note) = Classifier.Prepare(preprocess, file, maxPixels);
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
            catch (SampleException e) // one unreadable picture is reported in its row, with why; the others are still classified
            {
                failed.Add(e.Message);
                var why = e.Message.StartsWith(file, StringComparison.Ordinal) ? e.Message[file.Length..].TrimStart(':', ' ') : e.Message;
                table.AddRow(Markup.Escape(Path.GetFileName(file)), "[red]unreadable:[/] " + Markup.Escape(why));
            }
        }
        _console.Write(table);
        foreach (var note in notes) _console.MarkupLine($"[grey]* {Markup.Escape(note)}.[/]");
        if (failed.Count == 1) throw new SampleException(failed[0]);
        if (failed.Count > 1) throw new SampleException($"{failed.Count} of {files.Count} pictures could not be read; the first: {failed[0]}");
        return _cancel.IsCancellationRequested ? 130 : 0;
    }

    /// <summary>
    /// An int8 engine's calibration: a folder of pictures (null: the checkpoint's own data where it has some), how many at
    /// most, and how ranges are chosen.
    /// </summary>
    private sealed record Int8Request(string? Folder, int Count, CalibrationMethod Method = CalibrationMethod.Percentile, double Percentile = 99.999);

    /// <summary>Disposes several things in order: an engine before its network.</summary>
    private sealed class Owners(params IDisposable[] owned) : IDisposable
    {
        public void Dispose()
        {
            foreach (var o in owned) o.Dispose();
        }
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
