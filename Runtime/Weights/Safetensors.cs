using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header of dtype, shape and data offsets
/// per tensor (and an optional <c>__metadata__</c> map of strings), then the raw little-endian data. Keys are
/// torchvision's state_dict keys. Every file is validated whole before a tensor is read.
/// </summary>
public static class Safetensors
{
    private const string MetadataKey = "__metadata__";
    private const long MaxHeaderLength = 100_000_000;

    private static readonly Dictionary<string, (torch.ScalarType Type, int Size)> DTypes = new()
    {
        ["F64"] = (torch.ScalarType.Float64, 8),
        ["F32"] = (torch.ScalarType.Float32, 4),
        ["F16"] = (torch.ScalarType.Float16, 2),
        ["BF16"] = (torch.ScalarType.BFloat16, 2),
        ["I64"] = (torch.ScalarType.Int64, 8),
        ["I32"] = (torch.ScalarType.Int32, 4),
        ["I16"] = (torch.ScalarType.Int16, 2),
        ["I8"] = (torch.ScalarType.Int8, 1),
        ["U8"] = (torch.ScalarType.Byte, 1),
        ["BOOL"] = (torch.ScalarType.Bool, 1),
    };

    /// <summary>One tensor's entry in a validated header.</summary>
    private sealed record Entry(string Key, torch.ScalarType Type, int ElementSize, long[] Shape, long Begin, long End);

    /// <summary>A validated header: the entries in data order, the metadata, and where the data starts.</summary>
    private sealed record Header(IReadOnlyList<Entry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart);

