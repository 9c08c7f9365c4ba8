using System;
using System.IO;
using System.Linq;
using Xunit;

namespace ResNetGen.Generator.Tests.Packaging;

/// <summary>The build step that lets TorchSharp's native library load on a libstdc++ older than GCC 13's.</summary>
public class NativePatchTests
{
    private const string Version = "GLIBCXX_3.4.32";

    internal static string NuGetPackagesFolder() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    internal static string CacheCopy(string? packagesFolder = null) =>
        Path.Combine(packagesFolder ?? NuGetPackagesFolder(), "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    internal static ushort FlagsOf(string file) =>
        ElfVersionNeeds.Read(File.ReadAllBytes(file)).Single(v => v.Key == Version).Value;

    [Fact]
    public void Marking_weak_changes_exactly_that_need_and_nothing_else()
    {
        var original = File.ReadAllBytes(CacheCopy());
        var bytes = (byte[])original.Clone();
        var before = ElfVersionNeeds.Read(bytes);
        Assert.Contains(before, v => v.Key == Version);

        Assert.Equal(new[] { Version }, ElfVersionNeeds.MakeWeak(bytes, new[] { Version }));
        var after = ElfVersionNeeds.Read(bytes);
        Assert.Equal(before.Count, after.Count);
        for (var i = 0; i < before.Count; i++)
        {
            Assert.Equal(before[i].Key, after[i].Key);
            Assert.Equal(before[i].Key == Version ? (ushort)(before[i].Value | 2) : before[i].Value, after[i].Value);
        }
        Assert.Equal(1, original.Zip(bytes).Count(p => p.First != p.Second)); // the low byte of one vna_flags
        Assert.Empty(ElfVersionNeeds.MakeWeak(bytes, new[] { Version })); // idempotent
    }

    [Fact]
    public void Not_an_elf_file_is_refused_with_a_clear_error()
    {
        var error = Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(new byte[100]));
        Assert.Contains("not an ELF file", error.Message);
        var truncated = File.ReadAllBytes(CacheCopy()).Take(4096).ToArray();
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(truncated));
    }

    [Fact]
    public void The_build_output_copy_is_patched_where_needed_and_the_nuget_cache_is_not()
    {
        if (!OperatingSystem.IsLinux()) return; // the patch only exists for Linux builds
        var output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        var hostHasIt = ElfVersionNeeds.HostLibStdCxxHas(Version);
        Assert.Equal(hostHasIt ? 0 : 2, FlagsOf(output) & 2);
        Assert.Equal(0, FlagsOf(CacheCopy()) & 2);
    }

    [Fact]
    public void A_hard_link_into_the_cache_is_replaced_never_written_through()
    {
        if (!OperatingSystem.IsLinux()) return; // the patch only exists for Linux builds
        var folder = Directory.CreateTempSubdirectory("resnetgen-patch-").FullName;
        try
        {
            var cache = Path.Combine(folder, "cache.so");
            var output = Path.Combine(folder, "output.so");
            File.Copy(CacheCopy(), cache);
            using (var ln = System.Diagnostics.Process.Start("ln", new[] { cache, output })!) ln.WaitForExit();
            var task = new PatchLibTorchSharp { Libraries = new[] { new Microsoft.Build.Utilities.TaskItem(output) }, BuildEngine = new QuietEngine() };
            Assert.True(task.Execute());
            Assert.Equal(0, FlagsOf(cache) & 2); // the linked "cache" file is as it was
            Assert.Equal(ElfVersionNeeds.HostLibStdCxxHas(Version) ? 0 : 2, FlagsOf(output) & 2);
            Assert.Equal(new[] { "cache.so", "output.so" }, Directory.GetFiles(folder).Select(Path.GetFileName).OrderBy(n => n));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private sealed class QuietEngine : Microsoft.Build.Framework.IBuildEngine
    {
        public bool ContinueOnError => false;
        public int LineNumberOfTaskNode => 0;
        public int ColumnNumberOfTaskNode => 0;
        public string ProjectFileOfTaskNode => "";
        public bool BuildProjectFile(string projectFileName, string[] targetNames, System.Collections.IDictionary globalProperties, System.Collections.IDictionary targetOutputs) => false;
        public void LogCustomEvent(Microsoft.Build.Framework.CustomBuildEventArgs e) { }
        public void LogErrorEvent(Microsoft.Build.Framework.BuildErrorEventArgs e) => throw new Xunit.Sdk.XunitException(e.Message);
        public void LogMessageEvent(Microsoft.Build.Framework.BuildMessageEventArgs e) { }
        public void LogWarningEvent(Microsoft.Build.Framework.BuildWarningEventArgs e) => throw new Xunit.Sdk.XunitException(e.Message);
    }
}
