using System.Collections.Generic;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Onnx;
using ResNetGen.Generator.Tests.Weights;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Torchvision;

/// <summary>
/// FuseForInference: batch-norm folded into the convolution before it, outputs unchanged, and never stale: every change
/// of weights, statistics, dtype or device after the fold shows in the next forward and export.
/// </summary>
public sealed class FusionTests : System.IDisposable
{
    private readonly WeightTestKit _kit = new();

    public void Dispose() => _kit.Dispose();

    [Theory]
    [InlineData("resnet50")]
    [InlineData("resnext50_32x4d")]
    public void Folded_outputs_equal_the_unfused_network(string model)
    {
        using var network = Family.Models[model].Create();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var unfused = network.call(input);
        var fusible = (dynamic)network;
        fusible.FuseForInference();
        Assert.True((bool)fusible.IsFused);
        using var fused = network.call(input);
        Tolerance.AssertClose(unfused, fused, model + " folded");
    }

    [Fact]
    public void A_fold_made_inside_a_dispose_scope_outlives_it()
    {
        // The idiomatic TorchSharp loop runs each forward in torch.NewDisposeScope(): the fold the first forward makes is
        // the network's cache, not that forward's temporary, so the scope's end must not free it.
        using var network = new ResNet18();
        DeterministicWeights.Apply(network);
        network.eval();
        network.FuseForInference();
        using var input = torch.randn(2, 3, 64, 64);
        using var noGrad = torch.no_grad();
        float[] first, second;
        using (torch.NewDisposeScope()) first = network.call(input).data<float>().ToArray(); // folds
        using (torch.NewDisposeScope()) second = network.call(input).data<float>().ToArray(); // uses the folds
        Assert.Equal(first, second);
    }

    [Fact]
    public void The_folded_forward_leaks_nothing_and_training_computes_unfolded()
    {
        using var network = new ResNet18();
        network.FuseForInference();
        using var input = torch.randn(2, 3, 64, 64);
        using (torch.no_grad())
        {
            network.call(input).Dispose(); // the first forward folds
            var before = DeterministicWeights.LiveTensors;
            network.call(input).Dispose();
            Assert.Equal(before, DeterministicWeights.LiveTensors);
        }
        Assert.True(network.IsFused);
        // Training computes with batch statistics, unfolded: the same outputs and running statistics as a copy that was
        // never fused (a fold used in training would give eval-mode outputs and leave the statistics where they were).
        using var unfused = new ResNet18();
        unfused.load_state_dict(network.state_dict());
        network.train();
        unfused.train();
        using (var output = network.call(input))
        using (var expected = unfused.call(input))
            Tolerance.AssertClose(expected, output, "a training-mode forward after the fold");
        Tolerance.AssertClose(unfused.bn1.running_mean!, network.bn1.running_mean!, "bn1.running_mean after a training-mode forward");
        Assert.Equal(1L, network.bn1.num_batches_tracked!.item<long>());
        Assert.True(network.IsFused); // still folding in eval mode, from the weights as they are then
        Assert.Equal(11_689_512, network.parameters().Sum(p => p.numel())); // the state_dict is untouched
    }

    /// <summary>A second set of weights, with batch-norm statistics far from 0 and 1 so that a stale fold shows.</summary>
    private static ResNet18 Other()
    {
        var other = new ResNet18();
        torch.manual_seed(7);
        using var noGrad = torch.no_grad();
        foreach (var (key, tensor) in other.state_dict())
        {
            if (key.EndsWith("running_mean")) tensor.copy_(torch.randn(tensor.shape) * 0.1);
            if (key.EndsWith("running_var")) tensor.copy_(torch.rand(tensor.shape) + 0.5);
            if (key.Contains("bn") && key.EndsWith("weight")) tensor.copy_(torch.rand(tensor.shape) + 0.5);
        }
        other.eval();
        return other;
    }

    /// <summary>ResNet-18 with the deterministic weights, in eval mode, never folded.</summary>
    private static ResNet18 Deterministic()
    {
        var network = new ResNet18();
        DeterministicWeights.Apply(network);
        network.eval();
        return network;
    }

    /// <summary>A fused network with the deterministic weights, folded once already.</summary>
    private static ResNet18 FusedAndUsed(torch.Tensor input)
    {
        var network = Deterministic();
        network.FuseForInference();
        using (torch.no_grad()) network.call(input).Dispose();
        return network;
    }

    private static void AssertSameOutputs(torch.nn.Module<torch.Tensor, torch.Tensor> expected, ResNet18 fused, torch.Tensor input, string what)
    {
        using var noGrad = torch.no_grad();
        using var want = expected.call(input);
        using var got = fused.call(input);
        Assert.True(fused.IsFused);
        Tolerance.AssertClose(want, got, what);
    }

    [Fact]
    public void Weights_loaded_from_safetensors_after_the_fold_are_used()
    {
        using var input = DeterministicWeights.Input();
        using var other = Other();
        var file = _kit.PathOf("other.safetensors");
        Safetensors.Save(other, file);
        using var network = FusedAndUsed(input);
        Safetensors.Load(network, file);
        AssertSameOutputs(other, network, input, "Safetensors.Load after the fold");
    }

