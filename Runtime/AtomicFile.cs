using System;
using System.IO;

namespace ResNetGen;

/// <summary>Whole-or-nothing file writes, shared by the weight and ONNX writers.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// Lets <paramref name="write"/> fill a new file beside <paramref name="path"/>, then renames it over
    /// <paramref name="path"/>: a failed or interrupted write leaves the old file (or none) and no partial one.
    /// Returns the full path written.
    /// </summary>
    public static string Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N").Substring(0, 8);
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20)) write(file);
            File.Move(temp, full, overwrite: true);
            return full;
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
