using System;
using System.Collections.Generic;
using System.Linq;

namespace ResNetGen.Generator.Model;

/// <summary>
/// The members every generated class declares besides its layer fields (one per module, named by its state_dict
/// path): the one list RNG0011 checks a user's class against and names in its message.
/// </summary>
internal static class GeneratedMembers
{
    /// <summary>The public members, in the order the message names them.</summary>
    public static readonly string[] Public =
    {
        "forward", "ForwardFeatures", "Features", "FuseForInference", "IsFused", "ExportOnnx", "ToOnnxRuntime", "ActivationLayout", "Precision",
        "ParameterCount", "MultAdds", "Summary", "PyTorchSource", "InputSize", "InputChannels", "FreezeBackbone", "Unfreeze", "train",
    };

    /// <summary>The private members.</summary>
    public static readonly string[] Private = { "Run", "Paths", "Graph", "OnnxGraph", "_modules", "_groups", "_folds", "_fused", "_frozen" };

    /// <summary>Every name above.</summary>
    public static readonly HashSet<string> All = new(Public.Concat(Private), StringComparer.Ordinal);

    /// <summary>The sentence of RNG0011's message that lists them.</summary>
    public static string Sentence =>
        "the generated class derives from Module<Tensor, Tensor>, implements IResNet and defines the parameterless constructor, a constructor taking the class count, Dispose(bool), "
        + string.Join(", ", Public) + ", the private " + string.Join(", ", Private) + ", and a field per layer named by its state_dict path (conv1, layer1_0_conv1, …)";
}
