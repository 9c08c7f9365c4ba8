using System;
using System.Globalization;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// Reads <c>torch.save(state_dict)</c> files (the zip format of PyTorch 1.6 and later: <c>data.pkl</c> and
/// <c>data/&lt;n&gt;</c> storages), as torchvision publishes its weights. The pickle is read by an allow-listed
/// unpickler that knows only what a state_dict needs; anything else is refused, so loading never executes or
/// constructs anything else. Every tensor description is checked against its storage and every storage against
/// its zip entry before data is read, and only the elements a tensor uses are read.
/// </summary>
public static class PyTorchCheckpoint
{
    /// <summary>The most entries an archive may have: a state_dict has one storage per tensor, and ResNet-152 has under a thousand.</summary>
    public const int MaxEntries = 1 << 16;

    /// <summary>The largest <c>data.pkl</c> read: ResNet-152's is 60 KB.</summary>
    public const long MaxPickleBytes = 64L << 20;

    /// <summary>
    /// Reads every tensor of the state_dict (on the CPU). A training checkpoint that nests the state_dict under
    /// <c>state_dict</c>, <c>model</c> or <c>model_state_dict</c> is read from there. The tensors read may take at most
    /// the file's size plus 64 MiB (a compressed archive can hold more; <see cref="Read(string, long)"/> allows it).
    /// </summary>
    /// <exception cref="WeightFileException">The file cannot be read, is not a state_dict, or would exceed the budget; nothing stays allocated.</exception>
    public static Dictionary<string, torch.Tensor> Read(string path) => Read(path, -1);

    /// <summary>Reads every tensor of the state_dict, allowing them to take up to <paramref name="maxBytes"/> bytes.</summary>
    public static Dictionary<string, torch.Tensor> Read(string path, long maxBytes)
    {
        if (path is null) throw new ArgumentNullException(nameof(path));
        return WeightSource.Guard(path, () =>
        {
            using var source = Open(path);
            var budget = maxBytes >= 0 ? maxBytes : source.FileLength + WeightSource.Slack;
            return source.ReadAll(budget);
        });
    }

    /// <summary>
    /// Loads the checkpoint into <paramref name="module"/>'s state_dict, converting dtypes where needed. Strict: every
    /// key must match; otherwise the report lists the keys skipped. Only the tensors the module takes are read, and
    /// the module's size bounds what the file may make the load allocate. A failed load leaves the module as it was.
    /// </summary>
    /// <exception cref="WeightFileException">Whatever is wrong with the file, or its fit to the module.</exception>
    /// <param name="module">The module to load into.</param>
    /// <param name="path">The file.</param>
    /// <param name="strict">Whether every key of the module and the file must match.</param>
    /// <param name="ignoreMismatchedShapes">Skip (and list in <see cref="LoadReport.Mismatched"/>) the tensors whose shape
    /// differs from the module's, such as a pretrained classifier of another class count, instead of refusing the file.</param>
    public static LoadReport Load(torch.nn.Module module, string path, bool strict = true, bool ignoreMismatchedShapes = false) =>
        WeightSource.Load(module, path, strict, ignoreMismatchedShapes, Open);

