using System;
using System.IO;
using System.Runtime.CompilerServices;
using System.Text;
using DiffPlex.DiffBuilder;
using DiffPlex.DiffBuilder.Model;
using Xunit.Sdk;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>
/// Snapshot testing in Verify's conventions, kept to one file so that moving to Verify.SourceGenerators is a swap:
/// <c>Snapshots/&lt;Name&gt;.verified.cs</c> sits next to the test; a mismatch fails with a unified diff and writes
/// <c>&lt;Name&gt;.received.cs</c>; setting RESNETGEN_ACCEPT_SNAPSHOTS=1 accepts received text as verified.
/// </summary>
public static class Snapshot
{
    public const string AcceptVariable = "RESNETGEN_ACCEPT_SNAPSHOTS";

    public static void Verify(string name, string actual, string extension = "cs", [CallerFilePath] string testFile = "")
    {
        var folder = Path.Combine(Path.GetDirectoryName(testFile)!, "Snapshots");
        Directory.CreateDirectory(folder);
        var verified = Path.Combine(folder, $"{name}.verified.{extension}");
        var received = Path.Combine(folder, $"{name}.received.{extension}");
        actual = actual.Replace("\r\n", "\n");

        var expected = File.Exists(verified) ? File.ReadAllText(verified).Replace("\r\n", "\n") : null;
        if (expected == actual)
        {
            if (File.Exists(received)) File.Delete(received);
            return;
        }
        if (Environment.GetEnvironmentVariable(AcceptVariable) == "1")
        {
            File.WriteAllText(verified, actual);
            if (File.Exists(received)) File.Delete(received);
            return;
        }
        File.WriteAllText(received, actual);
        var message = expected is null
            ? $"No verified snapshot {verified}. Review {received}, then rename it to .verified.{extension} or rerun with {AcceptVariable}=1."
            : $"Snapshot {name} differs from {verified} (received text written to {received}; rerun with {AcceptVariable}=1 to accept):\n{Diff(expected, actual)}";
        throw new XunitException(message);
    }

    /// <summary>A unified-style diff: changed lines with three lines of context, '-' verified, '+' received.</summary>
    public static string Diff(string expected, string actual)
    {
        var model = InlineDiffBuilder.Diff(expected, actual, ignoreWhiteSpace: false);
        var lines = model.Lines;
        var show = new bool[lines.Count];
        for (var i = 0; i < lines.Count; i++)
        {
            if (lines[i].Type == ChangeType.Unchanged) continue;
            for (var j = Math.Max(0, i - 3); j <= Math.Min(lines.Count - 1, i + 3); j++) show[j] = true;
        }
        var sb = new StringBuilder();
        var shown = 0;
        for (var i = 0; i < lines.Count && shown < 200; i++)
        {
            if (!show[i])
            {
                if (i > 0 && show[i - 1]) sb.Append("@@\n");
                continue;
            }
            var prefix = lines[i].Type switch { ChangeType.Inserted => "+", ChangeType.Deleted => "-", _ => " " };
            sb.Append(prefix).Append(lines[i].Text).Append('\n');
            shown++;
        }
        return sb.ToString();
    }
}
