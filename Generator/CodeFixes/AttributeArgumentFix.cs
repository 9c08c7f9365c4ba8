using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ResNetGen.CodeFixes;

/// <summary>
/// The mechanical fixes on the <c>[ResNet]</c> attribute argument a diagnostic is reported on:
/// RNG0003 remove <c>Groups</c>/<c>WidthPerGroup</c> or use <c>Block.Bottleneck</c>; RNG0004 remove <c>DilateStages</c>
/// or use <c>Block.Bottleneck</c>; RNG0005 resize <c>DilateStages</c> to stage count − 1; RNG0012 replace an
/// out-of-range enum cast with one of the enum's members; RNG0014 remove the option that does nothing (and, for
/// <c>StemWidth</c>, use <c>Stem.Deep</c> instead).
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(AttributeArgumentFix)), Shared]
public sealed class AttributeArgumentFix : FixProvider
{
    /// <inheritdoc />
    public override ImmutableArray<string> FixableDiagnosticIds =>
        ImmutableArray.Create(Ids.BasicBlockWidth, Ids.BasicBlockDilation, Ids.DilateStagesLength, Ids.UndefinedEnumValue, Ids.OptionDoesNotApply);

    /// <inheritdoc />
    protected override async Task Register(CodeFixContext context, SyntaxNode root, Diagnostic diagnostic)
    {
        var argument = root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true).FirstAncestorOrSelf<AttributeArgumentSyntax>();
        if (argument?.Parent?.Parent is not AttributeSyntax attribute) return;
        var name = argument.NameEquals?.Name.Identifier.Text;
        void Offer(string title, string key, Func<SyntaxNode, SyntaxNode?> edit) => FixProvider.Offer(context, diagnostic, title, key, edit);

        switch (diagnostic.Id)
        {
            case Ids.BasicBlockWidth when name is "Groups" or "WidthPerGroup":
            case Ids.BasicBlockDilation when name == "DilateStages":
                Offer($"Remove {Text(argument)}", "remove", r => Remove(r, argument));
                if (BlockArgument(attribute) is { } block)
                    Offer("Use Block.Bottleneck", "bottleneck", r => r.ReplaceNode(block, block.WithName(SyntaxFactory.IdentifierName("Bottleneck"))));
                break;
            case Ids.DilateStagesLength when name == "DilateStages":
            {
                var wanted = attribute.ArgumentList!.Arguments.Count(a => a.NameEquals is null && a.NameColon is null) - 2; // block counts after the Block, less one
                if (wanted <= 0)
                    Offer($"Remove {name}: a one-stage network has no stage to dilate", "resize", r => Remove(r, argument));
                else if (Entries(argument.Expression) is { } entries)
                    Offer($"Give DilateStages {wanted} {(wanted == 1 ? "entry" : "entries")}", "resize", r => r.ReplaceNode(argument.Expression, Resized(entries, wanted)));
                break;
            }
            case Ids.UndefinedEnumValue when argument.Expression is CastExpressionSyntax cast:
            {
                var model = await context.Document.GetSemanticModelAsync(context.CancellationToken).ConfigureAwait(false);
                if (model?.GetTypeInfo(cast.Type, context.CancellationToken).Type is not INamedTypeSymbol { TypeKind: TypeKind.Enum } enumType) break;
                foreach (var member in enumType.GetMembers().OfType<IFieldSymbol>().Where(f => f.HasConstantValue))
                {
                    var replacement = SyntaxFactory.MemberAccessExpression(SyntaxKind.SimpleMemberAccessExpression,
                        cast.Type.WithoutTrivia(), SyntaxFactory.IdentifierName(member.Name)).WithTriviaFrom(cast);
                    Offer($"Use {cast.Type}.{member.Name}", member.Name, r => r.ReplaceNode(cast, replacement));
                }
                break;
            }
            case Ids.OptionDoesNotApply when name is not null:
                Offer($"Remove {Text(argument)}", "remove", r => Remove(r, argument));
                if (name == "StemWidth") Offer("Use Stem.Deep (timm's deep stem, whose width StemWidth sets)", "deep-stem", r => UseDeepStem(r, attribute, argument));
                break;
        }
    }

    private static string Text(AttributeArgumentSyntax argument) => argument.WithoutTrivia().ToString();


    private static SyntaxNode? Remove(SyntaxNode root, AttributeArgumentSyntax argument) => root.RemoveNode(argument, SyntaxRemoveOptions.KeepNoTrivia);

    // The first positional argument when it is written Block.Something (a cast or a constant has no member to swap).
    private static MemberAccessExpressionSyntax? BlockArgument(AttributeSyntax attribute) =>
        attribute.ArgumentList?.Arguments.FirstOrDefault() is { NameEquals: null, NameColon: null, Expression: MemberAccessExpressionSyntax access }
        && access.Name.Identifier.Text != "Bottleneck" ? access : null;

    // The entries of new[] { … } or new bool[] { … }; null for anything else (a field, a method call): no mechanical resize.
    private static IReadOnlyList<ExpressionSyntax>? Entries(ExpressionSyntax expression) => expression switch
    {
        ImplicitArrayCreationExpressionSyntax implicitArray => implicitArray.Initializer.Expressions,
        ArrayCreationExpressionSyntax { Initializer: { } initializer } => initializer.Expressions,
        CollectionExpressionSyntax collection when collection.Elements.All(e => e is ExpressionElementSyntax) =>
            collection.Elements.Cast<ExpressionElementSyntax>().Select(e => e.Expression).ToList(),
        _ => null,
    };

    // The entries given, cut to the count or padded with false: new[] { false, true, true }.
    private static ExpressionSyntax Resized(IReadOnlyList<ExpressionSyntax> entries, int count)
    {
        var kept = entries.Take(count).Select(e => e.WithoutTrivia())
            .Concat(Enumerable.Repeat<ExpressionSyntax>(SyntaxFactory.LiteralExpression(SyntaxKind.FalseLiteralExpression), Math.Max(0, count - entries.Count)));
        return SyntaxFactory.ParseExpression("new[] { " + string.Join(", ", kept.Select(e => e.ToString())) + " }");
    }

    // Stem = Stem.Deep: the Stem argument's value replaced, or the argument added before StemWidth.
    private static SyntaxNode UseDeepStem(SyntaxNode root, AttributeSyntax attribute, AttributeArgumentSyntax stemWidth)
    {
        var list = attribute.ArgumentList!;
        var stem = list.Arguments.FirstOrDefault(a => a.NameEquals?.Name.Identifier.Text == "Stem");
        if (stem is not null) return root.ReplaceNode(stem.Expression, SyntaxFactory.ParseExpression("Stem.Deep").WithTriviaFrom(stem.Expression));
        var texts = list.Arguments.SelectMany(a => a == stemWidth ? new[] { "Stem = Stem.Deep", Text(a) } : new[] { Text(a) });
        var parsed = SyntaxFactory.ParseAttributeArgumentList("(" + string.Join(", ", texts) + ")")!;
        return root.ReplaceNode(list, parsed.WithTriviaFrom(list));
    }
}
