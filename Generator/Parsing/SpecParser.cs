using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ResNetGen.Generator.Diagnostics;
using ResNetGen.Generator.Model;

namespace ResNetGen.Generator.Parsing;

/// <summary>
/// Reads a <c>[ResNet]</c> application into a <see cref="NetworkSpec"/>: values only, no symbols. Problems with the
/// class itself (RNG0001, RNG0011) are found here, since only the symbol can tell.
/// </summary>
internal static class SpecParser
{
    public static ParseResult Parse(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        var symbol = (INamedTypeSymbol)context.TargetSymbol;
        var syntax = (ClassDeclarationSyntax)context.TargetNode;
        var attribute = context.Attributes[0];
        var attributeSyntax = attribute.ApplicationSyntaxReference?.GetSyntax(cancellationToken) as AttributeSyntax;
        var attributeLocation = LocationInfo.From(attributeSyntax) ?? LocationInfo.From(syntax.Identifier.GetLocation());
        var target = new TargetClass(
            symbol.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : null,
            symbol.Name,
            ContainingTypes(symbol).ToEquatableArray());

        var diagnostics = new List<DiagnosticInfo>();
        CheckClass(symbol, syntax, diagnostics);

        // The compiler reports a malformed attribute itself; there is nothing to generate from one.
        if (attribute.ConstructorArguments.Length != 2 || attribute.ConstructorArguments.Any(a => a.Kind == TypedConstantKind.Error))
            return new ParseResult(null, EquatableArray<ArgumentLocation>.Empty, diagnostics.ToEquatableArray());

        var locations = ArgumentLocations(attributeSyntax, attributeLocation);
        var layers = attribute.ConstructorArguments[1].Values.Select(v => v.Value is int i ? i : 0).ToEquatableArray();
        var spec = new NetworkSpec(target, (BlockKind)(int)attribute.ConstructorArguments[0].Value!, layers)
        {
            // One line however it was written: the emitter puts it in comments (a newline inside would end one).
            AttributeText = attributeSyntax is null ? "ResNet" : System.Text.RegularExpressions.Regex.Replace(attributeSyntax.ToString(), @"\s+", " "),
        };
        foreach (var named in attribute.NamedArguments)
        {
            var value = named.Value;
            if (value.Kind == TypedConstantKind.Error) continue;
            spec = named.Key switch
            {
                "NumClasses" => spec with { NumClasses = (int)value.Value! },
                "InChannels" => spec with { InChannels = (int)value.Value! },
                "Groups" => spec with { Groups = (int)value.Value! },
                "WidthPerGroup" => spec with { WidthPerGroup = (int)value.Value! },
                "BaseWidth" => spec with { BaseWidth = (int)value.Value! },
                "Stem" => spec with { Stem = (StemKind)(int)value.Value! },
                "Shortcut" => spec with { Shortcut = (ShortcutKind)(int)value.Value! },
                "StrideAt" => spec with { StrideAt = (StrideAtKind)(int)value.Value! },
                "DilateStages" => spec with
                {
                    DilateStages = value.IsNull ? EquatableArray<bool>.Empty : value.Values.Select(v => v.Value is true).ToEquatableArray(),
                    DilateStagesGiven = !value.IsNull,
                },
                "ZeroInitResidual" => spec with { ZeroInitResidual = (bool)value.Value!, ZeroInitResidualGiven = true },
                "InputSize" => spec with { InputSize = (int)value.Value! },
                "StemWidth" => spec with { StemWidth = (int)value.Value!, StemWidthGiven = true },
                "StemPool" => spec with { StemPool = (StemPoolKind)(int)value.Value! },
                "Attention" => spec with { Attention = (AttentionKind)(int)value.Value! },
                "AntiAlias" => spec with { AntiAlias = (AntiAliasKind)(int)value.Value! },
                "DropPath" => spec with { DropPath = System.Convert.ToDouble(value.Value!, System.Globalization.CultureInfo.InvariantCulture) },
                "Norm" => spec with { Norm = (NormKind)(int)value.Value! },
                "NormGroups" => spec with { NormGroups = (int)value.Value!, NormGroupsGiven = true },
                "WeightStandardization" => spec with { WeightStandardization = (bool)value.Value! },
                "WeightStandardizationEps" => spec with
                {
                    WeightStandardizationEps = System.Convert.ToDouble(value.Value!, System.Globalization.CultureInfo.InvariantCulture),
                    WeightStandardizationEpsGiven = true,
                },
                "AttentionRatio" => spec with { AttentionRatio = System.Convert.ToDouble(value.Value!, System.Globalization.CultureInfo.InvariantCulture), AttentionRatioGiven = true },
                _ => spec,
            };
        }
        return new ParseResult(spec, locations, diagnostics.ToEquatableArray());
    }

    private static IEnumerable<ContainingType> ContainingTypes(INamedTypeSymbol symbol)
    {
        var chain = new List<ContainingType>();
        for (var type = symbol.ContainingType; type is not null; type = type.ContainingType)
        {
            var keyword = type.IsRecord
                ? (type.TypeKind == TypeKind.Struct ? "record struct" : "record")
                : type.TypeKind switch { TypeKind.Struct => "struct", TypeKind.Interface => "interface", _ => "class" };
            chain.Insert(0, new ContainingType(keyword, type.Name));
        }
        return chain;
    }

