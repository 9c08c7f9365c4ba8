using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Testing;
using ResNetGen.CodeFixes;
using Xunit;

namespace ResNetGen.Generator.Tests.Diagnostics;

/// <summary>
/// The code fixes, with Roslyn's code-fix test framework: the generator runs on the source, its diagnostics are the
/// ones marked, the fix (chosen by its equivalence key) turns the source into the fixed one, which then builds clean.
/// </summary>
public class CodeFixTests
{
    /// <summary>A code-fix test whose diagnostics come from ResNetGen's generator, against .NET 10, TorchSharp and the runtime.</summary>
    private sealed class FixTest<TFix> : CSharpCodeFixTest<EmptyDiagnosticAnalyzer, TFix, DefaultVerifier> where TFix : CodeFixProvider, new()
    {
        public FixTest(string source, string fixedSource, string? key, int iterations = 1)
        {
            ReferenceAssemblies = new ReferenceAssemblies("net10.0"); // nothing downloaded: the references below
            TestState.AdditionalReferences.AddRange(References);
            TestCode = Header + source;
            FixedCode = Header + fixedSource;
            CodeActionEquivalenceKey = key;
            NumberOfFixAllIterations = iterations;
            // The generator's own files differ before and after a fix (none while the attribute is wrong); they are not the subject here,
            // but they must compile.
            TestBehaviors = TestBehaviors.SkipGeneratedSourcesCheck;
            CompilerDiagnostics = CompilerDiagnostics.Errors; // the source before and after a fix must compile, the generated network with it
        }

        protected override IEnumerable<Type> GetSourceGenerators() => new[] { typeof(ResNetGenerator) };
    }

    private const string Header = "using ResNetGen;\n\n";

    private static readonly MetadataReference[] References = Basic.Reference.Assemblies.Net100.References.All
        .Concat(new MetadataReference[]
        {
            MetadataReference.CreateFromFile(typeof(TorchSharp.torch).Assembly.Location),
            MetadataReference.CreateFromFile(typeof(ResNetAttribute).Assembly.Location),
        }).ToArray();

    private static Task Fix<TFix>(string source, string fixedSource, string? key) where TFix : CodeFixProvider, new() =>
        new FixTest<TFix>(source, fixedSource, key).RunAsync();

