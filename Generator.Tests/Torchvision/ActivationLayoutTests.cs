using System.Linq;
using TorchSharp;
using Xunit;
using ResNetGen.Generator.Tests.Infrastructure;

namespace ResNetGen.Generator.Tests.Torchvision;

/// <summary>
/// ActivationLayout: generated networks compute in the input's own layout by default and channels-last on request. Only
/// strides change: values, the caller's input, tensor lifetimes and gradients must be the same in both. Every test that
/// computes a channels-last convolution runs in a child process (<see cref="Isolated"/>): on CPUs where libtorch's oneDNN
/// mishandles that layout a kernel can kill the process, and such a test must fail alone, not take the test host down.
/// </summary>
public class ActivationLayoutTests
{
    private static torch.Tensor ChannelsLastCopy(torch.Tensor t) => TensorLayout.ForCompute(t, ActivationLayout.ChannelsLast);

    [Fact]
    public void Channels_last_is_recognised_by_exact_strides()
    {
        using var nchw = torch.randn(2, 3, 5, 7);
        using var nhwc = nchw.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        Assert.False(TensorLayout.IsChannelsLast(nchw));
        Assert.True(TensorLayout.IsChannelsLast(nhwc));
        Assert.Equal(new long[] { 105, 1, 21, 3 }, nhwc.stride());
        // A one-channel NCHW tensor has the same memory order, but not the strides libtorch keeps channels-last for.
        using var gray = torch.randn(2, 1, 5, 7);
        Assert.False(TensorLayout.IsChannelsLast(gray));
        using var grayLast = TensorLayout.ForCompute(gray, ActivationLayout.ChannelsLast);
        Assert.True(TensorLayout.IsChannelsLast(grayLast));
        Assert.Equal(new long[] { 35, 1, 7, 1 }, grayLast.stride());
        using var flat = torch.randn(2, 3);
        Assert.False(TensorLayout.IsChannelsLast(flat));
    }

    [Theory]
    [InlineData(ActivationLayout.AsGiven, torch.ScalarType.Float32, false)]
    [InlineData(ActivationLayout.AsGiven, torch.ScalarType.BFloat16, false)]
    [InlineData(ActivationLayout.ChannelsLast, torch.ScalarType.Float32, true)]
    [InlineData(ActivationLayout.ChannelsLast, torch.ScalarType.BFloat16, true)]
    [InlineData(ActivationLayout.ChannelsLast, torch.ScalarType.Float64, true)]
    public void Each_layout_computes_channels_last_where_it_says(ActivationLayout layout, torch.ScalarType dtype, bool channelsLast)
    {
        using var input = torch.randn(new long[] { 2, 3, 8, 8 }, dtype);
        Assert.Equal(channelsLast, TensorLayout.UsesChannelsLast(input, layout));
        using var compute = TensorLayout.ForCompute(input, layout);
        Assert.Equal(channelsLast, TensorLayout.IsChannelsLast(compute));
        Assert.False(TensorLayout.IsChannelsLast(input));
        Assert.True(compute.eq(input).all().item<bool>());
    }

    [Fact]
    public void A_wrong_input_names_the_method_it_was_passed_to()
    {
        using var network = new ResNet18Gray();
        using var rgb = torch.zeros(1, int.Parse("3"), 28, 28); // not a literal: RNG0010 would refuse it at build time
        Assert.StartsWith("ResNet18Gray.forward expects a tensor of shape [N, 1, H, W]", Assert.Throws<System.ArgumentException>(() => network.forward(rgb)).Message);
        Assert.StartsWith("ResNet18Gray.ForwardFeatures expects a tensor of shape [N, 1, H, W]", Assert.Throws<System.ArgumentException>(() => network.ForwardFeatures(rgb)).Message);
    }

    [Fact]
    public void The_default_is_the_inputs_own_layout()
    {
        using var network = new ResNet18Gray();
        Assert.Equal(ActivationLayout.AsGiven, network.ActivationLayout);
        Assert.Equal(ActivationLayout.AsGiven, default(ActivationLayout));
    }

    [Fact]
    public void The_compute_tensor_is_the_callers_to_dispose_never_the_input()
    {
        using var nhwc = ChannelsLastCopy(torch.randn(2, 3, 8, 8));
        // Already channels-last: a second handle on the same storage, which can be disposed on its own.
        var handle = TensorLayout.ForCompute(nhwc, ActivationLayout.ChannelsLast);
        Assert.NotSame(nhwc, handle);
        using (torch.no_grad()) handle[0, 0, 0, 0] = torch.tensor(42f);
        Assert.Equal(42f, nhwc[0, 0, 0, 0].item<float>());
        handle.Dispose();
        Assert.False(nhwc.IsInvalid);
        Assert.Equal(42f, nhwc[0, 0, 0, 0].item<float>());
    }

    [Fact]
    public void To_contiguous_keeps_contiguous_tensors_and_replaces_the_others()
    {
        using var nchw = torch.randn(2, 3, 4, 4);
        Assert.Same(nchw, TensorLayout.ToContiguous(nchw));
        var nhwc = ChannelsLastCopy(nchw);
        using var back = TensorLayout.ToContiguous(nhwc);
        Assert.True(nhwc.IsInvalid);
        Assert.True(back.is_contiguous());
        Assert.True(back.eq(nchw).all().item<bool>());
    }