    /// <summary>Reads every tensor of the file (on the CPU, each read straight into its own storage).</summary>
    /// <exception cref="WeightFileException">The file cannot be read or is not valid safetensors; nothing stays allocated.</exception>
    public static Dictionary<string, torch.Tensor> Read(string path)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        return WeightSource.Guard(path, () =>
        {
            using var source = Open(path);
            // The data region is covered exactly by the tensors, so reading all of them costs the file's size.
            return source.ReadAll(source.FileLength);
        });
    }

    /// <summary>The file's <c>__metadata__</c> (empty if it has none).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        return WeightSource.Guard(path, () =>
        {
            using var source = Open(path);
            return source.Metadata;
        });
    }

    /// <summary>Each tensor's shape by key, from the validated header alone: no tensor data is read.</summary>
    /// <exception cref="WeightFileException">The file cannot be read or is not valid safetensors.</exception>
    public static IReadOnlyDictionary<string, long[]> ReadShapes(string path)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        return WeightSource.Guard(path, () =>
        {
            using var source = Open(path);
            return (IReadOnlyDictionary<string, long[]>)source.Tensors.ToDictionary(t => t.Key, t => t.Shape, StringComparer.Ordinal);
        });
    }

    /// <summary>Writes <paramref name="tensors"/> (any device; written from the CPU) in key order.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, torch.Tensor> tensors) => Write(path, tensors, null);

    /// <summary>Writes <paramref name="tensors"/> with <paramref name="metadata"/> as the header's <c>__metadata__</c>.</summary>
    /// <remarks>The file is written beside its destination and renamed into place, so a failed write leaves no partial file.</remarks>
    public static void Write(string path, IReadOnlyDictionary<string, torch.Tensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        if (tensors is null) throw new ArgumentNullException(nameof(tensors));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian; this host is not.");
        var keys = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (keys.Contains(MetadataKey)) throw new ArgumentException($"'{MetadataKey}' is reserved for metadata and cannot name a tensor.", nameof(tensors));

        var json = new MemoryStream();
        long offset = 0;
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                writer.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) writer.WriteString(k, v);
                writer.WriteEndObject();
            }
            foreach (var key in keys)
            {
                var tensor = tensors[key];
                var name = DTypes.FirstOrDefault(d => d.Value.Type == tensor.dtype).Key
                           ?? throw new ArgumentException($"{key}: dtype {tensor.dtype} has no safetensors equivalent.", nameof(tensors));
                var bytes = tensor.numel() * DTypes[name].Size;
                writer.WriteStartObject(key);
                writer.WriteString("dtype", name);
                writer.WriteStartArray("shape");
                foreach (var d in tensor.shape) writer.WriteNumberValue(d);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + bytes);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += bytes;
            }
            writer.WriteEndObject();
        }
        // Pad the header with spaces so the data starts 8-byte aligned.
        while (json.Length % 8 != 0) json.WriteByte((byte)' ');

        AtomicFile.Write(path, file =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
            file.Write(length);
            json.Position = 0;
            json.CopyTo(file);
            foreach (var key in keys)
            {
                using var cpu = TensorBytes.DenseCpu(tensors[key]);
                if (cpu.numel() > 0) cpu.WriteBytesToStream(file);
            }
        });
    }

    /// <summary>
    /// Loads the file into <paramref name="module"/>'s state_dict, converting dtypes where needed (F16/BF16 weights
    /// into an F32 model). Strict: every key must match; otherwise the report lists the keys skipped. The whole file
    /// is checked before the first tensor is copied: a failed load leaves the module as it was.
    /// </summary>
    /// <param name="module">The module to load into.</param>
    /// <param name="path">The file.</param>
    /// <param name="strict">Whether every key of the module and the file must match.</param>
    /// <param name="ignoreMismatchedShapes">Skip (and list in <see cref="LoadReport.Mismatched"/>) the tensors whose shape
    /// differs from the module's, such as a pretrained classifier of another class count, instead of refusing the file.</param>
    public static LoadReport Load(torch.nn.Module module, string path, bool strict = true, bool ignoreMismatchedShapes = false) =>
        WeightSource.Load(module, path, strict, ignoreMismatchedShapes, Open);

    /// <summary>Saves <paramref name="module"/>'s state_dict (torchvision's keys, buffers included).</summary>
    public static void Save(torch.nn.Module module, string path)
    {
        if (module is null) throw new ArgumentNullException(nameof(module));
        Write(path, module.state_dict(), new Dictionary<string, string> { ["format"] = "pt" });
    }

    private static Source Open(string path)
    {
        var stream = WeightSource.OpenFile(path);
        try
        {
            return new Source(path, stream, ReadHeader(stream, path));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>An opened, validated safetensors file.</summary>
    private sealed class Source : WeightSource
    {
        private readonly FileStream _stream;
        private readonly Header _header;
        private readonly Dictionary<string, Entry> _entries;

        public Source(string path, FileStream stream, Header header) : base(path, stream.Length)
        {
            _stream = stream;
            _header = header;
            _entries = header.Entries.ToDictionary(e => e.Key, StringComparer.Ordinal);
            Tensors = header.Entries.Select(e => new TensorInfo(e.Key, e.Type, e.ElementSize, e.Shape)).ToList();
        }

        public override IReadOnlyList<TensorInfo> Tensors { get; }

        public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

        protected override void ReadInto(IReadOnlyCollection<string> keys, Dictionary<string, torch.Tensor> result)
        {
            // In data order, so that the file is read front to back.
            foreach (var entry in keys.Select(k => _entries[k]).OrderBy(e => e.Begin))
            {
                try
                {
                    var tensor = torch.empty(entry.Shape, entry.Type);
                    result.Add(entry.Key, tensor);
                    _stream.Position = _header.DataStart + entry.Begin;
                    TensorBytes.Fill(tensor, _stream, (done, needed) =>
                        new WeightFileException(FilePath, entry.Key, $"the file ended after {done} of the tensor's {needed} bytes: it changed while being read"));
                }
                catch (Exception e) when (e is not WeightFileException)
                {
                    throw WeightFileException.From(FilePath, entry.Key, e);
                }
            }
        }

        public override void Dispose() => _stream.Dispose();
    }

    private static Header ReadHeader(FileStream stream, string path)
    {
        WeightFileException Bad(string problem, string? key = null) => new(path, key, problem);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian; this host is not.");
        var length = stream.Length;
        if (length < 8) throw Bad($"truncated: the file has {length} bytes, but a safetensors file starts with an 8-byte header length");
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(length - 8))
            throw Bad($"the header length {headerLength} runs past the end of the file ({length} bytes): the file is truncated or not safetensors");
        if (headerLength > MaxHeaderLength) throw Bad($"the header length {headerLength} exceeds the format's limit of {MaxHeaderLength} bytes");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        var dataStart = 8 + (long)headerLength;
        var dataLength = length - dataStart;

        try
        {
            new UTF8Encoding(false, true).GetCharCount(headerBytes);
        }
        catch (DecoderFallbackException)
        {
            throw Bad("the JSON header is not valid UTF-8");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Bad($"malformed JSON header: {e.Message}", null);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw Bad("the JSON header is not an object");
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                var key = property.Name;
                if (!seen.Add(key)) throw Bad("the key appears twice in the header", key);
                if (key == MetadataKey)
                {
                    if (property.Value.ValueKind != JsonValueKind.Object) throw Bad("__metadata__ must be an object of strings", key);
                    foreach (var item in property.Value.EnumerateObject())
                    {
                        if (item.Value.ValueKind != JsonValueKind.String) throw Bad($"__metadata__ value '{item.Name}' is not a string", key);
                        metadata[item.Name] = item.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(key, property.Value, dataLength, Bad));
            }

            // The data must be covered exactly: in offset order, no overlap and no gap.
            entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            long covered = 0;
            Entry? previous = null;
            foreach (var entry in entries)
            {
                if (entry.Begin < covered)
                    throw Bad($"data_offsets [{entry.Begin}, {entry.End}] overlap those of '{previous!.Key}' [{previous.Begin}, {previous.End}]", entry.Key);
                if (entry.Begin > covered)
                    throw Bad($"data_offsets start at {entry.Begin}, leaving bytes {covered}..{entry.Begin} of the data unused" + (previous is null ? "" : $" after '{previous.Key}'"), entry.Key);
                covered = entry.End;
                previous = entry;
            }
            if (covered != dataLength)
                throw Bad($"the tensors cover {covered} bytes of data, but the file holds {dataLength}: it was truncated, padded or written wrongly");
            return new Header(entries, metadata, dataStart);
        }
    }

    private static Entry ParseEntry(string key, JsonElement value, long dataLength, Func<string, string?, WeightFileException> bad)
    {
        if (value.ValueKind != JsonValueKind.Object) throw bad("the entry is not an object with dtype, shape and data_offsets", key);
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw bad("the entry has no dtype", key);
        var dtype = dtypeElement.GetString()!;
        if (!DTypes.TryGetValue(dtype, out var type))
            throw bad($"unknown dtype '{dtype}' (supported: {string.Join(", ", DTypes.Keys)})", key);
        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw bad("the entry has no shape array", key);
        var shape = new List<long>();
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var n) || n < 0) throw bad($"shape has an invalid dimension {d.GetRawText()}", key);
            shape.Add(n);
        }
        if (!value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw bad("data_offsets must be an array of two byte offsets", key);
        long begin = 0, end = 0;
        var i = 0;
        foreach (var o in offsets.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out var n) || n < 0) throw bad($"data_offsets has an invalid offset {o.GetRawText()}", key);
            if (i++ == 0) begin = n; else end = n;
        }
        if (begin > end) throw bad($"data_offsets [{begin}, {end}] end before they begin", key);
        if (end > dataLength) throw bad($"data_offsets [{begin}, {end}] run past the end of the data ({dataLength} bytes): the file is truncated or its header is wrong", key);
        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (a, b) => a * b) * type.Size);
        }
        catch (OverflowException)
        {
            throw bad($"shape [{string.Join(",", shape)}] is too large", key);
        }
        if (end - begin != expected)
            throw bad($"data_offsets [{begin}, {end}] cover {end - begin} bytes, but {dtype} [{string.Join(",", shape)}] needs {expected}", key);
        return new Entry(key, type.Type, type.Size, shape.ToArray(), begin, end);
    }
}
