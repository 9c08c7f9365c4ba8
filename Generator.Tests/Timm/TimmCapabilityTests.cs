using System;
using System.Collections.Generic;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Timm;

/// <summary>Every option of timm's family together, small: deep-tiered stem, ResNet-RS stem pool, avg-down, ECA, blur, drop path.</summary>
[ResNet(Block.Bottleneck, 1, 1, 1, 1, BaseWidth = 16, Stem = Stem.DeepTiered, StemWidth = 16, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown,
    Attention = Attention.EfficientChannel, AntiAlias = AntiAlias.BlurPool, DropPath = 0.1, NumClasses = 7, InputSize = 64)]
public partial class EveryTimmOption { }

/// <summary>timm's options with torchvision's initialisation asked for in so many words.</summary>
[ResNet(Block.Basic, 1, 1, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, ZeroInitResidual = false, NumClasses = 3, InputSize = 64)]
public partial class TimmWithoutZeroInit { }

/// <summary>What every generated network offers, with timm's options: channels-last, freezing, the summary, the features.</summary>
public class TimmCapabilityTests
{
    [Fact]
    public void Channels_last_gives_the_same_outputs_and_gradients_and_every_inner_convolution_receives_it() =>
        Isolated.Run<TimmCapabilityTests>(nameof(BothLayouts));

    // A child process: channels-last kernels can crash natively on some CPUs (see OneDnn).
    internal static void BothLayouts()
    {
        var networks = new (string Name, Func<torch.nn.Module<torch.Tensor, torch.Tensor>> Create, string[] Kinds)[]
        {
            ("seresnext26d_32x4d", () => new SeResNeXt26d_32x4d(), new[] { "conv2d" }),
            ("resnetrs50 with blur", () => new ResNetRs50Blur(), new[] { "conv2d", "blur" }),
            ("every option", () => new EveryTimmOption(), new[] { "conv2d", "blur", "conv1d" }),
            ("resnetv2_18 (pre-activation)", () => new ResNetV2_18(), new[] { "conv2d" }),
            ("small BiT (group-norm, standardised, fixed stem)", () => new SmallBit(), new[] { "standardized conv2d", "conv2d" }),
        };
        foreach (var (name, create, kinds) in networks)
        {
            // In float64, as ActivationLayoutTests does: float32's summation order would hide a real difference. In eval:
            // drop path draws nothing there, so both layouts compute the same function, forward and backward.
            (torch.Tensor Output, torch.Tensor Gradient) Run(ActivationLayout layout)
            {
                using var network = create();
                DeterministicWeights.Apply(network);
                network.to(torch.float64);
                ((dynamic)network).ActivationLayout = layout;
                network.eval();
                using var input = DeterministicWeights.Input().to(torch.float64).requires_grad_();
                torch.Tensor output;
                using (var trace = ConvolutionTrace.Start())
                {
                    output = network.call(input);
                    AssertEveryConvolutionReceived(network, trace.Calls, layout, torch.float64, kinds, name);
                }
                using var loss = output.square().mean();
                loss.backward();
                using (output) return (output.detach().clone(), input.grad!.clone());
            }
            var (givenOutput, givenGradient) = Run(ActivationLayout.AsGiven);
            var (lastOutput, lastGradient) = Run(ActivationLayout.ChannelsLast);
            Tolerance.AssertClose(givenOutput, lastOutput, name + ": output, channels-last", relative: 1e-10);
            Tolerance.AssertClose(givenGradient, lastGradient, name + ": input gradient, channels-last", relative: 1e-10);
            foreach (var t in new[] { givenOutput, givenGradient, lastOutput, lastGradient }) t.Dispose();
        }

        // The same inside a bfloat16 pass and a folded network: the casts and the folds keep the layout.
        using var every = new EveryTimmOption();
        DeterministicWeights.Apply(every);
        every.eval();
        every.ActivationLayout = ActivationLayout.ChannelsLast;
        every.Precision = Precision.BFloat16;
        using var image = DeterministicWeights.Input();
        using (var noGrad = torch.no_grad())
        {
            using (var trace = ConvolutionTrace.Start())
            using (every.call(image))
                AssertEveryConvolutionReceived(every, trace.Calls, ActivationLayout.ChannelsLast, torch.bfloat16, new[] { "conv2d", "blur", "conv1d" }, "every option, bfloat16");
            every.Precision = Precision.Float32;
            every.FuseForInference();
            using (var trace = ConvolutionTrace.Start())
            using (every.call(image))
                AssertEveryConvolutionReceived(every, trace.Calls, ActivationLayout.ChannelsLast, torch.float32, new[] { "folded conv2d", "conv2d", "blur", "conv1d" }, "every option, folded (the stem pool's convolution is followed by its blur, not its norm)");
        }
    }

