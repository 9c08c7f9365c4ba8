using System.Linq;
using Microsoft.CodeAnalysis;
using ResNetGen.Generator.Tests.Infrastructure;
using Xunit;

namespace ResNetGen.Generator.Tests.Diagnostics;

/// <summary>
/// One test per diagnostic: a real snippet, and an assertion of every diagnostic the compilation then has — ID,
/// severity, the exact text its span covers, and the key words of its message.
/// </summary>
public class DiagnosticTests
{
    private sealed record Expected(string Id, DiagnosticSeverity Severity, string Span, params string[] Words);

    private static void Check(string source, params Expected[] expected)
    {
        var diagnostics = GeneratorHarness.AllDiagnostics(source);
        var report = string.Join("\n", diagnostics.Select(d => $"{d.Id} {d.Severity} at '{Text(source, d)}': {d.GetMessage()}"));
        Assert.True(expected.Length == diagnostics.Length, $"expected {expected.Length} diagnostics, got {diagnostics.Length}:\n{report}");
        for (var i = 0; i < expected.Length; i++)
        {
            var (d, e) = (diagnostics[i], expected[i]);
            Assert.True(e.Id == d.Id, $"diagnostic {i}: expected {e.Id}, got:\n{report}");
            Assert.Equal(e.Severity, d.Severity);
            Assert.Equal(e.Span, Text(source, d));
            foreach (var word in e.Words) Assert.Contains(word, d.GetMessage());
        }
    }

    // The generator reports on file-path locations (its models hold no syntax trees); the analyzer on source ones.
    private static string Text(string source, Diagnostic d) =>
        d.Location.GetLineSpan().Path == "File0.cs" ? source.Substring(d.Location.SourceSpan.Start, d.Location.SourceSpan.Length) : "<" + d.Location + ">";

    private static string Net(string attribute) => GeneratorHarness.Network(attribute);

    private const DiagnosticSeverity Error = DiagnosticSeverity.Error;

    [Fact]
    public void RNG0001_class_not_partial() => Check(
        "using ResNetGen;\n[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic class Net { }",
        new Expected("RNG0001", Error, "Net", "not partial", "partial class Net"));

    [Fact]
    public void RNG0001_generic_class() => Check(
        "using ResNetGen;\n[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net<T> { }",
        new Expected("RNG0001", Error, "Net", "generic", "type parameters"));

    [Fact]
    public void RNG0001_nested_in_a_non_partial_class() => Check(
        "using ResNetGen;\npublic class Outer\n{\n    [ResNet(Block.Basic, 2, 2, 2, 2)]\n    public partial class Net { }\n}",
        new Expected("RNG0001", Error, "Net", "nested in 'Outer'", "Declare 'Outer' partial"));

    [Fact]
    public void RNG0002_no_stages() => Check(Net("ResNet(Block.Basic)"),
        new Expected("RNG0002", Error, "ResNet(Block.Basic)", "no stages", "one block count per stage"));

    [Fact]
    public void RNG0002_a_stage_without_blocks() => Check(Net("ResNet(Block.Basic, 2, 0, 2, 2)"),
        new Expected("RNG0002", Error, "0", "layer2 has 0 blocks", "each at least 1"));

