using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen.Sample;

/// <summary>
/// A network finetune can train and predict and export can read: the generated class, where pretrained weights for it
/// come from, and the preprocessing they were trained with.
/// </summary>
public sealed class Architecture
{
    private readonly Func<int, torch.nn.Module<torch.Tensor, torch.Tensor>> _create;

    private Architecture(string name, string className, string weights, Preprocessing preprocessing, Func<int, torch.nn.Module<torch.Tensor, torch.Tensor>> create)
    {
        Name = name;
        ClassName = className;
        Weights = weights;
        Preprocessing = preprocessing;
        _create = create;
    }

    /// <summary>The name on the command line: torchvision's or timm's (resnet50d).</summary>
    public string Name { get; }

    /// <summary>The generated class, as checkpoints name it in their metadata (ResNet50d).</summary>
    public string ClassName { get; }

    /// <summary>The classifier's path in the state_dict: torchvision's <c>fc</c>, timm's resnetv2 <c>head.fc</c> (a 1×1 convolution).</summary>
    public string Head => Name.StartsWith("resnetv2", StringComparison.Ordinal) ? "head.fc" : "fc";

    /// <summary>What trains with the classifier alone: fc, or a pre-activation network's final norm and head.fc.</summary>
    public string ClassifierParts => Head == "fc" ? "fc" : "norm and head.fc";

    /// <summary>The names of the last <paramref name="stages"/> stages, for messages: layer3, layer4 (torchvision) or stages.2, stages.3 (resnetv2).</summary>
    public string StageNames(int stages) => Head == "fc"
        ? "layer" + string.Join(", layer", Enumerable.Range(5 - stages, stages))
        : "stages." + string.Join(", stages.", Enumerable.Range(4 - stages, stages));

    /// <summary>Where pretrained weights come from, for --help and errors.</summary>
    public string Weights { get; }

    /// <summary>The preprocessing its pretrained weights were trained with.</summary>
    public Preprocessing Preprocessing { get; }

    /// <summary>A new network with <paramref name="classes"/> outputs.</summary>
    public torch.nn.Module<torch.Tensor, torch.Tensor> Create(int classes) => _create(classes);

    /// <summary>The classifier and the last <paramref name="stages"/> stages train; the rest is frozen.</summary>
    public void FreezeBackbone(torch.nn.Module<torch.Tensor, torch.Tensor> network, int stages) => Generated(network).FreezeBackbone(stages);

    /// <summary>Folds what folds (batch-norms; BiT's weight standardisation) and writes the ONNX model.</summary>
    public OnnxExport Export(torch.nn.Module<torch.Tensor, torch.Tensor> network, string path, int opset, IReadOnlyDictionary<string, string> metadata)
    {
        var generated = Generated(network);
        generated.FuseForInference();
        return generated.ExportOnnx(path, opset, metadata);
    }

    /// <summary>What every generated network offers (folding, freezing, export, the ONNX Runtime engine).</summary>
    public static IResNet Generated(torch.nn.Module<torch.Tensor, torch.Tensor> network) =>
        network as IResNet ?? throw new ArgumentException($"{network.GetType().Name} is not a network ResNetGen generated", nameof(network));

    private static Architecture Of<T>(string name, string weights, Preprocessing preprocessing, Func<int, T> create)
        where T : torch.nn.Module<torch.Tensor, torch.Tensor>, IResNet =>
        new(name, typeof(T).Name, weights, preprocessing, n => create(n));

    /// <summary>torchvision's transforms for its ImageNet weights: bilinear resize to 256, 224 crop.</summary>
    private static readonly Preprocessing Torchvision = new(224, 0.875, "bilinear", Preprocessing.ImageNetMean, Preprocessing.ImageNetStd);

    /// <summary>timm's pretrained_cfg for these ResNets' ImageNet weights: bicubic, crop fraction 0.875 at 224.</summary>
    private static readonly Preprocessing Timm = new(224, 0.875, "bicubic", Preprocessing.ImageNetMean, Preprocessing.ImageNetStd);

    /// <summary>timm's pretrained_cfg for BiT's weights: bilinear, crop fraction 0.875 at 224, mean and std 0.5 (Inception's).</summary>
    private static readonly Preprocessing Bit = new(224, 0.875, "bilinear", new[] { 0.5f, 0.5f, 0.5f }, new[] { 0.5f, 0.5f, 0.5f });

    /// <summary>Every network of the sample that finetune, predict and export take.</summary>
    public static IReadOnlyList<Architecture> All { get; } = new[]
    {
        Of("resnet18", "torchvision's resnet18-f37072fd.pth, or timm's resnet18 model.safetensors", Torchvision, n => new ResNet18(n)),
        Of("resnet50", "torchvision's resnet50-11ad3fa6.pth (V2) or resnet50-0676ba61.pth (V1)", Torchvision, n => new ResNet50(n)),
        Of("resnet50d", "timm's resnet50d model.safetensors (e.g. resnet50d.ra2_in1k)", Timm, n => new ResNet50d(n)),
        Of("seresnext50_32x4d", "timm's seresnext50_32x4d model.safetensors (e.g. seresnext50_32x4d.racm_in1k)", Timm, n => new SeResNeXt50_32x4d(n)),
        Of("resnetv2_50x1_bit", "timm's resnetv2_50x1_bit model.safetensors (e.g. resnetv2_50x1_bit.goog_in21k, or .goog_in21k_ft_in1k at --size 448 --crop-pct 1)", Bit, n => new ResNetV2_50x1_Bit(n)),
    };

    /// <summary>The architecture of that name (resnet50d) or class (ResNet50d); null if none.</summary>
    public static Architecture? Find(string name) =>
        All.FirstOrDefault(a => a.Name == name || a.ClassName == name);

    /// <summary>The architecture of that name, or a one-line error that lists them.</summary>
    public static Architecture Named(string name) =>
        Find(name) ?? throw new SampleException($"--arch {name}: not a network of this sample. Use one of: {Names}.");

    /// <summary>The names, for --help and errors.</summary>
    public static string Names => string.Join(", ", All.Select(a => a.Name));
}
