using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ResNetGen.Generator.Tests.Infrastructure;
using Xunit;

namespace ResNetGen.Generator.Tests.Training;

/// <summary>
/// TorchSharp turns a number given where libtorch wants a <c>Scalar</c> into a temporary that nothing holds: the garbage
/// collector may finalise it while libtorch still reads it ("Unknown scalar type", or "Expected false to be true" from
/// <c>Scalar::toDouble</c>, minutes into a run). The same happens inside TorchSharp for a one-argument <c>add</c>/<c>add_</c>
/// (alpha 1), <c>addcdiv</c>/<c>addcmul</c> without a value, and <c>torch.linalg.vector_norm</c>/<c>matrix_norm</c> (their
/// order). The stress test catches such a call only where it runs, and only sometimes; this reads every shipped source
/// file's syntax tree for the call shapes themselves.
/// </summary>
public class ScalarSafetyTests
{
    private static readonly string[] ShippedFolders = { "Runtime", "Sample", "DeviceCheck", "Benchmarks" };

    [Fact]
    public void No_shipped_source_hands_libtorch_a_temporary_scalar()
    {
        var root = Repository.Root();
        var files = ShippedFolders.SelectMany(f => Directory.EnumerateFiles(Path.Combine(root, f), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .ToList();
        Assert.True(files.Count > 50, $"only {files.Count} source files found under {root}");
        var found = files.SelectMany(f => Hazards(File.ReadAllText(f)).Select(h => $"{Path.GetRelativePath(root, f)}:{h.Line}: {h.Call}")).ToList();
        Assert.True(found.Count == 0, "temporary Scalars handed to libtorch (hold each in a `using var x = v.ToScalar();`, pass the alpha):\n" + string.Join("\n", found));
    }

    [Theory]
    [InlineData("var n = torch.linalg.vector_norm(g, 2.0, null, false);", "vector_norm")]
    [InlineData("var n = torch.linalg.matrix_norm(g, \"fro\");", "matrix_norm")]
    [InlineData("x.add_(y);", "add_")]
    [InlineData("var z = x.add(y.mul(w));", "add")]
    [InlineData("v.addcdiv_(a, b);", "addcdiv_")]
    [InlineData("v.addcmul_(g, g);", "addcmul_")]
    [InlineData("x.mul_(0.5);", "mul_")]
    [InlineData("x.div_(Math.Sqrt(fanIn));", "div_")]
    [InlineData("var y = x.div(16);", "div")]
    [InlineData("x.clamp_(0, 255);", "clamp_")]
    [InlineData("var m = x.gt(-1.5f);", "gt")]
    [InlineData("x.fill_((double)value);", "fill_")]
    [InlineData("var f = torch.full_like(x, 3);", "full_like")]
    [InlineData("var p = x.pow(2);", "pow")]
    [InlineData("x\n  .lerp_(y,\n  0.1);", "lerp_")]
    public void The_reader_finds_each_kind_of_temporary_scalar(string source, string call)
    {
        var hazards = Hazards(source);
        Assert.True(hazards.Count == 1 && hazards[0].Call.StartsWith(call + "(", StringComparison.Ordinal),
            $"{source} → {string.Join("; ", hazards.Select(h => h.Call))}");
    }

    [Theory]
    [InlineData("x.add_(y, one);")]
    [InlineData("v.addcdiv_(a, b, step);")]
    [InlineData("x.mul_(half).div_(fanInRoot);")]
    [InlineData("var n = tensor.norm(2.0f);")]
    [InlineData("// x.add_(1) in a comment\nx.add_(y, one); /* x.mul_(0.5) */")]
    [InlineData("var s = \"x.mul_(0.5)\";")]
    [InlineData("var f = x.flip(0).sum(-1).view(-1, 1).transpose(1, 2);")]
    [InlineData("list.Add(1); builder.Add(x);")]
    [InlineData("var c = x.clamp_(zero, bound).pow(exponent);")]
    public void The_reader_leaves_held_scalars_and_other_calls_alone(string source) =>
        Assert.Empty(Hazards(source));

    /// <summary>Calls whose number argument TorchSharp turns into a Scalar (first argument a literal, a cast or a Math call).</summary>
    private static readonly HashSet<string> ScalarFirst = new(StringComparer.Ordinal)
    {
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "pow_", "fill_", "clamp", "clamp_", "clamp_min", "clamp_min_",
        "clamp_max", "clamp_max_", "eq", "ne", "gt", "ge", "lt", "le", "remainder", "fmod", "rsub", "masked_fill", "masked_fill_",
    };

    /// <summary>Calls whose second argument is a Scalar (a number there is a temporary).</summary>
    private static readonly HashSet<string> ScalarSecond = new(StringComparer.Ordinal) { "lerp", "lerp_", "full_like", "masked_fill", "masked_fill_", "clamp", "clamp_" };

    /// <summary>How many arguments a call needs for TorchSharp not to supply a Scalar of its own.</summary>
    private static readonly Dictionary<string, int> FullArity = new(StringComparer.Ordinal)
    {
        ["add"] = 2, ["add_"] = 2, ["addcdiv"] = 3, ["addcdiv_"] = 3, ["addcmul"] = 3, ["addcmul_"] = 3,
    };

    private static readonly Regex Number = new(@"^(-?\s*\d[\d_.]*[fdmFDM]?|-?\s*\.\d+[fdFD]?|Math\.|\((double|float|int|long)\))", RegexOptions.Compiled);

    /// <summary>The hazardous calls in <paramref name="source"/>, read from its syntax tree (comments and strings are not code).</summary>
    internal static List<(int Line, string Call)> Hazards(string source)
    {
        var hazards = new List<(int, string)>();
        foreach (var invocation in CSharpSyntaxTree.ParseText(source).GetRoot().DescendantNodes().OfType<InvocationExpressionSyntax>())
        {
            if (invocation.Expression is not MemberAccessExpressionSyntax member) continue;
            var name = member.Name.Identifier.Text;
            var isNorm = name is "vector_norm" or "matrix_norm";
            if (!isNorm && !ScalarFirst.Contains(name) && !ScalarSecond.Contains(name) && !FullArity.ContainsKey(name)) continue;
            var arguments = invocation.ArgumentList.Arguments.Select(a => a.Expression.ToString()).ToList();
            if (arguments.Count == 0) continue;
            var hazard = isNorm
                || (FullArity.TryGetValue(name, out var arity) && arguments.Count < arity)
                || (ScalarFirst.Contains(name) && Number.IsMatch(arguments[0]))
                || (ScalarSecond.Contains(name) && arguments.Count > 1 && Number.IsMatch(arguments[1]));
            if (hazard)
                hazards.Add((invocation.GetLocation().GetLineSpan().StartLinePosition.Line + 1,
                    Regex.Replace($"{name}({string.Join(", ", arguments)})", @"\s+", " ")));
        }
        return hazards;
    }
}