    /// <summary>
    /// Every convolution module of <paramref name="network"/> ran once on an input in <paramref name="layout"/> (NCHW for
    /// AsGiven, channels-last otherwise, wherever the spatial size makes them differ) and <paramref name="dtype"/>, the
    /// blur pool's filter on as many; <paramref name="kinds"/> are exactly the kinds that ran.
    /// </summary>
    private static void AssertEveryConvolutionReceived(torch.nn.Module network, IReadOnlyList<ConvolutionCall> calls, ActivationLayout layout,
        torch.ScalarType dtype, string[] kinds, string name)
    {
        var names = network.named_modules().ToDictionary(m => (object)m.module, m => m.name, ReferenceEqualityComparer.Instance);
        var convolutions = network.named_modules().Where(m => m.module is TorchSharp.Modules.Conv2d or TorchSharp.Modules.Conv1d).Select(m => m.name).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var ran = calls.Where(c => c.Module is not null).Select(c => names[c.Module!]).OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.True(convolutions.SequenceEqual(ran), $"{name}: the convolutions that ran are not the network's: {string.Join(", ", convolutions.Except(ran).Take(5))} | {string.Join(", ", ran.Except(convolutions).Take(5))}");
        Assert.Equal(kinds.OrderBy(k => k, StringComparer.Ordinal), calls.Select(c => c.Kind).Distinct().OrderBy(k => k, StringComparer.Ordinal));
        var spatial = calls.Where(c => c.Spatial).ToList();
        Assert.True(spatial.Count > convolutions.Count / 2, $"{name}: only {spatial.Count} spatial convolution inputs");
        foreach (var call in calls)
        {
            var who = $"{name}: {(call.Module is null ? call.Kind : names[call.Module])} received [{string.Join(", ", call.Shape)}] with strides [{string.Join(", ", call.Strides)}]";
            Assert.True(call.DType == dtype, $"{who} in {call.DType}");
            if (!call.Spatial) continue;
            Assert.True(layout == ActivationLayout.ChannelsLast ? call.ChannelsLast : call.Contiguous && !call.ChannelsLast, who);
        }
    }

    [Fact]
    public void Initialisation_is_timms_zero_init_last_unless_the_attribute_says_otherwise()
    {
        torch.manual_seed(3);
        using var resnet50d = new ResNet50d();
        // timm's init_weights: kaiming normal (fan-out, ReLU) for every convolution, then each block's last batch-norm weight 0.
        foreach (var norm in new[] { resnet50d.layer1_0_bn3, resnet50d.layer4_2_bn3 }) Assert.True(norm.weight!.eq(0).all().item<bool>());
        foreach (var norm in new[] { resnet50d.conv1_1, resnet50d.bn1, resnet50d.layer1_0_bn2, resnet50d.layer1_0_downsample_2 })
            Assert.True(norm.weight!.eq(1).all().item<bool>());
        var expectedStd = Math.Sqrt(2.0 / (256 * 1 * 1));
        Assert.InRange(resnet50d.layer1_0_conv3.weight!.std().item<float>(), expectedStd * 0.97, expectedStd * 1.03);
        using var se = new SeResNet50();
        Assert.True(se.layer2_1_bn3.weight!.eq(0).all().item<bool>());
        Assert.InRange(se.layer2_1_se_fc1.weight!.std().item<float>(), Math.Sqrt(2.0 / 32) * 0.9, Math.Sqrt(2.0 / 32) * 1.1); // 512 → 32: fan-out 32
        using var written = new TimmWithoutZeroInit();
        Assert.True(written.layer1_0_bn2.weight!.eq(1).all().item<bool>());
        using var torchvision = new Torchvision.ResNet50();
        Assert.True(torchvision.layer1_0_bn3.weight!.eq(1).all().item<bool>());
    }

    [Fact]
    public void FreezeBackbone_freezes_the_deep_stem_and_the_attention_of_frozen_stages()
    {
        using var network = new EveryTimmOption();
        network.FreezeBackbone(1);
        var trainable = network.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainable, name => Assert.True(name.StartsWith("layer4.", StringComparison.Ordinal) || name.StartsWith("fc.", StringComparison.Ordinal), name));
        Assert.Contains("layer4.0.se.conv.weight", trainable);
        Assert.False(network.conv1_0.weight!.requires_grad);
        Assert.False(network.maxpool_0.weight!.requires_grad);
        Assert.False(network.layer3_0_se_conv.weight!.requires_grad);
        network.train();
        Assert.False(network.maxpool_2.training); // the stem pool's batch-norm stays frozen in eval mode
        Assert.True(network.layer4_0_bn1.training);
        network.Unfreeze();
        Assert.All(network.parameters(), p => Assert.True(p.requires_grad));
    }

    [Fact]
    public void The_summary_and_the_features_follow_the_options()
    {
        Assert.Contains("conv1 (Sequential)", EveryTimmOption.Summary);
        Assert.Contains("maxpool (Sequential)", EveryTimmOption.Summary);
        Assert.Contains($"Total params: {EveryTimmOption.ParameterCount:N0}", EveryTimmOption.Summary.Replace('\u00a0', ','));
        using var network = new EveryTimmOption();
        network.eval();
        using var input = torch.randn(2, 3, 64, 64);
        using var noGrad = torch.no_grad();
        using var features = network.ForwardFeatures(input);
        // Deep stem to 32×32, the stem pool's blur to 16×16, then 16, 8, 4, 2.
        Assert.Equal(new long[] { 2, 32, 16, 16 }, features.Stem.shape);
        Assert.Equal(new long[] { 2, 64, 16, 16 }, features.Layer1.shape);
        Assert.Equal(new long[] { 2, 512, 2, 2 }, features.Layer4.shape);
        using var logits = network.call(input);
        Assert.Equal(new long[] { 2, 7 }, logits.shape);
    }
}
