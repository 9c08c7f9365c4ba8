using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's finetune: a pretrained ResNet (any of Architecture.All: torchvision's or timm's) on a folder of your own pictures.
public sealed partial class SampleApp
{
    public const string FineTunedCheckpoint = "finetune-resnet18.safetensors";
    public const string FineTunedCurves = "finetune-resnet18-curves.png";

    /// <summary>The checkpoint finetune writes for <paramref name="architecture"/>.</summary>
    public static string FineTunedCheckpointFor(string architecture) => $"finetune-{architecture}.safetensors";

    /// <summary>The curves finetune draws for <paramref name="architecture"/>.</summary>
    public static string FineTunedCurvesFor(string architecture) => $"finetune-{architecture}-curves.png";

    /// <summary>What the finetune command was asked to do.</summary>
    private sealed record FineTuneRequest(string Images, string? From, Architecture Architecture, int TrainableStages, Preprocessing Preprocessing,
        TrainSettings Settings, string Output, long MaxPixels = PictureReader.DefaultMaxPixels, bool SkipUnreadable = false, string? PreprocessingSource = null);

    private int FineTune(torch.Device device, FineTuneRequest request)
    {
        torch.manual_seed(request.Settings.Seed);
        var arch = request.Architecture;
        var data = ImageFolder.Open(request.Images, request.Preprocessing, maxPixels: request.MaxPixels);
        _console.MarkupLine(Markup.Escape($"Pictures: {data.TrainCount:N0} to train on and {data.TestCount:N0} to validate on, {data.Classes.Count} classes ({string.Join(", ", data.Classes)}), from {data.Root}."));
        foreach (var warning in data.Warnings) _console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        var total = data.TrainCount + data.TestCount;
        IReadOnlyList<(string Path, string Why)> refused = Array.Empty<(string, string)>();
        _console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn()).Start(ctx =>
        {
            var task = ctx.AddTask("reading every picture once", maxValue: total);
            refused = data.Check((done, _) => task.Value = done, _cancel, request.SkipUnreadable);
        });
        if (refused.Count > 0)
        {
            // One report of every picture that could not be read, whatever happens next.
            _console.MarkupLine(Markup.Escape($"{refused.Count} of {total:N0} pictures could not be read:"));
            foreach (var (_, why) in refused) _console.MarkupLine("  " + Markup.Escape(why));
            if (!request.SkipUnreadable)
                throw new SampleException($"{refused.Count} of {total:N0} pictures could not be read (listed above). Remove or replace them, or pass --skip-unreadable to train on the rest; nothing was trained.");
            _console.MarkupLine(Markup.Escape($"--skip-unreadable: training on the other {data.TrainCount:N0} and validating on {data.TestCount:N0}."));
        }

        using var network = arch.Create(data.Classes.Count);
        var loaded = request.From is null ? "random initialisation (no --from)" : LoadPretrained(network, arch, request.From, data.Classes);
        arch.FreezeBackbone(network, request.TrainableStages);
        network.to(device);
        var trainable = network.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        var all = network.parameters().Sum(p => p.numel());
        _console.MarkupLine(Markup.Escape($"{arch.ClassName} from {loaded}; training {TrainableText(arch, request.TrainableStages)}: {trainable:N0} of {all:N0} parameters."));
        _console.MarkupLine(Markup.Escape(FormattableString.Invariant(
            $"{request.Settings.Epochs} epoch(s) at {data.Size}×{data.Size} (resized to {data.ResizeTo} on the shorter side, random crop and flip), batch {request.Settings.BatchSize}, peak learning rate {request.Settings.LearningRate}, on {device.type.ToString().ToLowerInvariant()}. Ctrl+C stops after the current batch and keeps the last epoch's checkpoint.")));
        _console.MarkupLine(Markup.Escape($"Preprocessing{(request.PreprocessingSource is { } source ? $" ({source})" : "")}: {request.Preprocessing.Describe()}."));
        _console.MarkupLine(Markup.Escape(PrecisionLine(request.Settings.Precision, device, request.Settings.PrecisionReason)));
        _console.MarkupLine(Markup.Escape(RecipeLine(request.Settings)));

