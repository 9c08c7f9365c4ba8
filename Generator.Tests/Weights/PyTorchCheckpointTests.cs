using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
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
        var valid = WeightTestKit.Reference("tiny_resnet.pth");
        var entries = new Dictionary<string, byte[]>();
        using (var zip = ZipFile.OpenRead(valid))
        {
            foreach (var entry in zip.Entries)
            {
                using var s = entry.Open();
                using var m = new MemoryStream();
                s.CopyTo(m);
                entries[entry.FullName] = m.ToArray();
            }
        }
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
        Assert.EndsWith("conv1.weight: file has [8,3,3,3], model expects [64,3,7,7]", error.Message);
        WeightTestKit.AssertUnchanged(network, before);
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
            using var network = new TinyResNet();
            var before = WeightTestKit.Copy(network);
            try
            {
                PyTorchCheckpoint.Load(network, path);
                loaded++;
            }
            catch (WeightFileException e)
            {
                Assert.StartsWith(path, e.Message);
                WeightTestKit.AssertUnchanged(network, before);
                refused++;
            }
            File.Delete(path);
        }
        Assert.True(refused > 100, $"loaded {loaded}, refused {refused}");
    }
}
