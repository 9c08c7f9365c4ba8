using System;
using System.IO;

namespace ResNetGen;

/// <summary>
/// A weight file that cannot be read or does not fit the module: the message names the file, the key (where one is
/// at fault) and the problem. Whenever it is thrown by a load, the module is unchanged.
/// </summary>
public sealed class WeightFileException : IOException
{
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

    /// <summary>The state_dict key at fault, if one is.</summary>
    public string? Key { get; }

    /// <summary>The problem, without file and key.</summary>
    public string Problem { get; }

    private static string Compose(string path, string? key, string problem) =>
        key is null ? $"{path}: {problem}" : $"{path}: {key}: {problem}";
}

/// <summary>What a load did: the keys it loaded, and (non-strict) the keys it skipped.</summary>
/// <param name="Loaded">Keys copied into the module.</param>
/// <param name="Missing">Keys the module has and the file lacks (non-strict loads only).</param>
/// <param name="Unexpected">Keys the file has and the module lacks (non-strict loads only).</param>
public sealed record LoadReport(
    System.Collections.Generic.IReadOnlyList<string> Loaded,
    System.Collections.Generic.IReadOnlyList<string> Missing,
    System.Collections.Generic.IReadOnlyList<string> Unexpected);
