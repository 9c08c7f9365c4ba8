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
using Microsoft.CodeAnalysis.Rename;

namespace ResNetGen.CodeFixes;

/// <summary>
/// RNG0011: a member the generator owns is declared by hand. Fixes: remove it, or rename it (a named member, renamed
/// everywhere it is used, to My + its name); a base class is removed from the base list.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(MemberFix)), Shared]
public sealed class MemberFix : FixProvider
{
    /// <inheritdoc />
    public override ImmutableArray<string> FixableDiagnosticIds => ImmutableArray.Create(Ids.MemberAlreadyDeclared);

    /// <inheritdoc />
    protected override Task Register(CodeFixContext context, SyntaxNode root, Diagnostic diagnostic)
    {
        var node = root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true);
        if (node.FirstAncestorOrSelf<BaseTypeSyntax>() is { Parent: BaseListSyntax baseList } baseType)
        {
            Offer(context, diagnostic, $"Remove the base class {baseType.Type}", "remove", r => baseList.Types.Count == 1
                ? r.RemoveNode(baseList, SyntaxRemoveOptions.KeepExteriorTrivia)
                : r.RemoveNode(baseType, SyntaxRemoveOptions.KeepNoTrivia));
            return Task.CompletedTask;
        }
        var member = node.FirstAncestorOrSelf<MemberDeclarationSyntax>();
        if (member is null or BaseTypeDeclarationSyntax) return Task.CompletedTask;
        var removed = member is BaseFieldDeclarationSyntax { Declaration.Variables.Count: > 1 } field
            ? (SyntaxNode)field.Declaration.Variables.First(v => v.Span.Contains(diagnostic.Location.SourceSpan))
            : member;
        var name = Name(member, diagnostic);
        Offer(context, diagnostic, name is null ? "Remove it: ResNetGen generates it" : $"Remove '{name}': ResNetGen generates it", "remove",
            r => r.RemoveNode(removed, SyntaxRemoveOptions.KeepNoTrivia));
        if (name is null || member is ConstructorDeclarationSyntax) return Task.CompletedTask;
        // A rename changes every document that uses the member: a solution-wide action, not an edit of this root.
        var newName = "My" + char.ToUpperInvariant(name[0]) + name.Substring(1);
        context.RegisterCodeFix(CodeAction.Create($"Rename '{name}' to '{newName}'",
            ct => Rename(context.Document, diagnostic.Location.SourceSpan, newName, ct),
            equivalenceKey: Ids.MemberAlreadyDeclared + ".rename"), diagnostic);
        return Task.CompletedTask;
    }

    private static string? Name(MemberDeclarationSyntax member, Diagnostic diagnostic) => member switch
    {
        MethodDeclarationSyntax m => m.Identifier.Text,
        PropertyDeclarationSyntax p => p.Identifier.Text,
        EventDeclarationSyntax e => e.Identifier.Text,
        BaseFieldDeclarationSyntax f => f.Declaration.Variables.FirstOrDefault(v => v.Span.Contains(diagnostic.Location.SourceSpan))?.Identifier.Text
            ?? f.Declaration.Variables.First().Identifier.Text,
        _ => null,
    };


    private static async Task<Solution> Rename(Document document, Microsoft.CodeAnalysis.Text.TextSpan span, string newName, CancellationToken cancellationToken)
    {
        var model = await document.GetSemanticModelAsync(cancellationToken).ConfigureAwait(false);
        var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        if (model is null || root is null) return document.Project.Solution;
        var symbol = model.GetDeclaredSymbol(root.FindNode(span, getInnermostNodeForTie: true), cancellationToken);
        if (symbol is null) return document.Project.Solution;
        return await Renamer.RenameSymbolAsync(document.Project.Solution, symbol, new SymbolRenameOptions(), newName, cancellationToken).ConfigureAwait(false);
    }
}
