using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Weights;

/// <summary>The network of Reference/make_checkpoints.py, generated: torchvision's BasicBlock keys at CIFAR size.</summary>
[ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, BaseWidth = 8, NumClasses = 3, InputSize = 8)]
public partial class TinyResNet { }

/// <summary>Files and checks shared by the weight tests.</summary>
public sealed class WeightTestKit : IDisposable
{
    public string Folder { get; } = Directory.CreateTempSubdirectory("resnetgen-weights-").FullName;

    public static string Reference(string name) => Path.Combine(AppContext.BaseDirectory, "Reference", name);

    public string PathOf(string name) => Path.Combine(Folder, name);

    public string WriteBytes(string name, byte[] bytes)
    {
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>A safetensors file from a header written out by hand and raw data.</summary>
    public string Craft(string name, string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = BitConverter.GetBytes((ulong)json.Length).Concat(json).Concat(data).ToArray();
        return WriteBytes(name, bytes);
    }

    /// <summary>A zip archive of the given entries, stored, in order.</summary>
    public string Zip(string name, IReadOnlyDictionary<string, byte[]> entries) =>
        TorchSave.Zip(PathOf(name), entries.Select(e => TorchSave.Bytes(e.Key, e.Value)));

    /// <summary>A copy of every tensor of the module's state_dict.</summary>
    public static Dictionary<string, torch.Tensor> Copy(torch.nn.Module module) =>
        module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    public static void AssertUnchanged(torch.nn.Module module, Dictionary<string, torch.Tensor> before)
    {
        var now = module.state_dict();
        Assert.Equal(before.Keys.OrderBy(k => k), now.Keys.OrderBy(k => k));
        foreach (var (key, tensor) in before) Assert.True(Same(tensor, now[key]), $"{key} changed");
    }

    /// <summary>Same shape and every element equal.</summary>
    public static bool Same(torch.Tensor a, torch.Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
