using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Weights;

public class PyTorchCheckpointTests : IDisposable
{
    private readonly WeightTestKit _kit = new();

    public void Dispose() => _kit.Dispose();

    private static torch.Tensor Input() => DeterministicWeights.Input(2, 3, 8, 8);

    [Theory]
    [InlineData("tiny_resnet.pth", "tiny_resnet.eval.bin")]
    [InlineData("tiny_resnet_fp16.pth", "tiny_resnet_fp16.eval.bin")]
    public void A_checkpoint_written_by_pytorch_gives_pytorchs_outputs(string checkpoint, string reference)
    {
        using var network = new TinyResNet();
        var report = PyTorchCheckpoint.Load(network, WeightTestKit.Reference(checkpoint));
        Assert.Equal(network.state_dict().Count, report.Loaded.Count);
        network.eval();
        using var input = Input();
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats(reference), output, checkpoint);
        Assert.Equal(123L, network.layer2_0_downsample_1.num_batches_tracked!.item<long>());
    }

    [Fact]
    public void The_checkpoint_and_the_safetensors_file_hold_the_same_tensors()
    {
        var pth = PyTorchCheckpoint.Read(WeightTestKit.Reference("tiny_resnet.pth"));
        var safetensors = Safetensors.Read(WeightTestKit.Reference("tiny_resnet.safetensors"));
        Assert.Equal(safetensors.Keys.OrderBy(k => k), pth.Keys.OrderBy(k => k));
        foreach (var (key, tensor) in pth)
        {
            Assert.Equal(safetensors[key].dtype, tensor.dtype);
            Assert.True(tensor.eq(safetensors[key]).all().item<bool>(), key);
        }
    }

    // ---- refused files ----

    private WeightFileException LoadFails(string path)
    {
        using var network = new TinyResNet();
        var before = WeightTestKit.Copy(network);
        var error = Assert.Throws<WeightFileException>(() => PyTorchCheckpoint.Load(network, path));
        WeightTestKit.AssertUnchanged(network, before);
        Assert.StartsWith(path, error.Message);
        return error;
    }

    /// <summary>A torch.save-shaped archive around a hand-written pickle.</summary>
    private string Checkpoint(string name, byte[] pickle) =>
        _kit.Zip(name, new Dictionary<string, byte[]> { ["archive/data.pkl"] = pickle, ["archive/version"] = Encoding.ASCII.GetBytes("3\n") });

    private static byte[] Pickle(string body) => new byte[] { 0x80, 2 }.Concat(Encoding.Latin1.GetBytes(body)).ToArray();

    [Fact]
    public void A_forbidden_global_is_refused_before_anything_runs()
    {
        // The classic attack: os.system("...") through GLOBAL + REDUCE.
        var error = LoadFails(Checkpoint("evil.pth", Pickle("cposix\nsystem\nX\u0005\0\0\0touch\x85R.")));
        Assert.Contains("forbidden global 'posix.system'", error.Message);
        Assert.Contains("data.pkl at byte 2", error.Message);
        error = LoadFails(Checkpoint("eval.pth", Pickle("cbuiltins\neval\n.")));
        Assert.Contains("forbidden global 'builtins.eval'", error.Message);
    }

    [Fact]
    public void A_forbidden_opcode_is_refused()
    {
        var error = LoadFails(Checkpoint("inst.pth", Pickle("(icollections\nOrderedDict\n.")));
        Assert.Contains("forbidden opcode 0x69 ('i')", error.Message);
        error = LoadFails(Checkpoint("ext.pth", Pickle("\u0082\u0001.")));
        Assert.Contains("forbidden opcode 0x82", error.Message);
    }

    [Fact]
    public void A_zip_without_data_pkl()
    {
        var error = LoadFails(_kit.Zip("nopkl.pth", new Dictionary<string, byte[]> { ["archive/data/0"] = new byte[16] }));
        Assert.Contains("the zip archive has no data.pkl", error.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_zip()
    {
        var error = LoadFails(_kit.WriteBytes("legacy.pth", Enumerable.Range(0, 300).Select(i => (byte)i).ToArray()));
        Assert.Contains("not a zip archive", error.Message);
        Assert.Contains("torch.save", error.Message);
    }

    [Fact]
    public void A_storage_shorter_than_its_tensors()
    {
        var entries = TorchSave.Entries(WeightTestKit.Reference("tiny_resnet.pth")).ToDictionary(e => e.Name, e => e.Bytes);
        entries["tiny_resnet/data/0"] = entries["tiny_resnet/data/0"].Take(100).ToArray();
        var error = LoadFails(_kit.Zip("short.pth", entries));
        Assert.Equal("conv1.weight", error.Key);
        Assert.Contains("storage data/0 has 100 bytes, but 216 elements of Float32 need 864", error.Message);
    }

    [Fact]
    public void Shape_mismatches_and_missing_keys_are_reported_as_for_safetensors()
    {
        var tensors = PyTorchCheckpoint.Read(WeightTestKit.Reference("tiny_resnet.pth"));
        Assert.Equal(new long[] { 8, 3, 3, 3 }, tensors["conv1.weight"].shape);
        using var network = new ResNet18();
        var before = WeightTestKit.Copy(network);
        var error = Assert.Throws<WeightFileException>(() => PyTorchCheckpoint.Load(network, WeightTestKit.Reference("tiny_resnet.pth")));
        Assert.Contains("missing keys", error.Message);
        WeightTestKit.AssertUnchanged(network, before);
        error = Assert.Throws<WeightFileException>(() => PyTorchCheckpoint.Load(network, WeightTestKit.Reference("tiny_resnet.pth"), strict: false));
        Assert.Contains("conv1.weight: file has [8,3,3,3], model expects [64,3,7,7] (load with ignoreMismatchedShapes: true", error.Message);
        WeightTestKit.AssertUnchanged(network, before);
    }

    // ---- ambiguous archives: what two readers could read differently is refused ----

    private static List<TorchSave.Entry> Genuine() =>
        TorchSave.Entries(WeightTestKit.Reference("tiny_resnet.pth")).Select(e => TorchSave.Bytes(e.Name, e.Bytes)).ToList();

    [Fact]
    public void A_second_entry_of_the_same_name_is_refused()
    {
        // A genuine file with a second data.pkl appended: PyTorch 1.13 unpickles the second, which runs a command.
        var entries = Genuine();
        entries.Add(new TorchSave.Entry("tiny_resnet/data.pkl", s => s.Write(Pickle("cposix\nsystem\nX\u0002\0\0\0id\x85R."))));
        var error = LoadFails(TorchSave.Zip(_kit.PathOf("twice.pth"), entries));
        Assert.Contains("two entries named 'tiny_resnet/data.pkl'", error.Message);
        Assert.Contains("readers disagree", error.Message);
    }

    [Fact]
    public void Two_archives_in_one_zip_are_refused()
    {
        var entries = Genuine();
        entries.AddRange(Genuine().Select(e => e with { Name = e.Name.Replace("tiny_resnet/", "other/") }));
        var error = LoadFails(TorchSave.Zip(_kit.PathOf("two.pth"), entries));
        Assert.Contains("2 data.pkl entries", error.Message);

        entries = Genuine();
        entries.Add(TorchSave.Bytes("elsewhere/data/0", new byte[864]));
        error = LoadFails(TorchSave.Zip(_kit.PathOf("outside.pth"), entries));
        Assert.Contains("'elsewhere/data/0' lies outside the archive's folder 'tiny_resnet'", error.Message);
    }

    [Fact]
    public void Storage_keys_that_are_not_plain_names_are_refused()
    {
        var (tensors, storages) = HostileCases.Tiny();
        tensors[0] = tensors[0] with { Storage = "../data.pkl" };
        var path = TorchSave.Zip(_kit.PathOf("traversal.pth"), TorchSave.Archive("archive", TorchSave.Pickle(tensors), storages.ToArray()));
        Assert.Contains("a storage key '../data.pkl' that is not a plain name", LoadFails(path).Message);
    }

    [Fact]
    public void A_tensor_repeated_along_a_dimension_loads_when_the_model_has_that_shape()
    {
        // torch.save of an expanded tensor keeps one element and strides of 0: legitimate, and no larger than the model.
        var (tensors, storages) = HostileCases.Tiny();
        var index = tensors.FindIndex(t => t.Key == "fc.bias");
        tensors[index] = tensors[index] with { StorageNumel = 1, Stride = new[] { 0L } };
        storages[index] = TorchSave.Bytes(tensors[index].Storage, BitConverter.GetBytes(2.5f));
        var path = TorchSave.Zip(_kit.PathOf("expanded.pth"), TorchSave.Archive("archive", TorchSave.Pickle(tensors), storages.ToArray()));
        using var network = new TinyResNet();
        PyTorchCheckpoint.Load(network, path);
        Assert.Equal(new[] { 2.5f, 2.5f, 2.5f }, network.fc.bias!.data<float>().ToArray());
    }

    [Fact]
    public void Views_that_share_a_storage_read_as_pytorch_would()
    {
        // Side by side, overlapping, transposed: every tensor equals the strided view of the storage it names.
        var data = TorchSave.Counting(64);
        var tensors = new List<TorchSave.Tensor>
        {
            new("first", "0", "FloatStorage", 64, 0, new long[] { 4, 4 }, new long[] { 4, 1 }),
            new("second", "0", "FloatStorage", 64, 16, new long[] { 8 }, new long[] { 1 }),
            new("overlap", "0", "FloatStorage", 64, 12, new long[] { 8 }, new long[] { 1 }),
            new("transposed", "0", "FloatStorage", 64, 32, new long[] { 4, 8 }, new long[] { 1, 4 }),
            new("empty", "0", "FloatStorage", 64, 63, new long[] { 0, 5 }, new long[] { 5, 1 }),
        };
        var path = TorchSave.Zip(_kit.PathOf("views.pth"), TorchSave.Archive("archive", TorchSave.Pickle(tensors), TorchSave.Bytes("0", data)));
        var read = PyTorchCheckpoint.Read(path);
        using var storage = torch.arange(64, dtype: torch.float32);
        foreach (var t in tensors)
        {
            using var expected = storage.as_strided(t.Size, t.Stride, t.Offset);
            Assert.Equal(expected.shape, read[t.Key].shape);
            Assert.True(expected.eq(read[t.Key]).all().item<bool>(), t.Key);
        }
        // Each tensor owns its memory: writing one changes no other.
        read["first"].fill_(-1);
        Assert.Equal(12f, read["overlap"][0].item<float>());
    }

    [Fact]
    public void Failures_underneath_arrive_as_one_short_line()
    {
        var native = new System.Runtime.InteropServices.ExternalException(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4398046511104 bytes.\nException raised from alloc_cpu at /pytorch/c10/core/impl/alloc_cpu.cpp:127\nframe #0: c10::Error::Error(...) + 0x3a (0x7f in /usr/lib/libc10.so)");
        var error = WeightFileException.From("/models/x.pth", "fc.weight", native);
        Assert.Equal("/models/x.pth: fc.weight: libtorch refused the data: DefaultCPUAllocator: can't allocate memory: you tried to allocate 4398046511104 bytes.", error.Message);
        Assert.Same(native, error.InnerException);
        Assert.Contains("ran out of memory", WeightFileException.From("p", null, new OutOfMemoryException()).Message);
        Assert.Contains("overflows", WeightFileException.From("p", null, new OverflowException()).Message);
        var longKey = new string('k', 5000);
        var cut = new WeightFileException("p", longKey, "bad").Message;
        Assert.True(cut.Length < 300, cut);
        Assert.Contains("…(5000 chars)", cut);
    }

    [Fact]
    public void Hundreds_of_mutated_checkpoints_load_identically_or_fail_cleanly()
    {
        var valid = File.ReadAllBytes(WeightTestKit.Reference("tiny_resnet.pth"));
        var random = new Random(1123);
        int loaded = 0, refused = 0;
        for (var i = 0; i < 300; i++)
        {
            var bytes = (byte[])valid.Clone();
            if (i % 3 == 2) bytes = bytes.Take(random.Next(bytes.Length)).ToArray();
            else
            {
                // data.pkl is the first entry: most mutations land in the pickle, the rest anywhere.
                var limit = i % 3 == 0 ? Math.Min(4200, bytes.Length) : bytes.Length;
                for (var k = 0; k < 1 + random.Next(3); k++) bytes[random.Next(limit)] ^= (byte)(1 << random.Next(8));
            }
            var path = _kit.WriteBytes($"mutant{i}.pth", bytes);
            if (LoadsOrFailsCleanly(path, $"mutant {i}")) loaded++; else refused++;
            File.Delete(path);
        }
        Assert.True(refused > 100, $"loaded {loaded}, refused {refused}");
    }

    private static readonly byte[] OriginalFile = File.ReadAllBytes(WeightTestKit.Reference("tiny_resnet.pth"));
    private static readonly Dictionary<string, torch.Tensor> OriginalTensors = PyTorchCheckpoint.Read(WeightTestKit.Reference("tiny_resnet.pth"));

    /// <summary>Where the local header of <paramref name="entry"/> starts in tiny_resnet.pth, and where its data starts.</summary>
    private static (int Header, int Data) Locate(string entry)
    {
        var name = Encoding.ASCII.GetBytes("tiny_resnet/" + entry);
        var header = OriginalFile.AsSpan().IndexOf(name) - 30; // the local header comes first; the central directory's copy later
        Assert.Equal(0x04034b50u, BitConverter.ToUInt32(OriginalFile, header));
        return (header, header + 30 + BitConverter.ToUInt16(OriginalFile, header + 26) + BitConverter.ToUInt16(OriginalFile, header + 28));
    }

    [Fact]
    public void A_changed_data_byte_fails_the_entrys_crc_and_nothing_is_loaded()
    {
        // Without the check this file loads, with one weight that no one wrote: data/0 is conv1.weight.
        var bytes = (byte[])OriginalFile.Clone();
        var (_, data) = Locate("data/0");
        bytes[data + 5] ^= 0x40;
        var error = LoadFails(_kit.WriteBytes("flipped.pth", bytes));
        Assert.Contains("data/0 fails its CRC-32 check", error.Message);
        Assert.Contains("nothing was loaded", error.Message);
    }

    [Fact]
    public void A_local_header_that_points_elsewhere_fails_the_crc()
    {
        // The header shift the mutation campaign found: the high byte of data/9's local file-name length, flipped, moves
        // where its data is read from by 256 bytes, still inside the file; the central directory agrees, so only the CRC-32 can tell.
        var bytes = (byte[])OriginalFile.Clone();
        var (header, _) = Locate("data/9");
        bytes[header + 27] ^= 0x01;
        var error = LoadFails(_kit.WriteBytes("shifted.pth", bytes));
        Assert.Contains("fails its CRC-32 check", error.Message);
    }

    /// <summary>
    /// Loads a mutant of tiny_resnet.pth: it loads what the original file holds (or, where the damage changed stored tensor
    /// bytes, exactly those bytes: see <see cref="WeightTestKit.AssertLoadedAsTheFileSays"/>), or is refused cleanly with the
    /// module unchanged.
    /// </summary>
    private static bool LoadsOrFailsCleanly(string path, string what)
    {
        using var network = new TinyResNet();
        var before = WeightTestKit.Copy(network);
        try
        {
            PyTorchCheckpoint.Load(network, path);
            // Every zip entry carries a CRC-32 (checked as PyTorch checks it), so no changed stored byte gets through.
            Assert.Equal(0, WeightTestKit.AssertLoadedAsTheFileSays(network, OriginalFile, File.ReadAllBytes(path), OriginalTensors, what));
            return true;
        }
        catch (WeightFileException e)
        {
            Assert.StartsWith(path, e.Message);
            Assert.DoesNotContain('\n', e.Message);
            WeightTestKit.AssertUnchanged(network, before);
            return false;
        }
    }

    [Fact]
    public void Hundreds_of_archives_with_damaged_zip_structures_load_identically_or_fail_cleanly()
    {
        // Mutations land in the local headers, the central directory and the end record: sizes, offsets, names, counts.
        var valid = File.ReadAllBytes(WeightTestKit.Reference("tiny_resnet.pth"));
        var structure = Enumerable.Range(0, valid.Length - 4)
            .Where(i => valid[i] == 'P' && valid[i + 1] == 'K' && valid[i + 2] is 1 or 3 or 5 or 6 && valid[i + 3] is 2 or 4 or 6 or 7)
            .ToArray();
        var random = new Random(2026_11_23);
        int loaded = 0, refused = 0;
        for (var i = 0; i < 300; i++)
        {
            var bytes = (byte[])valid.Clone();
            for (var k = 0; k < 1 + random.Next(3); k++)
            {
                var at = Math.Min(bytes.Length - 1, structure[random.Next(structure.Length)] + random.Next(4, 60));
                bytes[at] = random.Next(3) switch { 0 => (byte)random.Next(256), 1 => 0xff, _ => (byte)(bytes[at] ^ (1 << random.Next(8))) };
            }
            var path = _kit.WriteBytes($"zip{i}.pth", bytes);
            if (LoadsOrFailsCleanly(path, $"zip mutant {i}")) loaded++; else refused++;
            File.Delete(path);
        }
        Assert.True(refused > 100, $"loaded {loaded}, refused {refused}");
    }

    [Fact]
    public void Hundreds_of_damaged_pickles_load_identically_or_fail_cleanly()
    {
        // The archive stays a valid zip so that every mutation reaches the unpickler: spans deleted, repeated,
        // opcodes inserted or replaced, operands changed.
        var entries = TorchSave.Entries(WeightTestKit.Reference("tiny_resnet.pth"));
        var pickle = entries.Single(e => e.Name.EndsWith("data.pkl", StringComparison.Ordinal)).Bytes;
        var opcodes = "()tl]a}dsueKJMNXcqhjRQb.\u0080\u0085\u0086\u0087\u0088\u0089\u008a\u008c\u0093\u0094\u0095".Select(c => (byte)c).ToArray();
        var random = new Random(1311);
        int loaded = 0, refused = 0;
        for (var i = 0; i < 300; i++)
        {
            var bytes = pickle.ToList();
            var at = random.Next(2, bytes.Count - 1);
            var span = Math.Min(1 + random.Next(12), bytes.Count - at);
            switch (i % 4)
            {
                case 0: bytes.RemoveRange(at, span); break;
                case 1: bytes.InsertRange(at, bytes.GetRange(at, span)); break;
                case 2: bytes.Insert(at, opcodes[random.Next(opcodes.Length)]); break;
                default: bytes[at] = random.Next(2) == 0 ? opcodes[random.Next(opcodes.Length)] : (byte)random.Next(256); break;
            }
            var path = TorchSave.Zip(_kit.PathOf($"pickle{i}.pth"), entries.Select(e =>
                TorchSave.Bytes(e.Name, e.Name.EndsWith("data.pkl", StringComparison.Ordinal) ? bytes.ToArray() : e.Bytes)));
            if (LoadsOrFailsCleanly(path, $"pickle mutant {i}")) loaded++; else refused++;
            File.Delete(path);
        }
        Assert.True(refused > 150, $"loaded {loaded}, refused {refused}");
    }
}
