using System;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;

namespace ResNetGen.CodeFixes;

/// <summary>
/// What every ResNetGen code fix shares: batch fix-all, the document's root fetched once for all the diagnostics of a
/// request, and fixes that are one edit of that root, keyed by the diagnostic's ID and the fix's name (RNG0003.remove).
/// </summary>
public abstract class FixProvider : CodeFixProvider
{
    /// <inheritdoc />
    public sealed override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

    /// <inheritdoc />
    public sealed override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        if (root is null) return;
        foreach (var diagnostic in context.Diagnostics) await Register(context, root, diagnostic).ConfigureAwait(false);
    }

    /// <summary>Offers the fixes of one <paramref name="diagnostic"/> in <paramref name="root"/>, if any.</summary>
    protected abstract Task Register(CodeFixContext context, SyntaxNode root, Diagnostic diagnostic);

    /// <summary>Offers <paramref name="edit"/> of the document's root under <paramref name="title"/>, keyed <c>ID.key</c>.</summary>
    protected static void Offer(CodeFixContext context, Diagnostic diagnostic, string title, string key, Func<SyntaxNode, SyntaxNode?> edit) =>
        context.RegisterCodeFix(CodeAction.Create(title, ct => Edit(context.Document, edit, ct), equivalenceKey: diagnostic.Id + "." + key), diagnostic);

    /// <summary>The document with <paramref name="edit"/> applied to its syntax root (unchanged where the edit gives null).</summary>
    private static async Task<Document> Edit(Document document, Func<SyntaxNode, SyntaxNode?> edit, CancellationToken cancellationToken)
    {
        var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        return root is not null && edit(root) is { } changed ? document.WithSyntaxRoot(changed) : document;
    }
}
