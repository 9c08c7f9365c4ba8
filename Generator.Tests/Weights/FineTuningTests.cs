using System;
using System.Collections.Generic;
using System.Linq;
using ResNetGen.Generator.Tests.Onnx;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Weights;

/// <summary>Pretrained weights into a new head, frozen stages, and the class count chosen at construction.</summary>
public sealed class FineTuningTests : IDisposable
{
    private readonly WeightTestKit _kit = new();

    public void Dispose() => _kit.Dispose();

    public static TheoryData<string> Files => new() { "tiny_resnet.pth", "tiny_resnet.safetensors" };

    private static LoadReport Load(torch.nn.Module module, string file, bool strict, bool ignore) =>
        file.EndsWith(".pth", StringComparison.Ordinal)
            ? PyTorchCheckpoint.Load(module, WeightTestKit.Reference(file), strict, ignore)
            : Safetensors.Load(module, WeightTestKit.Reference(file), strict, ignore);

    [Theory]
    [MemberData(nameof(Files))]
    public void A_pretrained_head_of_another_class_count_is_skipped_and_reported(string file)
    {
        // tiny_resnet has 3 classes; a 5-class network takes everything but the classifier.
        using var network = new TinyResNet(numClasses: 5);
        var head = (network.fc.weight!.clone(), network.fc.bias!.clone());
        var report = Load(network, file, strict: true, ignore: true);
        Assert.Equal(new[] { "fc.weight", "fc.bias" }, report.Mismatched);
        Assert.Equal(network.state_dict().Count - 2, report.Loaded.Count);
        using var reference = new TinyResNet();
        Load(reference, file, strict: true, ignore: false);
        var expected = reference.state_dict();
        foreach (var (key, tensor) in network.state_dict().Where(kv => !kv.Key.StartsWith("fc.", StringComparison.Ordinal)))
            Assert.True(tensor.eq(expected[key]).all().item<bool>(), key);
        Assert.True(network.fc.weight!.eq(head.Item1).all().item<bool>() && network.fc.bias!.eq(head.Item2).all().item<bool>(), "the new head was kept");

        // Without the switch the mismatch is refused, naming both shapes and the switch, and nothing changes.
        using var other = new TinyResNet(numClasses: 5);
        var before = WeightTestKit.Copy(other);
        var error = Assert.Throws<WeightFileException>(() => Load(other, file, strict: false, ignore: false));
        Assert.Contains("fc.weight: file has [3,16], model expects [5,16]", error.Message);
        Assert.Contains("ignoreMismatchedShapes: true", error.Message);
        WeightTestKit.AssertUnchanged(other, before);
    }

    internal static void SameDrawsByDefault()
    {
        torch.manual_seed(3);
        using var byDefault = new TinyResNet();
        torch.manual_seed(3);
        using var explicitly = new TinyResNet(3);
        foreach (var (key, tensor) in byDefault.state_dict()) Assert.True(tensor.eq(explicitly.state_dict()[key]).all().item<bool>(), key);
        Console.WriteLine("same draws");
    }

    [Fact]
    public void The_class_count_is_chosen_when_the_network_is_built()
    {
        using var seven = new TinyResNet(7);
        Assert.Equal(7, seven.fc.out_features);
        seven.eval();
        using var input = torch.randn(2, 3, 8, 8);
        using (torch.no_grad())
        using (var output = seven.call(input))
            Assert.Equal(new long[] { 2, 7 }, output.shape);
        Assert.Equal(TinyResNet.ParameterCount, new TinyResNet().parameters().Sum(p => p.numel())); // the constants stay the attribute's
        Assert.Throws<ArgumentOutOfRangeException>(() => new TinyResNet(0));

        // The parameterless constructor is the attribute's class count, with the same random draws as before: in a child
        // process, as another test running in parallel may draw from the global generator between a seed and a constructor.
        Assert.Contains("same draws", ResNetGen.Generator.Tests.Infrastructure.Isolated.Run<FineTuningTests>(nameof(SameDrawsByDefault)));

        // The export follows the class count actually built.
        var path = _kit.PathOf("seven.onnx");
        seven.ExportOnnx(path);
        Assert.Equal(2 * 7, OnnxExportTests.OnnxRuntime(path, input).Length);
    }

    [Fact]
    public void Frozen_stages_and_their_batch_norms_do_not_change_while_the_rest_trains()
    {
        torch.manual_seed(11);
        using var network = new TinyResNet(4);
        network.FreezeBackbone(trainableStages: 1); // layer2 and fc train; the stem and layer1 are frozen
        network.train();
        bool Frozen(string key) => !key.StartsWith("layer2.", StringComparison.Ordinal) && !key.StartsWith("fc.", StringComparison.Ordinal);
        foreach (var (name, parameter) in network.named_parameters()) Assert.Equal(!Frozen(name), parameter.requires_grad);
        Assert.False(network.bn1.training);
        Assert.False(network.layer1_0_bn1.training);
        Assert.True(network.layer2_0_bn1.training);

        var before = WeightTestKit.Copy(network);
        using var optimizer = torch.optim.SGD(network.parameters().Where(p => p.requires_grad), 0.1);
        for (var step = 0; step < 3; step++)
        {
            using var input = torch.randn(4, 3, 8, 8);
            using var target = torch.tensor(new long[] { 0, 1, 2, 3 });
            optimizer.zero_grad();
            using var output = network.call(input);
            using var loss = torch.nn.functional.cross_entropy(output, target);
            loss.backward();
            optimizer.step();
        }
        var after = network.state_dict();
        foreach (var (key, tensor) in before)
        {
            var same = tensor.eq(after[key]).all().item<bool>();
            if (Frozen(key)) Assert.True(same, $"{key} changed although frozen");
            else if (key.EndsWith("weight", StringComparison.Ordinal) || key.EndsWith("running_mean", StringComparison.Ordinal)) Assert.False(same, $"{key} did not train");
        }

        network.Unfreeze();
        Assert.All(network.parameters(), p => Assert.True(p.requires_grad));
        Assert.True(network.bn1.training);
        network.eval();
        Assert.False(network.layer2_0_bn1.training);

        // 0: only the classifier; stages + 1: everything; anything else is refused with the range.
        network.FreezeBackbone(0);
        Assert.Equal(new[] { "fc.weight", "fc.bias" }, network.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name));
        network.FreezeBackbone(3);
        Assert.All(network.parameters(), p => Assert.True(p.requires_grad));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => network.FreezeBackbone(4));
        Assert.Contains("0 (only the classifier) to 2 (every stage), or 3 (the stem too)", error.Message);
    }
}
