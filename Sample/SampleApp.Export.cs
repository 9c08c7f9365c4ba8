using System;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's export: the checkpoint as an ONNX model.
public sealed partial class SampleApp
{
    private int Export(string checkpointPath, string path, int opset)
    {
        using var network = LoadNetwork(checkpointPath, torch.CPU);
        network.FuseForInference();
        OnnxExport export;
        try
        {
            export = network.ExportOnnx(path, opset);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new SampleException(e.Message.Split(" (Parameter")[0]);
        }
        foreach (var warning in export.Warnings) _console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        _console.MarkupLine(Markup.Escape($"Wrote {export.Path}: opset {export.Opset}, {export.Nodes} nodes, {export.Initializers} initializers; input [N, 1, H, W], output logits [N, 10]."));
        _console.MarkupLine($"Run it on ONNX Runtime: predict <images> --onnx {Markup.Escape(export.Path)}");
        return 0;
    }
}
