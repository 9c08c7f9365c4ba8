using System.Collections.Generic;

namespace ResNetGen;

/// <summary>
/// What every generated network offers beyond <c>torch.nn.Module&lt;Tensor, Tensor&gt;</c>, for code that handles any of
/// them (an application's table of architectures, a server) without one call per class. Each member is documented on
/// the generated class, whose own text names its layers.
/// </summary>
public interface IResNet
{
    /// <summary>How forward lays out activations while it computes (the input's own layout by default).</summary>
    ActivationLayout ActivationLayout { get; set; }

    /// <summary>What forward computes convolutions and the classifier in (<see cref="Precision.Float32"/> by default); parameters stay float32.</summary>
    Precision Precision { get; set; }

    /// <summary>Whether <see cref="FuseForInference"/> is in effect.</summary>
    bool IsFused { get; }

    /// <summary>Switches to eval mode and folds every batch-norm into the convolution before it, following later weight changes.</summary>
    void FuseForInference();

    /// <summary>For fine-tuning: the classifier and the last <paramref name="trainableStages"/> stages train; the rest is frozen.</summary>
    void FreezeBackbone(int trainableStages);

    /// <summary>Makes every parameter trainable again.</summary>
    void Unfreeze();

    /// <summary>Writes the network as an ONNX model.</summary>
    OnnxExport ExportOnnx(string path, int opset = 17, IReadOnlyDictionary<string, string>? metadata = null);

    /// <summary>An ONNX Runtime engine serving the network's eval-mode forward in this process, following its weights.</summary>
    OnnxRuntimeEngine ToOnnxRuntime(OnnxRuntimeOptions? options = null);
}
