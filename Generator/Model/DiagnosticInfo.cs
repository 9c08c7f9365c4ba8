using Microsoft.CodeAnalysis;

namespace ResNetGen.Generator.Model;

/// <summary>A diagnostic as plain data: the descriptor's ID, where, and the message arguments.</summary>
internal sealed record DiagnosticInfo(string Id, LocationInfo? Location, EquatableArray<string> MessageArgs)
{
    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, LocationInfo? location, params string[] args)
        => new(descriptor.Id, location, args.ToEquatableArray());

    /// <summary>The diagnostic, located in its syntax tree where <paramref name="trees"/> has the file.</summary>
    public Diagnostic ToDiagnostic(System.Collections.Generic.IEnumerable<SyntaxTree>? trees = null)
    {
        var descriptor = Diagnostics.DiagnosticDescriptors.ById(Id);
        // Message arguments are objects for Roslyn; they are strings here so the model stays equatable.
        var args = new object[MessageArgs.Count];
        for (var i = 0; i < args.Length; i++) args[i] = MessageArgs[i];
        return Diagnostic.Create(descriptor, Location?.ToLocation(trees), args);
    }
}
