using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using ResNetGen.Benchmarks;
using ResNetGen.Generator.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace ResNetGen.Generator.Tests.Weights;

/// <summary>
/// One crafted file per way a weight file from a stranger could hurt: each is refused with a
/// <see cref="WeightFileException"/> whose one-line message names the problem, leaves the module unchanged, and
/// costs under 5 s and under 1 GiB of peak memory, measured in a child process of its own.
/// </summary>
public class HostileFileTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(nameof(HostileCases.Views_that_expand))]
    [InlineData(nameof(HostileCases.A_compressed_storage_that_inflates))]
    [InlineData(nameof(HostileCases.Sizes_that_overflow_and_entries_that_balloon))]
    [InlineData(nameof(HostileCases.A_dictionary_of_a_million_keys))]
    public void Is_refused_quickly_in_little_memory(string attack)
    {
        output.WriteLine(Isolated.Run<HostileCases>(attack));
    }

    [Fact]
    public void Reading_the_same_checkpoint_again_and_again_keeps_memory_flat()
    {
        output.WriteLine(Isolated.Run<HostileCases>(nameof(HostileCases.Repeated_reads)));
    }

    [Fact]
    public void Hundreds_of_random_tensor_descriptions_are_loaded_or_refused_within_budget()
    {
        output.WriteLine(Isolated.Run<HostileCases>(nameof(HostileCases.Random_descriptions)));
    }

    [Fact]
    public void A_storage_of_more_than_two_to_the_31_elements_loads()
    {
        output.WriteLine(Isolated.Run<HostileCases>(nameof(HostileCases.Large_integers)));
    }
}

/// <summary>The attacks, each run in a child process by <see cref="HostileFileTests"/>.</summary>
public sealed class HostileCases : IDisposable
{
    private static readonly TimeSpan TimeLimit = TimeSpan.FromSeconds(5);
    private const long MemoryLimit = 1L << 30;

    private readonly WeightTestKit _kit = new();

    public void Dispose() => _kit.Dispose();

    public void Views_that_expand()
    {
        // A 4-byte storage viewed as [16384, 32768] through strides (0, 0): 2 GiB from a file of a few kilobytes.
        var expand = new TorchSave.Tensor("conv1.weight", "0", "FloatStorage", 1, 0, new long[] { 16384, 32768 }, new long[] { 0, 0 });
        var path = Craft("expand.pth", Tiny(expand, TorchSave.Fill("0", 4)));
        Refused("expanding view, load", n => PyTorchCheckpoint.Load(n, path), "conv1.weight: file has [16384,32768], model expects [8,3,3,3]");
        Refused("expanding view, read", _ => PyTorchCheckpoint.Read(path), "conv1.weight", "more than", "nothing was allocated");
    }

    public void A_compressed_storage_that_inflates()
    {
        // 512 MiB of zeros deflate to half a megabyte; conv1.weight uses its last 864 bytes.
        const long elements = 128L << 20;
        var tail = TorchSave.Plain("conv1.weight", "0", 8, 3, 3, 3) with { StorageNumel = elements, Offset = elements - 216 };
        var path = Craft("inflate.pth", Tiny(tail, TorchSave.Fill("0", elements * 4, deflate: true)));
        Console.WriteLine($"inflate.pth: {new FileInfo(path).Length} bytes");
        Refused("compressed storage, load", n => PyTorchCheckpoint.Load(n, path), "conv1.weight", "inflating", "nothing was read");
        Refused("compressed storage, read", _ => PyTorchCheckpoint.Read(path), "inflating");

        // The whole storage as one tensor: refused by the model's shape, or by the file's size when read alone.
        var whole = new TorchSave.Tensor("conv1.weight", "0", "FloatStorage", elements, 0, new[] { elements }, new[] { 1L });
        path = Craft("whole.pth", Tiny(whole, TorchSave.Fill("0", elements * 4, deflate: true)));
        Refused("compressed storage viewed whole, load", n => PyTorchCheckpoint.Load(n, path), "file has [134217728], model expects [8,3,3,3]");
        Refused("compressed storage viewed whole, read", _ => PyTorchCheckpoint.Read(path), "more than", "nothing was allocated");
    }

