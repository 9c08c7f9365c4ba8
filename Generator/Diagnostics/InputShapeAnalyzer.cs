using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace ResNetGen.Generator.Diagnostics;

/// <summary>
/// RNG0010: a generated network's <c>forward</c> (or <c>call</c>) applied to a tensor whose shape is a compile-time
/// constant — <c>torch.zeros/ones/rand/randn/empty/full</c> with literal sizes, directly or through a local
/// initialised that way and never reassigned — with the wrong rank or channel count.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class InputShapeAnalyzer : DiagnosticAnalyzer
{
    private static readonly HashSet<string> Factories = new() { "zeros", "ones", "rand", "randn", "empty", "full" };

    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(DiagnosticDescriptors.WrongInputShape);

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            var attribute = start.Compilation.GetTypeByMetadataName(TypeNames.ResNetAttribute);
            if (attribute is null) return;
            start.RegisterOperationAction(c => Analyze(c, attribute), OperationKind.Invocation);
        });
    }

    private static void Analyze(OperationAnalysisContext context, INamedTypeSymbol attributeType)
    {
        var invocation = (IInvocationOperation)context.Operation;
        if (invocation.TargetMethod.Name is not ("forward" or "call") || invocation.Arguments.Length != 1) return;
        var network = invocation.Instance?.Type as INamedTypeSymbol;
        var resnet = network?.GetAttributes().FirstOrDefault(a => SymbolEqualityComparer.Default.Equals(a.AttributeClass, attributeType));
        if (network is null || resnet is null) return;
        var channels = 3;
        foreach (var named in resnet.NamedArguments)
        {
            if (named.Key == "InChannels" && named.Value.Value is int value) channels = value;
        }

        var argument = invocation.Arguments[0].Value;
        var shape = ConstantShape(argument, context.CancellationToken);
        if (shape is null) return;

        string problem, fix;
        if (shape.Count != 4)
        {
            problem = $"it has rank {shape.Count.ToString(CultureInfo.InvariantCulture)}, not 4";
            fix = shape.Count == 3 ? "Add the batch dimension (unsqueeze(0), or create it as [1, C, H, W])." : "Create it as [N, C, H, W].";
        }
        else if (shape[1] != channels)
        {
            problem = $"it has {shape[1].ToString(CultureInfo.InvariantCulture)} channel{(shape[1] == 1 ? "" : "s")}";
            fix = $"Create it with {channels.ToString(CultureInfo.InvariantCulture)} channels, or declare the network with InChannels = {shape[1].ToString(CultureInfo.InvariantCulture)}.";
        }
        else return;

        var text = "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
        context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.WrongInputShape, invocation.Arguments[0].Syntax.GetLocation(),
            network.Name, channels.ToString(CultureInfo.InvariantCulture), text, problem, fix));
    }

    /// <summary>The shape a tensor expression is known to have at compile time, or null.</summary>
    private static List<long>? ConstantShape(IOperation operation, System.Threading.CancellationToken ct)
    {
        while (operation is IConversionOperation conversion) operation = conversion.Operand;
        if (operation is IInvocationOperation call) return FactoryShape(call);
        if (operation is ILocalReferenceOperation local) return LocalShape(local, ct);
        return null;
    }

    private static List<long>? LocalShape(ILocalReferenceOperation reference, System.Threading.CancellationToken ct)
    {
        var symbol = reference.Local;
        if (symbol.DeclaringSyntaxReferences.Length != 1) return null;
        if (symbol.DeclaringSyntaxReferences[0].GetSyntax(ct) is not VariableDeclaratorSyntax declarator || declarator.Initializer is null) return null;
        var model = reference.SemanticModel;
        if (model is null || declarator.SyntaxTree != model.SyntaxTree) return null;
        // Only a local that is never assigned again (nor passed by ref) keeps its initial shape.
        var body = declarator.FirstAncestorOrSelf<BlockSyntax>() ?? (SyntaxNode?)declarator.FirstAncestorOrSelf<CompilationUnitSyntax>();
        if (body is null) return null;
        foreach (var node in body.DescendantNodes())
        {
            if (node is AssignmentExpressionSyntax { Left: IdentifierNameSyntax left } && left.Identifier.ValueText == symbol.Name) return null;
            if (node is ArgumentSyntax { RefKindKeyword.ValueText: "ref" or "out" } arg && arg.Expression is IdentifierNameSyntax id && id.Identifier.ValueText == symbol.Name) return null;
        }
        var initializer = model.GetOperation(declarator.Initializer.Value, ct);
        return initializer is null ? null : ConstantShape(initializer, ct);
    }

    private static List<long>? FactoryShape(IInvocationOperation call)
    {
        var method = call.TargetMethod;
        if (!Factories.Contains(method.Name) || method.ContainingType?.ToDisplayString() != "TorchSharp.torch") return null;
        var shape = new List<long>();
        foreach (var argument in call.Arguments.OrderBy(a => a.Parameter?.Ordinal ?? int.MaxValue))
        {
            var type = argument.Parameter?.Type;
            if (type is null) return null;
            if (type.SpecialType is SpecialType.System_Int64 or SpecialType.System_Int32)
            {
                if (argument.ArgumentKind == ArgumentKind.DefaultValue) continue;
                var value = Constant(argument.Value);
                if (value is null) return null;
                shape.Add(value.Value);
            }
            else if (type is IArrayTypeSymbol { ElementType.SpecialType: SpecialType.System_Int64 or SpecialType.System_Int32 }
                     || type.Name == "ReadOnlySpan")
            {
                var elements = Elements(argument.Value);
                if (elements is null) return null;
                shape.AddRange(elements);
            }
        }
        return shape.Count == 0 ? null : shape;
    }

    private static List<long>? Elements(IOperation operation)
    {
        while (operation is IConversionOperation conversion) operation = conversion.Operand;
        IEnumerable<IOperation>? items = operation switch
        {
            IArrayCreationOperation { Initializer: { } init } => init.ElementValues,
            _ when operation.Syntax is CollectionExpressionSyntax => operation.ChildOperations.SelectMany<IOperation, IOperation>(c => c is IArrayInitializerOperation i ? i.ElementValues : new[] { c }),
            _ => null,
        };
        if (items is null) return null;
        var result = new List<long>();
        foreach (var item in items)
        {
            var value = Constant(item);
            if (value is null) return null;
            result.Add(value.Value);
        }
        return result;
    }

    private static long? Constant(IOperation operation) => operation.ConstantValue is { HasValue: true, Value: var v } && v is not null
        ? System.Convert.ToInt64(v, CultureInfo.InvariantCulture)
        : null;
}
