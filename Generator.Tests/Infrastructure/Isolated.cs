using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
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
        Assert.True(result.ExitCode == 0 && !result.TimedOut,
            $"{typeof(T).Name}.{method} in a child process: {result.Describe(Limit)}.\n--- stdout ---\n{Tail(result.Output)}\n--- stderr ---\n{Tail(result.Error)}");
        return result.Output;
    }

    /// <summary>Starts the child without judging its exit.</summary>
    internal static ChildExit Start(string type, string method, IEnumerable<(string Name, string? Value)> environment) =>
        ChildProcess.Run(StartInfo(type, method, environment), Limit);

    /// <summary>Starts the child and returns at once, for a test that acts on it while it runs (its output is not captured).</summary>
    internal static Process Launch<T>(string method, params (string Name, string? Value)[] environment)
    {
        var info = StartInfo(typeof(T).FullName!, method, environment);
        info.RedirectStandardOutput = info.RedirectStandardError = false;
        return Process.Start(info) ?? throw new InvalidOperationException("the child process did not start");
    }

    private static ProcessStartInfo StartInfo(string type, string method, IEnumerable<(string Name, string? Value)> environment)
    {
        var info = new ProcessStartInfo(DotnetHost(), new[] { "exec", Assembly.GetExecutingAssembly().Location, ChildProgram.Verb, type, method })
        {
            WorkingDirectory = AppContext.BaseDirectory,
        };
        // The parent's own choices must not leak in: each child starts from the defaults plus what the test sets.
        info.Environment.Remove(OneDnn.PolicyVariable);
        info.Environment.Remove(OneDnn.IsaVariable);
        return WithEnvironment(info, environment);
    }

    /// <summary>Sets each variable of <paramref name="environment"/> on <paramref name="info"/>; a null value removes it.</summary>
    internal static ProcessStartInfo WithEnvironment(ProcessStartInfo info, IEnumerable<(string Name, string? Value)> environment)
    {
        foreach (var (name, value) in environment)
        {
            if (value is null) info.Environment.Remove(name);
            else info.Environment[name] = value;
        }
        return info;
    }

    private static string Tail(string text) => text.Length <= 4000 ? text : "…" + text[^4000..];

    /// <summary>The dotnet host that runs this test process (for children started with <c>dotnet exec</c>).</summary>
    internal static string DotnetHost()
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

/// <summary>
/// As the test assembly loads, before any test computes a convolution: libtorch's C++ warnings quieted (NNPACK's,
/// once per convolution on some CPUs, in the tests and in every child they start) and the oneDNN check run.
/// </summary>
internal static class OneDnnAtLoad
{
    [ModuleInitializer]
    internal static void Check()
    {
        LibTorchLog.QuietUnlessSet();
        OneDnn.EnsureChecked();
    }
}
