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

    /// <summary>
    /// What a damaged file that loaded must have loaded. Neither format carries a checksum, so a byte changed inside a
    /// tensor's stored data makes a different file that is still valid: the loader must then give the file's new bytes at
    /// exactly the elements those bytes fall in, and the original file's values everywhere else. Any other difference — a
    /// tensor read from the wrong place, a changed shape or dtype, a value no byte of the file says — is a defect, and so
    /// is any difference at all when the damage was not a same-length byte change (a truncation, a rebuilt archive).
    /// Compared bit for bit, so a NaN excuses nothing. Returns how many elements took the file's changed bytes.
    /// </summary>
    public static int AssertLoadedAsTheFileSays(torch.nn.Module module, byte[] original, byte[] damaged,
        IReadOnlyDictionary<string, torch.Tensor> originalTensors, string what)
    {
        var changed = original.Length == damaged.Length
            ? Enumerable.Range(0, original.Length).Where(i => original[i] != damaged[i]).ToHashSet()
            : new HashSet<int>();
        var taken = 0;
        var state = module.state_dict();
        Assert.Equal(originalTensors.Keys.OrderBy(k => k, StringComparer.Ordinal), state.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, tensor) in state)
        {
            var stored = originalTensors[key];
            Assert.True(stored.shape.SequenceEqual(tensor.shape), $"{what}: {key} has shape [{string.Join(",", tensor.shape)}]");
            Assert.Equal(stored.dtype, tensor.dtype);
            var want = stored.contiguous().bytes.ToArray();
            var got = tensor.contiguous().bytes.ToArray();
            if (want.AsSpan().SequenceEqual(got)) continue;
            // Where this tensor's bytes sit in the original file (a small tensor, such as a num_batches_tracked, may sit in
            // several places with the same bytes: one of them must explain each changed element).
            var places = new List<int>();
            for (var at = IndexOf(original, want, 0); at >= 0; at = IndexOf(original, want, at + 1)) places.Add(at);
            Assert.True(places.Count > 0, $"{what}: {key} differs from the original file, and its stored bytes cannot be located to explain why");
            var size = (int)stored.ElementSize;
            for (var e = 0; e < want.Length / size; e++)
            {
                if (want.AsSpan(e * size, size).SequenceEqual(got.AsSpan(e * size, size))) continue;
                var element = e;
                Assert.True(places.Any(at => Enumerable.Range(at + element * size, size).Any(changed.Contains)
                                             && damaged.AsSpan(at + element * size, size).SequenceEqual(got.AsSpan(element * size, size))),
                    $"{what}: {key}[{e}] differs from the original file ({BitConverter.ToString(want, e * size, size)} → {BitConverter.ToString(got, e * size, size)}), "
                    + $"and no changed byte of the file says what it holds (changed: {(changed.Count == 0 ? "none in place" : string.Join(", ", changed.OrderBy(c => c)))})");
                taken++;
            }
        }
        return taken;
    }

    private static int IndexOf(byte[] haystack, byte[] needle, int start) =>
        needle.Length == 0 ? -1 : haystack.AsSpan(start).IndexOf(needle) is var i and >= 0 ? start + i : -1;

    /// <summary>Same dtype, same shape and the same bytes (bit for bit: a float64 copy of a float32 tensor is not the same, nor is −0 +0).</summary>
    public static bool Same(torch.Tensor a, torch.Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var left = a.cpu().contiguous();
        using var right = b.cpu().contiguous();
        return left.numel() == 0 || left.bytes.SequenceEqual(right.bytes);
    }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
