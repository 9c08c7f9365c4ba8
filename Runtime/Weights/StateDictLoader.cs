using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen;

/// <summary>Copies a file's tensors into a module's state_dict, after checking every key, shape and dtype first.</summary>
internal static class StateDictLoader
{
    /// <summary>Applies the tensors a reader produced, then disposes them whatever happens.</summary>
    public static LoadReport ApplyAndDispose(torch.nn.Module module, Dictionary<string, torch.Tensor> file, bool strict, string path)
    {
        try
        {
            return Apply(module, file, strict, path);
        }
        finally
        {
            foreach (var tensor in file.Values) tensor.Dispose();
        }
    }

    public static LoadReport Apply(torch.nn.Module module, IReadOnlyDictionary<string, torch.Tensor> file, bool strict, string path)
    {
        if (module is null) throw new ArgumentNullException(nameof(module));
        var state = module.state_dict();
        var missing = state.Keys.Where(k => !file.ContainsKey(k)).ToList();
        var unexpected = file.Keys.Where(k => !state.ContainsKey(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing key{(missing.Count == 1 ? "" : "s")} {List(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected key{(unexpected.Count == 1 ? "" : "s")} {List(unexpected)}");
            throw new WeightFileException(path, missing.Concat(unexpected).First(),
                $"the file does not match the model: {string.Join("; ", parts)}. Check that the file is for this architecture, or load with strict: false to skip them.");
        }

        // Check everything before the first copy, so that a failed load changes nothing.
        var loaded = new List<string>();
        foreach (var (key, target) in state)
        {
            if (!file.TryGetValue(key, out var source)) continue;
            if (!source.shape.SequenceEqual(target.shape))
                throw new WeightFileException(path, key, $"file has {Shape(source)}, model expects {Shape(target)}");
            if (IsFloating(source.dtype) != IsFloating(target.dtype) || (source.dtype == torch.ScalarType.Bool) != (target.dtype == torch.ScalarType.Bool))
                throw new WeightFileException(path, key, $"file has dtype {source.dtype}, which cannot be converted to the model's {target.dtype}");
            loaded.Add(key);
        }

        using (torch.no_grad())
        {
            foreach (var key in loaded)
            {
                var target = state[key];
                var source = file[key];
                if (source.dtype == target.dtype)
                {
                    target.copy_(source);
                }
                else
                {
                    using var converted = source.to(target.dtype);
                    target.copy_(converted);
                }
            }
        }
        return new LoadReport(loaded, strict ? Array.Empty<string>() : missing, strict ? Array.Empty<string>() : unexpected);
    }

    internal static string Shape(torch.Tensor t) => "[" + string.Join(",", t.shape) + "]";

    private static string List(List<string> keys) =>
        string.Join(", ", keys.Take(5)) + (keys.Count > 5 ? $" and {keys.Count - 5} more" : "");

    private static bool IsFloating(torch.ScalarType t) =>
        t is torch.ScalarType.Float32 or torch.ScalarType.Float64 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16;
}