    public void Sizes_that_overflow_and_entries_that_balloon()
    {
        const long big = int.MaxValue;
        var overflow = new TorchSave.Tensor("conv1.weight", "0", "FloatStorage", 216, 0, new[] { big, big, big }, new long[] { 1, 1, 1 });
        var path = Craft("overflow.pth", Tiny(overflow, TorchSave.Fill("0", 864)));
        Refused("dimensions of 2^31-1, load", n => PyTorchCheckpoint.Load(n, path), "more than 2^63 bytes");
        Refused("dimensions of 2^31-1, read", _ => PyTorchCheckpoint.Read(path), "more than 2^63 bytes");

        var huge = new TorchSave.Tensor("conv1.weight", "0", "FloatStorage", 1, 0, new[] { 1L << 40 }, new[] { 0L });
        path = Craft("huge.pth", Tiny(huge, TorchSave.Fill("0", 4)));
        Refused("stride-0 view of 2^40 elements, read", _ => PyTorchCheckpoint.Read(path), "more than", "nothing was allocated");
        Refused("stride-0 view of 2^40 elements, load", n => PyTorchCheckpoint.Load(n, path), "file has [1099511627776]");

        // A byteorder entry of 512 MiB of spaces, deflated: read no further than a byte order.
        var (tensors, storages) = Tiny();
        var entries = TorchSave.Archive("archive", TorchSave.Pickle(tensors), storages.ToArray());
        entries[1] = new TorchSave.Entry("archive/byteorder", s => TorchSave.Repeat(s, 512L << 20, (byte)' '), Deflate: true);
        path = TorchSave.Zip(_kit.PathOf("byteorder.pth"), entries);
        Refused("byteorder of 512 MiB, load", n => PyTorchCheckpoint.Load(n, path), "the byteorder entry holds more than a byte order");

        // A key that would forge log lines and clear the terminal is quoted escaped, on one line.
        var evil = TorchSave.Plain("x\n[INFO] loaded\u001b[2J\u202e", "evil", 2);
        (tensors, storages) = Tiny();
        tensors.Add(evil);
        storages.Add(TorchSave.Fill("evil", 8));
        path = Craft("keys.pth", (tensors, storages));
        var error = Refused("key with control characters", n => PyTorchCheckpoint.Load(n, path), @"unexpected key x\n[INFO] loaded\x1b[2J\u{202e}");
        Assert.Equal(evil.Key, error.Key);
    }

    public void A_dictionary_of_a_million_keys()
    {
        // 6 MB of pickle: a dictionary of 1,000,000 integer keys, in SETITEMS batches of 1000 as Python writes them.
        var p = new PickleWriter().Op(0x80).Op(2).Op('}');
        for (var batch = 0; batch < 1000; batch++)
        {
            p.Op('(');
            for (var i = 0; i < 1000; i++) p.Int(100_000 + batch * 1000 + i).Op('N');
            p.Op('u');
        }
        var pickle = p.Op('.').ToArray();
        var path = TorchSave.Zip(_kit.PathOf("million.pth"), TorchSave.Archive("archive", pickle));
        Console.WriteLine($"million.pth: data.pkl of {pickle.Length} bytes");
        Refused("1,000,000 integer keys", n => PyTorchCheckpoint.Load(n, path), "a key that is not a string: 100000");

        // The same number of string keys, each set twice: still linear.
        p = new PickleWriter().Op(0x80).Op(2).Op('}');
        for (var pass = 0; pass < 2; pass++)
        {
            for (var batch = 0; batch < 500; batch++)
            {
                p.Op('(');
                for (var i = 0; i < 1000; i++) p.Str($"k{batch * 1000 + i}").Op('N');
                p.Op('u');
            }
        }
        path = TorchSave.Zip(_kit.PathOf("strings.pth"), TorchSave.Archive("archive", p.Op('.').ToArray()));
        Refused("500,000 string keys set twice", n => PyTorchCheckpoint.Load(n, path), "k0: the value is not a tensor");
    }

