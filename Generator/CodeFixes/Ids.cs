using System;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;

namespace ResNetGen.CodeFixes;

/// <summary>
/// The catalogue IDs the code fixes handle (the generator's DiagnosticDescriptors define them; tests check the two agree),
/// and the one document edit they share.
/// </summary>
internal static class Ids
{
    /// <summary>The document with <paramref name="edit"/> applied to its syntax root (unchanged where the edit gives null).</summary>
    public static async Task<Document> Edit(Document document, Func<SyntaxNode, SyntaxNode?> edit, CancellationToken cancellationToken)
    {
        var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        return root is not null && edit(root) is { } changed ? document.WithSyntaxRoot(changed) : document;
    }

    public const string NotAPartialClass = "RNG0001";
    public const string BasicBlockWidth = "RNG0003";
    public const string BasicBlockDilation = "RNG0004";
    public const string DilateStagesLength = "RNG0005";
    public const string MemberAlreadyDeclared = "RNG0011";
    public const string UndefinedEnumValue = "RNG0012";
    public const string OptionDoesNotApply = "RNG0014";
}
