using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Spectre.Console;
using TorchSharp;

namespace ResNetGen.Sample;

// The sample's fashion-folder: Fashion-MNIST classes written out as a picture folder that finetune reads.
public sealed partial class SampleApp
{
    /// <summary>The folder name of a Fashion-MNIST class ("T-shirt/top" → "T-shirt-top").</summary>
    internal static string ClassFolder(int label) => FashionMnist.Classes[label].Replace('/', '-').Replace(' ', '-');

    /// <summary>"0-4", "5,7,9" or "0-2,8" as class labels (0–9), each once, in order.</summary>
    internal static int[] ParseClasses(string text)
    {
        var labels = new SortedSet<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var range = part.Split('-', StringSplitOptions.TrimEntries);
            if (range.Length is 1 or 2 && range.All(r => int.TryParse(r, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v <= 9))
            {
                var (from, to) = (int.Parse(range[0], CultureInfo.InvariantCulture), int.Parse(range[^1], CultureInfo.InvariantCulture));
                if (from <= to)
                {
                    for (var c = from; c <= to; c++) labels.Add(c);
                    continue;
                }
            }
            throw new SampleException($"--classes {text}: '{part}' is not a Fashion-MNIST label or range (0–9, e.g. 0-4 or 5,7,9).");
        }
        if (labels.Count < 2) throw new SampleException($"--classes {text}: a classifier needs at least two classes.");
        return labels.ToArray();
    }

    private int FashionFolder(string? dataFolder, string to, string classesText, int trainPerClass, int valPerClass, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        var labels = ParseClasses(classesText);
        foreach (var part in new[] { "train", "val" })
            if (Directory.Exists(Path.Combine(to, part)))
                throw new SampleException($"{Path.Combine(to, part)} already exists; nothing was written. Pass a new --to folder.");
        using var data = FashionMnist.Load(dataFolder, maxPixels);
        _console.MarkupLine($"Data: {Markup.Escape(data.Source)}.");
        var written = new Dictionary<string, int>();
        void Write(string part, torch.Tensor images, torch.Tensor labelTensor, int perClass)
        {
            var all = labelTensor.data<long>().ToArray();
            foreach (var label in labels)
            {
                var folder = Path.Combine(to, part, ClassFolder(label));
                Directory.CreateDirectory(folder);
                var chosen = Enumerable.Range(0, all.Length).Where(i => all[i] == label).Take(perClass).ToList();
                foreach (var i in chosen)
                {
                    using var image = images[i];
                    Images.SavePng(image, Path.Combine(folder, $"{i:D5}.png"));
                }
                written[part] = written.GetValueOrDefault(part) + chosen.Count;
            }
        }
        Write("train", data.TrainImages, data.TrainLabels, trainPerClass);
        Write("val", data.TestImages, data.TestLabels, valPerClass);
        _console.MarkupLine(Markup.Escape($"Wrote {written["train"]:N0} training and {written["val"]:N0} validation pictures of {string.Join(", ", labels.Select(ClassFolder))} to {to}."));
        _console.MarkupLine(Markup.Escape($"Fine-tune on them: finetune --images {to} --from <checkpoint>"));
        return 0;
    }
}
