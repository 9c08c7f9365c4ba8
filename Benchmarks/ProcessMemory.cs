using System;
using System.Globalization;
using System.IO;

namespace ResNetGen.Benchmarks;

/// <summary>This process's memory as Linux counts it: resident now, and the peak since the last reset (bytes).</summary>
public static class ProcessMemory
{
    /// <summary>Starts a new peak at the present resident size (writing 5 to clear_refs resets VmHWM).</summary>
    public static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    /// <summary>The peak resident size since the last <see cref="ResetPeak"/>.</summary>
    public static long Peak() => Status("VmHWM");

    /// <summary>The resident size now.</summary>
    public static long Resident() => Status("VmRSS");

    private static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Substring(field.Length + 1).Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024; // kB
        }
        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }
}
