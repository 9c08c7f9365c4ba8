using System;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ResNetGen;

/// <summary>
/// Whole-or-nothing file writes, shared by the weight and ONNX writers. The new content is written beside the
/// target, flushed to disk, given the target's mode and owner (where permitted), and renamed over it; the folder is
/// then flushed so that the rename survives a power cut. A symbolic link is written through: its final target is
/// replaced and the link stays. On Linux the new file has no name until it is complete, so a failed, interrupted or
/// killed write leaves nothing behind; elsewhere a named temporary file is removed on failure.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Test seam: told each durable step ("sync file", "rename", "sync folder") as it happens.</summary>
    internal static Action<string>? Observer;

    /// <summary>
    /// Lets <paramref name="write"/> fill the new content of <paramref name="path"/>, then puts it in place.
    /// Returns the full path of the file written (the link's target when <paramref name="path"/> is a link).
    /// </summary>
    public static string Write(string path, Action<Stream> write)
    {
        var target = FinalTarget(Path.GetFullPath(path));
        var folder = Path.GetDirectoryName(target)!;
        var existing = Posix.Supported ? Posix.Stat(target) : null;
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"cannot write {target}: the folder {folder} does not exist");
        var temp = TempName(target);
        // Unnamed where the system can (named only by the link below, once complete); a named temporary file elsewhere.
        var handle = Posix.CreateUnnamed(folder);
        try
        {
            using (var file = handle is not null ? new FileStream(handle, FileAccess.Write, 1 << 20) : CreateNamed(temp, target))
            {
                write(file);
                file.Flush();
                if (existing is { } owner) Posix.Adopt(file.SafeFileHandle, owner);
                else if (!OperatingSystem.IsWindows() && File.Exists(target)) File.SetUnixFileMode(file.SafeFileHandle, File.GetUnixFileMode(target));
                file.Flush(flushToDisk: true);
                Observer?.Invoke("sync file");
                if (handle is not null) Posix.Link(handle, temp);
            }
            File.Move(temp, target, overwrite: true);
            Observer?.Invoke("rename");
        }
        finally
        {
            handle?.Dispose();
            if (File.Exists(temp)) File.Delete(temp);
        }
        if (Posix.Supported)
        {
            Posix.SyncFolder(folder);
            Observer?.Invoke("sync folder");
        }
        return target;
    }

    /// <summary>The file a path finally names, following symbolic links (a dangling link names the file to create).</summary>
    internal static string FinalTarget(string full)
    {
        var info = new FileInfo(full);
        if (info.LinkTarget is null) return full;
        return info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
    }

    /// <summary>The named temporary file; a failure to create it is told in terms of the file the user asked for.</summary>
    private static FileStream CreateNamed(string temp, string target)
    {
        try
        {
            return new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new UnauthorizedAccessException($"cannot write {target}: no permission to create files in {Path.GetDirectoryName(target)}", e);
        }
        catch (IOException e)
        {
            throw new IOException($"cannot write {target}: {e.Message.Replace(temp, target, StringComparison.Ordinal)}", e);
        }
    }

    private static string TempName(string target) =>
        Path.Combine(Path.GetDirectoryName(target)!, "." + Path.GetFileName(target) + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp");
}

/// <summary>The few POSIX calls .NET does not expose: unnamed files, links to them, owners, folder syncs.</summary>
internal static class Posix
{
    /// <summary>A file's mode and owner.</summary>
    internal readonly record struct Owner(uint Mode, uint Uid, uint Gid);

    private const int AtFdCwd = -100;
    private const int AtSymlinkFollow = 0x400;
    private const int OWriteOnly = 0x1;
    private const int OCloseOnExec = 0x80000;
    private const int ODirectory = 0x10000;
    private const int OTmpFile = 0x400000 | ODirectory; // x86-64 values
    private const uint StatxMode = 0x2, StatxUid = 0x8, StatxGid = 0x10;

    /// <summary>Owners, modes and folder syncs through these calls: Linux (statx is Linux's).</summary>
    public static bool Supported => OperatingSystem.IsLinux();

    /// <summary>Unnamed files: Linux on x86-64 (the flag values differ by architecture), with /proc to link them.</summary>
    private static bool UnnamedSupported =>
        OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 && Directory.Exists("/proc/self/fd");

    [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, uint mode);
    [DllImport("libc", SetLastError = true)] private static extern int linkat(int oldDir, string oldPath, int newDir, string newPath, int flags);
    [DllImport("libc", SetLastError = true)] private static extern int fchown(SafeFileHandle fd, uint uid, uint gid);
    [DllImport("libc", SetLastError = true)] private static extern int fchmod(SafeFileHandle fd, uint mode);
    [DllImport("libc", SetLastError = true)] private static extern int fsync(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
    [DllImport("libc", SetLastError = true)] private static extern unsafe int statx(int dir, string path, int flags, uint mask, byte* buffer);

    /// <summary>Creates a file with no name in <paramref name="folder"/> (Linux's O_TMPFILE), or returns null if this system cannot.</summary>
    public static SafeFileHandle? CreateUnnamed(string folder)
    {
        if (!UnnamedSupported) return null;
        var fd = open(folder, OTmpFile | OWriteOnly | OCloseOnExec, Convert.ToUInt32("666", 8)); // the umask applies, as for any new file
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true); // a file system that cannot: a named file instead
    }

    /// <summary>Gives the unnamed file behind <paramref name="handle"/> the name <paramref name="path"/>.</summary>
    public static void Link(SafeFileHandle handle, string path)
    {
        if (linkat(AtFdCwd, $"/proc/self/fd/{handle.DangerousGetHandle()}", AtFdCwd, path, AtSymlinkFollow) != 0)
            throw new IOException($"cannot name the new file '{path}': {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>The mode and owner of <paramref name="path"/>, or null if it does not exist.</summary>
    public static unsafe Owner? Stat(string path)
    {
        var buffer = stackalloc byte[256];
        if (statx(AtFdCwd, path, 0, StatxMode | StatxUid | StatxGid, buffer) != 0) return null;
        return new Owner(*(ushort*)(buffer + 28) & 0xfffu, *(uint*)(buffer + 20), *(uint*)(buffer + 24));
    }

    /// <summary>Gives the file <paramref name="owner"/>'s mode and, where this process may, its owner and group.</summary>
    public static void Adopt(SafeFileHandle handle, Owner owner)
    {
        fchown(handle, owner.Uid, owner.Gid); // refused unless privileged or already the owner: then the saver owns it, as any new file
        if (fchmod(handle, owner.Mode) != 0)
            throw new IOException($"cannot give the new file mode {Convert.ToString(owner.Mode, 8)}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>Flushes a folder's entries (a rename in it) to disk; file systems that cannot are left as they are.</summary>
    public static void SyncFolder(string folder)
    {
        var fd = open(folder, 0, 0); // read-only: enough to sync a folder
        if (fd < 0) return;
        fsync(fd);
        close(fd);
    }
}
