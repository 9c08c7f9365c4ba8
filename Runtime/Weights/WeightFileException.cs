using System;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace ResNetGen;

/// <summary>
/// A weight file that cannot be read or does not fit the module: the message names the file, the key (where one is
/// at fault) and the problem on one short line, with control and invisible characters escaped, so that a crafted
/// key cannot forge log lines or drive a terminal. Whatever fails underneath (zip, libtorch, memory) arrives as this
/// type, with the original kept as <see cref="Exception.InnerException"/>. Whenever it is thrown by a load, the
/// module is unchanged.
/// </summary>
public sealed class WeightFileException : IOException
{
    /// <summary>The longest key a message quotes in full; longer keys are cut with their length noted.</summary>
    public const int MaxQuotedKey = 160;

    /// <summary>The longest problem text a message carries.</summary>
    public const int MaxProblem = 600;

    /// <summary>Creates the exception for <paramref name="filePath"/>, <paramref name="key"/> (or null) and <paramref name="problem"/>.</summary>
    public WeightFileException(string filePath, string? key, string problem, Exception? inner = null)
        : base(Compose(filePath, key, problem), inner)
    {
        FilePath = filePath;
        Key = key;
        Problem = problem;
    }

    /// <summary>The file that was read.</summary>
    public string FilePath { get; }

    /// <summary>The state_dict key at fault, if one is (exactly as in the file; the message escapes it).</summary>
    public string? Key { get; }

    /// <summary>The problem, without file and key.</summary>
    public string Problem { get; }

    /// <summary>
    /// The exception for a failure that is not already one: a short description of <paramref name="error"/> (its
    /// first line, without libtorch's native stack), with <paramref name="error"/> kept as the inner exception.
    /// </summary>
    internal static WeightFileException From(string path, string? key, Exception error) => error switch
    {
        WeightFileException w => w,
        OutOfMemoryException => new(path, key, "ran out of memory while reading the file", error),
        OverflowException => new(path, key, "a size in the file overflows 64-bit arithmetic", error),
        ExternalException => new(path, key, "libtorch refused the data: " + FirstLine(error.Message), error),
        InvalidDataException => new(path, key, "the zip archive is damaged: " + FirstLine(error.Message), error),
        UnauthorizedAccessException or IOException => new(path, key, "cannot read the file: " + FirstLine(error.Message), error),
        _ => new(path, key, $"{error.GetType().Name}: {FirstLine(error.Message)}", error),
    };

    /// <summary>The first line of a message, without libtorch's "[enforce fail at FILE:LINE] condition." prefix.</summary>
    internal static string FirstLine(string message)
    {
        var end = message.IndexOfAny(new[] { '\r', '\n' });
        var line = end < 0 ? message : message.Substring(0, end);
        if (line.StartsWith("[enforce fail at ", StringComparison.Ordinal))
        {
            var close = line.IndexOf("] ", StringComparison.Ordinal);
            var sentence = close < 0 ? -1 : line.IndexOf(". ", close, StringComparison.Ordinal);
            if (sentence > 0) line = line.Substring(sentence + 2);
        }
        return line.Trim();
    }

    /// <summary>
    /// <paramref name="text"/> made safe for one log line: control, format (bidirectional overrides, zero-width) and
    /// line-separator characters become escapes, and text past <paramref name="limit"/> characters is cut.
    /// </summary>
    public static string Escape(string text, int limit = int.MaxValue)
    {
        var builder = new StringBuilder(Math.Min(text.Length, limit) + 8);
        var shown = 0;
        foreach (var rune in text.EnumerateRunes())
        {
            if (shown >= limit)
            {
                builder.Append($"…({text.Length} chars)");
                break;
            }
            shown += rune.Utf16SequenceLength;
            var category = Rune.GetUnicodeCategory(rune);
            if (rune.Value == '\n') builder.Append("\\n");
            else if (rune.Value == '\r') builder.Append("\\r");
            else if (rune.Value == '\t') builder.Append("\\t");
            else if (rune.Value < 0x100 && category == UnicodeCategory.Control) builder.Append("\\x").Append(rune.Value.ToString("x2", CultureInfo.InvariantCulture));
            else if (category is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.LineSeparator
                     or UnicodeCategory.ParagraphSeparator or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned)
                builder.Append("\\u{").Append(rune.Value.ToString("x4", CultureInfo.InvariantCulture)).Append('}');
            else builder.Append(rune.ToString());
        }
        return builder.ToString();
    }

    private static string Compose(string path, string? key, string problem)
    {
        var file = Escape(path ?? "", 400);
        var what = Escape(problem ?? "", MaxProblem);
        return key is null ? $"{file}: {what}" : $"{file}: {Escape(key, MaxQuotedKey)}: {what}";
    }
}

/// <summary>What a load did: the keys it loaded, and the keys it skipped.</summary>
/// <param name="Loaded">Keys copied into the module.</param>
/// <param name="Missing">Keys the module has and the file lacks (non-strict loads only).</param>
/// <param name="Unexpected">Keys the file has and the module lacks (non-strict loads only).</param>
public sealed record LoadReport(
    System.Collections.Generic.IReadOnlyList<string> Loaded,
    System.Collections.Generic.IReadOnlyList<string> Missing,
    System.Collections.Generic.IReadOnlyList<string> Unexpected)
{
    /// <summary>Keys in both whose shapes differ, skipped by a load with <c>ignoreMismatchedShapes: true</c> (the module keeps its own).</summary>
    public System.Collections.Generic.IReadOnlyList<string> Mismatched { get; init; } = System.Array.Empty<string>();

    /// <summary>
    /// Batch-norm <c>num_batches_tracked</c> counters the file lacks, left as the module had them. PyTorch's own strict
    /// <c>load_state_dict</c> accepts such files (its batch-norm fills the counter in), and published checkpoints that
    /// were cleaned of counters (timm's among them) are loaded strictly so too; the counter affects nothing unless
    /// momentum is null.
    /// </summary>
    public System.Collections.Generic.IReadOnlyList<string> CountersKept { get; init; } = System.Array.Empty<string>();
}