        Directory.CreateDirectory(request.Output);
        var checkpoint = Path.Combine(request.Output, FineTunedCheckpointFor(arch.Name));
        var results = RunEpochs(network, data, request.Settings, device, result =>
        {
            var metadata = Classifier.Metadata(data.Classes, request.Preprocessing.ToString());
            metadata["format"] = "pt";
            metadata["architecture"] = arch.ClassName;
            metadata["from"] = request.From is null ? "scratch" : Path.GetFileName(request.From);
            metadata["trainable_stages"] = request.TrainableStages.ToString(CultureInfo.InvariantCulture);
            metadata["epoch"] = result.Epoch.ToString(CultureInfo.InvariantCulture);
            metadata["val_accuracy"] = (result.EmaTestAccuracy ?? result.TestAccuracy).ToString("0.0000", CultureInfo.InvariantCulture);
            if (request.Settings.Recipe?.Ema is { } decay) metadata["ema_decay"] = decay.ToString(CultureInfo.InvariantCulture); // the saved weights are the moving average
            metadata["precision"] = PrecisionName(request.Settings.Precision);
            Safetensors.Write(checkpoint, network.state_dict(), metadata);
        }, "val");
        var code = Finish(results, checkpoint, Path.Combine(request.Output, FineTunedCurvesFor(arch.Name)),
            $"{arch.ClassName} on {Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(request.Images)))}", "val");
        if (code == 0 && results.Count > 0)
            _console.MarkupLine(Markup.Escape($"Classify pictures with it: predict <pictures> --checkpoint {checkpoint}"));
        return code;
    }

    private static string TrainableText(Architecture arch, int stages) => stages switch
    {
        0 => $"the classifier only ({arch.ClassifierParts})",
        >= 5 => "every layer",
        _ => arch.StageNames(stages) + (arch.Head == "fc" ? " and " : ", ") + arch.ClassifierParts,
    };

    /// <summary>
    /// Loads every tensor of <paramref name="path"/> but a classifier of another class count into <paramref name="network"/>;
    /// a file for another architecture is one line. Returns what was loaded, for the user.
    /// </summary>
    private static string LoadPretrained(torch.nn.Module<torch.Tensor, torch.Tensor> network, Architecture arch, string path, IReadOnlyList<string> classes)
    {
        var want = $"--from needs {arch.Name} weights: {arch.Weights}, or a .safetensors written by finetune --arch {arch.Name}";
        if (!File.Exists(path)) throw new SampleException($"--from {path}: no such file. {want}.");
        var isZip = false;
        using (var file = File.OpenRead(path))
        {
            var head = new byte[4];
            isZip = file.Read(head, 0, 4) == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
        }
        var metadata = isZip ? new Dictionary<string, string>() : Safetensors.ReadMetadata(path);
        if (metadata.TryGetValue("architecture", out var architecture) && architecture != arch.ClassName)
            throw new SampleException($"{path} holds weights for {architecture}, not {arch.ClassName}. {want}.");
        var fc = network.named_modules().Single(c => c.name == arch.Head).module;
        // A classifier trained on other classes is not kept, even when the count happens to be the same.
        var otherClasses = Classifier.ClassesFrom(metadata) is { } named && !named.SequenceEqual(classes, StringComparer.Ordinal);
        var freshHead = otherClasses ? fc.state_dict().ToDictionary(p => p.Key, p => p.Value.clone()) : null;
        LoadReport report;
        try
        {
            report = isZip
                ? PyTorchCheckpoint.Load(network, path, strict: true, ignoreMismatchedShapes: true)
                : Safetensors.Load(network, path, strict: true, ignoreMismatchedShapes: true);
        }
        catch (WeightFileException e) when (MismatchedKeys(e) is { } keys)
        {
            throw new SampleException($"{path} does not hold {arch.Name} weights ({keys}). {want}.");
        }
        var wrong = report.Mismatched.Where(k => k != arch.Head + ".weight" && k != arch.Head + ".bias").ToList();
        if (wrong.Count > 0)
            throw new SampleException($"{path} does not hold {arch.Name} weights: {wrong.Count} tensor(s) have other shapes ({string.Join(", ", wrong.Take(3))}{(wrong.Count > 3 ? ", …" : "")}). {want}.");
        if (freshHead is not null)
        {
            using (torch.no_grad())
                foreach (var (key, tensor) in fc.state_dict()) tensor.copy_(freshHead[key]);
            foreach (var tensor in freshHead.Values) tensor.Dispose();
            return $"{Path.GetFileName(path)} (all but its classifier, trained on other classes: {arch.Head} starts afresh)";
        }
        return report.Mismatched.Count == 0
            ? $"{Path.GetFileName(path)} (every tensor, the classifier included)"
            : $"{Path.GetFileName(path)} (all but its classifier, made for another class count: {arch.Head} starts afresh for {classes.Count})";
    }

    /// <summary>
    /// A checkpoint of <paramref name="arch"/> ready for predict and export: finetune's (class names and preprocessing in its
    /// metadata), or another's without them (a timm model.safetensors): then its classes are numbered, or named by
    /// <paramref name="labels"/>, and the preprocessing is the architecture's own.
    /// </summary>
    private static Classifier LoadFineTuned(Architecture arch, string path, IReadOnlyDictionary<string, string> metadata, torch.Device device, string? labels = null,
        string? weights = null)
    {
        var count = ClassCount(arch, path);
        var classes = Classifier.ClassesFrom(metadata) ?? Labels(labels, count)
                      ?? NumberedClasses(count);
        if (classes.Count != count)
            throw new SampleException($"{path} has a classifier of {count} classes, but {(labels is null ? "its metadata names" : labels + " names")} {classes.Count}.");
        // A checkpoint finetune wrote carries its preprocessing; another (timm's model.safetensors) takes its published
        // entry's, by --weights or by its file name, else the architecture's defaults, said in one line.
        string preprocess;
        string? note = null;
        if (metadata.TryGetValue(Classifier.PreprocessKey, out var p))
        {
            if (weights is not null)
                throw new SampleException($"--weights {weights}: {path} carries the preprocessing it was fine-tuned with; drop --weights.");
            preprocess = p;
        }
        else
        {
            var (published, source) = PublishedPreprocessing(arch, weights, path);
            preprocess = published.ToString();
            note = $"Preprocessing ({source ?? $"{arch.Name}'s defaults"}): {published.Describe()}.";
        }
        torch.nn.Module<torch.Tensor, torch.Tensor> network;
        try
        {
            network = LoadCheckpoint(arch.Create(count), path, device);
        }
        catch (WeightFileException e) when (MismatchedKeys(e) is { } keys)
        {
            throw new SampleException($"{path} does not hold {arch.Name} weights ({keys}). Pass the --arch it was made for: {Sample.Architecture.Names}.");
        }
        return new Classifier(network, classes, preprocess, (to, opset, meta) => arch.Export(network, to, opset, meta)) { PreprocessNote = note };
    }

    /// <summary>
    /// The keys a strict load named when the file and the network disagree ("missing keys …; unexpected keys …"), without
    /// the API's advice, which the sample words for its own options; null for any other problem.
    /// </summary>
    private static string? MismatchedKeys(WeightFileException e) =>
        e.Problem.StartsWith("the file does not match the model: ", StringComparison.Ordinal)
            ? e.Problem.Split(": ", 2)[^1].Split(". Check that the file", 2)[0]
            : null;

    /// <summary>The rows of the file's classifier weight (fc.weight [classes, C], or resnetv2's head.fc.weight [classes, C, 1, 1]), from its header: its class count.</summary>
    private static int ClassCount(Architecture arch, string path) =>
        Safetensors.ReadShapes(path).TryGetValue(arch.Head + ".weight", out var fc) && fc.Length == (arch.Head == "fc" ? 2 : 4)
            ? (int)fc[0]
            : throw new SampleException($"{path} has no classifier ({arch.Head}.weight): it is not a checkpoint of {arch.Name} with a head.");

    /// <summary>Names for classes a checkpoint does not name: class 0, class 1, ….</summary>
    private static string[] NumberedClasses(int count) =>
        Enumerable.Range(0, count).Select(i => "class " + i.ToString(CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Class names from a text file, one a line (ImageNet's 1,000, say); null without a file.</summary>
    private static IReadOnlyList<string>? Labels(string? path, int count)
    {
        if (path is null) return null;
        if (!File.Exists(path)) throw new SampleException($"--labels {path}: no such file. Give one class name a line, {count} lines.");
        return File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
    }
}
