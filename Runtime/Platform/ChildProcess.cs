using System;
using System.Diagnostics;
using System.Globalization;

namespace ResNetGen;

/// <summary>How a child process ended: its exit code, whether it was killed for running too long, and its output.</summary>
internal sealed record ChildExit(int ExitCode, bool TimedOut, string Output, string Error)
{
    /// <summary>The end in words: "killed by SIGFPE (signal 8, exit code 136)", "timed out after 120 s", "exit code 1".</summary>
    public string Describe(TimeSpan limit) =>
        TimedOut ? string.Format(CultureInfo.InvariantCulture, "timed out after {0:0} s", limit.TotalSeconds)
        : ExitCode is > 128 and < 160 ? string.Format(CultureInfo.InvariantCulture, "killed by {0} (signal {1}, exit code {2})", SignalName(ExitCode - 128), ExitCode - 128, ExitCode)
        : "exit code " + ExitCode.ToString(CultureInfo.InvariantCulture);

    private static string SignalName(int signal) => signal switch
    {
        4 => "SIGILL", 6 => "SIGABRT", 7 => "SIGBUS", 8 => "SIGFPE", 9 => "SIGKILL", 11 => "SIGSEGV",
        _ => "signal " + signal.ToString(CultureInfo.InvariantCulture),
    };
}

/// <summary>Runs a child process to its end, for work that may crash natively (the kernel probes, isolated tests).</summary>
internal static class ChildProcess
{
    /// <summary>
    /// Starts <paramref name="start"/> with its output captured and no crash dump, waits up to <paramref name="limit"/>
    /// (then kills it and its children), and returns how it ended.
    /// </summary>
    public static ChildExit Run(ProcessStartInfo start, TimeSpan limit)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        start.Environment["DOTNET_DbgEnableMiniDump"] = "0";
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        var finished = process.WaitForExit(limit);
        if (!finished) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        return new ChildExit(process.ExitCode, !finished, output.Result, error.Result);
    }
}
