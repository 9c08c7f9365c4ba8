using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;

namespace ResNetGen.Benchmarks;

/// <summary>Peak resident memory of a case above its set-up, measured in a process of its own.</summary>
internal static class MemoryProbe
{
    public static int Run(string name, int runs)
    {
        using var c = Case.Create(name);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        ProcessMemory.ResetPeak();
        var baseline = ProcessMemory.Resident();
        for (var i = 0; i < runs; i++) c.Run();
        var peak = ProcessMemory.Peak();
        Console.WriteLine(FormattableString.Invariant($"peak-mb {(peak - baseline) / (1024.0 * 1024):0.0}"));
        return 0;
    }

    public static double Spawn(string name, int runs)
    {
        var self = Environment.ProcessPath!;
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(typeof(MemoryProbe).Assembly.Location);
        foreach (var a in new[] { "--memory-probe", name, "--memory-runs", runs.ToString(CultureInfo.InvariantCulture) }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var text = process.StandardOutput.ReadToEnd();
        var errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("peak-mb ", StringComparison.Ordinal));
        if (process.ExitCode != 0 || line is null)
        {
            Console.Error.WriteLine($"memory probe for {name} failed (exit {process.ExitCode}): {errors}");
            return double.NaN;
        }
        return double.Parse(line.Substring(8), CultureInfo.InvariantCulture);
    }
}
