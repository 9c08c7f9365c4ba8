using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Onnx;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Timm;

/// <summary>The CIFAR PreActResNet-18 (He et al. 2016's v2 blocks, as kuangliu's pytorch-cifar builds it, with the paper's final norm).</summary>
[ResNet(Block.PreActBasic, 2, 2, 2, 2, Stem = Stem.Cifar, NumClasses = 10)]
public partial class PreActResNet18Cifar { }

/// <summary>A small pre-activation bottleneck network whose blocks start as identities (ZeroInitResidual written).</summary>
[ResNet(Block.PreActBottleneck, 1, 1, NumClasses = 4, InputSize = 32, ZeroInitResidual = true)]
public partial class PreActZeroInit { }

/// <summary>The pre-activation blocks beyond timm's ImageNet networks: the CIFAR layout, the fold, freezing, initialisation.</summary>
public sealed class PreActTests : System.IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-preact-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void The_cifar_layout_equals_a_transcription_of_kuangliu_s_PreActResNet18()
    {
        Assert.Equal(11_172_170, PreActResNet18Cifar.ParameterCount);
        using var network = new PreActResNet18Cifar();
        DeterministicWeights.Apply(network);
        network.eval();
        var expected = DeterministicWeights.ReadFloats(Path.Combine("timm", "preact_resnet18_cifar.eval.bin"));
        using var input = DeterministicWeights.Input(2, 3, 32, 32);
        using (torch.no_grad())
        using (var output = network.call(input))
            Tolerance.AssertClose(expected, output, "PreActResNet18 (CIFAR)");
        var export = network.ExportOnnx(Path.Combine(_folder, "preact.onnx"));
        using (var onnx = torch.tensor(OnnxExportTests.OnnxRuntime(export.Path, input)).reshape(2, -1))
            Tolerance.AssertClose(expected, onnx, "PreActResNet18 (CIFAR) on ONNX Runtime");
    }

    [Fact]
    public void The_fold_takes_each_convolution_followed_by_its_norm_and_leaves_the_pre_activation_norms()
    {
        // A basic block folds conv1 → norm2; norm1 (after the residual sum) and conv2 stay: 8 folds in ResNetV2-18's 8 blocks.
        using var network = new ResNetV2_18();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var unfused = network.call(input);
        var plain = network.ExportOnnx(Path.Combine(_folder, "plain.onnx"));
        network.FuseForInference();
        using var fused = network.call(input);
        Tolerance.AssertClose(unfused, fused, "resnetv2_18 folded");
        var folded = network.ExportOnnx(Path.Combine(_folder, "folded.onnx"));
        Assert.Equal(plain.Nodes - 8, folded.Nodes); // one BatchNormalization node fewer per fold
    }

    [Fact]
    public void Initialisation_and_freezing_follow_timms_resnetv2()
    {
        torch.manual_seed(11);
        using var network = new ResNetV2_50();
        // timm's _init_weights: the head from N(0, 0.01²), bias 0; the last convolutions kaiming-normal like the rest, as
        // ResNetV2's zero_init_last defaults to False (resnet.py's networks default to True).
        Assert.InRange(network.head_fc.weight!.std().item<float>(), 0.0097, 0.0103);
        Assert.True(network.head_fc.bias!.eq(0).all().item<bool>());
        var expected = System.Math.Sqrt(2.0 / 256); // kaiming fan_out of conv3 [256, 64, 1, 1]
        Assert.InRange(network.stages_0_blocks_0_conv3.weight!.std().item<float>(), 0.95 * expected, 1.05 * expected);
        using (var zeroed = new PreActZeroInit())
        {
            // Written, ZeroInitResidual zeroes each block's last convolution: the block starts as its shortcut.
            Assert.True(zeroed.stages_0_blocks_0_conv3.weight!.eq(0).all().item<bool>());
            Assert.True(zeroed.stages_1_blocks_0_conv3.weight!.eq(0).all().item<bool>());
            Assert.False(zeroed.stages_0_blocks_0_conv2.weight!.eq(0).all().item<bool>());
        }
        network.FreezeBackbone(1);
        var trainable = network.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainable, n => Assert.True(n.StartsWith("stages.3.", System.StringComparison.Ordinal) || n.StartsWith("norm.", System.StringComparison.Ordinal)
                                                || n.StartsWith("head.", System.StringComparison.Ordinal), n));
        Assert.Contains("head.fc.weight", trainable);
        Assert.Contains("norm.weight", trainable);
        Assert.False(network.stem_conv.weight!.requires_grad);
    }
}