    public void Repeated_reads()
    {
        // A 64 MiB state_dict: a plain tensor read in place and a transposed view copied out of its storage.
        const long rows = 2048, columns = 4096;
        var tensors = new List<TorchSave.Tensor>
        {
            TorchSave.Plain("a.weight", "0", rows, columns),
            new("b.weight", "1", "FloatStorage", rows * columns, 0, new[] { columns, rows }, new[] { 1L, columns }),
        };
        var path = Craft("big.pth", (tensors, new List<TorchSave.Entry> { TorchSave.Fill("0", rows * columns * 4, 1), TorchSave.Fill("1", rows * columns * 4, 2) }));
        void ReadAndDispose()
        {
            foreach (var tensor in PyTorchCheckpoint.Read(path).Values) tensor.Dispose();
        }
        ReadAndDispose();
        var after1 = ProcessMemory.Resident();
        for (var i = 1; i < 20; i++) ReadAndDispose();
        var after20 = ProcessMemory.Resident();
        Console.WriteLine($"{new FileInfo(path).Length >> 20} MiB checkpoint read 20 times: resident {after1 >> 20} MiB after the first read, {after20 >> 20} MiB after the 20th");
        Assert.True(after20 - after1 < 128L << 20, $"resident memory grew by {(after20 - after1) >> 20} MiB over 19 reads");
    }

    public void Large_integers()
    {
        // A byte storage of 2^31 + 16 elements holding a tensor of 2^31 and one of 16 after it: the storage's size,
        // the first tensor's and the second's offset pickle as LONG1, as Python writes integers past 32 bits.
        const long numel = (1L << 31) + 16;
        var tensors = new List<TorchSave.Tensor>
        {
            new("head", "0", "ByteStorage", numel, 0, new[] { 1L << 31 }, new[] { 1L }),
            new("tail", "0", "ByteStorage", numel, 1L << 31, new[] { 16L }, new[] { 1L }),
        };
        var pattern = Enumerable.Range(1, 16).Select(i => (byte)i).ToArray();
        var storage = new TorchSave.Entry("0", s =>
        {
            TorchSave.Repeat(s, 1L << 31, 0);
            s.Write(pattern);
        });
        var path = Craft("long1.pth", (tensors, new List<TorchSave.Entry> { storage }));
        var watch = Stopwatch.StartNew();
        var read = PyTorchCheckpoint.Read(path);
        Console.WriteLine($"{new FileInfo(path).Length} byte checkpoint read in {watch.ElapsedMilliseconds} ms");
        Assert.Equal(new[] { 1L << 31 }, read["head"].shape);
        Assert.Equal(pattern, read["tail"].data<byte>().ToArray());
        using var last = read["head"].narrow(0, (1L << 31) - 4, 4);
        Assert.Equal(new byte[4], last.data<byte>().ToArray());
        foreach (var t in read.Values) t.Dispose();
    }

    public void Random_descriptions()
    {
        // Storage sizes, offsets, shapes and strides drawn from the values that break arithmetic and budgets, on 1 to 3
        // tensors of an otherwise genuine TinyResNet checkpoint; storages are as long as they claim, short, or deflated.
        long[] interesting = { 0, 1, 2, 3, 7, 8, 216, 255, 256, 65535, 65536, int.MaxValue, 1L << 31, (1L << 31) + 1, 1L << 32, 1L << 40, 1L << 62, long.MaxValue };
        string[] types = { "FloatStorage", "FloatStorage", "HalfStorage", "DoubleStorage", "LongStorage", "ByteStorage", "BoolStorage" };
        var random = new Random(4242);
        long Pick() => random.Next(3) == 0 ? random.Next(1, 300) : interesting[random.Next(interesting.Length)];
        int loaded = 0, refused = 0;
        var slowest = TimeSpan.Zero;
        var genuine = Tiny();
        GC.Collect();
        ProcessMemory.ResetPeak();
        for (var i = 0; i < 300; i++)
        {
            var (tensors, storages) = (genuine.Tensors.ToList(), genuine.Storages.ToList());
            for (var k = 0; k < 1 + random.Next(3); k++)
            {
                var at = random.Next(tensors.Count);
                var t = tensors[at];
                var size = random.Next(2) == 0 ? t.Size : Enumerable.Range(0, random.Next(5)).Select(_ => Pick() % 64).ToArray();
                var stride = random.Next(2) == 0 && size.Length == t.Stride.Length ? t.Stride : size.Select(_ => Pick()).ToArray();
                var numel = random.Next(2) == 0 ? t.StorageNumel : Pick();
                var type = random.Next(2) == 0 ? t.StorageType : types[random.Next(types.Length)];
                var offset = random.Next(2) == 0 ? 0 : Pick();
                tensors[at] = t with { StorageType = type, StorageNumel = numel, Offset = offset, Size = size, Stride = stride };
                var declared = (double)numel * 8;
                var bytes = declared <= 1 << 20 && random.Next(3) > 0 ? (long)declared : random.Next(4096);
                storages[at] = TorchSave.Fill(t.Storage, bytes, (byte)random.Next(256), deflate: random.Next(4) == 0);
            }
            var path = Craft($"random{i}.pth", (tensors, storages));
            using var network = new TinyResNet();
            var before = WeightTestKit.Copy(network);
            var watch = Stopwatch.StartNew();
            try
            {
                PyTorchCheckpoint.Load(network, path);
                loaded++;
            }
            catch (WeightFileException e)
            {
                Assert.DoesNotContain('\n', e.Message);
                WeightTestKit.AssertUnchanged(network, before);
                refused++;
            }
            try
            {
                foreach (var tensor in PyTorchCheckpoint.Read(path).Values) tensor.Dispose();
            }
            catch (WeightFileException)
            {
            }
            slowest = watch.Elapsed > slowest ? watch.Elapsed : slowest;
            Assert.True(watch.Elapsed < TimeLimit, $"random file {i} took {watch.Elapsed}");
            File.Delete(path);
        }
        var peak = ProcessMemory.Peak();
        Console.WriteLine($"300 random descriptions: {loaded} loaded, {refused} refused; slowest load and read {slowest.TotalMilliseconds:0} ms; peak {peak >> 20} MiB");
        Assert.True(peak < MemoryLimit, $"peak memory {peak >> 20} MiB");
        Assert.True(loaded >= 5 && refused > 150, $"loaded {loaded}, refused {refused}");
    }

