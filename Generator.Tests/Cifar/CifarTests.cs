using System;
using System.Linq;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;
using ResNetGen.Generator.Planning;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Generator.Tests.Torchvision;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Cifar;

/// <summary>Beyond torchvision: the CIFAR ResNets, the shortcut options, v1 strides, dilation, backbones.</summary>
public class CifarTests
{
    private static long Parameters(int[] layers, ShortcutKind shortcut, int baseWidth = 16) =>
        Planner.Build(new NetworkSpec(new TargetClass(null, "Net", EquatableArray<ContainingType>.Empty), BlockKind.Basic,
            layers.ToEquatableArray(), NumClasses: 10, BaseWidth: baseWidth, Stem: StemKind.Cifar, Shortcut: shortcut)).Plan.ParameterCount;

    [Theory]
    [InlineData(3, 269_722, 272_474, 283_962)]
    [InlineData(5, 464_154, 466_906, 489_594)]
    [InlineData(7, 658_586, 661_338, 695_226)]
    [InlineData(9, 853_018, 855_770, 900_858)]
    [InlineData(18, 1_727_962, 1_730_714, 1_826_202)]
    [InlineData(200, 19_421_274, 19_424_026, 20_538_714)]
    public void Parameter_counts_of_the_papers_cifar_resnets(int blocks, long a, long b, long c)
    {
        var layers = new[] { blocks, blocks, blocks };
        Assert.Equal(a, Parameters(layers, ShortcutKind.ZeroPad));
        Assert.Equal(b, Parameters(layers, ShortcutKind.Projection));
        Assert.Equal(c, Parameters(layers, ShortcutKind.AllProjection));
        Assert.Equal(a, Parameters(layers, ShortcutKind.AvgPoolZeroPad));
    }

    [Fact]
    public void Generated_constants_and_modules_agree_with_the_table()
    {
        Assert.Equal(269_722, ResNet20A.ParameterCount);
        Assert.Equal(272_474, ResNet20B.ParameterCount);
        Assert.Equal(283_962, ResNet20C.ParameterCount);
        Assert.Equal(19_421_274, ResNet1202.ParameterCount);
        Assert.Equal(11_173_962, CifarResNet18.ParameterCount);
        using var c = new ResNet20C();
        Assert.Equal(283_962, c.parameters().Sum(p => p.numel()));
        Assert.Contains("layer1.0.downsample.0.weight", c.state_dict().Keys); // option C projects in every block
        using var a = new ResNet20A();
        Assert.DoesNotContain(a.state_dict().Keys, k => k.Contains("downsample"));
    }

