using System;
using System.IO;
using System.Linq;

namespace ResNetGen.Generator.Tests.Infrastructure;

/// <summary>This process's memory as Linux counts it: resident now, and the peak since the last reset.</summary>
public static class Footprint
{
    /// <summary>Starts a new peak at the present resident size (writing 5 to clear_refs resets VmHWM).</summary>
    public static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    /// <summary>The peak resident size since the last <see cref="ResetPeak"/>, in bytes.</summary>
    public static long Peak() => Status("VmHWM");

    /// <summary>The resident size now, in bytes.</summary>
    public static long Resident() => Status("VmRSS");

    private static long Status(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