    [Fact]
    public void Eval_outputs_do_not_depend_on_the_layout() => Isolated.Run<ActivationLayoutTests>(nameof(EvalOutputsInBothLayouts));

    [Fact]
    public void Folded_eval_outputs_do_not_depend_on_the_layout() => Isolated.Run<ActivationLayoutTests>(nameof(FoldedEvalOutputsInBothLayouts));

    internal void EvalOutputsInBothLayouts() => EvalOutputs(fused: false);

    internal void FoldedEvalOutputsInBothLayouts() => EvalOutputs(fused: true);

    private static void EvalOutputs(bool fused)
    {
        using var network = new ResNet50();
        DeterministicWeights.Apply(network);
        network.eval();
        if (fused) network.FuseForInference();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var given = network.call(input);
        network.ActivationLayout = ActivationLayout.ChannelsLast;
        using var last = network.call(input);
        network.ActivationLayout = ActivationLayout.AsGiven;
        using var nhwcInput = ChannelsLastCopy(input);
        using var lastGiven = network.call(nhwcInput); // a channels-last input computes channels-last as given
        Tolerance.AssertClose(given, last, "ChannelsLast");
        Tolerance.AssertClose(given, lastGiven, "a channels-last input");
        Assert.False(nhwcInput.IsInvalid);
        Assert.True(TensorLayout.IsChannelsLast(nhwcInput));
    }

    [Fact]
    public void Training_gradients_do_not_depend_on_the_layout() => Isolated.Run<ActivationLayoutTests>(nameof(TrainingGradientsInBothLayouts));

    internal void TrainingGradientsInBothLayouts()
    {
        // In float64: float32 rounding differs with the summation order,
        // and batch-norm's backward amplifies it to ~1e-3 of the largest gradient, which would hide a real difference.
        torch.Tensor[] Gradients(ActivationLayout layout)
        {
            using var network = new ResNet18();
            DeterministicWeights.Apply(network);
            network.to(torch.float64);
            network.ActivationLayout = layout;
            network.train();
            using var input = DeterministicWeights.Input().to(torch.float64).requires_grad_();
            using var output = network.call(input);
            using var loss = output.square().mean();
            loss.backward();
            return new[] { input.grad!.clone(), network.conv1.weight!.grad!.clone(), network.fc.weight!.grad!.clone(), network.bn1.running_mean!.clone() };
        }
        var given = Gradients(ActivationLayout.AsGiven);
        var last = Gradients(ActivationLayout.ChannelsLast);
        foreach (var (name, i) in new[] { ("input.grad", 0), ("conv1.weight.grad", 1), ("fc.weight.grad", 2), ("bn1.running_mean", 3) })
        {
            Tolerance.AssertClose(given[i], last[i], name, relative: 1e-10);
        }
        foreach (var t in given.Concat(last)) t.Dispose();
    }

    [Fact]
    public void Features_come_back_contiguous_with_the_same_values() => Isolated.Run<ActivationLayoutTests>(nameof(FeaturesInBothLayouts));

    internal void FeaturesInBothLayouts()
    {
        using var network = new ResNet50();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        network.ActivationLayout = ActivationLayout.AsGiven;
        using var given = network.ForwardFeatures(input);
        network.ActivationLayout = ActivationLayout.ChannelsLast;
        var before = DeterministicWeights.LiveTensors;
        using var auto = network.ForwardFeatures(input);
        Assert.Equal(5, DeterministicWeights.LiveTensors - before); // the five features and nothing else
        foreach (var (a, b, name) in new[] { (given.Stem, auto.Stem, "Stem"), (given.Layer1, auto.Layer1, "Layer1"), (given.Layer4, auto.Layer4, "Layer4") })
        {
            Assert.True(b.is_contiguous(), name);
            Tolerance.AssertClose(a, b, name);
        }
        using var flat = auto.Layer4.view(auto.Layer4.shape[0], -1); // view needs the standard layout
        Assert.Equal(auto.Layer4.numel(), flat.numel());
    }

    [Fact]
    public void A_one_channel_network_matches_its_own_layout_too() => Isolated.Run<ActivationLayoutTests>(nameof(OneChannelNetworkInBothLayouts));

    internal void OneChannelNetworkInBothLayouts()
    {
        using var network = new ResNet18Gray();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = torch.rand(4, 1, 28, 28);
        using var noGrad = torch.no_grad();
        network.ActivationLayout = ActivationLayout.AsGiven;
        using var given = network.call(input);
        network.ActivationLayout = ActivationLayout.ChannelsLast;
        using var last = network.call(input);
        Tolerance.AssertClose(given, last, "one-channel input");
    }
}

/// <summary>A one-channel CIFAR-stem network, as the sample trains on Fashion-MNIST.</summary>
[ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Cifar, InChannels = 1, NumClasses = 10)]
public partial class ResNet18Gray { }
