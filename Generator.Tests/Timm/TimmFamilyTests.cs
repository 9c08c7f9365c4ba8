using System;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Onnx;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Timm;

/// <summary>
/// The generated timm family against timm itself (Reference/timm/, written by make_timm_reference.py with timm's source
/// on Debian's PyTorch): parameter counts, state_dict keys, dtypes and shapes in timm's order, and eval outputs for the
/// same weights — unfused, folded and through ONNX Runtime — plus train-mode outputs and gradients.
/// </summary>
public sealed class TimmFamilyTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-timm-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static string Reference(string file) => Path.Combine("timm", file);

    [Theory]
    [MemberData(nameof(TimmFamily.Names), MemberType = typeof(TimmFamily))]
    public void Parameter_count_matches_timm(string model)
    {
        var (create, expected, constant) = TimmFamily.Models[model];
        Assert.Equal(expected, constant);
        using var network = create();
        Assert.Equal(expected, network.parameters().Sum(p => p.numel()));
    }

    [Theory]
    [MemberData(nameof(TimmFamily.Names), MemberType = typeof(TimmFamily))]
    public void State_dict_keys_dtypes_shapes_and_order_match_timm(string model)
    {
        using var network = TimmFamily.Models[model].Create();
        DeterministicWeights.AssertStateDictMatches(network, DeterministicWeights.ReadKeys(Reference(model)));
    }

    private static torch.nn.Module<torch.Tensor, torch.Tensor> Deterministic(string model)
    {
        var network = TimmFamily.Models[model].Create();
        DeterministicWeights.Apply(network);
        network.eval();
        return network;
    }

    [Theory]
    [MemberData(nameof(TimmFamily.Names), MemberType = typeof(TimmFamily))]
    public void Eval_folded_and_onnx_runtime_outputs_match_timm_for_the_same_weights(string model)
    {
        var expected = DeterministicWeights.ReadFloats(Reference(model + ".eval.bin"));
        using var network = Deterministic(model);
        using var input = DeterministicWeights.Input();
        using (torch.no_grad())
        using (var output = network.call(input))
            Tolerance.AssertClose(expected, output, model);

        var export = (OnnxExport)((dynamic)network).ExportOnnx(Path.Combine(_folder, model + ".onnx"));
        using (var onnx = torch.tensor(OnnxExportTests.OnnxRuntime(export.Path, input)).reshape(2, -1))
            Tolerance.AssertClose(expected, onnx, model + " on ONNX Runtime");

        ((dynamic)network).FuseForInference();
        using (torch.no_grad())
        using (var folded = network.call(input))
            Tolerance.AssertClose(expected, folded, model + " folded");
        var foldedExport = (OnnxExport)((dynamic)network).ExportOnnx(Path.Combine(_folder, model + "-folded.onnx"));
        // Batch-norms after a convolution fold away; BiT's group-norms do not (its standardised weights are written either way).
        if (model.EndsWith("_bit", StringComparison.Ordinal)) Assert.Equal(export.Nodes, foldedExport.Nodes);
        else Assert.True(foldedExport.Nodes < export.Nodes);
        using (var onnx = torch.tensor(OnnxExportTests.OnnxRuntime(foldedExport.Path, input)).reshape(2, -1))
            Tolerance.AssertClose(expected, onnx, model + " folded on ONNX Runtime");
    }

    [Theory]
    [MemberData(nameof(TimmFamily.Trained), MemberType = typeof(TimmFamily))]
    public void Train_mode_outputs_and_gradients_match_timm_in_float64(string model)
    {
        // In float64 on both sides: a float32 backward through batch-norms over a batch of two moves early gradients by
        // ~6e-4 of their size in timm itself, so only float64 can tell a real difference from rounding.
        using var network = Deterministic(model);
        network.to(torch.float64);
        network.train();
        using var input = DeterministicWeights.Input().to(torch.float64);
        using var output = network.call(input);
        AssertClose64(ReadDoubles(model + ".train64.bin"), output, model + " train-mode logits");
        using var weights = torch.tensor(DeterministicWeights.Uniform("grad-weights", output.numel()), output.shape);
        using var loss = (output * weights).sum();
        loss.backward();
        var parameters = network.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var expected = ReadDoubles(model + ".grads64.bin");
        var offset = 0;
        foreach (var key in File.ReadAllLines(Path.Combine(DeterministicWeights.ReferenceFolder, Reference(model + ".grads.txt"))).Where(l => l.Length > 0))
        {
            // A classifier's bias gets sum(weights over the batch) from any network: a check that cannot fail.
            Assert.False(key.EndsWith("fc.bias", StringComparison.Ordinal), $"{model}: {key}'s gradient does not depend on the network");
            var grad = parameters[key].grad!;
            var count = (int)grad.numel();
            AssertClose64(expected.Skip(offset).Take(count).ToArray(), grad, $"{model}: the gradient of {key}");
            offset += count;
        }
        Assert.Equal(expected.Length, offset);
    }

    private static double[] ReadDoubles(string file) => DeterministicWeights.ReadDoubles(Reference(file));

    private static void AssertClose64(double[] expected, torch.Tensor actual, string what) =>
        Tolerance.Compare(expected, actual.detach().contiguous().data<double>().ToArray(), actual.shape, what, relative: 1e-9);
}
