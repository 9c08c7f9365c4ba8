using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// Loads a weight file into a module's state_dict: every key, shape and dtype is checked against the file's
/// descriptions first, only the tensors the module takes are read, and their total size is the budget (the module
/// decides how much memory a file may cost, not the file). A failed load leaves the module as it was.
/// </summary>
internal static class StateDictLoader
{
    public static LoadReport Load(torch.nn.Module module, WeightSource source, bool strict, bool ignoreMismatchedShapes)
    {
        var path = source.FilePath;
        var state = module.state_dict();
        var file = source.ByKey;
        // As PyTorch's batch-norm does in load_state_dict: a missing num_batches_tracked is no reason to refuse a file.
        var countersKept = state.Keys.Where(k => !file.ContainsKey(k) && IsCounter(k)).ToList();
        var missing = state.Keys.Where(k => !file.ContainsKey(k) && !IsCounter(k)).ToList();
        var unexpected = source.Tensors.Select(t => t.Key).Where(k => !state.ContainsKey(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing key{(missing.Count == 1 ? "" : "s")} {List(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected key{(unexpected.Count == 1 ? "" : "s")} {List(unexpected)}");
            throw new WeightFileException(path, missing.Concat(unexpected).First(),
                $"the file does not match the model: {string.Join("; ", parts)}. Check that the file is for this architecture, or load with strict: false to skip them.");
        }

        // Check everything before the first read, so that a failed load changes nothing and costs nothing.
        var loaded = new List<string>();
        var mismatched = new List<string>();
        long budget = 0;
        foreach (var (key, target) in state)
        {
            if (!file.TryGetValue(key, out var source_)) continue;
            if (!source_.Shape.SequenceEqual(target.shape))
            {
                // Fine-tuning: a pretrained classifier of another class count is skipped, not read, and reported.
                if (ignoreMismatchedShapes)
                {
                    mismatched.Add(key);
                    continue;
                }
                throw new WeightFileException(path, key, $"file has {source_.ShapeText}, model expects {Shape(target)}"
                    + " (load with ignoreMismatchedShapes: true to keep the model's own tensor, e.g. a new classifier)");
            }
            if (IsFloating(source_.Type) != IsFloating(target.dtype) || (source_.Type == torch.ScalarType.Bool) != (target.dtype == torch.ScalarType.Bool))
                throw new WeightFileException(path, key, $"file has dtype {source_.Type}, which cannot be converted to the model's {target.dtype}");
            loaded.Add(key);
            budget += source_.Bytes;
        }

        var tensors = source.Read(loaded, budget);
        try
        {
            using (torch.no_grad())
            {
                foreach (var key in loaded)
                {
                    var target = state[key];
                    var read = tensors[key];
                    if (read.dtype == target.dtype)
                    {
                        target.copy_(read);
                    }
                    else
                    {
                        using var converted = read.to(target.dtype);
                        target.copy_(converted);
                    }
                }
            }
        }
        finally
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
        }
        return new LoadReport(loaded, strict ? Array.Empty<string>() : missing, strict ? Array.Empty<string>() : unexpected)
        {
            Mismatched = mismatched,
            CountersKept = countersKept,
        };
    }

    private static bool IsCounter(string key) => key == "num_batches_tracked" || key.EndsWith(".num_batches_tracked", StringComparison.Ordinal);

    internal static string Shape(torch.Tensor t) => "[" + string.Join(",", t.shape) + "]";

    private static string List(List<string> keys) =>
        string.Join(", ", keys.Take(5).Select(k => WeightFileException.Escape(k, 80))) + (keys.Count > 5 ? $" and {keys.Count - 5} more" : "");

    private static bool IsFloating(torch.ScalarType t) =>
        t is torch.ScalarType.Float32 or torch.ScalarType.Float64 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16;
}
