using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;
using System.Text;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// A pickle reader that accepts only what <c>torch.save(state_dict)</c> writes: plain values, tuples, lists and
/// dictionaries, <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor_v2</c> (and
/// <c>_rebuild_parameter</c>) and the typed storage classes. Any other global or opcode is refused with the file,
/// the name and the byte offset. Nothing is ever called: tensors come back as descriptions to validate and read.
/// </summary>
internal sealed class Unpickler
{
    internal sealed record StorageRef(string Key, torch.ScalarType Type, int ElementSize, long Numel);

    internal sealed record TensorRef(StorageRef Storage, long Offset, long[] Size, long[] Stride);

    /// <summary>
    /// A Python dictionary: insertion order kept, keys compared as Python compares them (<c>True == 1</c>, tuples by
    /// value), each insert in constant time.
    /// </summary>
    internal sealed class PyDict
    {
        private readonly Dictionary<PyKey, int> _index = new();

        public List<KeyValuePair<object?, object?>> Items { get; } = new();

        public object? Get(object? key) => _index.TryGetValue(new PyKey(key), out var i) ? Items[i].Value : null;

        public void Set(object? key, object? value, Func<string, Exception> fail)
        {
            if (key is not (string or long or BigInteger or bool or null) && key is not object[]) throw fail($"a dictionary key of type {key.GetType().Name}");
            var wrapped = new PyKey(key);
            if (_index.TryGetValue(wrapped, out var index)) Items[index] = new(Items[index].Key, value); // Python keeps the first key object
            else
            {
                _index.Add(wrapped, Items.Count);
                Items.Add(new(key, value));
            }
        }
    }

    /// <summary>A dictionary key with Python's equality for the values a pickle can hold here.</summary>
    private readonly struct PyKey : IEquatable<PyKey>
    {
        private readonly object? _value;

        public PyKey(object? value) => _value = value;

        public bool Equals(PyKey other) => Same(_value, other._value);

        public override bool Equals(object? obj) => obj is PyKey other && Equals(other);

        public override int GetHashCode() => Hash(_value, 0);

        private static object? Normal(object? v) => v is bool b ? (b ? 1L : 0L) : v;

        private static bool Same(object? a, object? b)
        {
            a = Normal(a);
            b = Normal(b);
            if (a is object[] x && b is object[] y)
            {
                if (x.Length != y.Length) return false;
                for (var i = 0; i < x.Length; i++) if (!Same(x[i], y[i])) return false;
                return true;
            }
            return Equals(a, b);
        }

        private static int Hash(object? v, int depth)
        {
            v = Normal(v);
            if (v is object[] tuple)
            {
                var hash = new HashCode();
                hash.Add(tuple.Length);
                // Deep tuples hash by their first levels only; equality still compares them whole.
                if (depth < 4) foreach (var item in tuple.Take(16)) hash.Add(Hash(item, depth + 1));
                return hash.ToHashCode();
            }
            return v?.GetHashCode() ?? 0;
        }
    }

    private sealed record Global(string Module, string Name)
    {
        public override string ToString() => Module + "." + Name;
    }

    private sealed class Mark { }

    private static readonly Dictionary<string, (torch.ScalarType Type, int Size)> Storages = new()
    {
        ["FloatStorage"] = (torch.ScalarType.Float32, 4),
        ["DoubleStorage"] = (torch.ScalarType.Float64, 8),
        ["HalfStorage"] = (torch.ScalarType.Float16, 2),
        ["BFloat16Storage"] = (torch.ScalarType.BFloat16, 2),
        ["LongStorage"] = (torch.ScalarType.Int64, 8),
        ["IntStorage"] = (torch.ScalarType.Int32, 4),
        ["ShortStorage"] = (torch.ScalarType.Int16, 2),
        ["CharStorage"] = (torch.ScalarType.Int8, 1),
        ["ByteStorage"] = (torch.ScalarType.Byte, 1),
        ["BoolStorage"] = (torch.ScalarType.Bool, 1),
    };

    private const int MaxStack = 1 << 20;

    /// <summary>The most values (stack pushes and memo entries) a pickle may create: a ResNet-152 state_dict creates about 20,000.</summary>
    internal const int MaxValues = 1 << 22;

    /// <summary>The most dimensions a tensor may have.</summary>
    internal const int MaxRank = 32;

    private readonly byte[] _data;
    private readonly string _path;
    private readonly List<object?> _stack = new();
    private readonly Dictionary<long, object?> _memo = new();
    private readonly Dictionary<string, StorageRef> _storages = new(StringComparer.Ordinal);
    private int _position;
    private int _opcodeAt;
    private int _values;

