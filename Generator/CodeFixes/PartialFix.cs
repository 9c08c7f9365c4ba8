using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ResNetGen.CodeFixes;

/// <summary>
/// RNG0001: makes the class, and every type it is nested in that is not partial, partial. Not offered where the class
/// and its containers are partial already (a generic or static class: no edit of the modifiers makes it generable).
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(PartialFix)), Shared]
public sealed class PartialFix : FixProvider
{
    /// <inheritdoc />
    public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(Ids.NotAPartialClass);

    /// <inheritdoc />
    protected override Task Register(CodeFixContext context, SyntaxNode root, Diagnostic diagnostic)
    {
        var type = root.FindToken(diagnostic.Location.SourceSpan.Start).Parent?.FirstAncestorOrSelf<ClassDeclarationSyntax>();
        if (type is not null && Missing(type).Length > 0)
            Offer(context, diagnostic, $"Make '{type.Identifier.Text}' partial", "partial", r => r.ReplaceNodes(Missing(type), (_, rewritten) => AddPartial(rewritten)));
        return Task.CompletedTask;
    }

    private static ImmutableArray<TypeDeclarationSyntax> Missing(ClassDeclarationSyntax type) =>
        type.AncestorsAndSelf().OfType<TypeDeclarationSyntax>().Where(t => !t.Modifiers.Any(SyntaxKind.PartialKeyword)).ToImmutableArray();

    // 'partial' goes last among the modifiers, right before the keyword, as C# requires; with no modifiers it takes over
    // the keyword's leading trivia (the line break and indentation after an attribute list).
    private static TypeDeclarationSyntax AddPartial(TypeDeclarationSyntax type)
    {
        if (type.Modifiers.Count == 0)
        {
            var partial = SyntaxFactory.Token(type.Keyword.LeadingTrivia, SyntaxKind.PartialKeyword, SyntaxFactory.TriviaList(SyntaxFactory.Space));
            return type.WithKeyword(type.Keyword.WithLeadingTrivia()).WithModifiers(SyntaxFactory.TokenList(partial));
        }
        return type.WithModifiers(type.Modifiers.Add(SyntaxFactory.Token(SyntaxKind.PartialKeyword).WithTrailingTrivia(SyntaxFactory.Space)));
    }
}
