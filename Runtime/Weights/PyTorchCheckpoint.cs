using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// Reads <c>torch.save(state_dict)</c> files (the zip format of PyTorch 1.6 and later: <c>data.pkl</c> and
/// <c>data/&lt;n&gt;</c> storages), as torchvision publishes its weights. The pickle is read by an allow-listed
/// unpickler that knows only what a state_dict needs; anything else is refused, so loading never executes or
/// constructs anything else.
/// </summary>
public static class PyTorchCheckpoint
{
    /// <summary>Reads every tensor of the state_dict (on the CPU). A training checkpoint that nests the state_dict
    /// under <c>state_dict</c>, <c>model</c> or <c>model_state_dict</c> is read from there.</summary>
    public static Dictionary<string, torch.Tensor> Read(string path)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        ZipArchive zip;
        try
        {
            zip = ZipFile.OpenRead(path);
        }
        catch (InvalidDataException e)
        {
            throw new WeightFileException(path, null,
                "not a zip archive. torch.save has written zip archives since PyTorch 1.6; re-save the state_dict with a current PyTorch (torch.save(model.state_dict(), path))", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new WeightFileException(path, null, $"cannot open the file: {e.Message}", e);
        }
        using (zip)
        {
            try
            {
                return ReadArchive(zip, path);
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException && e is not WeightFileException)
            {
                throw new WeightFileException(path, null, $"the zip archive is damaged: {e.Message}", e);
            }
        }
    }

    /// <summary>
    /// Loads the checkpoint into <paramref name="module"/>'s state_dict, converting dtypes where needed. Strict: every
    /// key must match; otherwise the report lists the keys skipped. A failed load leaves the module as it was.
    /// </summary>
    public static LoadReport Load(torch.nn.Module module, string path, bool strict = true)
    {
        return StateDictLoader.ApplyAndDispose(module, Read(path), strict, path);
    }

    private static Dictionary<string, torch.Tensor> ReadArchive(ZipArchive zip, string path)
    {
        var pickle = zip.Entries.Where(e => e.FullName == "data.pkl" || e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal))
            .OrderBy(e => e.FullName.Length).FirstOrDefault()
            ?? throw new WeightFileException(path, null, "the zip archive has no data.pkl, so it is not a torch.save file");
        var prefix = pickle.FullName.Substring(0, pickle.FullName.Length - "data.pkl".Length);
        if (zip.GetEntry(prefix + "byteorder") is { } order)
        {
            using var reader = new StreamReader(order.Open());
            var text = reader.ReadToEnd().Trim();
            if (text != "little") throw new WeightFileException(path, null, $"the checkpoint was written {text}-endian; only little-endian files are read");
        }
        if (pickle.Length > 256L << 20) throw new WeightFileException(path, null, $"data.pkl is {pickle.Length} bytes, far more than a state_dict needs");
        byte[] bytes;
        using (var stream = pickle.Open())
        using (var buffer = new MemoryStream())
        {
            stream.CopyTo(buffer);
            bytes = buffer.ToArray();
        }

        var root = new Unpickler(bytes, path).Load();
        var state = StateDict(root, path);

        // Check every tensor against its storage before reading any data.
        foreach (var (key, tensor) in state)
        {
            var entry = zip.GetEntry(prefix + "data/" + tensor.Storage.Key)
                        ?? throw new WeightFileException(path, key, $"its storage data/{tensor.Storage.Key} is missing from the archive");
            var needed = tensor.Storage.Numel * tensor.Storage.ElementSize;
            if (entry.Length < needed)
                throw new WeightFileException(path, key, $"storage data/{tensor.Storage.Key} has {entry.Length} bytes, but {tensor.Storage.Numel} elements of {tensor.Storage.Type} need {needed}");
            if (tensor.Size.Any(d => d < 0) || tensor.Stride.Any(d => d < 0) || tensor.Size.Length != tensor.Stride.Length || tensor.Offset < 0)
                throw new WeightFileException(path, key, "the tensor has a negative size, stride or offset");
            if (tensor.Size.All(d => d > 0))
            {
                var last = tensor.Offset + tensor.Size.Zip(tensor.Stride, (s, st) => (s - 1) * st).Sum();
                if (last >= tensor.Storage.Numel)
                    throw new WeightFileException(path, key, $"the tensor reaches element {last} of a storage of {tensor.Storage.Numel}");
            }
        }

        var storages = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (key, tensor) in state)
            {
                if (!storages.TryGetValue(tensor.Storage.Key, out var storage))
                {
                    storage = torch.empty(new[] { tensor.Storage.Numel }, tensor.Storage.Type);
                    if (tensor.Storage.Numel > 0)
                    {
                        using var data = zip.GetEntry(prefix + "data/" + tensor.Storage.Key)!.Open();
                        storage.ReadBytesFromStream(data);
                    }
                    storages.Add(tensor.Storage.Key, storage);
                }
                using var view = storage.as_strided(tensor.Size, tensor.Stride, tensor.Offset);
                result.Add(key, view.contiguous().clone());
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var s in storages.Values) s.Dispose();
        }
    }

    private static IReadOnlyList<(string Key, Unpickler.TensorRef Tensor)> StateDict(object? root, string path)
    {
        if (root is not Unpickler.PyDict dict) throw new WeightFileException(path, null, "the pickle does not hold a state_dict (a dictionary of tensors)");
        if (!dict.Items.All(kv => kv.Value is Unpickler.TensorRef))
        {
            foreach (var name in new[] { "state_dict", "model", "model_state_dict" })
            {
                if (dict.Items.FirstOrDefault(kv => Equals(kv.Key, name)).Value is Unpickler.PyDict inner && inner.Items.All(kv => kv.Value is Unpickler.TensorRef))
                {
                    dict = inner;
                    break;
                }
            }
        }
        var result = new List<(string, Unpickler.TensorRef)>();
        foreach (var (key, value) in dict.Items)
        {
            if (key is not string name) throw new WeightFileException(path, null, $"the state_dict has a key that is not a string: {key}");
            if (value is not Unpickler.TensorRef tensor) throw new WeightFileException(path, name, "the value is not a tensor, so this is not a state_dict");
            result.Add((name, tensor));
        }
        return result;
    }
}
