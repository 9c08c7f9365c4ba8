using System;
using System.Collections.Generic;
using System.IO;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's preprocess, and the published weights' preprocessing for finetune.
public sealed partial class SampleApp
{
    /// <summary>
    /// Writes the input a published weight file's network receives for <paramref name="picture"/> — key <c>input</c>,
    /// [1, 3, size, size] float32 — with the weights' name and preprocessing in the file's metadata.
    /// </summary>
    private int Preprocess(string picture, string weights, string output, long maxPixels)
    {
        var entry = PublishedWeights.Find(weights)
                    ?? throw new SampleException($"--weights {weights}: not a published weight file the sample knows. Known: {PublishedWeights.Names}.");
        if (Directory.Exists(output)) throw new SampleException($"--out {output}: a folder; give the .safetensors file to write.");
        using var input = ImageFolder.Input(picture, entry.Preprocessing, maxPixels);
        Safetensors.Write(output, new Dictionary<string, torch.Tensor> { ["input"] = input }, new Dictionary<string, string>
        {
            ["weights"] = entry.Name,
            [Classifier.PreprocessKey] = entry.Preprocessing.ToString(),
            ["picture"] = Path.GetFileName(picture),
        });
        _console.MarkupLine(Markup.Escape($"Wrote {Path.GetFullPath(output)}: input [1, 3, {entry.Preprocessing.Size}, {entry.Preprocessing.Size}] float32, {picture} as {entry.Name} "
                                          + $"({entry.Network}) was evaluated: {entry.Preprocessing.Describe()}."));
        return 0;
    }

    /// <summary>
    /// The preprocessing finetune starts from: the published entry named by --weights, or the one --from's file name is
    /// (its hash checked, its network matched against --arch), else the architecture's defaults, with a note saying which.
    /// </summary>
    private static (Preprocessing Preprocessing, string? Source) PublishedPreprocessing(Architecture architecture, string? weights, string? from)
    {
        PublishedWeights? entry;
        if (weights is not null)
            entry = PublishedWeights.Find(weights) ?? throw new SampleException($"--weights {weights}: not a published weight file the sample knows. Known: {PublishedWeights.Names}.");
        else if (from is null) return (architecture.Preprocessing, null);
        else
        {
            entry = PublishedWeights.Find(from);
            if (entry is null)
                return (architecture.Preprocessing, $"{Path.GetFileName(from)} is not a published file the sample knows, so {architecture.Name}'s defaults; --weights NAME names its source");
        }
        if (entry.Network != architecture.Name)
            throw new SampleException($"{entry.Name} holds {entry.Network}'s weights, but --arch is {architecture.Name}: pass --arch {entry.Network}"
                                      + (Sample.Architecture.Find(entry.Network) is null ? $" (not one of the sample's networks: {Sample.Architecture.Names})." : "."));
        if (from is not null && File.Exists(from) && PublishedWeights.Find(from) == entry) entry.CheckHash(from);
        return (entry.Preprocessing, $"{entry.Name}'s own");
    }
}