    [Theory]
    [InlineData("Projection")]
    [InlineData("ZeroPad")]
    [InlineData("AllProjection")]
    [InlineData("AvgPoolZeroPad")]
    public void ResNet20_snapshot_for_each_shortcut(string shortcut)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Network(
            $"ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.{shortcut})", "ResNet20"));
        Assert.Empty(run.CompilationDiagnostics);
        Snapshot.Verify("resnet20_" + shortcut.ToLowerInvariant(), run.Sources.Single().Value);
    }

    public static TheoryData<string, int, long[]> ShapeCases => new()
    {
        { "A", 32, new long[] { 64, 8, 8 } }, { "B", 32, new long[] { 64, 8, 8 } }, { "C", 32, new long[] { 64, 8, 8 } }, { "AvgPool", 32, new long[] { 64, 8, 8 } },
        { "A", 33, new long[] { 64, 9, 9 } }, { "B", 33, new long[] { 64, 9, 9 } }, { "C", 33, new long[] { 64, 9, 9 } },
        { "A", 7, new long[] { 64, 2, 2 } }, { "B", 28, new long[] { 64, 7, 7 } },
    };

    private static torch.nn.Module<torch.Tensor, torch.Tensor> Create(string option) => option switch
    {
        "A" => new ResNet20A(),
        "B" => new ResNet20B(),
        "C" => new ResNet20C(),
        _ => new ResNet20AvgPool(),
    };

    [Theory]
    [MemberData(nameof(ShapeCases))]
    public void Forward_shapes_for_every_shortcut_and_odd_sizes(string option, int size, long[] layer3)
    {
        using var network = Create(option);
        network.eval();
        using var input = torch.randn(2, 3, size, size);
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.Equal(new long[] { 2, 10 }, output.shape);
        var features = network switch
        {
            ResNet20A n => n.ForwardFeatures(input).Layer3,
            ResNet20B n => n.ForwardFeatures(input).Layer3,
            ResNet20C n => n.ForwardFeatures(input).Layer3,
            ResNet20AvgPool n => n.ForwardFeatures(input).Layer3,
            _ => throw new InvalidOperationException(),
        };
        Assert.Equal(new long[] { 2 }.Concat(layer3), features.shape);
    }

    [Fact]
    public void The_average_pooling_shortcut_refuses_an_odd_run_time_size_clearly()
    {
        using var network = new ResNet20AvgPool();
        network.eval();
        using var input = torch.randn(1, 3, 33, 33);
        using var noGrad = torch.no_grad();
        var error = Assert.Throws<ArgumentException>(() => network.call(input));
        Assert.Contains("divisible by 2, but got 33×33", error.Message);
        Assert.Contains("Shortcut.ZeroPad", error.Message);
    }

    [Fact]
    public void The_zero_pad_shortcut_subsamples_rounding_up_and_appends_zero_channels()
    {
        using var x = torch.arange(1, 10, torch.float32).reshape(1, 1, 3, 3); // 1..9
        using var y = Shortcuts.ZeroPad(x, 2, 2);
        Assert.Equal(new long[] { 1, 3, 2, 2 }, y.shape);
        Assert.Equal(new float[] { 1, 3, 7, 9, 0, 0, 0, 0, 0, 0, 0, 0 }, y.data<float>().ToArray());
        using var pooled = Shortcuts.AvgPoolZeroPad(torch.arange(1, 17, torch.float32).reshape(1, 1, 4, 4), 2, 1);
        Assert.Equal(new float[] { 3.5f, 5.5f, 11.5f, 13.5f, 0, 0, 0, 0 }, pooled.data<float>().ToArray());
    }

    [Fact]
    public void Option_a_in_a_generated_network_matches_a_hand_computed_shortcut()
    {
        using var network = new ZeroPadProbe();
        network.eval();
        torch.manual_seed(3);
        using var input = torch.randn(2, 3, 8, 8);
        using var noGrad = torch.no_grad();
        using var f = network.ForwardFeatures(input);
        Assert.True(f.Layer1.eq(f.Stem).all().item<bool>()); // identity blocks with a zero residual branch
        var l1 = f.Layer1.data<float>().ToArray(); // [2, 4, 8, 8]
        var l2 = f.Layer2.data<float>().ToArray(); // [2, 8, 4, 4]
        Assert.Equal(new long[] { 2, 8, 4, 4 }, f.Layer2.shape);
        for (var n = 0; n < 2; n++)
        for (var c = 0; c < 8; c++)
        for (var i = 0; i < 4; i++)
        for (var j = 0; j < 4; j++)
        {
            var expected = c < 4 ? l1[((n * 4 + c) * 8 + 2 * i) * 8 + 2 * j] : 0f;
            Assert.Equal(expected, l2[((n * 8 + c) * 4 + i) * 4 + j]);
        }
    }

    [Fact]
    public void The_average_pooling_option_in_a_generated_network_matches_a_hand_computed_shortcut()
    {
        using var network = new AvgPoolProbe();
        network.eval();
        torch.manual_seed(4);
        using var input = torch.randn(1, 3, 8, 8);
        using var noGrad = torch.no_grad();
        using var f = network.ForwardFeatures(input);
        var l1 = f.Layer1.data<float>().ToArray();
        var l2 = f.Layer2.data<float>().ToArray();
        for (var c = 0; c < 8; c++)
        for (var i = 0; i < 4; i++)
        for (var j = 0; j < 4; j++)
        {
            float At(int y, int x) => l1[(c * 8 + y) * 8 + x];
            var expected = c < 4 ? (At(2 * i, 2 * j) + At(2 * i, 2 * j + 1) + At(2 * i + 1, 2 * j) + At(2 * i + 1, 2 * j + 1)) / 4 : 0f;
            Assert.True(Math.Abs(expected - l2[(c * 4 + i) * 4 + j]) <= 1e-6f, $"channel {c} ({i}, {j})");
        }
    }

    [Fact]
    public void ResNet1202_generates_compiles_and_runs()
    {
        using var network = new ResNet1202();
        Assert.Equal(19_421_274, network.parameters().Sum(p => p.numel()));
        // Train mode: batch statistics keep 600 freshly initialised blocks finite (eval mode's running
        // statistics of an untrained network do not).
        network.train();
        using var input = torch.randn(2, 3, 32, 32);
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Assert.Equal(new long[] { 2, 10 }, output.shape);
        Assert.True(output.isfinite().all().item<bool>());
    }

    [Fact]
    public void V1_puts_the_stride_on_the_first_1x1_convolution()
    {
        using var v1 = new ResNet50v1();
        Assert.Equal(new long[] { 2, 2 }, v1.layer2_0_conv1.stride);
        Assert.Equal(new long[] { 1, 1 }, v1.layer2_0_conv2.stride);
        using var v15 = new ResNet50();
        Assert.Equal(new long[] { 1, 1 }, v15.layer2_0_conv1.stride);
        Assert.Equal(new long[] { 2, 2 }, v15.layer2_0_conv2.stride);
        Assert.Equal(ResNet50.ParameterCount, ResNet50v1.ParameterCount);
        Assert.True(ResNet50v1.MultAdds < ResNet50.MultAdds); // the 3×3 convolutions of each first block run at the lower resolution
        v1.eval();
        using var input = torch.randn(1, 3, 224, 224);
        using var noGrad = torch.no_grad();
        using var f = v1.ForwardFeatures(input);
        Assert.Equal(new long[] { 1, 2048, 7, 7 }, f.Layer4.shape);
    }

    [Fact]
    public void Dilated_backbone_matches_torchvision_at_output_stride_8()
    {
        using var network = new ResNet50OS8();
        Assert.Equal(DeterministicWeights.ReadKeys("resnet50_os8").OrderBy(k => k, StringComparer.Ordinal),
            network.state_dict().Select(kv => $"{kv.Key} {kv.Value.dtype.ToString().ToLowerInvariant()} [{string.Join(",", kv.Value.shape)}]").OrderBy(k => k, StringComparer.Ordinal));
        DeterministicWeights.Apply(network);
        network.eval();
        using var input = DeterministicWeights.Input();
        using var noGrad = torch.no_grad();
        using var output = network.call(input);
        Tolerance.AssertClose(DeterministicWeights.ReadFloats("resnet50_os8.eval.bin"), output, "resnet50 with replace_stride_with_dilation");
        using var big = torch.randn(1, 3, 224, 224);
        using var f = network.ForwardFeatures(big);
        Assert.Equal(new long[] { 1, 2048, 28, 28 }, f.Layer4.shape);
    }
}
