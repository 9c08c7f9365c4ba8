using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using ResNetGen.Generator.Tests.Cifar;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Onnx;

/// <summary>Exported models run on ONNX Runtime and give TorchSharp's outputs.</summary>
public sealed class OnnxExportTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-onnx-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private static readonly Dictionary<string, (Func<torch.nn.Module<torch.Tensor, torch.Tensor>> Create, int[] Sizes)> Networks = new()
    {
        ["resnet18"] = (() => new ResNet18(), new[] { 64, 96 }),
        ["resnet50"] = (() => new ResNet50(), new[] { 64, 80 }),
        ["resnext50_32x4d"] = (() => new ResNeXt50_32x4d(), new[] { 64, 72 }),
        ["resnet50_os8"] = (() => new ResNet50OS8(), new[] { 64, 72 }),
        ["resnet20_zeropad"] = (() => new ResNet20A(), new[] { 32, 37 }),
        ["resnet20_projection"] = (() => new ResNet20B(), new[] { 32, 37 }),
        ["resnet20_allprojection"] = (() => new ResNet20C(), new[] { 32, 37 }),
        ["resnet20_avgpoolzeropad"] = (() => new ResNet20AvgPool(), new[] { 32, 32 }),
    };

    public static TheoryData<string> Names() => new(Networks.Keys);

    /// <summary>The model's output for <paramref name="input"/> on ONNX Runtime's CPU provider.</summary>
    internal static float[] OnnxRuntime(string model, torch.Tensor input)
    {
        using var session = new InferenceSession(model);
        var tensor = new DenseTensor<float>(input.contiguous().data<float>().ToArray(), input.shape.Select(d => (int)d).ToArray());
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("input", tensor) });
        return results.Single().AsEnumerable<float>().ToArray();
    }

    private static OnnxExport Export(torch.nn.Module<torch.Tensor, torch.Tensor> network, string path, int opset = 17) =>
        (OnnxExport)((dynamic)network).ExportOnnx(path, opset);

    [Theory]
    [MemberData(nameof(Names))]
    public void Onnx_runtime_gives_torchsharps_outputs_at_two_batch_sizes_and_two_input_sizes(string name)
    {
        var (create, sizes) = Networks[name];
        using var network = create();
        DeterministicWeights.Apply(network);
        network.eval();
        var path = Path.Combine(_folder, name + ".onnx");
        var export = Export(network, path);
        Assert.Empty(export.Warnings);
        Assert.Equal(17, export.Opset);
        foreach (var batch in new[] { 1, 3 })
        foreach (var size in sizes)
        {
            torch.manual_seed(batch * 100 + size);
            using var input = torch.randn(batch, 3, size, size);
            using var noGrad = torch.no_grad();
            using var expected = network.call(input);
            Tolerance.AssertClose(expected, torch.tensor(OnnxRuntime(path, input)).reshape(expected.shape), $"{name} batch {batch} at {size}×{size}");
        }

        // The folded graph, after FuseForInference, gives the same outputs with no batch-norm left in it.
        ((dynamic)network).FuseForInference();
        var folded = Export(network, Path.Combine(_folder, name + "-folded.onnx"));
        Assert.True(folded.Nodes < export.Nodes);
        using var check = torch.randn(2, 3, sizes[0], sizes[0]);
        using (torch.no_grad())
        using (var expected = network.call(check))
            Tolerance.AssertClose(expected, torch.tensor(OnnxRuntime(folded.Path, check)).reshape(expected.shape), name + " folded");
    }

    [Fact]
    public void Inputs_outputs_and_names_follow_the_network()
    {
        using var network = new ResNet18();
        network.eval();
        var path = Path.Combine(_folder, "resnet18.onnx");
        var export = network.ExportOnnx(path);
        Assert.Equal(20 + 20 * 4 + 2, export.Initializers); // 20 convolution weights, 4 tensors per batch-norm, fc weight and bias
        using var session = new InferenceSession(path);
        var input = session.InputMetadata["input"];
        Assert.Equal(new[] { -1, 3, -1, -1 }, input.Dimensions);
        Assert.Equal(new[] { "N", "", "H", "W" }, input.SymbolicDimensions);
        Assert.Equal(new[] { -1, 1000 }, session.OutputMetadata["logits"].Dimensions);
        Assert.Equal("ResNetGen", session.ModelMetadata.ProducerName);
        var bytes = File.ReadAllBytes(path);
        foreach (var key in new[] { "layer1.0.conv1.weight", "layer4.1.bn2.running_var", "fc.bias" })
            Assert.True(IndexOf(bytes, System.Text.Encoding.ASCII.GetBytes(key)) >= 0, key + " is not an initializer name");

        using var backbone = new ResNet50Backbone();
        backbone.eval();
        var features = backbone.ExportOnnx(Path.Combine(_folder, "backbone.onnx"));
        using var backboneSession = new InferenceSession(features.Path);
        Assert.Equal(new[] { -1, 2048 }, backboneSession.OutputMetadata["features"].Dimensions);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (var i = 0; i <= haystack.Length - needle.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    [Fact]
    public void A_network_in_training_mode_is_exported_with_eval_semantics_and_a_warning()
    {
        using var network = new ResNet20A();
        DeterministicWeights.Apply(network);
        network.train();
        var export = network.ExportOnnx(Path.Combine(_folder, "train.onnx"));
        Assert.Contains("training mode", Assert.Single(export.Warnings));
        network.eval();
        using var input = torch.randn(2, 3, 32, 32);
        using var noGrad = torch.no_grad();
        using var expected = network.call(input);
        Tolerance.AssertClose(expected, torch.tensor(OnnxRuntime(export.Path, input)).reshape(expected.shape), "eval semantics");
    }

    [Fact]
    public void Bad_opsets_and_unwritable_paths_are_refused_clearly()
    {
        using var network = new ResNet20A();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => network.ExportOnnx(Path.Combine(_folder, "old.onnx"), opset: 10));
        Assert.Contains("ResNet20A needs ONNX opset 11 or later", error.Message);
        using var plain = new ResNet18();
        Assert.Contains("opset 9 or later", Assert.Throws<ArgumentOutOfRangeException>(() => plain.ExportOnnx(Path.Combine(_folder, "old.onnx"), opset: 8)).Message);
        Assert.Contains("newer than ResNetGen has been checked against", Assert.Throws<ArgumentOutOfRangeException>(() => plain.ExportOnnx(Path.Combine(_folder, "new.onnx"), opset: 99)).Message);
        var nowhere = Path.Combine(_folder, "no-such-folder", "model.onnx");
        var io = Assert.Throws<DirectoryNotFoundException>(() => plain.ExportOnnx(nowhere));
        Assert.Equal($"cannot write {nowhere}: the folder {Path.GetDirectoryName(nowhere)} does not exist", io.Message); // not the temporary file's name
        Assert.Empty(Directory.GetFiles(_folder));

        // The opset 11 floor really is enough.
        network.eval();
        var old = network.ExportOnnx(Path.Combine(_folder, "opset11.onnx"), opset: 11);
        using var input = torch.randn(1, 3, 32, 32);
        using var noGrad = torch.no_grad();
        using var expected = network.call(input);
        Tolerance.AssertClose(expected, torch.tensor(OnnxRuntime(old.Path, input)).reshape(expected.shape), "opset 11");
    }
}
