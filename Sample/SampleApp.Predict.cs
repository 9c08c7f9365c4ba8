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
    private int Predict(torch.Device device, string[] inputs, string checkpointPath, int top, string? onnxModel = null)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                files.AddRange(Directory.EnumerateFiles(input)
                    .Where(f => f.EndsWith(".png", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jpg", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jpeg", StringComparison.OrdinalIgnoreCase))
                    .OrderBy(f => f, StringComparer.Ordinal));
            }
            else if (File.Exists(input)) files.Add(input);
            else throw new SampleException($"{input}: no such file or folder.");
        }
        if (files.Count == 0) throw new SampleException($"{string.Join(", ", inputs)}: no PNG or JPEG files there.");
        Func<torch.Tensor, float[]> classify;
        IDisposable owner;
        if (onnxModel is not null)
        {
            if (!File.Exists(onnxModel)) throw new SampleException($"{onnxModel}: no such ONNX model. Write one with the export command.");
            Microsoft.ML.OnnxRuntime.InferenceSession session;
            try
            {
                session = new Microsoft.ML.OnnxRuntime.InferenceSession(onnxModel);
            }
            catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
            {
                throw new SampleException($"{onnxModel} is not an ONNX model ONNX Runtime can load: {e.Message.Split('\n')[0]}");
            }
            owner = session;
            classify = input =>
            {
                var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(input.contiguous().data<float>().ToArray(), new[] { 1, 1, 28, 28 });
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
            var torchNetwork = LoadNetwork(checkpointPath, device);
            owner = torchNetwork;
            classify = input =>
            {
                using var noGrad = torch.no_grad();
                using var logits = torchNetwork.call(input);
                using var probabilities = torch.nn.functional.softmax(logits, 1).cpu();
                return probabilities[0].data<float>().ToArray();
            };
        }
        using var _ = owner;
        var table = new Table().AddColumns("image", "prediction");
        top = Math.Min(top, 10);
        foreach (var file in files)
        {
            var (pixels, inverted) = Images.Load(file);
            using (pixels)
            using (var input = FashionMnist.Normalize(pixels, onnxModel is null ? device : torch.CPU))
            {
                var p = classify(input);
                var best = Enumerable.Range(0, 10).OrderByDescending(i => p[i]).Take(top)
                    .Select(i => FormattableString.Invariant($"{FashionMnist.Classes[i]} {100 * p[i]:0.0}%"));
                table.AddRow(Markup.Escape(Path.GetFileName(file)) + (inverted ? " [grey](inverted)[/]" : ""), Markup.Escape(string.Join(", ", best)));
            }
        }
        _console.Write(table);
        return 0;
    }
}