    private static Source Open(string path)
    {
        var stream = WeightSource.OpenFile(path);
        try
        {
            var length = stream.Length;
            CheckEntryCount(stream, path);
            ZipArchive zip;
            try
            {
                zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            }
            catch (InvalidDataException e)
            {
                throw new WeightFileException(path, null,
                    "not a zip archive. torch.save has written zip archives since PyTorch 1.6; re-save the state_dict with a current PyTorch (torch.save(model.state_dict(), path))", e);
            }
            try
            {
                return new Source(path, length, stream, zip);
            }
            catch
            {
                zip.Dispose();
                throw;
            }
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads the entry count from the end-of-central-directory record (and its Zip64 form) before the archive is
    /// opened, so that a small file cannot make the zip reader build millions of entries.
    /// </summary>
    private static void CheckEntryCount(FileStream stream, string path)
    {
        const int EocdSize = 22;
        var tail = (int)Math.Min(stream.Length, EocdSize + ushort.MaxValue);
        if (tail < EocdSize) return; // too short to be a zip: the zip reader says so
        var buffer = new byte[tail];
        stream.Position = stream.Length - tail;
        stream.ReadExactly(buffer);
        stream.Position = 0;
        var at = -1;
        for (var i = tail - EocdSize; i >= 0; i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(i)) == 0x06054b50) { at = i; break; }
        }
        if (at < 0) return;
        long entries = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(at + 10));
        if (entries == ushort.MaxValue && at >= 20 && BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at - 20)) == 0x07064b50)
        {
            var zip64 = BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(at - 12));
            if (zip64 <= (ulong)(stream.Length - 56))
            {
                var record = new byte[56];
                stream.Position = (long)zip64;
                stream.ReadExactly(record);
                stream.Position = 0;
                if (BinaryPrimitives.ReadUInt32LittleEndian(record) == 0x06064b50)
                    entries = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32)), long.MaxValue);
            }
        }
        if (entries > MaxEntries)
            throw new WeightFileException(path, null, $"the zip archive declares {entries} entries, more than the {MaxEntries} any state_dict needs; it was not opened");
    }

    /// <summary>An opened archive whose pickle has been read and whose every tensor has been checked.</summary>
    private sealed class Source : WeightSource
    {
        private readonly FileStream _stream;
        private readonly ZipArchive _zip;
        private readonly string _prefix;
        private readonly Dictionary<string, Unpickler.TensorRef> _refs = new(StringComparer.Ordinal);
        private readonly Dictionary<string, ZipArchiveEntry> _entries = new(StringComparer.Ordinal);

        public Source(string path, long length, FileStream stream, ZipArchive zip) : base(path, length)
        {
            _stream = stream;
            _zip = zip;
            foreach (var entry in zip.Entries)
            {
                if (!_entries.TryAdd(entry.FullName, entry))
                    throw Fail($"the zip archive holds two entries named '{entry.FullName}'; readers disagree on which one counts (PyTorch takes another than this reader would), so the file is refused");
            }
            var pickles = _entries.Keys.Where(n => n == "data.pkl" || n.EndsWith("/data.pkl", StringComparison.Ordinal)).ToList();
            if (pickles.Count == 0) throw Fail("the zip archive has no data.pkl, so it is not a torch.save file");
            if (pickles.Count > 1) throw Fail($"the zip archive holds {pickles.Count} data.pkl entries ({string.Join(", ", pickles.Take(3))}); a torch.save file has one, and readers would disagree on which counts");
            _prefix = pickles[0].Substring(0, pickles[0].Length - "data.pkl".Length);
            if (_prefix.Count(c => c == '/') > 1) throw Fail($"data.pkl lies at '{pickles[0]}', deeper than torch.save puts it");
            var outside = _entries.Keys.FirstOrDefault(n => !n.StartsWith(_prefix, StringComparison.Ordinal));
            if (outside is not null)
                throw Fail($"the entry '{outside}' lies outside the archive's folder '{_prefix.TrimEnd('/')}'; torch.save writes one folder, and readers could disagree on which is the archive");

            if (_entries.TryGetValue(_prefix + "byteorder", out var order))
            {
                using var s = order.Open();
                var bytes = TensorBytes.ReadBounded(s, 16);
                var text = bytes is null ? null : Encoding.ASCII.GetString(bytes).Trim();
                if (text != "little")
                    throw Fail(text is null ? "the byteorder entry holds more than a byte order" : $"the checkpoint was written {text}-endian; only little-endian files are read");
            }

            var pickle = _entries[pickles[0]];
            if (pickle.Length > MaxPickleBytes)
                throw Fail($"data.pkl is {pickle.Length} bytes, more than the {MaxPickleBytes} any state_dict needs");
            byte[] data;
            using (var s = pickle.Open())
            {
                data = TensorBytes.ReadBounded(s, pickle.Length)
                       ?? throw Fail($"data.pkl holds more than the {pickle.Length} bytes its zip entry declares, so readers could disagree on its content");
            }
            if (data.Length != pickle.Length)
                throw Fail($"data.pkl holds {data.Length} bytes, but its zip entry declares {pickle.Length}: the archive is damaged");
            CheckCrc("data.pkl", pickle, Crc32Stream.Of(data));

            var infos = new List<TensorInfo>();
            foreach (var (key, tensor) in StateDict(new Unpickler(data, path).Load()))
            {
                infos.Add(Check(key, tensor));
                _refs.Add(key, tensor);
            }
            Tensors = infos;
        }

        public override IReadOnlyList<TensorInfo> Tensors { get; }

        private WeightFileException Fail(string problem, string? key = null) => new(FilePath, key, problem);

        /// <summary>Checks one tensor against its storage and the storage against its entry, without reading data.</summary>
        private TensorInfo Check(string key, Unpickler.TensorRef tensor)
        {
            var storage = tensor.Storage;
            if (!_entries.TryGetValue(_prefix + "data/" + storage.Key, out var entry))
                throw Fail($"its storage data/{storage.Key} is missing from the archive", key);
            var needed = (Int128)storage.Numel * storage.ElementSize;
            if (entry.Length < needed)
                throw Fail($"storage data/{storage.Key} has {entry.Length} bytes, but {storage.Numel} elements of {storage.Type} need {needed}", key);
            if (tensor.Size.Length != tensor.Stride.Length) throw Fail($"the tensor has {tensor.Size.Length} sizes but {tensor.Stride.Length} strides", key);
            if (tensor.Size.Length > Unpickler.MaxRank) throw Fail($"the tensor has {tensor.Size.Length} dimensions; at most {Unpickler.MaxRank} are read", key);
            if (tensor.Size.Any(d => d < 0) || tensor.Stride.Any(d => d < 0) || tensor.Offset < 0)
                throw Fail("the tensor has a negative size, stride or offset", key);
            Int128 numel = 1;
            foreach (var d in tensor.Size)
            {
                numel *= d;
                if (numel * storage.ElementSize > long.MaxValue) throw Fail($"the tensor's shape [{string.Join(",", tensor.Size)}] has more than 2^63 bytes", key);
            }
            if (numel > 0)
            {
                Int128 last = tensor.Offset;
                for (var i = 0; i < tensor.Size.Length; i++) last += (Int128)(tensor.Size[i] - 1) * tensor.Stride[i];
                if (last >= storage.Numel)
                    throw Fail($"the tensor reaches element {last} of a storage of {storage.Numel}", key);
            }
            return new TensorInfo(key, storage.Type, storage.ElementSize, tensor.Size);
        }

        protected override void ReadInto(IReadOnlyCollection<string> keys, Dictionary<string, torch.Tensor> result)
        {
            // Outputs are budgeted by the caller; storages are read one at a time, only over the elements the chosen
            // tensors use, and a compressed entry may not make the reader inflate more than the file and the outputs justify.
            var inflateBudget = keys.Aggregate((Int128)FileLength + Slack, (sum, k) => sum + ByKey[k].Bytes);
            Int128 inflated = 0;
            foreach (var group in keys.GroupBy(k => _refs[k].Storage.Key, StringComparer.Ordinal))
            {
                var storage = _refs[group.First()].Storage;
                var views = group.Select(k => (Key: k, Ref: _refs[k], Info: ByKey[k])).ToList();
                foreach (var empty in views.Where(v => v.Info.Numel == 0)) result.Add(empty.Key, torch.empty(empty.Ref.Size, storage.Type));
                var used = views.Where(v => v.Info.Numel > 0).ToList();
                if (used.Count == 0) continue;

                var first = used.Min(v => v.Ref.Offset);
                var end = used.Max(v => v.Ref.Offset + v.Ref.Size.Zip(v.Ref.Stride, (s, st) => (s - 1) * st).Sum() + 1);
                var rangeBytes = (end - first) * storage.ElementSize;
                var viewBytes = used.Aggregate((Int128)0, (sum, v) => sum + v.Info.Bytes);
                var key = used[0].Key;
                if (rangeBytes > viewBytes + FileLength + Slack)
                    throw Fail($"its tensors span {rangeBytes} bytes of storage data/{storage.Key} to use {viewBytes}; reading that is more than the file's size justifies, so nothing was read", key);
                var entry = _entries[_prefix + "data/" + storage.Key];
                if (entry.CompressedLength != entry.Length)
                {
                    inflated += entry.Length; // read whole, for its CRC-32

                    if (inflated > inflateBudget)
                        throw Fail($"reading it means inflating {entry.Length} bytes of the compressed storage data/{storage.Key} ({entry.CompressedLength} bytes in the file), more than the file and the tensors read justify; nothing was read", key);
                }

                try
                {
                    // Every byte of the entry passes through the CRC-32, the rest of the entry once the tensors are read.
                    using var stream = new Crc32Stream(entry.Open());
                    Exception Short(long done, long needed) =>
                        Fail($"storage data/{storage.Key} ended {needed - done} bytes early: its zip entry declares {entry.Length} bytes, but holds fewer", key);
                    void Verify()
                    {
                        TensorBytes.Skip(stream, entry.Length - stream.Count, Short);
                        CheckCrc("data/" + storage.Key, entry, stream.Crc, key);
                    }
                    var ordered = used.OrderBy(v => v.Ref.Offset).ToList();
                    if (ordered.All(v => IsContiguous(v.Ref)) && ordered.Zip(ordered.Skip(1)).All(p => p.First.Ref.Offset + p.First.Info.Numel <= p.Second.Ref.Offset))
                    {
                        // What torch.save writes for a state_dict: tensors side by side in their storage, each read in place.
                        long position = 0;
                        foreach (var (name, tensor, info) in ordered)
                        {
                            key = name;
                            TensorBytes.Skip(stream, (tensor.Offset - position) * storage.ElementSize, Short);
                            var output = torch.empty(tensor.Size, storage.Type);
                            result.Add(name, output);
                            TensorBytes.Fill(output, stream, Short);
                            position = tensor.Offset + info.Numel;
                        }
                        Verify();
                        continue;
                    }
                    // Overlapping or strided views: read the span they use once, and copy each out of it.
                    TensorBytes.Skip(stream, first * storage.ElementSize, Short);
                    using var range = torch.empty(new[] { end - first }, storage.Type);
                    TensorBytes.Fill(range, stream, Short);
                    Verify();
                    foreach (var (name, tensor, _) in used)
                    {
                        key = name;
                        var output = torch.empty(tensor.Size, storage.Type);
                        result.Add(name, output);
                        using var view = range.as_strided(tensor.Size, tensor.Stride, tensor.Offset - first);
                        output.copy_(view);
                    }
                }
                catch (Exception e) when (e is not WeightFileException)
                {
                    throw WeightFileException.From(FilePath, key, e);
                }
            }
        }

        /// <summary>
        /// Refuses an entry whose bytes do not give the CRC-32 its zip entry declares, as PyTorch's reader does: a damaged
        /// header can point the reader at the wrong bytes, and a changed data byte would otherwise load as a different weight.
        /// </summary>
        private void CheckCrc(string name, ZipArchiveEntry entry, uint actual, string? key = null)
        {
            if (actual != entry.Crc32)
                throw Fail(string.Format(CultureInfo.InvariantCulture,
                    "{0} fails its CRC-32 check (the zip entry declares {1:x8}, its bytes give {2:x8}): the file is damaged; nothing was loaded",
                    name, entry.Crc32, actual), key);
        }

        /// <summary>Whether the tensor's elements lie in row-major order with no gaps (dimensions of size 1 have any stride).</summary>
        private static bool IsContiguous(Unpickler.TensorRef tensor)
        {
            long expected = 1;
            for (var i = tensor.Size.Length - 1; i >= 0; i--)
            {
                if (tensor.Size[i] != 1 && tensor.Stride[i] != expected) return false;
                expected *= tensor.Size[i];
            }
            return true;
        }

        public override void Dispose()
        {
            _zip.Dispose();
            _stream.Dispose();
        }

        private IEnumerable<(string Key, Unpickler.TensorRef Tensor)> StateDict(object? root)
        {
            if (root is not Unpickler.PyDict dict) throw Fail("the pickle does not hold a state_dict (a dictionary of tensors)");
            if (!dict.Items.All(kv => kv.Value is Unpickler.TensorRef))
            {
                foreach (var name in new[] { "state_dict", "model", "model_state_dict" })
                {
                    if (dict.Get(name) is Unpickler.PyDict inner && inner.Items.All(kv => kv.Value is Unpickler.TensorRef))
                    {
                        dict = inner;
                        break;
                    }
                }
            }
            foreach (var (key, value) in dict.Items)
            {
                if (key is not string name) throw Fail($"the state_dict has a key that is not a string: {Describe(key)}");
                if (value is not Unpickler.TensorRef tensor) throw Fail("the value is not a tensor, so this is not a state_dict", name);
                yield return (name, tensor);
            }
        }

        private static string Describe(object? key) => key switch
        {
            null => "None",
            object[] tuple => $"a tuple of {tuple.Length}",
            _ => key.ToString() ?? "",
        };
    }
}
