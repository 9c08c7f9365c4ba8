using System.Linq;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;
using ResNetGen.Generator.Planning;
using ResNetGen.Generator.Tests.Torchvision;
using Xunit;

namespace ResNetGen.Generator.Tests.Diagnostics;

/// <summary>Static shapes and compile-time figures, from the plan alone (no TorchSharp involved).</summary>
public class ShapeTests
{
    private static NetworkSpec Spec(BlockKind block, int[] layers) =>
        new(new TargetClass("Models", "Net", EquatableArray<ContainingType>.Empty), block, layers.ToEquatableArray());

    private static ModulePlan Module(NetworkPlan plan, string path) => plan.Modules.Single(m => m.Path == path);

    [Fact]
    public void Convolution_and_pooling_arithmetic_is_libtorchs()
    {
        Assert.Equal(112, Planner.ConvOut(224, kernel: 7, stride: 2, padding: 3));
        Assert.Equal(56, Planner.ConvOut(112, kernel: 3, stride: 2, padding: 1)); // max-pool
        Assert.Equal(4, Planner.ConvOut(7, kernel: 3, stride: 2, padding: 1));    // 3×3/2 rounds an odd size up
        Assert.Equal(3, Planner.ConvOut(7, kernel: 2, stride: 2, padding: 0));    // 2×2 average pooling floors it
        Assert.Equal(4, Planner.Subsample(7, 2));
        Assert.Equal(28, Planner.ConvOut(28, kernel: 3, stride: 1, padding: 4, dilation: 4));
        Assert.Equal(0, Planner.ConvOut(1, kernel: 2, stride: 2, padding: 0));
        // Height and width are separate arguments everywhere: a 224×160 input is two independent chains.
        Assert.Equal((112, 80), (Planner.ConvOut(224, 7, 2, 3), Planner.ConvOut(160, 7, 2, 3)));
    }

    [Fact]
    public void The_imagenet_stem_takes_224_to_112_to_56()
    {
        var (plan, issues) = Planner.Build(Spec(BlockKind.Bottleneck, new[] { 3, 4, 6, 3 }));
        Assert.Empty(issues);
        Assert.Equal(new Shape(64, 112, 112), Module(plan, "conv1").Output);
        Assert.Equal(new Shape(64, 56, 56), plan.Features[0].Shape);
        Assert.Equal(new[] { 56, 56, 28, 14, 7 }, plan.Features.Select(f => f.Shape.Height));
        Assert.Equal(Shape.Vector(1000), plan.OutputShape);
    }

    [Fact]
    public void Dilated_stages_keep_28x28_for_output_stride_8_as_torchvision()
    {
        var spec = Spec(BlockKind.Bottleneck, new[] { 3, 4, 6, 3 }) with { DilateStages = new[] { false, true, true }.ToEquatableArray() };
        var (plan, issues) = Planner.Build(spec);
        Assert.Empty(issues);
        Assert.Equal(new Shape(2048, 28, 28), plan.Features[4].Shape);
        Assert.Equal(new Shape(1024, 28, 28), plan.Features[3].Shape);
        // torchvision's replace_stride_with_dilation: a stage's first block keeps the previous dilation.
        Assert.Equal((1, 1), (Module(plan, "layer3.0.conv2").Dilation, Module(plan, "layer3.0.conv2").Stride));
        Assert.Equal(2, Module(plan, "layer3.1.conv2").Dilation);
        Assert.Equal((2, 2), (Module(plan, "layer4.0.conv2").Dilation, Module(plan, "layer4.0.conv2").Padding));
        Assert.Equal(4, Module(plan, "layer4.2.conv2").Dilation);
        Assert.Equal(1, Module(plan, "layer4.0.downsample.0").Stride);

        var (os16, _) = Planner.Build(spec with { DilateStages = new[] { false, false, true }.ToEquatableArray() });
        Assert.Equal(new Shape(2048, 14, 14), os16.Features[4].Shape);
    }

    [Fact]
    public void A_vanishing_feature_map_is_reported_by_the_checker_with_its_layer()
    {
        var spec = Spec(BlockKind.Basic, new[] { 1, 1 }) with { Stem = StemKind.Cifar, Shortcut = ShortcutKind.AvgPoolZeroPad, InputSize = 1 };
        var (_, issues) = Planner.Build(spec);
        var vanish = Assert.Single(issues, i => i.Problem == ShapeProblem.VanishingFeatureMap);
        Assert.Equal(new[] { "1", "layer2.0.shortcut", "[N, 128, 0, 0]" }, vanish.Args);
        Assert.Equal(ArgumentSlot.InputSize, vanish.Slot);
    }

    [Fact]
    public void Parameter_counts_and_mult_adds_match_torchvision_and_torchinfo()
    {
        Assert.Equal(11_689_512, ResNet18.ParameterCount);
        Assert.Equal(1_814_073_344, ResNet18.MultAdds);
        Assert.Equal(25_557_032, ResNet50.ParameterCount);
        Assert.Equal(4_089_184_256, ResNet50.MultAdds);
        Assert.Equal(25_028_904, ResNeXt50_32x4d.ParameterCount);
        Assert.Equal(4_230_479_872, ResNeXt50_32x4d.MultAdds);
    }

    [Fact]
    public void The_summary_gives_torchinfos_totals_and_a_row_per_stage_and_block()
    {
        var summary = ResNet18.Summary;
        Assert.Contains("Total params: 11,689,512", summary);
        Assert.Contains("Total mult-adds (G): 1.81", summary);
        Assert.Contains("Params size (MB): 46.76", summary);
        Assert.Contains("├─conv1 (Conv2d)                        [1, 64, 112, 112]       9,408", summary);
        Assert.Contains("├─layer1 (Stage)                        [1, 64, 56, 56]         147,968", summary);
        Assert.Contains("│    └─0 (BasicBlock)                   [1, 128, 28, 28]        230,144", summary);
        Assert.Contains("├─fc (Linear)                           [1, 1000]               513,000", summary);
        Assert.Equal(4, summary.Split('\n').Count(l => l.Contains("(Stage)")));
        Assert.Equal(8, summary.Split('\n').Count(l => l.Contains("(BasicBlock)")));
        Assert.Contains("Total mult-adds (G): 4.09", ResNet50.Summary);
    }
}
