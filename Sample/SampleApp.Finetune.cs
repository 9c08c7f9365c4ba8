using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's finetune: a pretrained ResNet-18 (ImageNet layout) on a folder of your own pictures.
public sealed partial class SampleApp
{
    public const string FineTunedCheckpoint = "finetune-resnet18.safetensors";
    public const string FineTunedCurves = "finetune-resnet18-curves.png";
    private const string FineTunedArchitecture = nameof(ResNet18);

    /// <summary>What the finetune command was asked to do.</summary>
    private sealed record FineTuneRequest(string Images, string? From, int TrainableStages, int Size, TrainSettings Settings, string Output);

    private int FineTune(torch.Device device, FineTuneRequest request)
    {
        torch.manual_seed(request.Settings.Seed);
        var data = ImageFolder.Open(request.Images, request.Size);
        _console.MarkupLine(Markup.Escape($"Pictures: {data.TrainCount:N0} to train on and {data.TestCount:N0} to validate on, {data.Classes.Count} classes ({string.Join(", ", data.Classes)}), from {data.Root}."));
        foreach (var warning in data.Warnings) _console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        _console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn()).Start(ctx =>
        {
            var task = ctx.AddTask("reading every picture once", maxValue: data.TrainCount + data.TestCount);
            data.Check((done, _) => task.Value = done, _cancel);
        });

        using var network = new ResNet18(data.Classes.Count);
        var loaded = request.From is null ? "random initialisation (no --from)" : LoadPretrained(network, request.From, data.Classes);
        network.FreezeBackbone(request.TrainableStages);
        network.to(device);
        var trainable = network.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        var all = network.parameters().Sum(p => p.numel());
        _console.MarkupLine(Markup.Escape($"ResNet18 from {loaded}; training {TrainableText(request.TrainableStages)}: {trainable:N0} of {all:N0} parameters."));
        _console.MarkupLine(Markup.Escape(FormattableString.Invariant(
            $"{request.Settings.Epochs} epoch(s) at {request.Size}×{request.Size} (resized to {data.ResizeTo} on the shorter side, random crop and flip), batch {request.Settings.BatchSize}, peak learning rate {request.Settings.LearningRate}, on {device.type.ToString().ToLowerInvariant()}. Ctrl+C stops after the current batch and keeps the last epoch's checkpoint.")));

        Directory.CreateDirectory(request.Output);
        var checkpoint = Path.Combine(request.Output, FineTunedCheckpoint);
        var results = RunEpochs(network, data, request.Settings, device, result =>
        {
            var metadata = Classifier.Metadata(data.Classes, Classifier.ImageNetCrop(request.Size));
            metadata["format"] = "pt";
            metadata["architecture"] = FineTunedArchitecture;
            metadata["from"] = request.From is null ? "scratch" : Path.GetFileName(request.From);
            metadata["trainable_stages"] = request.TrainableStages.ToString(CultureInfo.InvariantCulture);
            metadata["epoch"] = result.Epoch.ToString(CultureInfo.InvariantCulture);
            metadata["val_accuracy"] = result.TestAccuracy.ToString("0.0000", CultureInfo.InvariantCulture);
            Safetensors.Write(checkpoint, network.state_dict(), metadata);
        }, "val");
        var code = Finish(results, checkpoint, Path.Combine(request.Output, FineTunedCurves), $"ResNet-18 on {Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(request.Images)))}", "val");
        if (code == 0 && results.Count > 0)
            _console.MarkupLine(Markup.Escape($"Classify pictures with it: predict <pictures> --checkpoint {checkpoint}"));
        return code;
    }

    private static string TrainableText(int stages) => stages switch
    {
        0 => "the classifier only (fc)",
        >= 5 => "every layer",
        _ => "layer" + string.Join(", layer", Enumerable.Range(5 - stages, stages)) + " and fc",
    };

    /// <summary>
    /// Loads every tensor of <paramref name="path"/> but a classifier of another class count into <paramref name="network"/>;
    /// a file for another architecture is one line. Returns what was loaded, for the user.
    /// </summary>
    private static string LoadPretrained(ResNet18 network, string path, IReadOnlyList<string> classes)
    {
        const string want = "--from needs ResNet-18 weights: torchvision's resnet18 checkpoint (resnet18-f37072fd.pth) or a .safetensors written by finetune";
        if (!File.Exists(path)) throw new SampleException($"--from {path}: no such file. {want}.");
        var isZip = false;
        using (var file = File.OpenRead(path))
        {
            var head = new byte[4];
            isZip = file.Read(head, 0, 4) == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
        }
        var metadata = isZip ? new Dictionary<string, string>() : Safetensors.ReadMetadata(path);
        if (metadata.TryGetValue("architecture", out var architecture) && architecture != FineTunedArchitecture)
            throw new SampleException($"{path} holds weights for {architecture}, not {FineTunedArchitecture}. {want}.");
        // A classifier trained on other classes is not kept, even when the count happens to be the same.
        var otherClasses = Classifier.ClassesFrom(metadata) is { } named && !named.SequenceEqual(classes, StringComparer.Ordinal);
        var freshHead = otherClasses ? network.fc.state_dict().ToDictionary(p => p.Key, p => p.Value.clone()) : null;
        LoadReport report;
        try
        {
            report = isZip
                ? PyTorchCheckpoint.Load(network, path, strict: true, ignoreMismatchedShapes: true)
                : Safetensors.Load(network, path, strict: true, ignoreMismatchedShapes: true);
        }
        catch (WeightFileException e) when (e.Problem.StartsWith("the file does not match the model: ", StringComparison.Ordinal))
        {
            var keys = e.Problem.Split(": ", 2)[^1].Split(". Check that the file", 2)[0]; // the keys, not the API's advice
            throw new SampleException($"{path} does not hold ResNet-18 weights ({keys}). {want}.");
        }
        var wrong = report.Mismatched.Where(k => k is not ("fc.weight" or "fc.bias")).ToList();
        if (wrong.Count > 0)
            throw new SampleException($"{path} does not hold ResNet-18 weights: {wrong.Count} tensor(s) have other shapes ({string.Join(", ", wrong.Take(3))}{(wrong.Count > 3 ? ", …" : "")}). {want}.");
        if (freshHead is not null)
        {
            using (torch.no_grad())
                foreach (var (key, tensor) in network.fc.state_dict()) tensor.copy_(freshHead[key]);
            foreach (var tensor in freshHead.Values) tensor.Dispose();
            return $"{Path.GetFileName(path)} (all but its classifier, trained on other classes: fc starts afresh)";
        }
        return report.Mismatched.Count == 0
            ? $"{Path.GetFileName(path)} (every tensor, the classifier included)"
            : $"{Path.GetFileName(path)} (all but its classifier, made for another class count: fc starts afresh for {network.fc.out_features})";
    }

    /// <summary>A checkpoint written by finetune, ready for predict and export.</summary>
    private static Classifier LoadFineTuned(string path, IReadOnlyDictionary<string, string> metadata, torch.Device device)
    {
        var classes = Classifier.ClassesFrom(metadata)
                      ?? throw new SampleException($"{path} says it is a fine-tuned {FineTunedArchitecture} but lists no class names; write it again with finetune.");
        var preprocess = metadata.TryGetValue(Classifier.PreprocessKey, out var p) ? p : Classifier.ImageNetCrop(224);
        var network = LoadCheckpoint(new ResNet18(classes.Length), path, device);
        return new Classifier(network, classes, preprocess, (to, opset, meta) =>
        {
            network.FuseForInference();
            return network.ExportOnnx(to, opset, meta);
        });
    }
}