    private static void CheckClass(INamedTypeSymbol symbol, ClassDeclarationSyntax syntax, List<DiagnosticInfo> diagnostics)
    {
        var at = LocationInfo.From(syntax.Identifier.GetLocation());
        if (!syntax.Modifiers.Any(SyntaxKind.PartialKeyword))
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.NotAPartialClass, at, symbol.Name,
                "the class is not partial", $"Declare it as 'partial class {symbol.Name}'."));
        if (symbol.IsGenericType)
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.NotAPartialClass, at, symbol.Name,
                "the class is generic", "Remove its type parameters: a network's layers are fixed at build time."));
        if (symbol.IsStatic)
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.NotAPartialClass, at, symbol.Name,
                "the class is static", "Remove 'static': a network is a module instance."));
        for (var type = symbol.ContainingType; type is not null; type = type.ContainingType)
        {
            var partial = type.DeclaringSyntaxReferences.Any(r =>
                r.GetSyntax() is TypeDeclarationSyntax t && t.Modifiers.Any(SyntaxKind.PartialKeyword));
            if (!partial || type.IsGenericType)
            {
                diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.NotAPartialClass, at, symbol.Name,
                    $"it is nested in '{type.Name}', which is {(partial ? "generic" : "not partial")}",
                    partial ? $"Move '{symbol.Name}' out of the generic type." : $"Declare '{type.Name}' partial too."));
                break;
            }
        }

        // Members the generator owns (RNG0011), each reported on the member the user wrote.
        if (symbol.BaseType is { SpecialType: not SpecialType.System_Object } baseType)
        {
            var baseSyntax = symbol.DeclaringSyntaxReferences
                .Select(r => r.GetSyntax()).OfType<TypeDeclarationSyntax>()
                .Select(t => t.BaseList?.Types.FirstOrDefault()).FirstOrDefault(t => t is not null);
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.MemberAlreadyDeclared,
                LocationInfo.From(baseSyntax) ?? at, symbol.Name, $"the base class '{baseType.ToDisplayString()}'"));
        }
        foreach (var member in symbol.GetMembers())
        {
            if (member.IsImplicitlyDeclared) continue;
            string? what = member switch
            {
                IMethodSymbol { MethodKind: MethodKind.Constructor, Parameters.Length: 0, IsStatic: false } => "a parameterless constructor",
                IMethodSymbol { MethodKind: MethodKind.Constructor, Parameters.Length: 1, IsStatic: false } c
                    when c.Parameters[0].Type.SpecialType == SpecialType.System_Int32 => "a constructor taking an int (the generated one takes the class count)",
                IMethodSymbol { MethodKind: MethodKind.Ordinary, Name: "Dispose", Parameters.Length: 1 } m
                    when m.Parameters[0].Type.SpecialType == SpecialType.System_Boolean => "a method 'Dispose(bool)'",
                IMethodSymbol { MethodKind: MethodKind.Ordinary } m when GeneratedMembers.All.Contains(m.Name) => $"a method '{m.Name}'",
                IPropertySymbol or IFieldSymbol or INamedTypeSymbol or IEventSymbol when GeneratedMembers.All.Contains(member.Name) => $"a member '{member.Name}'",
                _ => null,
            };
            if (what is null) continue;
            var location = member.Locations.FirstOrDefault(l => l.IsInSource);
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.MemberAlreadyDeclared,
                LocationInfo.From(location) ?? at, symbol.Name, what));
        }
    }

    /// <summary>Where each argument was written: positional ones by index, named ones by name.</summary>
    private static EquatableArray<ArgumentLocation> ArgumentLocations(AttributeSyntax? syntax, LocationInfo? fallback)
    {
        var result = new List<ArgumentLocation>();
        if (fallback is not null) result.Add(new ArgumentLocation(ArgumentSlot.Attribute, 0, fallback));
        if (syntax?.ArgumentList is null) return result.ToEquatableArray();
        var positional = 0;
        foreach (var argument in syntax.ArgumentList.Arguments)
        {
            var location = LocationInfo.From(argument);
            if (location is null) continue;
            if (argument.NameEquals is { } nameEquals)
            {
                if (System.Enum.TryParse<ArgumentSlot>(nameEquals.Name.Identifier.ValueText, out var slot))
                    result.Add(new ArgumentLocation(slot, 0, location));
                continue;
            }
            if (positional == 0) result.Add(new ArgumentLocation(ArgumentSlot.Block, 0, location));
            else if (argument.Expression is ArrayCreationExpressionSyntax or ImplicitArrayCreationExpressionSyntax or CollectionExpressionSyntax)
                result.Add(new ArgumentLocation(ArgumentSlot.Layers, -1, location)); // the whole params array at once
            else result.Add(new ArgumentLocation(ArgumentSlot.Layers, positional - 1, location));
            positional++;
        }
        return result.ToEquatableArray();
    }

    /// <summary>The location of an argument, falling back to the whole params array, then to the attribute.</summary>
    public static LocationInfo? Find(EquatableArray<ArgumentLocation> locations, ArgumentSlot slot, int index = 0)
    {
        foreach (var l in locations) if (l.Slot == slot && l.Index == index) return l.Location;
        foreach (var l in locations) if (l.Slot == slot && l.Index == -1) return l.Location;
        if (slot == ArgumentSlot.Layers)
        {
            foreach (var l in locations) if (l.Slot == slot) return l.Location;
        }
        foreach (var l in locations) if (l.Slot == ArgumentSlot.Attribute) return l.Location;
        return null;
    }
}