    // ---- helpers ----

    /// <summary>TinyResNet's state_dict as torch.save describes it (zero storages), with one entry replaced if given.</summary>
    internal static (List<TorchSave.Tensor> Tensors, List<TorchSave.Entry> Storages) Tiny(TorchSave.Tensor? replace = null, TorchSave.Entry? storage = null)
    {
        var tensors = new List<TorchSave.Tensor>();
        var storages = new List<TorchSave.Entry>();
        using var network = new TinyResNet();
        var index = 0;
        foreach (var (key, tensor) in network.state_dict())
        {
            var isLong = tensor.dtype == torch.ScalarType.Int64;
            var spec = TorchSave.Plain(key, (index++).ToString(), tensor.shape) with { StorageType = isLong ? "LongStorage" : "FloatStorage" };
            if (replace is not null && replace.Key == key)
            {
                tensors.Add(replace with { Storage = spec.Storage });
                storages.Add(storage! with { Name = spec.Storage });
                continue;
            }
            tensors.Add(spec);
            storages.Add(TorchSave.Fill(spec.Storage, spec.StorageNumel * (isLong ? 8 : 4)));
        }
        return (tensors, storages);
    }

    private string Craft(string name, (List<TorchSave.Tensor> Tensors, List<TorchSave.Entry> Storages) file) =>
        TorchSave.Zip(_kit.PathOf(name), TorchSave.Archive("archive", TorchSave.Pickle(file.Tensors), file.Storages.ToArray()));

    /// <summary>Runs the attack on a fresh network and checks the refusal, the module, the time and the peak memory.</summary>
    private static WeightFileException Refused(string what, Func<TinyResNet, object> attack, params string[] messageParts)
    {
        using var network = new TinyResNet();
        var before = WeightTestKit.Copy(network);
        GC.Collect();
        ProcessMemory.ResetPeak();
        var start = ProcessMemory.Resident();
        var watch = Stopwatch.StartNew();
        WeightFileException? error = null;
        try
        {
            attack(network);
        }
        catch (Exception e)
        {
            error = e as WeightFileException;
            Assert.True(error is not null, $"{what}: {e.GetType().Name} instead of a WeightFileException: {e}");
        }
        watch.Stop();
        var peak = ProcessMemory.Peak();
        Console.WriteLine($"{what}: refused in {watch.ElapsedMilliseconds} ms, peak {peak >> 20} MiB (from {start >> 20} MiB): {error?.Message}");
        Assert.True(error is not null, $"{what}: was not refused");
        Assert.True(watch.Elapsed < TimeLimit, $"{what}: took {watch.Elapsed}");
        Assert.True(peak < MemoryLimit, $"{what}: peak memory {peak >> 20} MiB");
        Assert.DoesNotContain('\n', error.Message);
        Assert.DoesNotContain('\u001b', error.Message);
        foreach (var part in messageParts) Assert.Contains(part, error.Message);
        WeightTestKit.AssertUnchanged(network, before);
        return error;
    }
}