    [Fact]
    public void Weights_loaded_from_a_pytorch_checkpoint_after_the_fold_are_used()
    {
        using var network = new TinyResNet();
        network.FuseForInference();
        using var input = DeterministicWeights.Input(2, 3, 8, 8);
        using (torch.no_grad()) network.call(input).Dispose();
        PyTorchCheckpoint.Load(network, WeightTestKit.Reference("tiny_resnet.pth"));
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.True(network.IsFused);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats("tiny_resnet.eval.bin"), output, "PyTorchCheckpoint.Load after the fold");
    }

    [Fact]
    public void A_state_dict_loaded_after_the_fold_is_used()
    {
        using var input = DeterministicWeights.Input();
        using var other = Other();
        using var network = FusedAndUsed(input);
        network.load_state_dict(other.state_dict());
        AssertSameOutputs(other, network, input, "load_state_dict after the fold");
    }

    [Fact]
    public void In_place_edits_of_weights_and_statistics_after_the_fold_are_used()
    {
        using var input = DeterministicWeights.Input();
        using var reference = Deterministic();
        using var network = FusedAndUsed(input);
        foreach (var net in new[] { reference, network })
        {
            using var noGrad = torch.no_grad();
            net.conv1.weight!.mul_(1.5);
            net.layer2_0_downsample_1.running_var!.add_(2.0);
            net.layer4_1_bn2.bias!.sub_(0.25);
        }
        AssertSameOutputs(reference, network, input, "in-place edits after the fold");
        reference.bn1.eps = 0.5;
        network.bn1.eps = 0.5;
        AssertSameOutputs(reference, network, input, "a changed eps after the fold");
    }

    [Fact]
    public void A_replaced_parameter_after_the_fold_is_used()
    {
        using var input = DeterministicWeights.Input();
        using var reference = Deterministic();
        using var network = FusedAndUsed(input);
        using (torch.no_grad())
        {
            var weight = reference.layer3_0_conv2.weight!.clone().neg_();
            reference.layer3_0_conv2.weight = new TorchSharp.Modules.Parameter(weight.clone());
            network.layer3_0_conv2.weight = new TorchSharp.Modules.Parameter(weight);
        }
        AssertSameOutputs(reference, network, input, "a replaced parameter after the fold");
    }

    [Fact]
    public void A_dtype_change_after_the_fold_folds_in_the_new_dtype()
    {
        using var input = DeterministicWeights.Input();
        using var reference = Deterministic();
        reference.to(torch.float64);
        using var network = FusedAndUsed(input);
        network.to(torch.float64);
        using var input64 = input.to(torch.float64);
        using var noGrad = torch.no_grad();
        using var want = reference.call(input64);
        using var got = network.call(input64);
        Assert.Equal(torch.ScalarType.Float64, got.dtype);
        Tolerance.AssertClose(want, got, "float64 after the fold", relative: 1e-10);
    }

    [Fact]
    public void Training_then_eval_folds_the_trained_weights()
    {
        using var input = DeterministicWeights.Input();
        using var network = FusedAndUsed(input);
        network.train();
        using (var optimizer = torch.optim.SGD(network.parameters(), 0.05, momentum: 0.9))
        {
            for (var step = 0; step < 2; step++)
            {
                optimizer.zero_grad();
                using var output = network.call(input);
                using var loss = output.square().mean();
                loss.backward();
                optimizer.step();
            }
        }
        network.eval();
        // The same weights and statistics, never folded: what the fused network must compute now.
        using var reference = new ResNet18();
        reference.load_state_dict(network.state_dict());
        reference.eval();
        AssertSameOutputs(reference, network, input, "eval after training");
    }

    [Fact]
    public void An_export_after_loading_new_weights_writes_the_new_weights()
    {
        using var input = DeterministicWeights.Input();
        using var other = Other();
        using var network = FusedAndUsed(input);
        network.load_state_dict(other.state_dict());
        var path = _kit.PathOf("fused.onnx");
        network.ExportOnnx(path);
        using var noGrad = torch.no_grad();
        using var expected = other.call(input);
        Tolerance.AssertClose(expected, torch.tensor(OnnxExportTests.OnnxRuntime(path, input)).reshape(expected.shape), "the folded export after a load");
    }

    [Fact]
    public void A_fold_is_made_once_and_again_only_when_a_source_changes()
    {
        using var conv = torch.nn.Conv2d(4, 8, 3, padding: 1, bias: false);
        using var norm = torch.nn.BatchNorm2d(8);
        norm.eval();
        using var fold = new FoldedConvolution(conv, norm);
        using var x = torch.randn(1, 4, 5, 5);
        using var noGrad = torch.no_grad();
        fold.forward(x).Dispose();
        fold.forward(x).Dispose();
        Assert.Equal(1, fold.Folds);
        norm.running_mean!.add_(1);
        using (var folded = fold.forward(x))
        using (var conved = conv.forward(x))
        using (var expected = norm.forward(conved))
            Tolerance.AssertClose(expected, folded, "after a running_mean change");
        Assert.Equal(2, fold.Folds);
        fold.Release();
        fold.forward(x).Dispose();
        Assert.Equal(3, fold.Folds);
    }
}
