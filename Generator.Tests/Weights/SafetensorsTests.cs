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

public class SafetensorsTests : IDisposable
{
    private readonly WeightTestKit _kit = new();

    public void Dispose() => _kit.Dispose();

    public static TheoryData<string> DTypes => new() { "Float32", "Float16", "BFloat16", "Float64", "Int64", "Int32", "Byte", "Bool", "Int16", "Int8" };

    [Theory]
    [MemberData(nameof(DTypes))]
    public void Every_dtype_round_trips(string dtypeName)
    {
        var dtype = Enum.Parse<torch.ScalarType>(dtypeName);
        torch.manual_seed(11);
        using var source = (torch.randn(3, 4, 5) * 50);
        var tensors = new Dictionary<string, torch.Tensor>
        {
            ["a.weight"] = dtype == torch.ScalarType.Bool ? source.gt(0) : source.to(dtype),
            ["b.scalar"] = torch.tensor(7).to(dtype),
            ["c.empty"] = torch.zeros(new long[] { 0, 3 }, dtype),
        };
        var path = _kit.PathOf("all.safetensors");
        Safetensors.Write(path, tensors, new Dictionary<string, string> { ["note"] = "round trip", ["format"] = "pt" });
        var read = Safetensors.Read(path);
        Assert.Equal(tensors.Keys.OrderBy(k => k), read.Keys.OrderBy(k => k));
        foreach (var (key, tensor) in tensors)
        {
            Assert.Equal(tensor.dtype, read[key].dtype);
            Assert.Equal(tensor.shape, read[key].shape);
            Assert.True(tensor.eq(read[key]).all().item<bool>(), key);
        }
        Assert.Equal("round trip", Safetensors.ReadMetadata(path)["note"]);
        Assert.Equal(0UL, BitConverter.ToUInt64(File.ReadAllBytes(path), 0) % 8); // the data starts 8-byte aligned
    }

    [Fact]
    public void Save_then_load_gives_identical_outputs()
    {
        torch.manual_seed(5);
        using var original = new TinyResNet();
        using (torch.no_grad())
        {
            foreach (var (key, t) in original.state_dict().Where(kv => kv.Key.Contains("running_")))
                t.copy_(torch.rand_like(t) + 0.5);
        }
        original.eval();
        var path = _kit.PathOf("tiny.safetensors");
        Safetensors.Save(original, path);

        using var copy = new TinyResNet();
        var report = Safetensors.Load(copy, path);
        Assert.Equal(copy.state_dict().Count, report.Loaded.Count);
        Assert.Empty(report.Missing);
        copy.eval();
        using var input = torch.randn(2, 3, 8, 8);
        using var noGrad = torch.no_grad();
        using var a = original.call(input);
        using var b = copy.call(input);
        Assert.True(a.eq(b).all().item<bool>());
        Assert.Equal("pt", Safetensors.ReadMetadata(path)["format"]);
    }

