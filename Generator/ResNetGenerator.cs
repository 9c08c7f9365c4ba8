using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ResNetGen.Generator.Diagnostics;
using ResNetGen.Generator.Emitting;
using ResNetGen.Generator.Model;
using ResNetGen.Generator.Parsing;

namespace ResNetGen.Generator;

/// <summary>Metadata names the generator looks for.</summary>
internal static class TypeNames
{
    public const string ResNetAttribute = "ResNetGen.ResNetAttribute";
}

/// <summary>Names of the pipeline steps, for incremental-caching tests.</summary>
internal static class TrackingNames
{
    public const string Parse = nameof(Parse);
    public const string Spec = nameof(Spec);
    public const string Plan = nameof(Plan);
    public const string Diagnostics = nameof(Diagnostics);
    public const string Source = nameof(Source);
}

/// <summary>
/// Expands each <c>[ResNet]</c> partial class into a fully unrolled TorchSharp network.
/// </summary>
/// <remarks>
/// Caching contract: every step's output is a record of strings, numbers and <see cref="EquatableArray{T}"/>, never a
/// symbol, syntax node or compilation, so an edit elsewhere in the project stops the pipeline at the parse step.
/// Source and diagnostics leave by separate outputs: moving an attribute (which moves its diagnostics' locations)
/// regenerates no source.
/// </remarks>
[Generator(LanguageNames.CSharp)]
public sealed class ResNetGenerator : IIncrementalGenerator
{
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        // 1. Parse: the attribute's values and the class's name, as plain data.
        var parsed = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                TypeNames.ResNetAttribute,
                predicate: static (node, _) => node is ClassDeclarationSyntax,
                transform: static (ctx, ct) => SafeParse(ctx, ct))
            .WithTrackingName(TrackingNames.Parse);

        // 2. Plan and check, from the spec alone: no locations reach this step, so moving an attribute (or editing
        //    around it) re-runs neither planning nor emission.
        var planned = parsed
            .Select(static (parse, _) => PlanInput.From(parse))
            .WithTrackingName(TrackingNames.Spec)
            .Select(static (input, _) => Checker.Plan(input))
            .WithTrackingName(TrackingNames.Plan);

        // 3a. Diagnostics, on their own output: the plan's problems placed on the arguments the parse located. Both
        //     lists come from the same attributes in the same order.
        var diagnostics = parsed.Collect()
            .Combine(planned.Collect())
            .Select(static (pair, _) => pair.Left.Zip(pair.Right, Checker.Place).SelectMany(d => d).ToEquatableArray())
            .WithTrackingName(TrackingNames.Diagnostics);
        // Reported against the attributed files' own syntax trees (not a rebuilt path-and-span location), so that
        // #pragma warning disable and .editorconfig severities apply. The trees come from a cheap step of their own,
        // which an edit of another file leaves cached.
        var trees = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                TypeNames.ResNetAttribute,
                predicate: static (node, _) => node is ClassDeclarationSyntax,
                transform: static (ctx, _) => ctx.TargetNode.SyntaxTree)
            .Collect();
        context.RegisterSourceOutput(diagnostics.Combine(trees), static (spc, pair) =>
        {
            foreach (var diagnostic in pair.Left) spc.ReportDiagnostic(diagnostic.ToDiagnostic(pair.Right));
        });

        // 3b. Source, from the plan alone (no locations in it).
        var plans = planned
            .Select(static (result, _) => result.Plan)
            .WithTrackingName(TrackingNames.Source);
        context.RegisterSourceOutput(plans, static (spc, plan) =>
        {
            if (plan is null) return;
            string source, twin;
            try
            {
                source = Emitter.Emit(plan);
                twin = PyTorchEmitter.Emit(plan);
            }
            catch (System.Exception e) when (e is not System.OperationCanceledException)
            {
                spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.InternalError, null, plan.Target.Name, e.GetType().Name + ": " + e.Message));
                return;
            }
            spc.AddSource(plan.Target.HintName, source);
            // The PyTorch twin (PyTorchSource), in a file of its own.
            spc.AddSource(PyTorchEmitter.HintName(plan), twin);
        });
    }

    /// <summary>Parses, turning any unexpected failure into a diagnostic instead of a crashed build.</summary>
    private static ParseResult SafeParse(GeneratorAttributeSyntaxContext context, System.Threading.CancellationToken ct)
    {
        try
        {
            return SpecParser.Parse(context, ct);
        }
        catch (System.Exception e) when (e is not System.OperationCanceledException)
        {
            var info = DiagnosticInfo.Create(DiagnosticDescriptors.InternalError,
                LocationInfo.From(context.TargetNode is ClassDeclarationSyntax c ? c.Identifier.GetLocation() : context.TargetNode.GetLocation()),
                context.TargetSymbol.Name, e.GetType().Name + ": " + e.Message);
            return new ParseResult(null, EquatableArray<ArgumentLocation>.Empty, new EquatableArray<DiagnosticInfo>(new[] { info }));
        }
    }
}
