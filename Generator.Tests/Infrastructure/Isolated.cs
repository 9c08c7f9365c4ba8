using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading.Tasks;
using Xunit;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>
/// Runs a test body in a child process of its own, so that a native crash (oneDNN's SIGFPE on some CPUs, which no
/// .NET handler can catch) fails that test with the signal's name instead of taking the test host down. The child is
/// this test assembly started through <see cref="ChildProgram"/>, which finds the method by name and runs it.
/// </summary>
public static class Isolated
{
    /// <summary>How long a child may run.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Runs <typeparamref name="T"/>.<paramref name="method"/> (parameterless, static or on a new instance) in a
    /// child process with <paramref name="environment"/> added, and fails unless it exits 0. Returns its standard output.
    /// </summary>
    public static string Run<T>(string method, params (string Name, string? Value)[] environment)
    {
        var result = Start(typeof(T).FullName!, method, environment);
        Assert.True(result.ExitCode == 0,
            $"{typeof(T).Name}.{method} in a child process: {Describe(result.ExitCode)}.\n--- stdout ---\n{Tail(result.Output)}\n--- stderr ---\n{Tail(result.Error)}");
        return result.Output;
    }

    /// <summary>The exit of a child run: code, standard output and standard error.</summary>
    public sealed record Outcome(int ExitCode, string Output, string Error);

    /// <summary>Starts the child without judging its exit.</summary>
    public static Outcome Start(string type, string method, IEnumerable<(string Name, string? Value)> environment)
    {
        var info = new ProcessStartInfo(DotnetHost(), new[] { "exec", Assembly.GetExecutingAssembly().Location, ChildProgram.Verb, type, method })
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        // The parent's own choices must not leak in: each child starts from the defaults plus what the test sets.
        info.Environment.Remove(OneDnn.PolicyVariable);
        info.Environment.Remove(OneDnn.IsaVariable);
        info.Environment["DOTNET_DbgEnableMiniDump"] = "0";
        foreach (var (name, value) in environment)
        {
            if (value is null) info.Environment.Remove(name);
            else info.Environment[name] = value;
        }
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the child process");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            return new Outcome(-1, output.Result, error.Result + $"\n(killed after {Limit.TotalMinutes:0} minutes)");
        }
        Task.WaitAll(output, error);
        return new Outcome(process.ExitCode, output.Result, error.Result);
    }

    /// <summary>An exit code in words: 136 is "killed by SIGFPE (signal 8)".</summary>
    public static string Describe(int code) => code switch
    {
        0 => "exit code 0",
        -1 => "timed out",
        > 128 and < 160 => $"killed by {Signal(code - 128)} (signal {code - 128}, exit code {code})",
        _ => $"exit code {code}",
    };

    private static string Signal(int n) => n switch
    {
        4 => "SIGILL", 6 => "SIGABRT", 8 => "SIGFPE", 9 => "SIGKILL", 11 => "SIGSEGV", 7 => "SIGBUS", _ => "a signal",
    };

    private static string Tail(string text) => text.Length <= 4000 ? text : "…" + text[^4000..];

    private static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        return "dotnet";
    }
}

/// <summary>
/// The test assembly's entry point, used only by <see cref="Isolated"/>: <c>dotnet exec ResNetGen.Generator.Tests.dll
/// child TYPE METHOD</c> runs that method and exits 0, or prints the failure and exits 1.
/// </summary>
public static class ChildProgram
{
    public const string Verb = "child";

    public static int Main(string[] args)
    {
        if (args.Length != 3 || args[0] != Verb)
        {
            Console.Error.WriteLine($"usage: {Verb} TYPE METHOD (this assembly is run by the test host; a child run is for Isolated)");
            return 2;
        }
        var type = typeof(ChildProgram).Assembly.GetType(args[1]) ?? throw new ArgumentException($"no type {args[1]}");
        var method = type.GetMethod(args[2], BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance, Type.EmptyTypes)
                     ?? throw new ArgumentException($"no parameterless method {args[1]}.{args[2]}");
        var target = method.IsStatic ? null : Activator.CreateInstance(type);
        try
        {
            method.Invoke(target, null);
            return 0;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            Console.Out.Flush();
            Console.Error.WriteLine(e.InnerException);
            return 1;
        }
        finally
        {
            (target as IDisposable)?.Dispose();
        }
    }
}

/// <summary>Runs the oneDNN check as the test assembly loads, before any test computes a convolution.</summary>
internal static class OneDnnAtLoad
{
    [ModuleInitializer]
    internal static void Check() => OneDnn.EnsureChecked();
}
