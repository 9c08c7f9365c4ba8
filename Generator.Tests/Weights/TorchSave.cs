using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;

namespace ResNetGen.Generator.Tests.Weights;

/// <summary>
/// Writes archives laid out as torch.save writes them (protocol-2 pickle of an OrderedDict of
/// <c>_rebuild_tensor_v2</c> calls, storages as <c>data/&lt;key&gt;</c>), from descriptions that may lie: the
/// crafting tool of the hostile-file tests and the description fuzzing.
/// </summary>
public static class TorchSave
{
    /// <summary>One state_dict entry: a view of a storage.</summary>
    public sealed record Tensor(string Key, string Storage, string StorageType, long StorageNumel, long Offset, long[] Size, long[] Stride);

    /// <summary>One zip entry: its name, how it is written, and whether it is deflated.</summary>
    public sealed record Entry(string Name, Action<Stream> Write, bool Deflate = false);

    /// <summary>A contiguous tensor over a whole storage of its own, as a state_dict holds its parameters.</summary>
    public static Tensor Plain(string key, string storage, params long[] size)
    {
        var stride = new long[size.Length];
        long step = 1;
        for (var i = size.Length - 1; i >= 0; i--)
        {
            stride[i] = step;
            step *= size[i];
        }
        return new Tensor(key, storage, "FloatStorage", step, 0, size, stride);
    }

    /// <summary>The pickle torch.save writes for these tensors.</summary>
    public static byte[] Pickle(IEnumerable<Tensor> tensors)
    {
        var p = new PickleWriter();
        p.Op(0x80).Op(2);
        p.Global("collections", "OrderedDict").Op(')').Op('R');
        p.Op('(');
        foreach (var t in tensors)
        {
            p.Str(t.Key);
            p.Global("torch._utils", "_rebuild_tensor_v2");
            p.Op('(');
            p.Op('(').Str("storage").Global("torch", t.StorageType).Str(t.Storage).Str("cpu").Int(t.StorageNumel).Op('t').Op('Q');
            p.Int(t.Offset);
            p.Op('(');
            foreach (var d in t.Size) p.Int(d);
            p.Op('t').Op('(');
            foreach (var d in t.Stride) p.Int(d);
            p.Op('t').Op(0x89);
            p.Global("collections", "OrderedDict").Op(')').Op('R');
            p.Op('t').Op('R');
        }
        p.Op('u').Op('.');
        return p.ToArray();
    }

