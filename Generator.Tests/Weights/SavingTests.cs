using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using ResNetGen.Generator.Tests.Infrastructure;
using TorchSharp;
using Xunit;

namespace ResNetGen.Generator.Tests.Weights;

/// <summary>Saves replace a file whole, keep what the file was (mode, owner, link), and leave nothing behind.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class SavingTests : IDisposable
{
    private readonly WeightTestKit _kit = new();

    public void Dispose() => _kit.Dispose();

    [DllImport("libc", SetLastError = true)]
    private static extern int chown(string path, uint uid, uint gid);

    [DllImport("libc")]
    private static extern uint geteuid();

    private static void SaveTiny(string path)
    {
        using var network = new TinyResNet();
        Safetensors.Save(network, path);
    }

    private string[] Names() => Directory.GetFileSystemEntries(_kit.Folder).Select(Path.GetFileName).OrderBy(n => n).ToArray()!;

    [Fact]
    public void Saving_over_a_file_keeps_its_mode_and_owner()
    {
        var path = _kit.PathOf("private.safetensors");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        // As root the file is given to nobody (65534) first, so keeping the owner is something the save must do.
        var owner = geteuid() == 0 ? 65534u : geteuid();
        Assert.Equal(0, chown(path, owner, owner));

        SaveTiny(path);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        var stat = Posix.Stat(path)!.Value;
        Assert.Equal((owner, owner), (stat.Uid, stat.Gid));
        Assert.Equal(new[] { "private.safetensors" }, Names());
        Assert.NotEmpty(Safetensors.Read(path));
    }

    [Fact]
    public void Saving_through_a_link_replaces_its_target_and_keeps_the_link()
    {
        Directory.CreateDirectory(_kit.PathOf("store"));
        var target = _kit.PathOf("store/model.safetensors");
        File.WriteAllText(target, "old");
        var link = _kit.PathOf("current.safetensors");
        File.CreateSymbolicLink(link, "store/model.safetensors");

        SaveTiny(link);

        Assert.Equal("store/model.safetensors", new FileInfo(link).LinkTarget);
        Assert.NotEmpty(Safetensors.Read(target));
        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(_kit.PathOf("store")).Select(Path.GetFileName));

        // A dangling link names the file to create.
        var dangling = _kit.PathOf("next.safetensors");
        File.CreateSymbolicLink(dangling, "store/next.safetensors");
        SaveTiny(dangling);
        Assert.True(File.Exists(_kit.PathOf("store/next.safetensors")));
        Assert.NotNull(new FileInfo(dangling).LinkTarget);
    }

    [Fact]
    public void The_data_reaches_the_disk_before_the_rename_and_the_rename_after()
    {
        var steps = new List<string>();
        AtomicFile.Observer = steps.Add;
        try
        {
            SaveTiny(_kit.PathOf("durable.safetensors"));
        }
        finally
        {
            AtomicFile.Observer = null;
        }
        Assert.Equal(new[] { "sync file", "rename", "sync folder" }, steps);
    }

    [Fact]
    public void A_failed_save_leaves_the_old_file_and_nothing_else()
    {
        var path = _kit.PathOf("keep.safetensors");
        SaveTiny(path);
        var before = File.ReadAllBytes(path);
        var tensors = new Dictionary<string, torch.Tensor> { ["a"] = torch.ones(4), ["b"] = torch.ones(4, dtype: torch.complex64) };
        Assert.Throws<ArgumentException>(() => Safetensors.Write(path, tensors)); // refused before writing
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[1 << 20]);
            throw new InvalidOperationException("disk full");
        }));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "keep.safetensors" }, Names());
    }

    [Fact]
    public void A_save_killed_halfway_leaves_the_old_file_and_nothing_else()
    {
        var path = _kit.PathOf("model.safetensors");
        SaveTiny(path);
        var before = File.ReadAllBytes(path);
        using var child = Isolated.Launch<SavingTests>(nameof(HalfASave), ("RESNETGEN_TEST_FILE", path));
        var ready = path + ".halfway";
        var watch = Stopwatch.StartNew();
        while (!File.Exists(ready) && !child.HasExited && watch.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(50);
        Assert.True(File.Exists(ready), "the child never got halfway through its save");
        child.Kill(); // SIGKILL: no handler, no finally block runs
        child.WaitForExit();
        File.Delete(ready);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "model.safetensors" }, Names());
    }

    /// <summary>The child of the test above: writes 8 MiB of a save, says so, and waits to be killed.</summary>
    internal static void HalfASave()
    {
        var path = Environment.GetEnvironmentVariable("RESNETGEN_TEST_FILE")!;
        AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[8 << 20]);
            stream.Flush();
            File.WriteAllText(path + ".halfway", "");
            Thread.Sleep(TimeSpan.FromMinutes(2));
        });
    }
}
