using TorchSharp;

namespace ResNetGen;

/// <summary>
/// A container that only names its children, so that generated networks expose torchvision's state_dict keys
/// (<c>layer1.0.conv1.weight</c>) while their forward calls each layer directly. It has no forward of its own.
/// </summary>
public sealed class ModuleGroup : torch.nn.Module
{
    /// <summary>Creates an empty group; <paramref name="name"/> is for display.</summary>
    public ModuleGroup(string name) : base(name) { }

    /// <summary>Registers <paramref name="module"/> under <paramref name="name"/>.</summary>
    public void Add(string name, torch.nn.Module module) => register_module(name, module);
}
