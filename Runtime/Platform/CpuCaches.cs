using System.Collections.Generic;
using System.Linq;
using System.Globalization;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace ResNetGen;

/// <summary>
/// What the processor says about itself through CPUID: its name and its cache description, the input oneDNN sizes
/// its convolution kernels by. Off x86 nothing is read and the description counts as complete.
/// </summary>
public static class CpuCaches
{
    /// <summary>The processor's vendor string (<c>AuthenticAMD</c>, <c>GenuineIntel</c>), or null off x86.</summary>
    public static string? Vendor
    {
        get
        {
            if (!X86Base.IsSupported) return null;
            var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
            var bytes = new List<byte>();
            foreach (var register in new[] { ebx, edx, ecx })
            {
                for (var i = 0; i < 4; i++) bytes.Add((byte)(register >> (8 * i)));
            }
            return Encoding.ASCII.GetString(bytes.ToArray());
        }
    }

    /// <summary>The processor's brand string and family (<c>AMD EPYC (family 26, model 2)</c>), or null off x86.</summary>
    public static string? Model
    {
        get
        {
            if (!X86Base.IsSupported) return null;
            var brand = new StringBuilder();
            if ((uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax >= 0x80000004)
            {
                for (var leaf = 0x80000002u; leaf <= 0x80000004u; leaf++)
                {
                    var (a, b, c, d) = X86Base.CpuId(unchecked((int)leaf), 0);
                    foreach (var register in new[] { a, b, c, d })
                    {
                        for (var i = 0; i < 4; i++) brand.Append((char)(byte)(register >> (8 * i)));
                    }
                }
            }
            var eax = X86Base.CpuId(1, 0).Eax;
            var family = (eax >> 8) & 0xf;
            var model = (eax >> 4) & 0xf;
            if (family == 0xf) family += (eax >> 20) & 0xff;
            if (family >= 6) model += ((eax >> 16) & 0xf) << 4;
            return string.Format(CultureInfo.InvariantCulture, "{0} (family {1}, model {2})", brand.ToString().TrimEnd('\0', ' '), family, model);
        }
    }

    /// <summary>
    /// The vector and matrix extensions that decide which low-precision kernels libtorch's oneDNN can run, as CPUID
    /// announces them: <c>AVX2</c>, <c>AVX-512</c>, <c>AVX512-VNNI</c>, <c>AVX512-BF16</c>, <c>AVX512-FP16</c>,
    /// <c>AVX-VNNI</c>, <c>AMX-BF16</c>, <c>AMX-FP16</c>, <c>AMX-INT8</c> (empty off x86). A speed figure names them: a
    /// bfloat16 or int8 result from one CPU says little about another. oneDNN may be limited below them
    /// (<c>ONEDNN_MAX_CPU_ISA</c>, see <see cref="OneDnn"/>).
    /// </summary>
    public static IReadOnlyList<string> Features
    {
        get
        {
            var result = new List<string>();
            if (!X86Base.IsSupported || (uint)X86Base.CpuId(0, 0).Eax < 7) return result;
            var (_, ebx, ecx, edx) = X86Base.CpuId(7, 0);
            var sub1 = (uint)X86Base.CpuId(7, 0).Eax >= 1 ? X86Base.CpuId(7, 1).Eax : 0;
            void Add(bool present, string name)
            {
                if (present) result.Add(name);
            }
            Add((ebx & (1 << 5)) != 0, "AVX2");
            Add((ebx & (1 << 16)) != 0, "AVX-512");
            Add((ecx & (1 << 11)) != 0, "AVX512-VNNI");
            Add((sub1 & (1 << 5)) != 0, "AVX512-BF16");
            Add((edx & (1 << 23)) != 0, "AVX512-FP16");
            Add((sub1 & (1 << 4)) != 0, "AVX-VNNI");
            Add((edx & (1 << 22)) != 0, "AMX-BF16");
            Add((sub1 & (1 << 21)) != 0, "AMX-FP16");
            Add((edx & (1 << 25)) != 0, "AMX-INT8");
            return result;
        }
    }

    /// <summary>Whether the CPU has a bfloat16 multiply instruction oneDNN uses (AVX512-BF16 or AMX-BF16).</summary>
    public static bool HasBFloat16Arithmetic => Features.Any(f => f is "AVX512-BF16" or "AMX-BF16");

    /// <summary>Whether the CPU has a float16 multiply instruction oneDNN uses (AVX512-FP16 or AMX-FP16).</summary>
    public static bool HasFloat16Arithmetic => Features.Any(f => f is "AVX512-FP16" or "AMX-FP16");

    /// <summary>
    /// Whether the CPU multiplies and adds uint8 by int8 into int32 in one instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8).
    /// Without it an x86 CPU's u8×s8 path adds pairs in int16 with saturation, so int8 weights are kept within ±63.
    /// </summary>
    public static bool HasInt8DotProduct => Features.Any(f => f is "AVX512-VNNI" or "AVX-VNNI" or "AMX-INT8");

    /// <summary>The data and unified caches CPUID enumerates, e.g. <c>L1 48 KiB 12-way, L2 1024 KiB 16-way</c>.</summary>
    public static string Description
    {
        get
        {
            if (!X86Base.IsSupported) return "not x86: not read";
            var caches = Enumerate();
            var parts = new List<string>();
            foreach (var (level, bytes, ways) in caches)
                parts.Add(string.Format(CultureInfo.InvariantCulture, "L{0} {1} KiB {2}-way", level, bytes / 1024, ways));
            if (IsAmd)
            {
                var (_, _, ecx, edx) = X86Base.CpuId(unchecked((int)0x80000006), 0);
                parts.Add(string.Format(CultureInfo.InvariantCulture, "legacy leaf: L2 {0} KiB (associativity code {1}), L3 {2} KiB (associativity code {3})",
                    (uint)ecx >> 16, (ecx >> 12) & 0xf, ((uint)edx >> 18) * 512, (edx >> 12) & 0xf));
            }
            return caches.Count == 0 && parts.Count == 0 ? "none enumerated" : (caches.Count == 0 ? "no cache enumerated; " : "") + string.Join(", ", parts);
        }
    }

    /// <summary>
    /// Whether CPUID enumerates the data caches (AMD's leaf 0x8000001D where the CPU announces it, Intel's leaf 4),
    /// each with a size and an associativity. Some hypervisors announce the leaf and leave it empty, so the legacy leaf's
    /// "see leaf 0x8000001D" associativity resolves to nothing: oneDNN then sizes its kernels for a 0-way cache.
    /// </summary>
    public static bool DescriptionComplete()
    {
        if (!X86Base.IsSupported) return true;
        var caches = Enumerate();
        if (IsAmd)
        {
            var maxExtended = (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax;
            var topologyLeaf = maxExtended >= 0x8000001D && (X86Base.CpuId(unchecked((int)0x80000001), 0).Ecx & (1 << 22)) != 0;
            var (_, _, ecx, edx) = maxExtended >= 0x80000006 ? X86Base.CpuId(unchecked((int)0x80000006), 0) : (0, 0, 0, 0);
            var deferred = ((ecx >> 12) & 0xf) == 9 || ((edx >> 12) & 0xf) == 9; // "see leaf 0x8000001D"
            if ((topologyLeaf || deferred) && caches.Count == 0) return false;
        }
        else if (X86Base.CpuId(0, 0).Eax >= 4 && caches.Count == 0) return false;
        foreach (var (_, bytes, ways) in caches)
        {
            if (bytes <= 0 || ways <= 0) return false;
        }
        return true;
    }

    private static bool IsAmd => Vendor is "AuthenticAMD" or "HygonGenuine";

    /// <summary>Data and unified caches from the deterministic cache parameters leaf: level, size in bytes, ways.</summary>
    private static List<(int Level, long Bytes, long Ways)> Enumerate()
    {
        var result = new List<(int, long, long)>();
        var amd = IsAmd;
        var leaf = amd ? 0x8000001Du : 4u;
        var max = amd ? (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax : (uint)X86Base.CpuId(0, 0).Eax;
        if (max < leaf) return result;
        for (var sub = 0; sub < 16; sub++)
        {
            var (eax, ebx, ecx, _) = X86Base.CpuId(unchecked((int)leaf), sub);
            var type = eax & 0x1f;
            if (type == 0) break;
            if (type == 2) continue; // instruction cache
            var level = (eax >> 5) & 7;
            long ways = ((uint)ebx >> 22) + 1, partitions = ((ebx >> 12) & 0x3ff) + 1, line = (ebx & 0xfff) + 1, sets = (long)(uint)ecx + 1;
            result.Add((level, ways * partitions * line * sets, ways));
        }
        return result;
    }
}
