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
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets the peak (VmHWM) to the current resident size
        var baseline = Status("VmRSS");
        for (var i = 0; i < runs; i++) c.Run();
        var peak = Status("VmHWM");
        Console.WriteLine(FormattableString.Invariant($"peak-mb {(peak - baseline) / 1024.0:0.0}"));
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

    private static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Substring(field.Length + 1).Trim().Split(' ')[0], CultureInfo.InvariantCulture); // kB
        }
        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }
}
