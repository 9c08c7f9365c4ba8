using System;
using System.IO;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's export: a checkpoint (train's or finetune's) as an ONNX model.
public sealed partial class SampleApp
{
    private int Export(string checkpointPath, string? path, int opset, string? arch = null, string? labels = null)
    {
        using var classifier = LoadClassifier(checkpointPath, torch.CPU, arch, labels);
        path ??= Path.ChangeExtension(checkpointPath, ".onnx");
        OnnxExport export;
        try
        {
            export = classifier.Export(path, opset);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new SampleException(e.Message.Split(" (Parameter")[0].Replace("pass opset: ", "pass --opset ", StringComparison.Ordinal));
        }
        foreach (var warning in export.Warnings) _console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        _console.MarkupLine(Markup.Escape($"Wrote {export.Path}: opset {export.Opset}, {export.Nodes} nodes, {export.Initializers} initializers; input [N, {classifier.InputChannels}, H, W], output logits [N, {classifier.Classes.Count}]; class names and preprocessing in its metadata."));
        _console.MarkupLine($"Run it on ONNX Runtime: predict <pictures> --onnx {Markup.Escape(export.Path)}");
        return 0;
    }
}