    [Fact]
    public void A_file_written_by_python_loads_with_pytorchs_outputs()
    {
        using var network = new TinyResNet();
        Safetensors.Load(network, WeightTestKit.Reference("tiny_resnet.safetensors"));
        network.eval();
        using var input = DeterministicWeights.Input(2, 3, 8, 8);
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats("tiny_resnet.eval.bin"), output, "tiny_resnet.safetensors");
        Assert.Equal(123L, network.bn1.num_batches_tracked!.item<long>());
        Assert.Equal("make_checkpoints.py", Safetensors.ReadMetadata(WeightTestKit.Reference("tiny_resnet.safetensors"))["writer"]);
    }

    [Fact]
    public void Half_precision_weights_load_into_a_float32_model()
    {
        using var source = new TinyResNet();
        var half = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.is_floating_point() ? kv.Value.to(torch.float16) : kv.Value);
        var path = _kit.PathOf("half.safetensors");
        Safetensors.Write(path, half);
        using var target = new TinyResNet();
        Safetensors.Load(target, path);
        Assert.Equal(torch.float32, target.conv1.weight!.dtype);
        Assert.True(target.conv1.weight!.eq(half["conv1.weight"].to(torch.float32)).all().item<bool>());
    }

    // ---- bad input: each gets a message naming the file, the key and the problem, and changes nothing ----

    private (WeightFileException Error, string Path) LoadFails(string path, bool strict = true)
    {
        using var network = new TinyResNet();
        var before = WeightTestKit.Copy(network);
        var error = Assert.Throws<WeightFileException>(() => Safetensors.Load(network, path, strict));
        WeightTestKit.AssertUnchanged(network, before);
        Assert.StartsWith(path, error.Message);
        return (error, path);
    }

    private string Valid() => WeightTestKit.Reference("tiny_resnet.safetensors");

    [Fact]
    public void A_truncated_file()
    {
        var bytes = File.ReadAllBytes(Valid());
        var (error, _) = LoadFails(_kit.WriteBytes("cut.safetensors", bytes.Take(bytes.Length - 100).ToArray()));
        Assert.Equal("layer2.0.downsample.1.running_var", error.Key); // the last tensor in the data
        Assert.Contains("run past the end of the data", error.Message);
        Assert.Contains("truncated", error.Message);
        (error, _) = LoadFails(_kit.WriteBytes("tiny.safetensors", bytes.Take(5).ToArray()));
        Assert.Contains("truncated: the file has 5 bytes", error.Message);
    }

    [Fact]
    public void A_header_length_past_the_end_of_the_file()
    {
        var bytes = File.ReadAllBytes(Valid());
        BitConverter.GetBytes((ulong)bytes.Length).CopyTo(bytes, 0);
        var (error, _) = LoadFails(_kit.WriteBytes("long.safetensors", bytes));
        Assert.Contains($"the header length {bytes.Length} runs past the end of the file ({bytes.Length} bytes)", error.Message);
    }

    [Fact]
    public void Malformed_json()
    {
        var (error, _) = LoadFails(_kit.Craft("json.safetensors", "{\"conv1.weight\": {\"dtype\": \"F32\", ", new byte[8]));
        Assert.Contains("malformed JSON header", error.Message);
    }

    [Fact]
    public void An_unknown_dtype()
    {
        var (error, _) = LoadFails(_kit.Craft("dtype.safetensors", "{\"conv1.weight\": {\"dtype\": \"F99\", \"shape\": [2], \"data_offsets\": [0, 8]}}", new byte[8]));
        Assert.Equal("conv1.weight", error.Key);
        Assert.Contains("unknown dtype 'F99'", error.Message);
    }

    [Fact]
    public void Data_offsets_out_of_range()
    {
        var (error, _) = LoadFails(_kit.Craft("range.safetensors", "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]}}", new byte[8]));
        Assert.Equal("fc.bias", error.Key);
        Assert.Contains("data_offsets [0, 12] run past the end of the data (8 bytes)", error.Message);
        (error, _) = LoadFails(_kit.Craft("gap.safetensors", "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", new byte[12]));
        Assert.Contains("leaving bytes 0..4 of the data unused", error.Message);
    }

    [Fact]
    public void Overlapping_data_offsets()
    {
        var (error, _) = LoadFails(_kit.Craft("overlap.safetensors",
            "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]}, \"bn1.bias\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", new byte[16]));
        Assert.Equal("bn1.bias", error.Key);
        Assert.Contains("overlap those of 'fc.bias' [0, 12]", error.Message);
    }

    [Fact]
    public void Data_offsets_that_do_not_match_dtype_and_shape()
    {
        var (error, _) = LoadFails(_kit.Craft("size.safetensors", "{\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", new byte[8]));
        Assert.Contains("data_offsets [0, 8] cover 8 bytes, but F32 [3] needs 12", error.Message);
    }

    [Fact]
    public void A_missing_key_and_an_unexpected_key_when_strict()
    {
        var tensors = Safetensors.Read(Valid());
        tensors.Remove("fc.bias");
        tensors["head.weight"] = torch.zeros(2);
        var path = _kit.PathOf("keys.safetensors");
        Safetensors.Write(path, tensors);
        var (error, _) = LoadFails(path);
        Assert.Contains("missing key fc.bias", error.Message);
        Assert.Contains("unexpected key head.weight", error.Message);
        Assert.Contains("strict: false", error.Message);
    }

    [Fact]
    public void Non_strict_loading_reports_missing_and_unexpected_keys()
    {
        var tensors = Safetensors.Read(Valid());
        tensors.Remove("fc.bias");
        tensors.Remove("fc.weight");
        tensors["head.weight"] = torch.zeros(2);
        var path = _kit.PathOf("partial.safetensors");
        Safetensors.Write(path, tensors);
        using var network = new TinyResNet();
        var fcBefore = network.fc.weight!.clone();
        var report = Safetensors.Load(network, path, strict: false);
        Assert.Equal(new[] { "fc.bias", "fc.weight" }, report.Missing.OrderBy(k => k));
        Assert.Equal(new[] { "head.weight" }, report.Unexpected);
        Assert.True(network.fc.weight!.eq(fcBefore).all().item<bool>());
        Assert.True(network.conv1.weight!.eq(tensors["conv1.weight"]).all().item<bool>());
    }

    [Fact]
    public void A_shape_mismatch_names_both_shapes()
    {
        var tensors = Safetensors.Read(Valid());
        tensors["layer1.0.conv1.weight"] = torch.zeros(8, 8, 1, 1);
        var path = _kit.PathOf("shape.safetensors");
        Safetensors.Write(path, tensors);
        var (error, _) = LoadFails(path);
        Assert.Contains("layer1.0.conv1.weight: file has [8,8,1,1], model expects [8,8,3,3]", error.Message);
    }

    [Fact]
    public void Shapes_come_from_the_header_as_read_gives_them()
    {
        var tensors = Safetensors.Read(Valid());
        var shapes = Safetensors.ReadShapes(Valid());
        Assert.Equal(tensors.Keys.OrderBy(k => k, StringComparer.Ordinal), shapes.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, tensor) in tensors) Assert.Equal(tensor.shape, shapes[key]);
        Assert.Contains("cannot open the file", Assert.Throws<WeightFileException>(() => Safetensors.ReadShapes(_kit.PathOf("nowhere.safetensors"))).Message);
    }

    [Fact]
    public void A_missing_file()
    {
        var (error, _) = LoadFails(_kit.PathOf("nowhere.safetensors"));
        Assert.Contains("cannot open the file", error.Message);
    }

    [Fact]
    public void Writing_replaces_the_file_whole_and_refuses_reserved_names()
    {
        var path = _kit.PathOf("w.safetensors");
        Safetensors.Write(path, new Dictionary<string, torch.Tensor> { ["x"] = torch.ones(2) });
        Assert.Throws<ArgumentException>(() => Safetensors.Write(path, new Dictionary<string, torch.Tensor> { ["__metadata__"] = torch.ones(2) }));
        Assert.Equal(new[] { "x" }, Safetensors.Read(path).Keys);
        Assert.Single(Directory.GetFiles(_kit.Folder));
    }

    [Fact]
    public void Hundreds_of_mutated_files_load_identically_or_fail_cleanly()
    {
        var valid = File.ReadAllBytes(Valid());
        var headerEnd = 8 + (int)BitConverter.ToUInt64(valid, 0);
        var random = new Random(20261123);
        var original = Safetensors.Read(Valid());
        var outcomes = new Dictionary<string, int> { ["loaded"] = 0, ["loaded changed data"] = 0, ["refused"] = 0 };
        for (var i = 0; i < 400; i++)
        {
            var bytes = (byte[])valid.Clone();
            switch (i % 4)
            {
                case 0: // flip bytes in the header, where structure lives
                    for (var k = 0; k < 1 + random.Next(3); k++) bytes[random.Next(headerEnd)] ^= (byte)(1 << random.Next(8));
                    break;
                case 1: // overwrite one header byte with a JSON-significant character
                    const string significant = "{}[],:\"0123456789- ";
                    bytes[8 + random.Next(headerEnd - 8)] = (byte)significant[random.Next(significant.Length)];
                    break;
                case 2: // truncate anywhere
                    bytes = bytes.Take(random.Next(bytes.Length)).ToArray();
                    break;
                default: // damage the data region
                    bytes[headerEnd + random.Next(bytes.Length - headerEnd)] = (byte)random.Next(256);
                    break;
            }
            var path = _kit.WriteBytes($"mutant{i}.safetensors", bytes);
            using var network = new TinyResNet();
            var before = WeightTestKit.Copy(network);
            try
            {
                Safetensors.Load(network, path);
                if (WeightTestKit.AssertLoadedAsTheFileSays(network, valid, bytes, original, $"mutant {i}") > 0) outcomes["loaded changed data"]++;
                outcomes["loaded"]++;
            }
            catch (WeightFileException e)
            {
                Assert.StartsWith(path, e.Message);
                WeightTestKit.AssertUnchanged(network, before);
                outcomes["refused"]++;
            }
            File.Delete(path);
        }
        // The data-region mutants that load are the ones whose changed byte shows in a tensor (or rewrote it unchanged).
        Assert.True(outcomes["loaded"] > 50 && outcomes["refused"] > 150 && outcomes["loaded changed data"] > 50,
            string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}")));
    }
}
