// Compiled by MSBuild's RoslynCodeTaskFactory from ResNetGen.targets (no task assembly ships in the package).
//
// libLibTorchSharp.so (TorchSharp 0.107) records a need for the libstdc++ version GLIBCXX_3.4.32 (GCC 13),
// which older distributions (Debian 12 stops at GLIBCXX_3.4.30) do not have, so the loader refuses it. The
// only symbol behind that version is std::ios_base_library_init(), a marker without a relocation. Setting the
// weak flag (VER_FLG_WEAK) on that one entry of .gnu.version_r turns the hard failure into nothing at all.
// The task patches the copy in the build output only, writes through a temporary file and a rename (so a
// hard link into the NuGet cache is never written through), and does nothing where the host has the version.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

public sealed class PatchLibTorchSharp : Microsoft.Build.Utilities.Task
{
    /// <summary>The libLibTorchSharp.so copies in the build output.</summary>
    [Microsoft.Build.Framework.Required]
    public Microsoft.Build.Framework.ITaskItem[] Libraries { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

    /// <summary>The versions that may be made weak; the task refuses any other.</summary>
    public string Versions { get; set; } = "GLIBCXX_3.4.32";

    public override bool Execute()
    {
        var candidates = Versions.Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries);
        var missing = new List<string>();
        foreach (var version in candidates)
        {
            if (!ElfVersionNeeds.HostLibStdCxxHas(version)) missing.Add(version.Trim());
        }
        if (missing.Count == 0)
        {
            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "ResNetGen: the host libstdc++ has every version libLibTorchSharp.so needs; nothing to patch.");
            return true;
        }
        foreach (var item in Libraries)
        {
            var path = item.ItemSpec;
            if (!File.Exists(path)) continue;
            try
            {
                var bytes = File.ReadAllBytes(path);
                var changed = ElfVersionNeeds.MakeWeak(bytes, missing);
                if (changed.Count == 0) continue;
                // A new file renamed over the old one: the build output's copy may be a hard link into the NuGet
                // cache, and writing into it (File.Copy with overwrite opens and truncates it) would change the cache.
                var temp = path + ".resnetgen-tmp";
                try
                {
                    File.WriteAllBytes(temp, bytes);
                    File.Replace(temp, path, null);
                }
                finally
                {
                    if (File.Exists(temp)) File.Delete(temp);
                }
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal,
                    "ResNetGen: marked {0} weak in {1} (the host libstdc++ lacks it).", string.Join(", ", changed), path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is InvalidDataException)
            {
                Log.LogWarning("ResNetGen: could not patch {0}: {1}. TorchSharp may fail to load its native library on this machine; install a libstdc++ with {2} or patch the file by hand.",
                    path, e.Message, string.Join(", ", missing));
            }
        }
        return !Log.HasLoggedErrors;
    }
}

/// <summary>Reads and edits the version-needs table (.gnu.version_r) of a 64-bit little-endian ELF file.</summary>
public static class ElfVersionNeeds
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlagWeak = 0x2;

    static readonly string[] LibStdCxxPlaces =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
    };

    /// <summary>True where a system libstdc++ defines <paramref name="version"/>, or where none is found to ask.</summary>
    public static bool HostLibStdCxxHas(string version)
    {
        if (Environment.OSVersion.Platform != PlatformID.Unix) return true;
        var needle = Encoding.ASCII.GetBytes(version + "\0");
        var sawOne = false;
        foreach (var place in LibStdCxxPlaces)
        {
            if (!File.Exists(place)) continue;
            sawOne = true;
            if (IndexOf(File.ReadAllBytes(place), needle) >= 0) return true;
        }
        return !sawOne;
    }

    /// <summary>The version names that <paramref name="elf"/> needs, with their flags.</summary>
    public static List<KeyValuePair<string, ushort>> Read(byte[] elf)
    {
        var result = new List<KeyValuePair<string, ushort>>();
        Walk(elf, (name, flagsOffset) => result.Add(new KeyValuePair<string, ushort>(name, U16(elf, flagsOffset))));
        return result;
    }

    /// <summary>Sets the weak flag on each needed version named in <paramref name="versions"/>; returns those changed.</summary>
    public static List<string> MakeWeak(byte[] elf, ICollection<string> versions)
    {
        var changed = new List<string>();
        Walk(elf, (name, flagsOffset) =>
        {
            if (!versions.Contains(name)) return;
            var flags = U16(elf, flagsOffset);
            if ((flags & VerFlagWeak) != 0) return;
            flags |= VerFlagWeak;
            elf[flagsOffset] = (byte)flags;
            elf[flagsOffset + 1] = (byte)(flags >> 8);
            changed.Add(name);
        });
        return changed;
    }

    static void Walk(byte[] elf, Action<string, int> onAux)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("not a 64-bit little-endian ELF file");
        var shoff = checked((int)U64(elf, 0x28));
        int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
        Need(elf, shoff, shentsize * shnum);
        for (var i = 0; i < shnum; i++)
        {
            var sh = shoff + i * shentsize;
            if (U32(elf, sh + 4) != ShtGnuVerneed) continue;
            var offset = checked((int)U64(elf, sh + 0x18));
            var strtab = shoff + (int)U32(elf, sh + 0x28) * shentsize;
            var strOffset = checked((int)U64(elf, strtab + 0x18));
            var count = (int)U32(elf, sh + 0x2C);
            var need = offset;
            for (var n = 0; n < count; n++)
            {
                Need(elf, need, 16);
                int cnt = U16(elf, need + 2);
                var aux = need + (int)U32(elf, need + 8);
                for (var a = 0; a < cnt; a++)
                {
                    Need(elf, aux, 16);
                    onAux(CString(elf, strOffset + (int)U32(elf, aux + 8)), aux + 4); // vna_hash (4 bytes), then vna_flags
                    aux += (int)U32(elf, aux + 12);
                }
                need += (int)U32(elf, need + 12);
            }
        }
    }

    static void Need(byte[] elf, int offset, int length)
    {
        if (offset < 0 || length < 0 || offset + length > elf.Length) throw new InvalidDataException("ELF table runs past the end of the file");
    }

    static string CString(byte[] b, int offset)
    {
        Need(b, offset, 1);
        var end = offset;
        while (end < b.Length && b[end] != 0) end++;
        return Encoding.ASCII.GetString(b, offset, end - offset);
    }

    static ushort U16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);
    static uint U32(byte[] b, int o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
    static ulong U64(byte[] b, int o) => U32(b, o) | (ulong)U32(b, o + 4) << 32;

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (var i = 0; i <= haystack.Length - needle.Length; i++)
        {
            var j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }
}
