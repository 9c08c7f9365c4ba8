using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>
/// What one generator run produced: <see cref="Sources"/> the networks' files, <see cref="Twins"/> their PyTorch twins'
/// files (<c>.PyTorch.g.cs</c>), each by hint name.
/// </summary>
public sealed record GeneratorRun(
    Compilation Output,
    ImmutableArray<Diagnostic> GeneratorDiagnostics,
    ImmutableArray<Diagnostic> CompilationDiagnostics,
    IReadOnlyDictionary<string, string> Sources,
    GeneratorDriver Driver,
    IReadOnlyDictionary<string, string> Twins);

/// <summary>Compiles C# in memory against .NET 10, TorchSharp and ResNetGen.Runtime, with the generator.</summary>
public static class GeneratorHarness
{
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest);

    private static readonly ImmutableArray<MetadataReference> References =
        Basic.Reference.Assemblies.Net100.References.All
            .Concat(new MetadataReference[]
            {
                MetadataReference.CreateFromFile(typeof(TorchSharp.torch).Assembly.Location),
                MetadataReference.CreateFromFile(typeof(ResNetAttribute).Assembly.Location),
            })
            .ToImmutableArray();

    public static CSharpCompilation Compilation(params string[] sources) =>
        CSharpCompilation.Create(
            "UserProject",
            sources.Select((s, i) => CSharpSyntaxTree.ParseText(s, ParseOptions, path: $"File{i}.cs")),
            References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable)
                // As the SDK does: TorchSharp is built against .NET 8's System.Runtime, unified here with .NET 10's.
                .WithSpecificDiagnosticOptions(new[] { "CS1701", "CS1702" }.ToDictionary(id => id, _ => ReportDiagnostic.Suppress)));

    public static GeneratorDriver Driver(bool trackSteps = true) =>
        CSharpGeneratorDriver.Create(
            new[] { new ResNetGenerator().AsSourceGenerator() },
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: trackSteps));

    public static GeneratorRun Run(params string[] sources)
    {
        var compilation = Compilation(sources);
        var driver = Driver().RunGeneratorsAndUpdateCompilation(compilation, out var output, out var generatorDiagnostics);
        var result = driver.GetRunResult();
        var generated = result.Results.SelectMany(r => r.GeneratedSources).ToList();
        static bool IsTwin(string hint) => hint.EndsWith(".PyTorch.g.cs", System.StringComparison.Ordinal);
        var all = output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToImmutableArray();
        return new GeneratorRun(output, generatorDiagnostics, all,
            generated.Where(s => !IsTwin(s.HintName)).ToDictionary(s => s.HintName, s => s.SourceText.ToString()), driver,
            generated.Where(s => IsTwin(s.HintName)).ToDictionary(s => s.HintName, s => s.SourceText.ToString()));
    }

    /// <summary>
    /// Runs the generator, then the analyzer on the result, and returns every diagnostic of the final compilation
    /// (generator, analyzer and compiler, warnings and errors), in source order.
    /// </summary>
    public static ImmutableArray<Diagnostic> AllDiagnostics(params string[] sources)
    {
        var run = Run(sources);
        var analyzers = ImmutableArray.Create<Microsoft.CodeAnalysis.Diagnostics.DiagnosticAnalyzer>(new global::ResNetGen.Generator.Diagnostics.InputShapeAnalyzer());
        var analyzerDiagnostics = run.Output.WithAnalyzers(analyzers).GetAnalyzerDiagnosticsAsync().GetAwaiter().GetResult();
        return run.GeneratorDiagnostics
            .Concat(run.CompilationDiagnostics)
            .Concat(analyzerDiagnostics)
            .Where(d => d.Severity >= DiagnosticSeverity.Warning)
            .OrderBy(d => d.Location.SourceSpan.Start).ThenBy(d => d.Id)
            .ToImmutableArray();
    }

    /// <summary>One network declared with <paramref name="attribute"/> on class <paramref name="name"/> in namespace Models.</summary>
    public static string Network(string attribute, string name = "Net") => $$"""
        using ResNetGen;

        namespace Models;

        [{{attribute}}]
        public partial class {{name}} { }
        """;
}
