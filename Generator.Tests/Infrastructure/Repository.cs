using System;
using System.IO;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>The repository the tests were built from, for tests that read its README or pack its projects.</summary>
public static class Repository
{
    public static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ResNetGen.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("ResNetGen.sln not found above " + AppContext.BaseDirectory);
    }

    public static string Readme() => File.ReadAllText(Path.Combine(Root(), "README.md"));
}
