using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>
/// A trained network as predict and export see it — the sample's ResNet-20 for Fashion-MNIST or a fine-tuned network of
/// <see cref="Architecture.All"/> — with its class names and the way a picture becomes its input.
/// </summary>
public sealed class Classifier : IDisposable
{
    /// <summary>ONNX metadata_props keys export writes and predict --onnx reads.</summary>
    public const string ClassesKey = "classes", PreprocessKey = "preprocess";

    /// <summary>The preprocessing of train's ResNet-20: 28×28 grayscale, inverted when light, Fashion-MNIST's normalisation.</summary>
    public const string FashionMnistPreprocess = "fashion-mnist";


    /// <summary>The input channels the preprocessing makes.</summary>
    public int InputChannels => Preprocess == FashionMnistPreprocess ? 1 : 3;

    public Classifier(torch.nn.Module<torch.Tensor, torch.Tensor> network, IReadOnlyList<string> classes, string preprocess, Func<string, int, IReadOnlyDictionary<string, string>, OnnxExport> export)
    {
        Network = network;
        Classes = classes;
        Preprocess = preprocess;
        _export = export;
    }

    private readonly Func<string, int, IReadOnlyDictionary<string, string>, OnnxExport> _export;

    public torch.nn.Module<torch.Tensor, torch.Tensor> Network { get; }
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Where the preprocessing came from, for a checkpoint that does not carry its own (a published entry, or the architecture's defaults); null otherwise.</summary>
    public string? PreprocessNote { get; init; }

    /// <summary><c>fashion-mnist</c> (28×28 grayscale, inverted when light) or a <see cref="Sample.Preprocessing"/>'s text (RGB, resized, centre-cropped).</summary>
    public string Preprocess { get; }

    /// <summary>Folds the batch-norms and writes the ONNX model, with the class names and the preprocessing in its metadata.</summary>
    public OnnxExport Export(string path, int opset) => _export(path, opset, Metadata(Classes, Preprocess));

    public static Dictionary<string, string> Metadata(IReadOnlyList<string> classes, string preprocess) => new()
    {
        [ClassesKey] = JsonSerializer.Serialize(classes),
        [PreprocessKey] = preprocess,
    };

    /// <summary>The class names stored as JSON by <see cref="Metadata"/> (or a fine-tuning checkpoint); null if absent or malformed.</summary>
    public static string[]? ClassesFrom(IReadOnlyDictionary<string, string> metadata)
    {
        if (!metadata.TryGetValue(ClassesKey, out var json)) return null;
        try
        {
            var classes = JsonSerializer.Deserialize<string[]>(json);
            return classes is { Length: >= 2 } && classes.All(c => !string.IsNullOrEmpty(c)) ? classes : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The picture at <paramref name="path"/> as the network's input [1, C, H, W] (CPU floats), and what was done to it worth telling.</summary>
    public static (torch.Tensor Input, string? Note) Prepare(string preprocess, string path, long maxPixels = PictureReader.DefaultMaxPixels)
    {
        if (preprocess == FashionMnistPreprocess)
        {
            var (pixels, inverted) = Images.Load(path, maxPixels);
            using (pixels)
                return (FashionMnist.Normalize(pixels, torch.CPU), inverted ? "inverted: a light background, made dark as in Fashion-MNIST" : null);
        }
        if (Preprocessing.Parse(preprocess) is { } crop)
            return (ImageFolder.Input(path, crop, maxPixels), null);
        throw new SampleException($"unknown preprocessing '{preprocess}' (expected fashion-mnist or resize-crop:size=…): the model was not written by this sample.");
    }

    public void Dispose() => Network.Dispose();
}