    /// <summary>Writes a zip of <paramref name="entries"/> in order (duplicates allowed, as a crafted file may have).</summary>
    public static string Zip(string path, IEnumerable<Entry> entries)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var entry in entries)
        {
            using var stream = zip.CreateEntry(entry.Name, entry.Deflate ? CompressionLevel.Fastest : CompressionLevel.NoCompression).Open();
            entry.Write(stream);
        }
        return path;
    }

    /// <summary>The usual entries of an archive named <paramref name="folder"/>: data.pkl, byteorder, version and the storages given.</summary>
    public static List<Entry> Archive(string folder, byte[] pickle, params Entry[] storages)
    {
        var list = new List<Entry>
        {
            new($"{folder}/data.pkl", s => s.Write(pickle)),
            new($"{folder}/byteorder", s => s.Write("little"u8)),
        };
        list.AddRange(storages.Select(e => e with { Name = $"{folder}/data/{e.Name}" }));
        list.Add(new($"{folder}/version", s => s.Write("3\n"u8)));
        return list;
    }

    /// <summary>A storage entry of the given bytes.</summary>
    public static Entry Bytes(string key, byte[] bytes, bool deflate = false) => new(key, s => s.Write(bytes), deflate);

    /// <summary>A storage entry of <paramref name="count"/> copies of <paramref name="value"/>, written in chunks.</summary>
    public static Entry Fill(string key, long count, byte value = 0, bool deflate = false) => new(key, s => Repeat(s, count, value), deflate);

    /// <summary>Float32 values 0, 1, 2, … as bytes.</summary>
    public static byte[] Counting(long count)
    {
        var bytes = new byte[count * 4];
        for (var i = 0; i < count; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), i);
        return bytes;
    }

    public static void Repeat(Stream stream, long count, byte value)
    {
        var chunk = new byte[(int)Math.Min(1 << 20, count)];
        Array.Fill(chunk, value);
        for (long done = 0; done < count; done += chunk.Length) stream.Write(chunk, 0, (int)Math.Min(chunk.Length, count - done));
    }

    /// <summary>
    /// Writes <paramref name="state"/> as torch.save writes a state_dict (float32 and int64 tensors, one storage each, in
    /// order) under the archive folder <paramref name="folder"/> — what torchvision's published checkpoints are.
    /// </summary>
    public static string StateDict(string path, IEnumerable<KeyValuePair<string, TorchSharp.torch.Tensor>> state, string folder = "archive")
    {
        var tensors = new List<Tensor>();
        var storages = new List<Entry>();
        foreach (var (key, value) in state)
        {
            using var cpu = value.detach().cpu().contiguous();
            var name = tensors.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var plain = Plain(key, name, cpu.shape);
            byte[] bytes = cpu.dtype switch
            {
                TorchSharp.torch.ScalarType.Float32 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(cpu.data<float>().ToArray().AsSpan()).ToArray(),
                TorchSharp.torch.ScalarType.Int64 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(cpu.data<long>().ToArray().AsSpan()).ToArray(),
                _ => throw new ArgumentException($"{key}: {cpu.dtype} is not written by this kit"),
            };
            tensors.Add(cpu.dtype == TorchSharp.torch.ScalarType.Int64 ? plain with { StorageType = "LongStorage" } : plain);
            storages.Add(Bytes(name, bytes));
        }
        return Zip(path, Archive(folder, Pickle(tensors), storages.ToArray()));
    }

    /// <summary>Every entry of an archive, by name, in order.</summary>
    public static List<(string Name, byte[] Bytes)> Entries(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        return zip.Entries.Select(e =>
        {
            using var s = e.Open();
            using var m = new MemoryStream();
            s.CopyTo(m);
            return (e.FullName, m.ToArray());
        }).ToList();
    }
}

/// <summary>Writes pickle opcodes by hand.</summary>
public sealed class PickleWriter
{
    private readonly MemoryStream _out = new();

    public PickleWriter Op(int op)
    {
        _out.WriteByte((byte)op);
        return this;
    }

    public PickleWriter Op(char op) => Op((int)op);

    public PickleWriter Global(string module, string name)
    {
        _out.WriteByte((byte)'c');
        _out.Write(Encoding.ASCII.GetBytes(module + "\n" + name + "\n"));
        return this;
    }

    public PickleWriter Str(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        _out.WriteByte((byte)'X');
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
        _out.Write(length);
        _out.Write(bytes);
        return this;
    }

    /// <summary>An integer as Python's pickler writes it: BININT1, BININT2, BININT, or LONG1 beyond 32 bits.</summary>
    public PickleWriter Int(long value)
    {
        Span<byte> b = stackalloc byte[8];
        if (value is >= 0 and < 256) return Op('K').Op((int)value);
        if (value is >= 0 and < 65536)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)value);
            Op('M');
            _out.Write(b[..2]);
            return this;
        }
        if (value is >= int.MinValue and <= int.MaxValue)
        {
            BinaryPrimitives.WriteInt32LittleEndian(b, (int)value);
            Op('J');
            _out.Write(b[..4]);
            return this;
        }
        var bytes = new System.Numerics.BigInteger(value).ToByteArray(); // little-endian two's complement, minimal
        Op(0x8a).Op(bytes.Length);
        _out.Write(bytes);
        return this;
    }

    public PickleWriter Raw(byte[] bytes)
    {
        _out.Write(bytes);
        return this;
    }

    public byte[] ToArray() => _out.ToArray();
}
