using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ResNetGen.Generator.Diagnostics;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;
using ResNetGen.Generator.Planning;
using ResNetGen.Generator.Tests.Infrastructure;
using Xunit;

namespace ResNetGen.Generator.Tests.Generation;

/// <summary>The incremental pipeline: what it caches, what it reruns, and what its models may hold.</summary>
public class PipelineTests
{
    private static readonly string[] Steps = { TrackingNames.Parse, TrackingNames.Spec, TrackingNames.Plan, TrackingNames.Diagnostics, TrackingNames.Source };

    private const string Network = """
        using ResNetGen;
        namespace Models;
        [ResNet(Block.Bottleneck, 3, 4, 6, 3)]
        public partial class ResNet50 { }
        """;

    private static GeneratorRunResult RunTwice(string first, string second)
    {
        var compilation = GeneratorHarness.Compilation(Network, first);
        var driver = GeneratorHarness.Driver().RunGenerators(compilation);
        var old = compilation.SyntaxTrees.Last();
        var edited = compilation.ReplaceSyntaxTree(old, CSharpSyntaxTree.ParseText(second, GeneratorHarness.ParseOptions, old.FilePath));
        return driver.RunGenerators(edited).GetRunResult().Results.Single();
    }

    [Fact]
    public void Editing_an_unrelated_file_reruns_none_of_the_generator_work()
    {
        var result = RunTwice("class Unrelated { }", "class Unrelated { int _x; public int X => _x; }");
        foreach (var step in Steps)
        {
            var outputs = result.TrackedSteps[step].SelectMany(s => s.Outputs).ToList();
            Assert.NotEmpty(outputs);
            Assert.All(outputs, o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged,
                $"step {step} was {o.Reason}"));
        }
        Assert.All(result.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(s => s.Outputs),
            o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
    }

