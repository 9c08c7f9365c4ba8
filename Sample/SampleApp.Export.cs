using System;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's export: a checkpoint (train's or finetune's) as an ONNX model.
public sealed partial class SampleApp
{
    private int Export(string checkpointPath, string? path, int opset, string? arch = null, string? labels = null, Int8Request? int8 = null, string? weights = null, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        using var classifier = LoadClassifier(checkpointPath, torch.CPU, arch, labels, weights);
        path ??= Path.ChangeExtension(checkpointPath, int8 is null ? ".onnx" : ".int8.onnx");
        OnnxExport export;
        try
        {
            if (int8 is null) export = classifier.Export(path, opset);
            else
            {
                if (opset < 13) throw new SampleException($"--int8 needs --opset 13 or later (per-channel DequantizeLinear), not {opset}.");
                using var engine = Int8Engine(classifier, int8, maxPixels, opset: opset);
                export = engine.ExportOnnx(path, Classifier.Metadata(classifier.Classes, classifier.Preprocess));
            }
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new SampleException(e.Message.Split(" (Parameter")[0].Replace("pass opset: ", "pass --opset ", StringComparison.Ordinal));
        }
        foreach (var warning in export.Warnings) _console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        _console.MarkupLine(Markup.Escape($"Wrote {export.Path}: {(int8 is null ? "" : "int8 (QDQ), ")}opset {export.Opset}, {export.Nodes} nodes, {export.Initializers} initializers; input [N, {classifier.InputChannels}, H, W], output logits [N, {classifier.Classes.Count}]; class names and preprocessing in its metadata."));
        _console.MarkupLine($"Run it on ONNX Runtime: predict <pictures> --onnx {Markup.Escape(export.Path)}");
        return 0;
    }

    /// <summary>The files export --pytorch writes into its folder.</summary>
    public static readonly string[] PyTorchFiles = { "model.py", "weights.safetensors", "safetensors_io.py", "checkpoint.py", "train_ddp.py" };

    /// <summary>
    /// A checkpoint as a PyTorch model: the network's twin (model.py, its PyTorchSource), the weights with the class names
    /// and preprocessing in their metadata (weights.safetensors, which predict and export read as a checkpoint too), a
    /// torch-and-numpy safetensors reader and writer (safetensors_io.py), and checkpoint.py, whose load() builds the
    /// network with the checkpoint's classes and loads the weights.
    /// </summary>
    private int ExportPyTorch(string checkpointPath, string folder, string? arch = null, string? labels = null, bool untrained = false)
    {
        using var classifier = untrained ? Untrained(arch, labels) : LoadClassifier(checkpointPath, torch.CPU, arch, labels);
        var network = classifier.Network;
        var source = network.GetType().GetField("PyTorchSource")?.GetValue(null) as string
                     ?? throw new SampleException($"{network.GetType().Name} carries no PyTorch twin: rebuild the sample with this ResNetGen.");
        if (File.Exists(folder)) throw new SampleException($"--pytorch {folder}: a file of that name is in the way; give a folder.");
        var existing = PyTorchFiles.Where(f => File.Exists(Path.Combine(folder, f))).ToList();
        Directory.CreateDirectory(folder);
        var metadata = Classifier.Metadata(classifier.Classes, classifier.Preprocess);
        metadata["architecture"] = network.GetType().Name;
        WriteText(Path.Combine(folder, "model.py"), source);
        Safetensors.Write(Path.Combine(folder, "weights.safetensors"), network.state_dict(), metadata);
        WriteText(Path.Combine(folder, "safetensors_io.py"), Resource("safetensors_io.py"));
        WriteText(Path.Combine(folder, "checkpoint.py"), Resource("checkpoint.py"));
        WriteText(Path.Combine(folder, "train_ddp.py"), Resource("train_ddp.py"));
        if (existing.Count > 0) _console.MarkupLine(Markup.Escape($"Replaced {string.Join(", ", existing)} in {folder}."));
        _console.MarkupLine(Markup.Escape($"Wrote {Path.GetFullPath(folder)}: model.py (the PyTorch twin of {network.GetType().Name}), weights.safetensors "
                                          + $"({classifier.Classes.Count} classes; predict and export read it as a checkpoint), safetensors_io.py, checkpoint.py, train_ddp.py."));
        _console.MarkupLine(Markup.Escape($"Train on in PyTorch: torchrun --standalone --nproc_per_node=2 {Path.Combine(folder, "train_ddp.py")} --images DIR --epochs 5 --output OUT"
                                          + " (Debian 12's torchrun also needs --redirects 1 --tee 1 before the script)"));
        _console.MarkupLine(Markup.Escape($"In Python (torch and numpy): import sys; sys.path.insert(0, '{folder}'); import checkpoint; net = checkpoint.load()"));
        return 0;
    }

    /// <summary>
    /// --untrained --arch NAME: the architecture as built here (the sample's initialisation), with ImageNet's 1,000 classes
    /// numbered, or those of --labels, and the preprocessing of its pretrained weights: a starting point for PyTorch.
    /// </summary>
    private static Classifier Untrained(string? arch, string? labels)
    {
        if (arch is null) throw new SampleException($"--untrained needs --arch NAME: one of {Sample.Architecture.Names}.");
        var architecture = Sample.Architecture.Named(arch);
        var classes = Labels(labels, 1000) ?? NumberedClasses(1000);
        if (classes.Count == 0) throw new SampleException($"--labels {labels}: no class names in it. Give one class name a line.");
        var network = architecture.Create(classes.Count);
        return new Classifier(network, classes, architecture.Preprocessing.ToString(), (to, opset, meta) => architecture.Export(network, to, opset, meta));
    }

    /// <summary>Writes <paramref name="text"/> beside <paramref name="path"/> first, then renames it into place: never half a file.</summary>
    private static void WriteText(string path, string text)
    {
        var partial = path + ".partial";
        File.WriteAllText(partial, text);
        File.Move(partial, path, overwrite: true);
    }

    private static string Resource(string name)
    {
        using var stream = typeof(SampleApp).Assembly.GetManifestResourceStream("ResNetGen.Sample.PyTorch." + name)
                           ?? throw new InvalidOperationException($"the sample was built without its {name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
