using System;
using System.IO;
using System.Linq;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Onnx;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Timm;

/// <summary>BiT's parts, small: the fixed stem, group-norm of 8 groups, convolutions standardised with ε 1e-8.</summary>
[ResNet(Block.PreActBottleneck, 1, 1, BaseWidth = 16, Stem = Stem.Fixed, Norm = Norm.GroupNorm, NormGroups = 8, WeightStandardization = true,
    WeightStandardizationEps = 1e-8, NumClasses = 5, InputSize = 64)]
public partial class SmallBit { }

/// <summary>The same with batch-norm: standardised convolutions whose batch-norms fold.</summary>
[ResNet(Block.PreActBasic, 1, 1, BaseWidth = 16, WeightStandardization = true, NumClasses = 5, InputSize = 32)]
public partial class StandardizedBatchNorm { }

/// <summary>What BiT's group-norm and weight standardisation change: modes, the fold, the ONNX graph, freezing, the summary.</summary>
public sealed class BitTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("resnetgen-bit-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static SmallBit Deterministic()
    {
        var network = new SmallBit();
        DeterministicWeights.Apply(network);
        return network;
    }

    [Fact]
    public void Group_norm_keeps_no_statistics_so_training_and_eval_compute_the_same()
    {
        using var network = Deterministic();
        Assert.DoesNotContain(network.state_dict().Keys, k => k.Contains("running_", StringComparison.Ordinal) || k.EndsWith("num_batches_tracked", StringComparison.Ordinal));
        Assert.Equal(2 * 16, network.stages_0_blocks_0_norm1.weight!.numel() + network.stages_0_blocks_0_norm1.bias!.numel());
        Assert.Equal(8, network.stages_0_blocks_0_norm1.num_groups);
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        network.train();
        using var trained = network.call(input);
        network.eval();
        using var evaluated = network.call(input);
        Tolerance.AssertClose(evaluated, trained, "train mode against eval mode", relative: 1e-6);
    }

    [Fact]
    public void The_standardisation_is_what_timms_StdConv2d_computes()
    {
        // Per output channel: (w − mean) / sqrt(biased variance + ε), computed here in float64 from the definition.
        torch.manual_seed(5);
        using var weight = torch.randn(6, 3, 3, 3, dtype: torch.float64) * 0.3 + 0.1;
        using var standardized = Steps.StandardizeWeight(weight, 1e-8);
        using var rows = weight.reshape(6, -1);
        using var mean = rows.mean(new long[] { 1 }, keepdim: true);
        using var variance = (rows - mean).square().mean(new long[] { 1 }, keepdim: true);
        using var expected = ((rows - mean) / (variance + 1e-8).sqrt()).reshape(6, 3, 3, 3);
        Tolerance.AssertClose(expected, standardized, "standardised weight", relative: 1e-12);
        using var perChannel = standardized.reshape(6, -1);
        Assert.True(perChannel.mean(new long[] { 1 }).abs().max().item<double>() < 1e-12);
    }

    [Fact]
    public void The_fold_standardises_once_and_follows_a_weight_edited_after_it()
    {
        using var network = Deterministic();
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var before = network.call(input);
        network.FuseForInference();
        using var fused = network.call(input);
        Tolerance.AssertClose(before, fused, "folded", relative: 1e-5);

        // Edited in place after the fold (a shift, which the standardisation does not cancel as it would a scale).
        torch.manual_seed(9);
        using (var noise = torch.randn_like(network.stages_0_blocks_0_conv2.weight!) * 0.5) network.stages_0_blocks_0_conv2.weight!.add_(noise);
        using var edited = network.call(input);
        Assert.True((edited - before).abs().max().item<float>() > 1e-3, "the edit changes the output");
        using var reference = new SmallBit();
        reference.load_state_dict(network.state_dict());
        reference.eval();
        using var unfused = reference.call(input);
        Tolerance.AssertClose(unfused, edited, "folded again after the edit", relative: 1e-5);
    }

    [Fact]
    public void Standardised_convolutions_fold_with_their_batch_norms()
    {
        using var network = new StandardizedBatchNorm();
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var plain = network.call(input);
        var plainExport = network.ExportOnnx(Path.Combine(_folder, "plain.onnx"));
        network.FuseForInference();
        using var fused = network.call(input);
        Tolerance.AssertClose(plain, fused, "standardised and folded", relative: 1e-5);
        var foldedExport = network.ExportOnnx(Path.Combine(_folder, "folded.onnx"));
        Assert.Equal(plainExport.Nodes - 2, foldedExport.Nodes); // conv1 → norm2 in each of the two basic blocks
        using var onnx = torch.tensor(OnnxExportTests.OnnxRuntime(foldedExport.Path, input)).reshape(2, -1);
        Tolerance.AssertClose(plain, onnx, "folded on ONNX Runtime");
    }

    [Theory]
    [InlineData(9)]
    [InlineData(13)]
    [InlineData(17)]
    [InlineData(18)]
    [InlineData(21)]
    public void Onnx_runtime_computes_the_network_at_every_opset(int opset)
    {
        // ReduceMean takes its axes as an attribute before opset 18 and as an input from 18; the fixed stem pool has no
        // Pad for ONNX Runtime to fold into a MaxPool (which would pad with −∞; the deterministic input makes border
        // windows of negative values, where that shows).
        using var network = Deterministic();
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var expected = network.call(input);
        var export = network.ExportOnnx(Path.Combine(_folder, $"bit-{opset}.onnx"), opset);
        Assert.Equal(opset, export.Opset);
        using var onnx = torch.tensor(OnnxExportTests.OnnxRuntime(export.Path, input)).reshape(2, -1);
        Tolerance.AssertClose(expected, onnx, $"opset {opset} on ONNX Runtime");
    }

    [Fact]
    public void The_fixed_stem_pools_zeros_in_where_a_border_is_negative()
    {
        // On a map of negative values, zero padding gives the border windows 0, a padded max-pool (−∞) their own maximum.
        using var negative = -torch.rand(1, 2, 6, 6) - 0.5;
        using var pooled = Steps.ZeroPaddedMaxPool(negative);
        Assert.Equal(new long[] { 1, 2, 3, 3 }, pooled.shape);
        Assert.Equal(0f, pooled[0, 0, 0, 0].item<float>()); // a corner window: padding in it
        Assert.True(pooled[0, 0, 1, 1].item<float>() < 0); // an interior window: none

        // In the network: the stem's output is that pool of the standardised convolution, and for the deterministic
        // input it differs from the padded max-pool's (so the tests above compare a case where the padding counts). The
        // expected output is computed here from timm's definitions with libtorch's plain ops, in float64, not with the
        // runtime's Steps: each output channel's 7×7×3 weights less their mean over the square root of their biased
        // variance + 1e-8 (StdConv2d), a 7×7 convolution at stride 2 with padding 3, one zero on each side, a 3×3 max-pool
        // at stride 2.
        using var network = Deterministic();
        network.eval();
        using var noGrad = torch.no_grad();
        using var input = DeterministicWeights.Input();
        using var features = network.ForwardFeatures(input);
        Assert.Equal(new long[] { 16, 3, 7, 7 }, network.stem_conv.weight!.shape);
        using var weight = network.stem_conv.weight!.to(torch.float64);
        using var rows = weight.reshape(16, -1);
        using var mean = rows.mean(new long[] { 1 }, keepdim: true);
        using var centred = rows - mean;
        using var variance = centred.square().mean(new long[] { 1 }, keepdim: true);
        using var standardized = (centred / (variance + 1e-8).sqrt()).reshape(16, 3, 7, 7);
        using var input64 = input.to(torch.float64);
        using var convolved = torch.nn.functional.conv2d(input64, standardized, null, strides: new long[] { 2, 2 }, padding: new long[] { 3, 3 });
        using var zeroPadded = torch.nn.functional.pad(convolved, new long[] { 1, 1, 1, 1 }, PaddingModes.Constant, 0.0);
        using var expected = torch.nn.functional.max_pool2d(zeroPadded, 3, 2);
        Tolerance.AssertClose(expected, features.Stem.to(torch.float64), "fixed stem pool", relative: 1e-5);
        using var padded = torch.nn.functional.max_pool2d(convolved, 3, 2, 1).to(torch.float32);
        Assert.True((padded - features.Stem).abs().max().item<float>() > 1e-3, "the zero padding matters for this input");
    }

    [Fact]
    public void Freezing_keeps_the_last_stage_the_final_norm_and_the_head_training()
    {
        using var network = new SmallBit();
        network.FreezeBackbone(1);
        var trainable = network.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainable, n => Assert.True(n.StartsWith("stages.1.", StringComparison.Ordinal) || n.StartsWith("norm.", StringComparison.Ordinal)
                                                || n.StartsWith("head.", StringComparison.Ordinal), n));
        Assert.Contains("stages.1.blocks.0.norm1.weight", trainable);
        Assert.Contains("norm.bias", trainable);
        Assert.False(network.stages_0_blocks_0_norm3.weight!.requires_grad);
        network.Unfreeze();
        Assert.All(network.parameters(), p => Assert.True(p.requires_grad));
    }

    [Theory]
    [InlineData(ResNetV2_50x3_Bit.ParameterCount, 217_319_080)]
    [InlineData(ResNetV2_152x2_Bit.ParameterCount, 236_335_208)]
    [InlineData(ResNetV2_101x3_Bit.ParameterCount, 387_934_888)]
    public void The_wider_bit_models_have_timms_parameter_counts(long generated, long timm) =>
        // timm's counts: sum(p.numel() for p in timm.create_model(name).parameters()) for resnetv2_50x3_bit,
        // resnetv2_152x2_bit and resnetv2_101x3_bit (BaseWidth = 64 × the width factor).
        Assert.Equal(timm, generated);

    [Fact]
    public void The_summary_and_the_description_name_the_parts()
    {
        Assert.Contains("stem.conv (StdConv2d)", SmallBit.Summary);
        Assert.Contains("stem.pad (ConstantPad2d)", SmallBit.Summary);
        Assert.Contains("stem.pool (MaxPool2d)", SmallBit.Summary);
        Assert.Contains("norm (GroupNormAct)", SmallBit.Summary);
        // 64 → 32 (the 7×7 stride-2 convolution) → 34 padded → 16 (3×3, stride 2, no padding).
        Assert.Contains("[1, 16, 16, 16]", SmallBit.Summary.Split('\n').Single(l => l.Contains("stem.pool", StringComparison.Ordinal)));
        Assert.Equal(SmallBit.ParameterCount, new SmallBit().parameters().Sum(p => p.numel()));
    }
}
