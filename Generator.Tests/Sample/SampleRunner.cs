using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using ResNetGen.Generator.Tests.Infrastructure;
using ResNetGen.Sample;
using Spectre.Console;
using Xunit;

namespace ResNetGen.Generator.Tests.SampleApplication;

/// <summary>Runs the sample's commands in process on a plain, wide console, and checks their one-line errors.</summary>
internal static class SampleRunner
{
    public static (int Code, string Text) Run(params string[] args) => Run(CancellationToken.None, args);

    public static (int Code, string Text) Run(CancellationToken cancel, params string[] args) =>
        Run(console => new SampleApp(console, cancel), args);

    /// <summary>Runs the app <paramref name="create"/> makes and returns its exit code and text.</summary>
    public static (int Code, string Text) Run(Func<IAnsiConsole, SampleApp> create, params string[] args)
    {
        var writer = new StringWriter();
        var code = create(PlainConsole(writer)).Run(args);
        return (code, writer.ToString());
    }

    /// <summary>A console without colours or interaction that writes to <paramref name="writer"/>, wide enough that no message is wrapped.</summary>
    public static IAnsiConsole PlainConsole(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 1000;
        return console;
    }

    /// <summary>Starts the sample's own program (its Program.cs, from its copy beside the tests) with <paramref name="args"/>.</summary>
    public static System.Diagnostics.ProcessStartInfo Program(IEnumerable<string> args) =>
        new(Isolated.DotnetHost(), new[] { "exec", Path.Combine(AppContext.BaseDirectory, "ResNetGen.Sample.dll") }.Concat(args));

    /// <summary>A run-time problem: exit code 1, exactly one "error:" line starting with <paramref name="expected"/>, no stack trace.</summary>
    public static void AssertOneLineError((int Code, string Text) run, string expected, int code = 1)
    {
        Assert.True(run.Code == code, $"exit {run.Code}, expected {code}: {run.Text}");
        Assert.True(run.Text.Contains("error: " + expected, StringComparison.Ordinal), $"expected \"error: {expected}\" in:\n{run.Text}");
        Assert.DoesNotContain("   at ", run.Text); // no stack trace
        Assert.Single(run.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error:", StringComparison.Ordinal));
    }

    /// <summary>A usage error: exit code 2 and one "error:" line.</summary>
    public static void AssertUsageError((int Code, string Text) run, string expected) => AssertOneLineError(run, expected, 2);
}