    [Fact]
    public void RNG0003_basic_block_with_groups() => Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, Groups = 32)"),
        new Expected("RNG0003", Error, "Groups = 32", "Groups = 32", "Block.Bottleneck"));

    [Fact]
    public void RNG0003_basic_block_with_width() => Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, WidthPerGroup = 128)"),
        new Expected("RNG0003", Error, "WidthPerGroup = 128", "WidthPerGroup = 128", "Remove WidthPerGroup"));

    [Fact]
    public void RNG0004_dilation_with_basic_blocks() => Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, DilateStages = new[] { false, true, true })"),
        new Expected("RNG0004", Error, "DilateStages = new[] { false, true, true }", "layer3, layer4", "Block.Bottleneck"));

    [Fact]
    public void RNG0005_dilate_stages_of_the_wrong_length() => Check(Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, DilateStages = new[] { true })"),
        new Expected("RNG0005", Error, "DilateStages = new[] { true }", "has 1 entries", "4 stages needs 3"));

    [Theory] // an empty array is a wrong length too; only an absent or null DilateStages means "no dilation"
    [InlineData("new bool[0]")]
    [InlineData("new bool[] { }")]
    public void RNG0005_an_empty_dilate_stages(string empty) => Check(Net($"ResNet(Block.Bottleneck, 3, 4, 6, 3, DilateStages = {empty})"),
        new Expected("RNG0005", Error, $"DilateStages = {empty}", "has 0 entries", "4 stages needs 3"));

    [Fact]
    public void RNG0006_non_positive_in_channels() => Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, InChannels = 0)"),
        new Expected("RNG0006", Error, "InChannels = 0", "InChannels is 0", "3 for RGB"));

    [Fact]
    public void RNG0006_negative_num_classes_and_input_size() => Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, NumClasses = -1, InputSize = -5)"),
        new Expected("RNG0006", Error, "NumClasses = -1", "NumClasses is -1", "0 for a backbone"),
        new Expected("RNG0006", Error, "InputSize = -5", "InputSize is -5"));

    [Fact]
    public void RNG0013_stages_past_two_to_the_20_channels_are_not_called_a_non_positive_size() =>
        Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, BaseWidth = 1 << 19)"),
            new Expected("RNG0013", Error, "2", "4 stages starting at BaseWidth 524288 reach 4194304 channels", "fewer stages or a smaller BaseWidth"));

    [Fact]
    public void RNG0006_bottleneck_width_rounds_to_zero() => Check(Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, WidthPerGroup = 1, BaseWidth = 16)"),
        new Expected("RNG0006", Error, "WidthPerGroup = 1", "(int)(16 × 1 / 64) × 1 = 0", "Raise WidthPerGroup"));

    [Fact]
    public void RNG0007_RNG0008_RNG0009_a_feature_map_that_vanishes_under_average_pooling() => Check(
        Net("ResNet(Block.Basic, 1, 1, Stem = Stem.Cifar, Shortcut = Shortcut.AvgPoolZeroPad, InputSize = 1)"),
        new Expected("RNG0008", Error, "Shortcut = Shortcut.AvgPoolZeroPad", "layer2.0", "[N, 128, 1, 1]", "[N, 128, 0, 0]", "floors an odd size"),
        new Expected("RNG0007", Error, "InputSize = 1", "layer2.0.shortcut", "[N, 128, 0, 0]", "larger InputSize"),
        new Expected("RNG0009", DiagnosticSeverity.Warning, "InputSize = 1", "layer2 receives a 1×1", "Stem.Cifar"));

    [Fact]
    public void RNG0008_average_pooling_shortcut_on_an_odd_feature_map() => Check(
        Net("ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, Shortcut = Shortcut.AvgPoolZeroPad, InputSize = 30)"),
        new Expected("RNG0008", Error, "Shortcut = Shortcut.AvgPoolZeroPad", "block layer3.0", "[N, 64, 8, 8]", "[N, 64, 7, 7]", "Shortcut.ZeroPad"));

    [Fact]
    public void RNG0009_imagenet_stem_on_a_tiny_input() => Check(Net("ResNet(Block.Basic, 2, 2, 2, 2, InputSize = 16)"),
        new Expected("RNG0009", DiagnosticSeverity.Warning, "InputSize = 16", "16×16", "layer4 receives a 1×1", "Stem.Cifar or a larger InputSize"));

    [Fact]
    public void RNG0010_forward_on_a_constant_tensor_with_the_wrong_channels() => Check("""
        using ResNetGen;
        using TorchSharp;
        [ResNet(Block.Basic, 2, 2, 2, 2)]
        public partial class Net { }
        public static class Use
        {
            public static void Run(torch.Tensor fromFile)
            {
                using var net = new Net();
                net.forward(torch.zeros(1, 1, 224, 224)).Dispose();
                net.forward(torch.zeros(1, 3, 224, 224)).Dispose();
                net.forward(fromFile).Dispose();
            }
        }
        """,
        new Expected("RNG0010", Error, "torch.zeros(1, 1, 224, 224)", "Net.forward expects a tensor of shape [N, 3, H, W]", "[1, 1, 224, 224]", "1 channel", "InChannels = 1"));

    [Fact]
    public void RNG0010_call_on_a_local_with_the_wrong_rank() => Check("""
        using ResNetGen;
        using TorchSharp;
        [ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, InChannels = 1, NumClasses = 10)]
        public partial class Cifar { }
        public static class Use
        {
            public static void Run()
            {
                using var net = new Cifar();
                var images = torch.randn(new long[] { 1, 28, 28 });
                var batch = torch.randn(new long[] { 8, 1, 28, 28 });
                var reassigned = torch.randn(new long[] { 8, 3, 28, 28 });
                reassigned = batch;
                net.call(images).Dispose();
                net.call(batch).Dispose();
                net.call(reassigned).Dispose();
            }
        }
        """,
        new Expected("RNG0010", Error, "images", "[N, 1, H, W]", "[1, 28, 28]", "rank 3", "batch dimension"));

    [Fact]
    public void RNG0011_the_class_declares_forward() => Check("""
        using ResNetGen;
        using TorchSharp;
        [ResNet(Block.Basic, 2, 2, 2, 2)]
        public partial class Net
        {
            public torch.Tensor forward(torch.Tensor x) => x;
        }
        """,
        new Expected("RNG0011", Error, "forward", "'Net' already declares a method 'forward'", "Remove it"));

    [Fact]
    public void RNG0011_the_class_declares_a_base_class_and_a_constructor() => Check("""
        using ResNetGen;
        public class Base { }
        [ResNet(Block.Basic, 2, 2, 2, 2)]
        public partial class Net : Base
        {
            public Net() { }
        }
        """,
        new Expected("RNG0011", Error, "Base", "the base class 'Base'"),
        new Expected("RNG0011", Error, "Net", "a parameterless constructor"));

    [Fact]
    public void RNG0011_the_class_declares_members_the_generated_code_declares() => Check("""
        using ResNetGen;
        [ResNet(Block.Basic, 2, 2, 2, 2)]
        public partial class Net
        {
            public const string Summary = "mine";
            public ActivationLayout ActivationLayout { get; set; }
            public sealed class Features { }
            public void FuseForInference(bool strict) { }
            protected virtual void Dispose(bool disposing) { }
            public int Layers { get; } // not generated: allowed
        }
        """,
        new Expected("RNG0011", Error, "Summary", "'Net' already declares a member 'Summary'", "Remove it (or rename it)"),
        new Expected("RNG0011", Error, "ActivationLayout", "a member 'ActivationLayout'"),
        new Expected("RNG0011", Error, "Features", "a member 'Features'"),
        new Expected("RNG0011", Error, "FuseForInference", "a method 'FuseForInference'"),
        new Expected("RNG0011", Error, "Dispose", "a method 'Dispose(bool)'"));

    [Fact]
    public void RNG0011_knows_every_fixed_member_the_emitter_writes()
    {
        // The parser's list and the emitter's output must not drift apart: every member of a generated class but its
        // constructor and its layer fields (named after the network's layers) is on the list, and the message names them all.
        var run = GeneratorHarness.Run(GeneratorHarness.Network("ResNet(Block.Bottleneck, 3, 4, 6, 3)", "ResNet50"));
        // The network's file and its PyTorch twin's (PyTorchSource): both declare members of the class.
        var members = run.Sources.Values.Concat(run.Twins.Values).SelectMany(text => Microsoft.CodeAnalysis.CSharp.CSharpSyntaxTree.ParseText(text).GetRoot()
            .DescendantNodes().OfType<Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax>().First(c => c.Identifier.Text == "ResNet50").Members);
        var names = members.SelectMany(m => m switch
        {
            Microsoft.CodeAnalysis.CSharp.Syntax.ConstructorDeclarationSyntax => System.Array.Empty<string>(),
            Microsoft.CodeAnalysis.CSharp.Syntax.FieldDeclarationSyntax f when f.Declaration.Type.ToString().StartsWith("TorchModules.", System.StringComparison.Ordinal) && !f.Declaration.Type.ToString().EndsWith("[]", System.StringComparison.Ordinal)
                => System.Array.Empty<string>(),
            Microsoft.CodeAnalysis.CSharp.Syntax.FieldDeclarationSyntax f => f.Declaration.Variables.Select(v => v.Identifier.Text).ToArray(),
            Microsoft.CodeAnalysis.CSharp.Syntax.MethodDeclarationSyntax method => new[] { method.Identifier.Text },
            Microsoft.CodeAnalysis.CSharp.Syntax.PropertyDeclarationSyntax property => new[] { property.Identifier.Text },
            Microsoft.CodeAnalysis.CSharp.Syntax.RecordDeclarationSyntax record => new[] { record.Identifier.Text },
            _ => new[] { "unexpected member: " + m.Kind() },
        }).Distinct().OrderBy(n => n, System.StringComparer.Ordinal);
        // Written out here, not read from GeneratedMembers: a name dropped from that list (and so from the message) fails.
        string[] expected =
        {
            "forward", "ForwardFeatures", "Features", "FuseForInference", "IsFused", "ExportOnnx", "ToOnnxRuntime", "ActivationLayout", "Precision",
            "ParameterCount", "MultAdds", "Summary", "PyTorchSource", "InputSize", "InputChannels", "FreezeBackbone", "Unfreeze", "train",
            "Run", "Paths", "Graph", "OnnxGraph", "_modules", "_groups", "_folds", "_fused", "_frozen",
        };
        Assert.Equal(expected.Append("Dispose").OrderBy(n => n, System.StringComparer.Ordinal), names);
        Assert.Equal(expected.OrderBy(n => n, System.StringComparer.Ordinal), Model.GeneratedMembers.All.OrderBy(n => n, System.StringComparer.Ordinal));
        var message = ResNetGen.Generator.Diagnostics.DiagnosticDescriptors.MemberAlreadyDeclared.MessageFormat.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var name in expected) Assert.Contains(name, message);
        // And the message a user sees, through the generator, names them too.
        var shown = Assert.Single(GeneratorHarness.AllDiagnostics("""
            using ResNetGen;
            namespace Models;
            [ResNet(Block.Basic, 2, 2)]
            public partial class Net { public void Unfreeze() { } }
            """), d => d.Id == "RNG0011").GetMessage(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var name in expected) Assert.Contains(name, shown);
    }

    [Fact]
    public void RNG0012_an_undefined_enum_value() => Check(Net("ResNet((Block)7, 2, 2)"),
        new Expected("RNG0012", Error, "(Block)7", "Block is 7", "Block.Basic, Block.Bottleneck"));

    // ---- timm's options ----

    [Fact]
    public void RNG0014_StemWidth_without_a_deep_stem() => Check(Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, StemWidth = 64)"),
        new Expected("RNG0014", Error, "StemWidth = 64", "StemWidth has no effect with Stem.ImageNet", "Stem = Stem.Deep or Stem.DeepTiered"));

    [Fact]
    public void RNG0014_a_conv_stem_pool_on_the_cifar_stem() => Check(Net("ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, StemPool = StemPool.Conv)"),
        new Expected("RNG0014", Error, "StemPool = StemPool.Conv", "StemPool.Conv has no effect with Stem.Cifar", "Remove StemPool"));

    [Fact]
    public void RNG0014_AttentionRatio_without_squeeze_excite() => Check(
        Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, Attention = Attention.EfficientChannel, AttentionRatio = 0.25)"),
        new Expected("RNG0014", Error, "AttentionRatio = 0.25", "AttentionRatio has no effect with Attention.EfficientChannel", "Attention = Attention.SqueezeExcite"));

    [Theory]
    [InlineData("0", "0")]
    [InlineData("1.5", "1.5")]
    [InlineData("-0.25", "-0.25")]
    [InlineData("double.NaN", "NaN")]
    public void RNG0015_AttentionRatio_outside_its_range(string written, string shown) => Check(
        Net($"ResNet(Block.Bottleneck, 3, 4, 6, 3, Attention = Attention.SqueezeExcite, AttentionRatio = {written})"),
        new Expected("RNG0015", Error, $"AttentionRatio = {written}", $"AttentionRatio is {shown}, outside (0, 1]", "0.25 (ResNet-RS)"));

    [Theory]
    [InlineData("1", "1")]
    [InlineData("-0.1", "-0.1")]
    [InlineData("double.PositiveInfinity", "Infinity")]
    public void RNG0015_DropPath_outside_its_range(string written, string shown) => Check(
        Net($"ResNet(Block.Bottleneck, 3, 4, 6, 3, DropPath = {written})"),
        new Expected("RNG0015", Error, $"DropPath = {written}", $"DropPath is {shown}, outside [0, 1)", "0.05"));

    [Fact]
    public void RNG0014_anti_aliasing_with_the_stride_on_the_1x1_convolution() => Check(
        Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, StrideAt = StrideAt.Conv1x1, AntiAlias = AntiAlias.BlurPool)"),
        new Expected("RNG0014", Error, "AntiAlias = AntiAlias.BlurPool", "AntiAlias.BlurPool has no effect with StrideAt.Conv1x1", "Remove StrideAt"));

    [Fact]
    public void RNG0014_anti_aliasing_where_nothing_is_strided() => Check(
        Net("ResNet(Block.Basic, 3, Stem = Stem.Cifar, AntiAlias = AntiAlias.AvgPool)"),
        new Expected("RNG0014", Error, "AntiAlias = AntiAlias.AvgPool", "nothing is strided"));

    [Theory]
    [InlineData("Norm = Norm.GroupNorm", "Norm.GroupNorm has no effect with Block.Bottleneck", "Block.PreActBottleneck")]
    [InlineData("WeightStandardization = true", "WeightStandardization has no effect with Block.Bottleneck", "Block.PreActBottleneck")]
    [InlineData("Stem = Stem.Fixed", "Stem.Fixed has no effect with Block.Bottleneck", "Use Stem.ImageNet")]
    public void RNG0014_BiTs_parts_without_the_pre_activation_blocks(string option, string message, string fix) => Check(
        Net($"ResNet(Block.Bottleneck, 3, 4, 6, 3, {option})"),
        new Expected("RNG0014", Error, option, message, fix));

    [Fact]
    public void RNG0014_NormGroups_with_batch_norm() => Check(
        Net("ResNet(Block.PreActBottleneck, 3, 4, 6, 3, NormGroups = 16)"),
        new Expected("RNG0014", Error, "NormGroups = 16", "NormGroups has no effect with Norm.BatchNorm", "Norm = Norm.GroupNorm"));

    [Fact]
    public void RNG0014_a_standardisation_eps_without_standardisation() => Check(
        Net("ResNet(Block.PreActBottleneck, 3, 4, 6, 3, WeightStandardizationEps = 1e-8)"),
        new Expected("RNG0014", Error, "WeightStandardizationEps = 1e-8", "WeightStandardizationEps has no effect without WeightStandardization",
            "WeightStandardization = true"));

    [Theory]
    [InlineData("0", "0")]
    [InlineData("-1e-6", "-1E-06")]
    [InlineData("0.5", "0.5")]
    public void RNG0015_a_standardisation_eps_outside_its_range(string written, string shown) => Check(
        Net($"ResNet(Block.PreActBottleneck, 3, 4, 6, 3, WeightStandardization = true, WeightStandardizationEps = {written})"),
        new Expected("RNG0015", Error, $"WeightStandardizationEps = {written}", $"WeightStandardizationEps is {shown}, outside (0, 0.1]", "1e-8 (BiT's models)"));

    [Fact]
    public void RNG0006_no_groups() => Check(
        Net("ResNet(Block.PreActBasic, 2, 2, Norm = Norm.GroupNorm, NormGroups = 0)"),
        new Expected("RNG0006", Error, "NormGroups = 0", "NormGroups is 0", "32 (BiT's)"));

    [Fact]
    public void RNG0017_groups_that_do_not_divide_a_layer_named() => Check(
        // BaseWidth 24: the stem and the first stage's norms have 24 channels, which 32 groups cannot split.
        Net("ResNet(Block.PreActBasic, 2, 2, BaseWidth = 24, Norm = Norm.GroupNorm)"),
        new Expected("RNG0017", Error, "ResNet(Block.PreActBasic, 2, 2, BaseWidth = 24, Norm = Norm.GroupNorm)",
            "stages.0.blocks.0.norm1 normalises 24 channels, which NormGroups = 32 does not divide", "the largest up to 32 that divides 24 is 24"));

    [Fact]
    public void RNG0017_points_at_NormGroups_when_written() => Check(
        Net("ResNet(Block.PreActBottleneck, 1, 1, Norm = Norm.GroupNorm, NormGroups = 48)"),
        new Expected("RNG0017", Error, "NormGroups = 48", "stages.0.blocks.0.norm1 normalises 64 channels, which NormGroups = 48 does not divide", "is 32"));

    [Fact]
    public void RNG0016_a_blur_pool_on_a_1x1_map() => Check(
        Net("ResNet(Block.Bottleneck, 1, 1, 1, 1, AntiAlias = AntiAlias.BlurPool, InputSize = 16)"),
        new Expected("RNG0009", DiagnosticSeverity.Warning, "InputSize = 16", "layer4 receives a 1×1 feature map"),
        new Expected("RNG0016", Error, "InputSize = 16", "layer4.0.aa receives [N, 512, 1, 1]", "at least 2", "AntiAlias.AvgPool"));

    [Fact]
    public void RNG0008_anti_aliasings_average_floors_an_odd_map() => Check(
        Net("ResNet(Block.Bottleneck, 1, 1, AntiAlias = AntiAlias.AvgPool, InputSize = 60)"),
        new Expected("RNG0008", Error, "AntiAlias = AntiAlias.AvgPool", "layer2.0", "[N, 512, 7, 7]", "[N, 512, 8, 8]", "floors an odd size", "AntiAlias.BlurPool"));

    [Fact]
    public void RNG0008_where_timms_resnetaa50d_fails_at_run_time()
    {
        // timm's resnetaa50d at 80×80: "The size of tensor a (2) must match the size of tensor b (3)" in layer4.0; here, at build time.
        Check(Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, AntiAlias = AntiAlias.AvgPool, InputSize = 80)"),
            new Expected("RNG0008", Error, "AntiAlias = AntiAlias.AvgPool", "At input size 80×80", "layer4.0", "[N, 2048, 2, 2]", "[N, 2048, 3, 3]"));
        Check(Net("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, AntiAlias = AntiAlias.AvgPool, InputSize = 96)"));
    }

    [Fact]
    public void RNG0014_what_the_pre_activation_blocks_do_not_take() => Check(
        Net("ResNet(Block.PreActBottleneck, 3, 4, 6, 3, Shortcut = Shortcut.ZeroPad, Groups = 32, Stem = Stem.Deep, Attention = Attention.SqueezeExcite, DropPath = 0.1)"),
        new Expected("RNG0014", Error, "Shortcut = Shortcut.ZeroPad", "Shortcut.ZeroPad has no effect with Block.PreActBottleneck", "project where the shape changes"),
        new Expected("RNG0014", Error, "Groups = 32", "Groups has no effect with Block.PreActBottleneck"),
        new Expected("RNG0014", Error, "Stem = Stem.Deep", "Stem.Deep has no effect", "Stem.ImageNet, Stem.Fixed or Stem.Cifar"),
        new Expected("RNG0014", Error, "Attention = Attention.SqueezeExcite", "Attention.SqueezeExcite has no effect"),
        new Expected("RNG0014", Error, "DropPath = 0.1", "DropPath has no effect", "by stage"));

    [Fact]
    public void RNG0012_an_undefined_anti_alias() => Check(Net("ResNet(Block.Basic, 2, 2, AntiAlias = (AntiAlias)3)"),
        new Expected("RNG0012", Error, "AntiAlias = (AntiAlias)3", "AntiAlias is 3", "AntiAlias.None, AntiAlias.AvgPool, AntiAlias.BlurPool"));

    [Theory]
    [InlineData("Stem = Stem.Deep, StemWidth = 0", "StemWidth = 0", "StemWidth is 0")]
    [InlineData("Stem = Stem.DeepTiered, StemWidth = 3", "StemWidth = 3", "3 × (3 / 4) = 0")]
    public void RNG0006_a_deep_stem_without_width(string options, string span, string words) => Check(
        Net($"ResNet(Block.Bottleneck, 3, 4, 6, 3, {options})"), new Expected("RNG0006", Error, span, words));

    [Fact]
    public void RNG0012_an_undefined_attention_or_stem_pool() => Check(Net("ResNet(Block.Basic, 2, 2, StemPool = (StemPool)2, Attention = (Attention)9)"),
        new Expected("RNG0012", Error, "StemPool = (StemPool)2", "StemPool is 2", "StemPool.MaxPool, StemPool.Conv"),
        new Expected("RNG0012", Error, "Attention = (Attention)9", "Attention is 9", "Attention.None, Attention.SqueezeExcite, Attention.EfficientChannel"));

    [Fact]
    public void RNG0008_avg_down_in_a_stage_after_a_dilated_one()
    {
        // torchvision allows a stage with stride after a dilated one; timm's avg-down pool then runs at stride 1 (the
        // dilation carries on) while the block's convolution halves the map: timm fails at run time, ResNetGen at build.
        Check(Net("ResNet(Block.Bottleneck, 1, 1, 1, 1, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DilateStages = new[] { true, false, false })"),
            new Expected("RNG0008", Error, "Shortcut = Shortcut.AvgDown", "layer3.0", "[N, 1024, 28, 28]", "[N, 1024, 56, 56]", "Dilate every stage after the first dilated one"),
            new Expected("RNG0008", Error, "Shortcut = Shortcut.AvgDown", "layer4.0", "[N, 2048, 14, 14]", "[N, 2048, 28, 28]"));
    }

    [Theory]
    [InlineData("ResNet(Block.Basic, 2, 2, 2, 2)")]
    [InlineData("ResNet(Block.Basic, 3, 4, 6, 3)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 23, 3)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 8, 36, 3)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32, WidthPerGroup = 4)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 23, 3, Groups = 32, WidthPerGroup = 8)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 23, 3, Groups = 64, WidthPerGroup = 4)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, WidthPerGroup = 128)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 23, 3, WidthPerGroup = 128)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, DilateStages = new[] { false, true, true })")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, DilateStages = null)")]
    [InlineData("ResNet(Block.Bottleneck, 3, DilateStages = new bool[0])")]
    [InlineData("ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, BaseWidth = 16, NumClasses = 10)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32, Shortcut = Shortcut.AvgDown)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemPool = StemPool.Conv, Shortcut = Shortcut.AvgDown, Attention = Attention.SqueezeExcite, AttentionRatio = 0.25)")]
    [InlineData("ResNet(Block.Basic, 1, 1, 1, 1, Stem = Stem.DeepTiered, Shortcut = Shortcut.AvgDown, Attention = Attention.EfficientChannel)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, Shortcut = Shortcut.AvgDown, DilateStages = new[] { false, true, true })")]
    [InlineData("ResNet(Block.Basic, 3, 3, 3, Stem = Stem.Cifar, Shortcut = Shortcut.AvgDown, Attention = Attention.SqueezeExcite, InputSize = 27)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemPool = StemPool.Conv, AntiAlias = AntiAlias.BlurPool, DropPath = 0.1)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, AntiAlias = AntiAlias.AvgPool, DilateStages = new[] { false, true, true }, DropPath = 0.05)")]
    [InlineData("ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Deep,\n        Shortcut = Shortcut.AvgDown)")] // written over two lines
    [InlineData("ResNet(Block.PreActBasic, 2, 2, 2, 2, Stem = Stem.Cifar, NumClasses = 10)")]
    [InlineData("ResNet(Block.PreActBottleneck, 3, 4, 6, 3, ZeroInitResidual = false)")]
    public void Valid_configurations_produce_no_diagnostics(string attribute) => Check(Net(attribute));

    [Fact]
    public void Generator_diagnostics_sit_in_the_compilations_syntax_tree_so_pragmas_reach_them()
    {
        // A location rebuilt from a file path and a span has no syntax tree, and #pragma warning disable, which the
        // compiler looks up in the tree, cannot silence it (the packed-package build in ConsumerTests proves the pragma).
        var run = GeneratorHarness.Run(Net("ResNet(Block.Basic, 1, 1, 1, 1, InputSize = 16)"));
        var warnings = run.GeneratorDiagnostics.Where(d => d.Id == "RNG0009").ToList();
        Assert.NotEmpty(warnings);
        var tree = run.Output.SyntaxTrees.First(t => t.FilePath == "File0.cs");
        Assert.All(warnings, d => Assert.Same(tree, d.Location.SourceTree));
    }
}
