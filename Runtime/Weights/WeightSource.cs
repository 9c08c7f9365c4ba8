using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using TorchSharp;

namespace ResNetGen;

/// <summary>One tensor as a weight file describes it, before any of its data is read.</summary>
internal sealed record TensorInfo(string Key, torch.ScalarType Type, int ElementSize, long[] Shape)
{
    public long Numel { get; } = Shape.Aggregate(1L, (a, b) => a * b);

    public long Bytes => Numel * ElementSize;

    public string ShapeText => "[" + string.Join(",", Shape) + "]";
}

/// <summary>
/// An opened weight file: every tensor described and checked (offsets, sizes, storages) with nothing but the file's
/// headers read; data is read only for the keys asked for, under a budget fixed before the first allocation.
/// </summary>
internal abstract class WeightSource : IDisposable
{
    /// <summary>What a load or read may allocate beyond what it returns, whatever the file says.</summary>
    public const long Slack = 64L << 20;

    protected WeightSource(string path, long fileLength)
    {
        FilePath = path;
        FileLength = fileLength;
    }

    public string FilePath { get; }

    public long FileLength { get; }

    /// <summary>The tensors, in the file's order; keys are unique.</summary>
    public abstract IReadOnlyList<TensorInfo> Tensors { get; }

    private Dictionary<string, TensorInfo>? _byKey;

    /// <summary>The tensors by key.</summary>
    public IReadOnlyDictionary<string, TensorInfo> ByKey => _byKey ??= Tensors.ToDictionary(t => t.Key, StringComparer.Ordinal);

    /// <summary>Reads every tensor of the file, within <paramref name="maxBytes"/>.</summary>
    public Dictionary<string, torch.Tensor> ReadAll(long maxBytes) => Read(Tensors.Select(t => t.Key).ToList(), maxBytes);

    /// <summary>
    /// Reads <paramref name="keys"/> (each a key of <see cref="Tensors"/>) into new CPU tensors, which the caller owns.
    /// Refused before any allocation if they would take more than <paramref name="maxBytes"/>; on failure nothing
    /// read stays allocated.
    /// </summary>
    public Dictionary<string, torch.Tensor> Read(IReadOnlyCollection<string> keys, long maxBytes)
    {
        var infos = ByKey;
        long total = 0;
        foreach (var key in keys)
        {
            if (infos[key].Bytes > maxBytes - total)
                throw new WeightFileException(FilePath, key,
                    $"the tensors asked for take more than {maxBytes} bytes (this one is {infos[key].ShapeText} of {infos[key].Type}), more than the file or the model can account for; nothing was allocated");
            total += infos[key].Bytes;
        }
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            ReadInto(keys, result);
            return result;
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>Reads the tensors for <paramref name="keys"/>, adding each to <paramref name="result"/> as soon as it exists.</summary>
    protected abstract void ReadInto(IReadOnlyCollection<string> keys, Dictionary<string, torch.Tensor> result);

    public abstract void Dispose();

    /// <summary>Opens <paramref name="path"/> for reading, or says why it cannot.</summary>
    internal static FileStream OpenFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new WeightFileException(path, null, $"cannot open the file: {WeightFileException.FirstLine(e.Message)}", e);
        }
    }

    /// <summary>The loaders' common body: open the file with <paramref name="open"/>, load it into the module, close it.</summary>
    internal static LoadReport Load(torch.nn.Module module, string path, bool strict, bool ignoreMismatchedShapes, Func<string, WeightSource> open)
    {
        if (module is null) throw new ArgumentNullException(nameof(module));
        if (path is null) throw new ArgumentNullException(nameof(path));
        return Guard(path, () =>
        {
            using var source = open(path);
            return StateDictLoader.Load(module, source, strict, ignoreMismatchedShapes);
        });
    }

    /// <summary>Runs <paramref name="body"/>, turning anything it throws into a <see cref="WeightFileException"/> for <paramref name="path"/>.</summary>
    internal static T Guard<T>(string path, Func<T> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is not WeightFileException && e is not ArgumentNullException)
        {
            throw WeightFileException.From(path, null, e);
        }
    }
}

/// <summary>Reads raw bytes from a stream straight into a tensor's memory, and skips bytes without keeping them.</summary>
internal static class TensorBytes
{
    private const int Chunk = 1 << 20;

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The address of a CPU tensor's first element (its storage offset included).</summary>
    public static IntPtr Pointer(torch.Tensor tensor) => THSTensor_data(tensor.Handle);

    /// <summary>
    /// Fills the contiguous CPU <paramref name="tensor"/> from <paramref name="stream"/>; fails (naming what was
    /// missing) if the stream ends first. Any size, including more than 2 GiB.
    /// </summary>
    public static unsafe void Fill(torch.Tensor tensor, Stream stream, Func<long, long, Exception> endedEarly)
    {
        var total = tensor.numel() * tensor.element_size();
        if (total == 0) return;
        var start = (byte*)THSTensor_data(tensor.Handle);
        if (start == null) throw new InvalidOperationException("the tensor has no CPU data");
        long done = 0;
        while (done < total)
        {
            var span = new Span<byte>(start + done, (int)Math.Min(Chunk, total - done));
            var n = stream.Read(span);
            if (n <= 0) throw endedEarly(done, total);
            done += n;
        }
    }

    /// <summary>
    /// A contiguous CPU tensor holding <paramref name="tensor"/>'s values (in <paramref name="type"/> if given), with
    /// every intermediate handle disposed at once rather than left for the finalizer, which would keep a device copy
    /// alive until the next garbage collection.
    /// </summary>
    public static torch.Tensor DenseCpu(torch.Tensor tensor, torch.ScalarType? type = null)
    {
        using var detached = tensor.detach();
        using var typed = type is { } t ? detached.to(t) : detached.alias();
        using var cpu = typed.cpu();
        return cpu.contiguous();
    }

    /// <summary>Reads and discards <paramref name="count"/> bytes.</summary>
    public static void Skip(Stream stream, long count, Func<long, long, Exception> endedEarly)
    {
        if (count <= 0) return;
        var buffer = new byte[(int)Math.Min(Chunk, count)];
        long done = 0;
        while (done < count)
        {
            var n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, count - done));
            if (n <= 0) throw endedEarly(done, count);
            done += n;
        }
    }

    /// <summary>
    /// Reads at most <paramref name="limit"/> bytes of <paramref name="stream"/>; returns null if it holds more, so
    /// that no entry, however it was compressed, is read past what its reader needs.
    /// </summary>
    public static byte[]? ReadBounded(Stream stream, long limit)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[(int)Math.Min(Chunk, limit + 1)];
        while (true)
        {
            var n = stream.Read(chunk, 0, (int)Math.Min(chunk.Length, limit + 1 - buffer.Length));
            if (n <= 0) return buffer.ToArray();
            buffer.Write(chunk, 0, n);
            if (buffer.Length > limit) return null;
        }
    }
}
