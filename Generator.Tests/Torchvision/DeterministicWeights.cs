using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using TorchSharp;

namespace ResNetGen.Generator.Tests.Torchvision;

/// <summary>
/// The weights of Reference/make_reference.py, rebuilt bit for bit: each tensor's values are a splitmix64 stream
/// seeded by the FNV-1a hash of its state_dict key, scaled by the same rule.
/// </summary>
public static class DeterministicWeights
{
    public static readonly long[] InputShape = { 2, 3, 64, 64 };

    public static string ReferenceFolder => Path.Combine(AppContext.BaseDirectory, "Reference");

    public static ulong Fnv1a64(string text)
    {
        var hash = 0xCBF29CE484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            hash ^= b;
            hash = unchecked(hash * 0x100000001B3UL);
        }
        return hash;
    }

    /// <summary>Values in [-1, 1), each exact in float32.</summary>
    public static double[] Uniform(string key, long count)
    {
        var seed = Fnv1a64(key);
        var result = new double[count];
        for (long i = 0; i < count; i++)
        {
            var z = unchecked(seed + (ulong)(i + 1) * 0x9E3779B97F4A7C15UL);
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
            z ^= z >> 31;
            result[i] = (z >> 40) / (double)(1 << 24) * 2.0 - 1.0;
        }
        return result;
    }

    public static float[] Values(string key, long[] shape)
    {
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var u = Uniform(key, count);
        Func<double, double> rule =
            key.EndsWith("running_mean", StringComparison.Ordinal) ? v => 0.1 * v :
            key.EndsWith("running_var", StringComparison.Ordinal) ? v => 1.0 + 0.25 * (v + 1.0) :
            key.EndsWith("bias", StringComparison.Ordinal) ? v => 0.1 * v :
            shape.Length == 4 ? v => v * Math.Sqrt(6.0 / (shape[1] * shape[2] * shape[3])) :
            shape.Length == 3 ? v => v * Math.Sqrt(6.0 / (shape[1] * shape[2])) :
            shape.Length == 2 ? v => v * Math.Sqrt(1.0 / shape[1]) :
            v => 1.0 + 0.1 * v;
        return u.Select(v => (float)rule(v)).ToArray();
    }

    /// <summary>The deterministic input of the reference scripts ([2, 3, 64, 64] unless another shape is given).</summary>
    public static torch.Tensor Input(params long[] shape) => Input("input", shape.Length == 0 ? InputShape : shape);

    /// <summary>Values in [−1, 1) of the stream <paramref name="key"/> names, in <paramref name="shape"/>: other inputs, as reproducible.</summary>
    public static torch.Tensor Input(string key, params long[] shape) =>
        torch.tensor(Uniform(key, shape.Aggregate(1L, (a, b) => a * b)).Select(v => (float)v).ToArray(), shape);

    /// <summary>Tensors alive on this thread, for checking that a forward pass leaks none.</summary>
    public static long LiveTensors => DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;

    /// <summary>Overwrites every float tensor of the module's state_dict with its deterministic values.</summary>
    public static void Apply(torch.nn.Module module)
    {
        using var _ = torch.no_grad();
        foreach (var (key, tensor) in module.state_dict())
        {
            if (tensor.dtype != torch.ScalarType.Float32) continue;
            using var values = torch.tensor(Values(key, tensor.shape), tensor.shape);
            tensor.copy_(values);
        }
    }

    /// <summary>A file of float32 values, little-endian (under <see cref="ReferenceFolder"/> unless the path is absolute).</summary>
    public static float[] ReadFloats(string file) => Read<float>(file);

    /// <summary>A file of float64 values, little-endian (under <see cref="ReferenceFolder"/> unless the path is absolute).</summary>
    public static double[] ReadDoubles(string file) => Read<double>(file);

    private static T[] Read<T>(string file) where T : unmanaged
    {
        var bytes = File.ReadAllBytes(Path.Combine(ReferenceFolder, file));
        var result = new T[bytes.Length / System.Runtime.InteropServices.Marshal.SizeOf<T>()];
        Buffer.BlockCopy(bytes, 0, result, 0, bytes.Length);
        return result;
    }

    /// <summary>Writes <paramref name="tensor"/>'s float32 values, little-endian, as the Python scripts read them.</summary>
    public static void WriteFloats(string path, torch.Tensor tensor)
    {
        using var dense = tensor.contiguous();
        File.WriteAllBytes(path, System.Runtime.InteropServices.MemoryMarshal.AsBytes(dense.data<float>().ToArray().AsSpan()).ToArray());
    }

    /// <summary>
    /// The module's state_dict against a reference's keys file: the same keys, each with its dtype (num_batches_tracked is
    /// int64) and shape. TorchSharp lists a module's parameters before its buffers where PyTorch interleaves them, so the
    /// order is compared per kind, and the whole as sets.
    /// </summary>
    public static void AssertStateDictMatches(torch.nn.Module module, IReadOnlyList<string> expected)
    {
        var actual = module.state_dict()
            .Select(kv => $"{kv.Key} {kv.Value.dtype.ToString().ToLowerInvariant()} [{string.Join(",", kv.Value.shape)}]")
            .ToList();
        Xunit.Assert.Equal(expected.Count, actual.Count);
        Xunit.Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), actual.OrderBy(k => k, StringComparer.Ordinal));
        static bool IsBuffer(string line) => line.Contains(".running_") || line.Contains(".num_batches_tracked");
        Xunit.Assert.Equal(expected.Where(l => !IsBuffer(l)), actual.Where(l => !IsBuffer(l)));
        Xunit.Assert.Equal(expected.Where(IsBuffer), actual.Where(IsBuffer));
    }

    public static IReadOnlyList<string> ReadKeys(string model) =>
        File.ReadAllLines(Path.Combine(ReferenceFolder, model + ".keys.txt")).Where(l => l.Length > 0).ToList();
}
