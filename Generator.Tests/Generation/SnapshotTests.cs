using System.Linq;
using Microsoft.CodeAnalysis;
using ResNetGen.Generator.Emitting;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;
using ResNetGen.Generator.Planning;
using ResNetGen.Generator.Tests.Infrastructure;
using Xunit;

namespace ResNetGen.Generator.Tests.Generation;

/// <summary>The generated source, snapshot by snapshot; each one must also compile against TorchSharp.</summary>
public class SnapshotTests
{
    [Theory]
    [InlineData("resnet18", "ResNet(Block.Basic, 2, 2, 2, 2)", "ResNet18")]
    [InlineData("resnet50", "ResNet(Block.Bottleneck, 3, 4, 6, 3)", "ResNet50")]
    [InlineData("resnext50_32x4d", "ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4)", "ResNeXt50_32x4d")]
    [InlineData("wide_resnet50_2", "ResNet(Block.Bottleneck, 3, 4, 6, 3, WidthPerGroup = 128)", "WideResNet50_2")]
    [InlineData("resnet50d", "ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32, Shortcut = Shortcut.AvgDown)", "ResNet50d")]
    [InlineData("seresnext50_32x4d", "ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4, Attention = Attention.SqueezeExcite)", "SeResNeXt50_32x4d")]
    [InlineData("seresnextaa101d_32x8d_droppath",
        "ResNet(Block.Bottleneck, 3, 4, 23, 3, Groups = 32, WidthPerGroup = 8, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, AntiAlias = AntiAlias.AvgPool, Attention = Attention.SqueezeExcite, DropPath = 0.1)",
        "SeResNeXtAa101d_32x8d")]
    [InlineData("resnetv2_50", "ResNet(Block.PreActBottleneck, 3, 4, 6, 3)", "ResNetV2_50")]
    [InlineData("resnetv2_50x1_bit",
        "ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)",
        "ResNetV2_50x1_Bit")]
    public void Generated_source_matches_snapshot(string snapshot, string attribute, string className)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Network(attribute, className));
        Assert.Empty(run.GeneratorDiagnostics);
        Assert.Empty(run.CompilationDiagnostics);
        var source = Assert.Single(run.Sources);
        Assert.Equal($"Models.{className}.g.cs", source.Key);
        Snapshot.Verify(snapshot, source.Value);
        Assert.DoesNotContain("{global::", source.Value); // no interpolation hole left in the XML docs
        Assert.Contains("to <see cref=\"global::ResNetGen.OnnxGraphBuilder.MaxOpset\"/>.</param>", source.Value);
    }

    [Fact]
    public void Emitter_output_for_a_hand_built_plan_matches_snapshot()
    {
        // Two one-block stages, CIFAR stem, zero-padding shortcut: every kind of forward step but max-pool.
        var spec = new NetworkSpec(
            new TargetClass("Tiny", "TinyNet", new EquatableArray<ContainingType>(new[] { new ContainingType("class", "Outer") })),
            BlockKind.Basic,
            new[] { 1, 1 }.ToEquatableArray(),
            NumClasses: 3, BaseWidth: 8, Stem: StemKind.Cifar, Shortcut: ShortcutKind.ZeroPad, InputSize: 8)
        { AttributeText = "hand-built plan" };
        var (plan, issues) = Planner.Build(spec);
        Assert.Empty(issues);
        Snapshot.Verify("hand_built_tiny", Emitter.Emit(plan));
    }

    [Theory]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3)", 1200)]
    [InlineData("ResNet(Block.Bottleneck, 3, 8, 36, 3, Groups = 32, WidthPerGroup = 8)", 2200)]
    [InlineData("ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10, Shortcut = Shortcut.AvgPoolZeroPad)", 600)]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32, Shortcut = Shortcut.AvgDown)", 1200)]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4, Attention = Attention.SqueezeExcite)", 1200)]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown, Attention = Attention.EfficientChannel, AntiAlias = AntiAlias.BlurPool, DropPath = 0.05)", 1200)]
    [InlineData("ResNet(Block.PreActBottleneck, 3, 4, 6, 3)", 1200)]
    [InlineData("ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Stem = Stem.Fixed, Norm = Norm.GroupNorm, WeightStandardization = true, WeightStandardizationEps = 1e-8)", 1200)]
    public void Generated_files_stay_short_and_narrow(string attribute, int maxLines)
    {
        // One op sequence (the forward), the graph as a table, chores as loops: ResNet-50 within 1,200 lines, and no
        // line of code over 160 characters (the summary table's rows are text inside a string, and narrower still).
        var source = GeneratorHarness.Run(GeneratorHarness.Network(attribute)).Sources.Single().Value;
        var lines = source.Split('\n');
        Assert.True(lines.Length <= maxLines, $"{lines.Length} lines");
        var longest = lines.OrderByDescending(l => l.Length).First();
        Assert.True(longest.Length <= Emitter.MaxLine, $"{longest.Length} characters: {longest}");
        Assert.DoesNotContain("// unknown", source);
    }

    [Fact]
    public void Generation_is_deterministic()
    {
        var source = GeneratorHarness.Network("ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4)");
        var first = GeneratorHarness.Run(source).Sources.Single().Value;
        var second = GeneratorHarness.Run(source).Sources.Single().Value;
        Assert.Equal(first, second);
    }

    [Fact]
    public void Nested_class_in_a_namespace_is_generated_inside_its_containers()
    {
        var run = GeneratorHarness.Run("""
            using ResNetGen;
            namespace Deep.Models
            {
                public partial class Zoo
                {
                    [ResNet(Block.Basic, 1, 1, NumClasses = 5)]
                    public partial class Small { }
                }
            }
            """);
        Assert.Empty(run.CompilationDiagnostics);
        Assert.Equal("Deep.Models.Zoo.Small.g.cs", run.Sources.Single().Key);
        Assert.NotNull(run.Output.GetTypeByMetadataName("Deep.Models.Zoo+Small"));
    }
}