    [Fact]
    public Task RNG0001_makes_the_class_partial() => Fix<PartialFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic class {|RNG0001:Net|} { }\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net { }\n",
        "RNG0001.partial");

    [Fact]
    public Task RNG0001_makes_the_containing_types_partial_too() => Fix<PartialFix>(
        "public static class Models\n{\n    [ResNet(Block.Basic, 2, 2, 2, 2)]\n    partial class {|RNG0001:Net|} { }\n}\n",
        "public static partial class Models\n{\n    [ResNet(Block.Basic, 2, 2, 2, 2)]\n    partial class Net { }\n}\n",
        "RNG0001.partial");

    [Fact]
    public async Task RNG0001_on_a_generic_class_offers_no_fix()
    {
        // Partial already: the problem is the type parameter, which no edit of the modifiers solves.
        const string source = "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class {|RNG0001:Net|}<T> { }\n";
        var test = new FixTest<PartialFix>(source, source, null) { NumberOfIncrementalIterations = 0, NumberOfFixAllIterations = 0 };
        await test.RunAsync();
    }

    [Fact]
    public Task RNG0003_removes_groups() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2, {|RNG0003:Groups = 32|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net { }\n",
        "RNG0003.remove");

    [Fact]
    public Task RNG0003_switches_to_the_bottleneck_block() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Basic, 3, 4, 6, 3, {|RNG0003:Groups = 32|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, Groups = 32)]\npublic partial class Net { }\n",
        "RNG0003.bottleneck");

    [Fact]
    public Task RNG0003_fix_all_removes_both_widths() => new FixTest<AttributeArgumentFix>(
        "[ResNet(Block.Basic, 2, 2, {|RNG0003:Groups = 32|}, {|RNG0003:WidthPerGroup = 4|})]\npublic partial class Net { }\n" +
        "[ResNet(Block.Basic, 1, 1, {|RNG0003:WidthPerGroup = 8|})]\npublic partial class Other { }\n",
        "[ResNet(Block.Basic, 2, 2)]\npublic partial class Net { }\n[ResNet(Block.Basic, 1, 1)]\npublic partial class Other { }\n",
        "RNG0003.remove", iterations: 2).RunAsync();

    [Fact]
    public Task RNG0004_removes_the_dilation() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2, {|RNG0004:DilateStages = new[] { false, false, true }|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net { }\n",
        "RNG0004.remove");

    [Fact]
    public Task RNG0004_switches_to_the_bottleneck_block() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2, {|RNG0004:DilateStages = new[] { false, false, true }|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 2, 2, 2, 2, DilateStages = new[] { false, false, true })]\npublic partial class Net { }\n",
        "RNG0004.bottleneck");

    [Fact]
    public Task RNG0005_pads_dilate_stages_with_false() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, {|RNG0005:DilateStages = new[] { false, true }|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, DilateStages = new[] { false, true, false })]\npublic partial class Net { }\n",
        "RNG0005.resize");

    [Fact]
    public Task RNG0005_cuts_dilate_stages_to_the_stage_count() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Bottleneck, 3, 4, {|RNG0005:DilateStages = new bool[] { false, true, true }|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 3, 4, DilateStages = new[] { false })]\npublic partial class Net { }\n",
        "RNG0005.resize");

    [Fact]
    public Task RNG0011_removes_the_member() => Fix<MemberFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net\n{\n    public string {|RNG0011:Summary|} => \"mine\";\n    public int Size => 3;\n}\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net\n{\n    public int Size => 3;\n}\n",
        "RNG0011.remove");

    [Fact]
    public Task RNG0011_renames_the_member_and_its_uses() => Fix<MemberFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net\n{\n    public string {|RNG0011:Summary|} => \"mine\";\n    public int Size => Summary.Length;\n}\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net\n{\n    public string MySummary => \"mine\";\n    public int Size => MySummary.Length;\n}\n",
        "RNG0011.rename");

    [Fact]
    public Task RNG0012_replaces_the_cast_with_a_member() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2, {|RNG0012:Stem = (Stem)7|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2, Stem = Stem.Cifar)]\npublic partial class Net { }\n",
        "RNG0012.Cifar");

    [Fact]
    public Task RNG0014_uses_the_deep_stem_for_a_stem_width() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, {|RNG0014:StemWidth = 32|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32)]\npublic partial class Net { }\n",
        "RNG0014.deep-stem");

    [Fact]
    public Task RNG0014_removes_an_option_that_does_nothing() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, {|RNG0014:StemWidth = 32|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3)]\npublic partial class Net { }\n",
        "RNG0014.remove");

    [Fact]
    public Task RNG0014_replaces_an_existing_stem_argument() => Fix<AttributeArgumentFix>(
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.ImageNet, {|RNG0014:StemWidth = 32|})]\npublic partial class Net { }\n",
        "[ResNet(Block.Bottleneck, 3, 4, 6, 3, Stem = Stem.Deep, StemWidth = 32)]\npublic partial class Net { }\n",
        "RNG0014.deep-stem");

    [Fact]
    public Task RNG0011_removes_a_base_class_and_keeps_the_interfaces() => Fix<MemberFix>(
        "public class Base { }\n[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net : {|RNG0011:Base|}, System.IComparable\n{\n    public int CompareTo(object? other) => 0;\n}\n",
        "public class Base { }\n[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net : System.IComparable\n{\n    public int CompareTo(object? other) => 0;\n}\n",
        "RNG0011.remove");

    [Fact]
    public Task RNG0011_removes_one_variable_of_a_field_declaration() => Fix<MemberFix>(
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net\n{\n    public int {|RNG0011:Summary|}, Size;\n}\n",
        "[ResNet(Block.Basic, 2, 2, 2, 2)]\npublic partial class Net\n{\n    public int Size;\n}\n",
        "RNG0011.remove");

    [Fact]
    public void The_fixes_name_the_generators_ids()
    {
        var fixable = new CodeFixProvider[] { new PartialFix(), new AttributeArgumentFix(), new MemberFix() }.SelectMany(f => f.FixableDiagnosticIds).ToHashSet();
        Assert.Equal(new[] { "RNG0001", "RNG0003", "RNG0004", "RNG0005", "RNG0011", "RNG0012", "RNG0014" }, fixable.OrderBy(i => i));
        foreach (var id in fixable) Assert.Equal(id, ResNetGen.Generator.Diagnostics.DiagnosticDescriptors.ById(id).Id);
    }
}
