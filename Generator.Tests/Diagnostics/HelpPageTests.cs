using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using ResNetGen.Generator.Diagnostics;
using ResNetGen.Generator.Tests.Infrastructure;
using Xunit;

namespace ResNetGen.Generator.Tests.Diagnostics;

/// <summary>Every diagnostic has a help link, its page exists, and the page's example really produces that diagnostic.</summary>
public class HelpPageTests
{
    private static string Folder => Path.Combine(Repository.Root(), "docs", "diagnostics");

    public static TheoryData<string> Ids() => new(DiagnosticDescriptors.All.Select(d => d.Id));

    [Theory]
    [MemberData(nameof(Ids))]
    public void The_help_link_leads_to_a_page_whose_example_triggers_the_diagnostic(string id)
    {
        var descriptor = DiagnosticDescriptors.ById(id);
        Assert.Equal("https://github.com/resnetgen/ResNetGen/blob/main/docs/diagnostics/" + id + ".md", descriptor.HelpLinkUri);
        var page = Path.Combine(Folder, Path.GetFileName(new System.Uri(descriptor.HelpLinkUri).AbsolutePath));
        Assert.True(File.Exists(page), $"{id}'s help link names {page}, which does not exist");
        var text = File.ReadAllText(page);
        Assert.StartsWith($"# {id}: {descriptor.Title.ToString(System.Globalization.CultureInfo.InvariantCulture)}\n", text.Replace("\r\n", "\n"));
        foreach (var section in new[] { "## What it means", "## The smallest attribute that triggers it", "## The fix", "## Why ResNetGen refuses rather than guesses" })
            Assert.Contains(section, text);
        Assert.Contains($"Severity: {(descriptor.DefaultSeverity == Microsoft.CodeAnalysis.DiagnosticSeverity.Error ? "error" : "warning")}.", text);

        var example = Regex.Match(text, "```csharp\n(.*?)```", RegexOptions.Singleline);
        if (descriptor == DiagnosticDescriptors.InternalError)
        {
            Assert.False(example.Success, "RNG0099 reports a bug; its page shows no example");
            return;
        }
        Assert.True(example.Success, $"{id}'s page has no C# example");
        var diagnostics = GeneratorHarness.AllDiagnostics(example.Groups[1].Value);
        Assert.True(diagnostics.Any(d => d.Id == id), $"{id}'s example gives {string.Join(", ", diagnostics.Select(d => d.Id + ": " + d.GetMessage()))}");
    }

    [Fact]
    public void The_index_lists_every_page_and_nothing_else()
    {
        var index = File.ReadAllText(Path.Combine(Folder, "README.md"));
        var listed = Regex.Matches(index, @"\[(RNG\d{4})\]\(\1\.md\)").Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(DiagnosticDescriptors.All.Select(d => d.Id), listed);
        Assert.Equal(listed.Select(id => id + ".md").Append("README.md").OrderBy(f => f), Directory.GetFiles(Folder).Select(Path.GetFileName).OrderBy(f => f));
    }
}