    public Unpickler(byte[] data, string path)
    {
        _data = data;
        _path = path;
    }

    public object? Load()
    {
        while (true)
        {
            if (_position >= _data.Length) throw Fail("the pickle ends without a STOP opcode");
            _opcodeAt = _position;
            var op = _data[_position++];
            switch (op)
            {
                case 0x80: Bytes(1); break; // PROTO
                case 0x95: Bytes(8); break; // FRAME
                case (byte)'.': // STOP
                    if (_stack.Count != 1) throw Fail("the pickle stops with a malformed stack");
                    return _stack[0];
                case (byte)'(': Push(new Mark()); break;
                case (byte)')': Push(Array.Empty<object?>()); break;
                case (byte)'t': Push(PopToMark().ToArray()); break;
                case 0x85: Push(new[] { Pop() }); break;
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; }
                case (byte)']': Push(new List<object?>()); break;
                case (byte)'l': Push(PopToMark()); break;
                case (byte)'a': { var item = Pop(); ListOnTop().Add(item); break; }
                case (byte)'e': { var items = PopToMark(); ListOnTop().AddRange(items); break; }
                case (byte)'}': Push(new PyDict()); break;
                case (byte)'d': { var items = PopToMark(); var dict = new PyDict(); SetItems(dict, items); Push(dict); break; }
                case (byte)'s': { var value = Pop(); var key = Pop(); DictOnTop().Set(key, value, Fail); break; }
                case (byte)'u': { var items = PopToMark(); SetItems(DictOnTop(), items); break; }
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break;
                case (byte)'K': Push((long)Bytes(1)[0]); break;
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break;
                case 0x8a: // LONG1
                {
                    var n = Bytes(1)[0];
                    var value = new BigInteger(Bytes(n), isUnsigned: false, isBigEndian: false);
                    // (object) matters: without it the conditional is a BigInteger, and 2^31 would never read as an integer.
                    Push(value >= long.MinValue && value <= long.MaxValue ? (object)(long)value : value);
                    break;
                }
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break;
                case (byte)'X': Push(Text(Bytes(Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))))); break;
                case 0x8c: Push(Text(Bytes(Bytes(1)[0]))); break;
                case 0x8d: Push(Text(Bytes(Length(BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8)))))); break;
                case (byte)'q': Remember(Bytes(1)[0]); break;
                case (byte)'r': Remember(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))); break;
                case 0x94: Remember(_memo.Count); break;
                case (byte)'h': Push(Memo(Bytes(1)[0])); break;
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))); break;
                case (byte)'c': Push(Allowed(Line(), Line())); break;
                case 0x93: { var name = Pop() as string; var module = Pop() as string; if (name is null || module is null) throw Fail("STACK_GLOBAL without module and name strings"); Push(Allowed(module, name)); break; }
                case (byte)'R': { var args = Pop(); var callable = Pop(); Push(Reduce(callable, args)); break; }
                case (byte)'b': { Pop(); if (Top() is not PyDict) throw Fail("BUILD on something other than an OrderedDict"); break; }
                case (byte)'Q': Push(PersistentLoad(Pop())); break;
                default:
                    throw Fail($"forbidden opcode 0x{op:x2} ('{(op >= 0x20 && op < 0x7f ? ((char)op).ToString() : "?")}'): a state_dict pickle never needs it");
            }
        }
    }

    private Exception Fail(string problem) => new WeightFileException(_path, null, $"data.pkl at byte {_opcodeAt}: {problem}");

    private Global Allowed(string module, string name)
    {
        var global = new Global(module, name);
        var ok = (module, name) switch
        {
            ("collections", "OrderedDict") => true,
            ("torch._utils", "_rebuild_tensor_v2" or "_rebuild_parameter") => true,
            ("torch", _) when Storages.ContainsKey(name) => true,
            _ => false,
        };
        if (!ok) throw Fail($"forbidden global '{global}': a state_dict needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and the torch storage types, so this file may run code when unpickled; it was not loaded");
        return global;
    }

    private object? Reduce(object? callable, object? args)
    {
        if (callable is not Global global) throw Fail("REDUCE of something that is not an allowed global");
        if (args is not object?[] a) throw Fail($"REDUCE of {global} without an argument tuple");
        switch (global.Module, global.Name)
        {
            case ("collections", "OrderedDict"):
                if (a.Length != 0) throw Fail("collections.OrderedDict with arguments");
                return new PyDict();
            case ("torch._utils", "_rebuild_tensor_v2"):
                if (a.Length is < 6 or > 7 || a[0] is not StorageRef storage || a[1] is not long offset)
                    throw Fail("_rebuild_tensor_v2 with unexpected arguments");
                return new TensorRef(storage, offset, Longs(a[2], "size"), Longs(a[3], "stride"));
            case ("torch._utils", "_rebuild_parameter"):
                if (a.Length is < 2 or > 3 || a[0] is not TensorRef tensor) throw Fail("_rebuild_parameter with unexpected arguments");
                return tensor;
            default:
                throw Fail($"{global} cannot be called");
        }
    }

    private StorageRef PersistentLoad(object? pid)
    {
        if (pid is not object?[] { Length: 5 } t || t[0] is not "storage" || t[1] is not Global { Module: "torch" } type
            || t[2] is not string key || t[4] is not long numel || numel < 0)
            throw Fail("a persistent id that is not ('storage', type, key, location, numel)");
        if (!Storages.TryGetValue(type.Name, out var info)) throw Fail($"unknown storage type {type}");
        if (key.Length is 0 or > 64 || !key.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_'))
            throw Fail($"a storage key '{key}' that is not a plain name (torch.save numbers its storages)");
        if (_storages.TryGetValue(key, out var existing))
        {
            if (existing.Type != info.Type) throw Fail($"storage {key} is declared with two types");
            return existing;
        }
        var storage = new StorageRef(key, info.Type, info.Size, numel);
        _storages.Add(key, storage);
        return storage;
    }

    private long[] Longs(object? value, string what)
    {
        if (value is not object?[] items || items.Any(i => i is not long)) throw Fail($"_rebuild_tensor_v2 with a {what} that is not a tuple of 64-bit integers");
        if (items.Length > MaxRank) throw Fail($"_rebuild_tensor_v2 with a {what} of {items.Length} dimensions; at most {MaxRank} are read");
        return items.Select(i => (long)i!).ToArray();
    }

    private void SetItems(PyDict dict, List<object?> items)
    {
        if (items.Count % 2 != 0) throw Fail("SETITEMS with an odd number of items");
        for (var i = 0; i < items.Count; i += 2) dict.Set(items[i], items[i + 1], Fail);
    }

    private int Length(ulong n) => n > (ulong)(_data.Length - _position) ? throw Fail("a string runs past the end of data.pkl") : (int)n;

    private ReadOnlySpan<byte> Bytes(int n)
    {
        if (n < 0 || _position + n > _data.Length) throw Fail("the pickle ends in the middle of an opcode");
        var span = new ReadOnlySpan<byte>(_data, _position, n);
        _position += n;
        return span;
    }

    private string Text(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return new UTF8Encoding(false, true).GetString(bytes);
        }
        catch (ArgumentException)
        {
            throw Fail("a string that is not valid UTF-8");
        }
    }

    private string Line()
    {
        var end = Array.IndexOf(_data, (byte)'\n', _position);
        if (end < 0) throw Fail("GLOBAL without a newline");
        var text = Encoding.ASCII.GetString(_data, _position, end - _position);
        _position = end + 1;
        return text;
    }

    private void Remember(long index)
    {
        Count();
        _memo[index] = Top();
    }

    private void Count()
    {
        if (++_values > MaxValues) throw Fail($"the pickle creates more than {MaxValues} values, far more than any state_dict");
    }

    private object? Memo(long index) => _memo.TryGetValue(index, out var value) ? value : throw Fail($"memo entry {index} was never stored");

    private void Push(object? value)
    {
        if (_stack.Count >= MaxStack) throw Fail("the pickle's stack grows past any state_dict's");
        Count();
        _stack.Add(value);
    }

    private object? Top() => _stack.Count > 0 ? _stack[^1] : throw Fail("the stack is empty");

    private object? Pop()
    {
        var value = Top();
        if (value is Mark) throw Fail("an opcode consumed a MARK");
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private List<object?> PopToMark()
    {
        var mark = _stack.FindLastIndex(v => v is Mark);
        if (mark < 0) throw Fail("no MARK on the stack");
        var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1);
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private List<object?> ListOnTop() => Top() as List<object?> ?? throw Fail("APPEND to something that is not a list");

    private PyDict DictOnTop() => Top() as PyDict ?? throw Fail("SETITEM on something that is not a dictionary");
}
