using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace ResNetGen.Generator.Model;

/// <summary>A source location as plain data (file path and spans), so that pipeline models hold no Roslyn objects.</summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    /// <summary>
    /// The location in syntax tree of that path among <paramref name="trees"/>, so that <c>#pragma warning disable</c> and
    /// .editorconfig severities apply to the diagnostic; a path-only location (which they ignore) where no tree matches.
    /// </summary>
    public Location ToLocation(System.Collections.Generic.IEnumerable<SyntaxTree>? trees)
    {
        if (trees is not null)
        {
            foreach (var tree in trees)
            {
                if (tree.FilePath == FilePath && Span.End <= tree.Length) return Location.Create(tree, Span);
            }
        }
        return Location.Create(FilePath, Span, LineSpan);
    }

    public static LocationInfo? From(Location? location)
    {
        if (location is null || location.SourceTree is null) return null;
        return new LocationInfo(location.SourceTree.FilePath, location.SourceSpan, location.GetLineSpan().Span);
    }

    public static LocationInfo? From(SyntaxNode? node) => node is null ? null : From(node.GetLocation());
}