    [Fact]
    public void Moving_the_attribute_reparses_but_neither_plans_nor_generates_again()
    {
        var compilation = GeneratorHarness.Compilation(Network);
        var driver = GeneratorHarness.Driver().RunGenerators(compilation);
        var tree = compilation.SyntaxTrees.Single();
        var moved = compilation.ReplaceSyntaxTree(tree, CSharpSyntaxTree.ParseText("// a new first line\n" + Network, GeneratorHarness.ParseOptions, tree.FilePath));
        var result = driver.RunGenerators(moved).GetRunResult().Results.Single();
        Assert.Contains(result.TrackedSteps[TrackingNames.Parse].SelectMany(s => s.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        // The spec it yields is unchanged, so the plan step is not run again (Cached), nor the emission.
        Assert.All(result.TrackedSteps[TrackingNames.Spec].SelectMany(s => s.Outputs), o => Assert.Equal(IncrementalStepRunReason.Unchanged, o.Reason));
        Assert.All(result.TrackedSteps[TrackingNames.Plan].SelectMany(s => s.Outputs), o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
        Assert.All(result.TrackedSteps[TrackingNames.Source].SelectMany(s => s.Outputs), o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
    }

    [Fact]
    public void Moving_an_attribute_with_an_error_moves_its_diagnostic()
    {
        var bad = Network.Replace("3, 4, 6, 3)", "3, 4, 6, 3, Groups = 0)");
        var compilation = GeneratorHarness.Compilation(bad);
        var driver = GeneratorHarness.Driver().RunGenerators(compilation);
        var before = driver.GetRunResult().Diagnostics.Single(d => d.Id == "RNG0006").Location.GetLineSpan().StartLinePosition.Line;
        var tree = compilation.SyntaxTrees.Single();
        var moved = compilation.ReplaceSyntaxTree(tree, CSharpSyntaxTree.ParseText("// one\n// two\n" + bad, GeneratorHarness.ParseOptions, tree.FilePath));
        var run = driver.RunGenerators(moved).GetRunResult();
        Assert.Equal(before + 2, run.Diagnostics.Single(d => d.Id == "RNG0006").Location.GetLineSpan().StartLinePosition.Line);
        Assert.All(run.Results.Single().TrackedSteps[TrackingNames.Plan].SelectMany(s => s.Outputs), o => Assert.Equal(IncrementalStepRunReason.Cached, o.Reason));
    }

    [Fact]
    public void Changing_the_attribute_regenerates_the_source()
    {
        var compilation = GeneratorHarness.Compilation(Network);
        var driver = GeneratorHarness.Driver().RunGenerators(compilation);
        var tree = compilation.SyntaxTrees.Single();
        var changed = compilation.ReplaceSyntaxTree(tree, CSharpSyntaxTree.ParseText(Network.Replace("3, 4, 6, 3)", "3, 4, 6, 3, NumClasses = 10)"), GeneratorHarness.ParseOptions, tree.FilePath));
        var result = driver.RunGenerators(changed).GetRunResult().Results.Single();
        Assert.Contains(result.TrackedSteps[TrackingNames.Source].SelectMany(s => s.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        var text = result.GeneratedSources.Single(s => !s.HintName.EndsWith(".PyTorch.g.cs", System.StringComparison.Ordinal)).SourceText.ToString();
        Assert.Contains("public ResNet50() : this(10) { }", text);
        Assert.Contains("NUM_CLASSES = 10", result.GeneratedSources.Single(s => s.HintName.EndsWith(".PyTorch.g.cs", System.StringComparison.Ordinal)).SourceText.ToString());
        Assert.Contains("TorchNn.Linear(2048, numClasses)", text);
    }

    [Fact]
    public void Pipeline_models_hold_no_symbols_syntax_or_compilations()
    {
        var forbidden = new[] { typeof(ISymbol), typeof(SyntaxNode), typeof(Location), typeof(Compilation), typeof(SemanticModel), typeof(SyntaxTree) };
        var seen = new HashSet<Type>();
        var stack = new Stack<Type>(new[] { typeof(ParseResult), typeof(PlanResult) });
        while (stack.Count > 0)
        {
            var type = stack.Pop();
            if (!seen.Add(type) || type.IsPrimitive || type.IsEnum || type == typeof(string)) continue;
            Assert.DoesNotContain(forbidden, f => f.IsAssignableFrom(type));
            if (type.IsGenericType) foreach (var argument in type.GetGenericArguments()) stack.Push(argument);
            if (Nullable.GetUnderlyingType(type) is { } inner) stack.Push(inner);
            if (type.Namespace?.StartsWith("ResNetGen", StringComparison.Ordinal) != true) continue;
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance))
            {
                if (property.GetIndexParameters().Length == 0) stack.Push(property.PropertyType);
            }
        }
        Assert.Contains(typeof(NetworkSpec), seen);
        Assert.Contains(typeof(ModulePlan), seen);
        Assert.Contains(typeof(LocationInfo), seen);

        // The plan step's input and output hold no location at all.
        seen.Clear();
        stack = new Stack<Type>(new[] { typeof(PlanInput), typeof(PlanResult) });
        while (stack.Count > 0)
        {
            var type = stack.Pop();
            if (!seen.Add(type) || type.IsPrimitive || type.IsEnum || type == typeof(string)) continue;
            Assert.NotEqual(typeof(LocationInfo), type);
            Assert.NotEqual(typeof(ArgumentLocation), type);
            if (type.IsGenericType) foreach (var argument in type.GetGenericArguments()) stack.Push(argument);
            if (Nullable.GetUnderlyingType(type) is { } inner) stack.Push(inner);
            if (type.Namespace?.StartsWith("ResNetGen", StringComparison.Ordinal) != true) continue;
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance))
            {
                if (property.GetIndexParameters().Length == 0) stack.Push(property.PropertyType);
            }
        }
        Assert.Contains(typeof(SpecProblem), seen);
    }

    [Theory]
    [InlineData("ResNet(Block.Basic, \"two\")")]
    [InlineData("ResNet((Block)7, 2, 2)")]
    [InlineData("ResNet(Block.Basic, 2, 2, DilateStages = null)")]
    [InlineData("ResNet(Block.Bottleneck, 3, 4, 6, 3, NumClasses = int.MaxValue, BaseWidth = 1 << 20)")]
    [InlineData("ResNet(Block.Basic)")]
    [InlineData("ResNet")]
    public void Malformed_or_extreme_attributes_never_crash_the_generator(string attribute)
    {
        var run = GeneratorHarness.Run(GeneratorHarness.Network(attribute));
        // A generator exception would surface as CS8785 (generator failed) or RNG0099 (caught internal error).
        Assert.DoesNotContain(run.GeneratorDiagnostics, d => d.Id is "CS8785" or "RNG0099");
        Assert.DoesNotContain(run.CompilationDiagnostics, d => d.Id is "CS8785" or "RNG0099");
    }
}
