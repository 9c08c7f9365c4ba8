using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using TorchSharp;

namespace ResNetGen;

/// <summary>
/// The libtorch a process runs on. TorchSharp's binding (<c>libLibTorchSharp.so</c>, in the TorchSharp package) loads
/// libtorch through the loader's ordinary search: from the program's folder where a backend package put it
/// (<c>libtorch-cpu-linux-x64</c>, <c>TorchSharp-cpu</c>, <c>TorchSharp-cuda-linux</c>), or from a folder that
/// <c>LD_LIBRARY_PATH</c> names (a PyTorch install's <c>torch/lib</c>, an unpacked libtorch zip).
/// </summary>
/// <remarks>
/// Generated constructors call <see cref="Ready"/> before TorchSharp's module constructor runs, so that a program without
/// a loadable libtorch stops at its first network with one <see cref="LibTorchNotFoundException"/> that names the fix,
/// instead of TorchSharp's raw <see cref="DllNotFoundException"/> (or its fallback, which copies the NuGet cache's
/// libtorch, about 478 MB, next to the program).
/// </remarks>
public static class LibTorch
{
    /// <summary>The first line of the exception a program without a loadable libtorch gets.</summary>
    public const string MissingMessage =
        "No loadable libtorch: ResNetGen's networks run on libtorch (libtorch.so), and this program has none next to it and none on the loader's path. " +
        "Reference a backend package (libtorch-cpu-linux-x64, or TorchSharp-cpu, or TorchSharp-cuda-linux for NVIDIA GPUs), " +
        "or set LD_LIBRARY_PATH to a folder that holds libtorch.so (a PyTorch install's torch/lib, an unpacked libtorch zip) and start the program again.";

    private static readonly object Gate = new();
    private static bool _loaded;
    private static LibTorchInfo? _info;

    /// <summary>
    /// For generated constructors: makes sure libtorch can be loaded (<see cref="EnsureLoadable"/>) and returns
    /// <paramref name="moduleName"/> for TorchSharp's module constructor.
    /// </summary>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public static string Ready(string moduleName)
    {
        EnsureLoadable();
        return moduleName;
    }

    /// <summary>
    /// Loads libtorch and TorchSharp's binding as TorchSharp does, by name (the program's folder, then the loader's search),
    /// once per process; nothing is copied anywhere.
    /// </summary>
    /// <exception cref="LibTorchNotFoundException">Neither loads: its first line is <see cref="MissingMessage"/>, the next the loader's own words.</exception>
    public static void EnsureLoadable()
    {
        if (_loaded) return;
        lock (Gate)
        {
            if (_loaded) return;
            var assembly = typeof(torch).Assembly;
            var problems = new List<string>();
            var torchCpu = TryLoad(LibraryName("torch_cpu"), assembly, problems);
            var binding = TryLoad("LibTorchSharp", assembly, problems);
            if (!binding) throw new LibTorchNotFoundException(torchCpu ? BindingMessage(problems) : MissingMessage, problems);
            _loaded = true;
        }
    }

    private static string LibraryName(string name) => RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? name : "lib" + name;

    private static bool TryLoad(string name, System.Reflection.Assembly assembly, List<string> problems)
    {
        try
        {
            NativeLibrary.Load(name, assembly, null);
            return true;
        }
        catch (DllNotFoundException e)
        {
            problems.Add(Condensed(name, e.Message));
            return false;
        }
        catch (BadImageFormatException e)
        {
            problems.Add(e.Message.ReplaceLineEndings(" "));
            return false;
        }
    }

    /// <summary>
    /// The loader's message in a few words: .NET lists every probed path; what matters is whether the library itself was
    /// not found, or was found and a library it needs (named without a folder, as dlopen reports it) was not.
    /// </summary>
    internal static string Condensed(string name, string message)
    {
        var text = message.ReplaceLineEndings(" ");
        var missing = System.Text.RegularExpressions.Regex.Matches(text, @"([^\s:]+): cannot open shared object file")
            .Select(m => m.Groups[1].Value).Where(f => !f.Contains('/')).Select(f => f + " (not found)");
        var broken = System.Text.RegularExpressions.Regex.Matches(text, @"([^\s:]+): (undefined symbol: \S+|version \S+ not found[^)]*\)|[^:]*ELF[^:]*)")
            .Select(m => $"{Path.GetFileName(m.Groups[1].Value)}: {m.Groups[2].Value.Trim()}");
        var reasons = missing.Concat(broken).Distinct().ToList();
        if (reasons.Count > 0) return $"{name} needs {string.Join(", ", reasons)}";
        return $"{name}: not found (in the program's folder, the runtime's, or on the loader's path)";
    }

    private static string BindingMessage(List<string> problems)
    {
        var missingDependency = problems.Any(p => p.Contains("libtorch", StringComparison.Ordinal) || p.Contains("libc10", StringComparison.Ordinal));
        return missingDependency
            ? MissingMessage
            : "libtorch was found, but TorchSharp's binding (libLibTorchSharp.so, from the TorchSharp package) does not load on it; the loader's words follow. " +
              "Where they name GLIBCXX, build through the ResNetGen package's targets (they mark that need weak) or install a newer libstdc++; " +
              "where they name a missing symbol, the libtorch is not the version the binding was built for (TorchSharp 0.107: libtorch 2.10).";
    }

    /// <summary>The libtorch this process loaded: where it is, its version and build. Loads it if need be.</summary>
    public static LibTorchInfo Describe()
    {
        lock (Gate)
        {
            if (_info is not null) return _info;
            EnsureLoadable();
            torch.InitializeDeviceType(DeviceType.CPU);
            var path = LoadedPath("libtorch_cpu.so") ?? LoadedPath("libtorch.so");
            var config = LibTorchNative.ShowConfig() ?? "";
            var folder = path is null ? null : Path.GetDirectoryName(path);
            var cudaVersion = BuildSetting(config, "CUDA_VERSION");
            var cudaBuild = (BuildSetting(config, "USE_CUDA") is { } useCuda && useCuda is "ON" or "1" or "TRUE")
                            || (folder is not null && File.Exists(Path.Combine(folder, "libtorch_cuda.so")));
            _info = new LibTorchInfo(path, BuildSetting(config, "TORCH_VERSION"), cudaBuild, string.IsNullOrEmpty(cudaVersion) ? null : cudaVersion,
                BuildSetting(config, "CUDNN_VERSION"), Source(folder));
            return _info;
        }
    }

    /// <summary>"KEY=value" from libtorch's build settings (at::show_config()), or null.</summary>
    internal static string? BuildSetting(string config, string key)
    {
        var marker = key + "=";
        var at = 0;
        while ((at = config.IndexOf(marker, at, StringComparison.Ordinal)) >= 0)
        {
            if (at == 0 || config[at - 1] is ' ' or ',' or '\n' or '\t')
            {
                var start = at + marker.Length;
                var end = start;
                while (end < config.Length && config[end] is not (',' or '\n' or '\r')) end++;
                return config[start..end].Trim();
            }
            at += marker.Length;
        }
        return null;
    }

    private static string Source(string? folder)
    {
        if (folder is null) return "not found among the process's mappings";
        var full = Path.GetFullPath(folder).TrimEnd('/');
        var app = Path.GetFullPath(AppContext.BaseDirectory).TrimEnd('/');
        if (full == app || full.StartsWith(app + "/runtimes/", StringComparison.Ordinal)) return "the program's folder (a backend package)";
        var paths = (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        if (paths.Any(p => Path.GetFullPath(p).TrimEnd('/') == full)) return "LD_LIBRARY_PATH";
        return "the loader's search";
    }

    /// <summary>The file a loaded library was mapped from (Linux: /proc/self/maps), or null.</summary>
    internal static string? LoadedPath(string fileName)
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return null;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                var slash = line.IndexOf('/');
                if (slash < 0) continue;
                var path = line[slash..];
                if (Path.GetFileName(path) == fileName) return path;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    /// <summary>
    /// The CUDA devices libtorch sees, described by the CUDA driver (name, memory, compute capability); empty where CUDA is
    /// not available to this libtorch.
    /// </summary>
    public static IReadOnlyList<CudaDeviceInfo> CudaDevices()
    {
        EnsureLoadable();
        if (!torch.cuda.is_available()) return Array.Empty<CudaDeviceInfo>();
        var count = torch.cuda.device_count();
        var devices = new List<CudaDeviceInfo>();
        var driver = CudaDriver.TryOpen();
        for (var i = 0; i < count; i++)
            devices.Add(driver?.Describe(i) ?? new CudaDeviceInfo(i, "(the CUDA driver's description is not readable)", 0, 0, 0));
        return devices;
    }

    /// <summary>
    /// Sets PyTorch's <c>torch.backends.cudnn.benchmark</c> for the process (cuDNN times its algorithms for each new
    /// convolution shape and keeps the fastest), which TorchSharp does not wrap; false where this libtorch does not export it.
    /// </summary>
    public static bool TrySetCuDnnBenchmark(bool enabled)
    {
        EnsureLoadable();
        return LibTorchNative.TrySetBenchmarkCuDnn(enabled);
    }

    /// <summary>cuDNN's version as the loaded library reports it (cudnnGetVersion, e.g. 91002 → "9.10.2"), or null.</summary>
    public static string? CuDnnVersion()
    {
        EnsureLoadable();
        if (!torch.cuda.is_available() || !torch.cuda.is_cudnn_available()) return null;
        var path = LoadedPathStartingWith("libcudnn.so");
        if (path is null || !NativeLibrary.TryLoad(path, out var handle)) return null;
        if (!NativeLibrary.TryGetExport(handle, "cudnnGetVersion", out var export)) return null;
        unsafe
        {
            var version = (long)((delegate* unmanaged<nuint>)export)();
            // cuDNN ≥ 9: major*10000 + minor*100 + patch; 8.x: major*1000 + minor*100 + patch.
            return version >= 10000 ? $"{version / 10000}.{version / 100 % 100}.{version % 100}" : $"{version / 1000}.{version / 100 % 10}.{version % 100}";
        }
    }

    private static string? LoadedPathStartingWith(string prefix)
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return null;
        try
        {
            return File.ReadLines("/proc/self/maps").Select(l => l.IndexOf('/') is var s and >= 0 ? l[s..] : null)
                .FirstOrDefault(p => p is not null && Path.GetFileName(p).StartsWith(prefix, StringComparison.Ordinal));
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The CUDA driver API (libcuda.so.1), for what TorchSharp does not say about a device.</summary>
    private sealed unsafe class CudaDriver
    {
        private readonly delegate* unmanaged<int*, int, int> _get;
        private readonly delegate* unmanaged<byte*, int, int, int> _name;
        private readonly delegate* unmanaged<nuint*, int, int> _memory;
        private readonly delegate* unmanaged<int*, int, int, int> _attribute;

        private CudaDriver(IntPtr handle)
        {
            _get = (delegate* unmanaged<int*, int, int>)NativeLibrary.GetExport(handle, "cuDeviceGet");
            _name = (delegate* unmanaged<byte*, int, int, int>)NativeLibrary.GetExport(handle, "cuDeviceGetName");
            _memory = (delegate* unmanaged<nuint*, int, int>)NativeLibrary.GetExport(handle, "cuDeviceTotalMem_v2");
            _attribute = (delegate* unmanaged<int*, int, int, int>)NativeLibrary.GetExport(handle, "cuDeviceGetAttribute");
        }

        public static CudaDriver? TryOpen()
        {
            if (!NativeLibrary.TryLoad(RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? "nvcuda.dll" : "libcuda.so.1", out var handle)) return null;
            try
            {
                var init = (delegate* unmanaged<uint, int>)NativeLibrary.GetExport(handle, "cuInit");
                return init(0) == 0 ? new CudaDriver(handle) : null;
            }
            catch (EntryPointNotFoundException)
            {
                return null;
            }
        }

        public CudaDeviceInfo? Describe(int index)
        {
            int device;
            if (_get(&device, index) != 0) return null;
            var name = stackalloc byte[256];
            nuint bytes;
            int major, minor;
            if (_name(name, 256, device) != 0 || _memory(&bytes, device) != 0) return null;
            // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76.
            if (_attribute(&major, 75, device) != 0 || _attribute(&minor, 76, device) != 0) return null;
            return new CudaDeviceInfo(index, Marshal.PtrToStringUTF8((IntPtr)name) ?? "", (long)bytes, major, minor);
        }
    }
}

/// <summary>Where the process's libtorch is and what it is.</summary>
/// <param name="Path">The file libtorch's CPU library was mapped from, or null where that is not readable.</param>
/// <param name="Version">libtorch's version from its build settings (TORCH_VERSION), e.g. "2.10.0".</param>
/// <param name="CudaBuild">Whether it is a CUDA build (its build settings say USE_CUDA, or libtorch_cuda.so lies beside it).</param>
/// <param name="CudaVersion">The CUDA it was built with, or null.</param>
/// <param name="CuDnnBuildVersion">The cuDNN it was built with, or null.</param>
/// <param name="Source">How it was found: the program's folder (a backend package), LD_LIBRARY_PATH, or the loader's search.</param>
public sealed record LibTorchInfo(string? Path, string? Version, bool CudaBuild, string? CudaVersion, string? CuDnnBuildVersion, string Source)
{
    /// <summary>One line, e.g. "2.10.0 CPU build, /app/libtorch_cpu.so (the program's folder (a backend package))".</summary>
    public override string ToString() =>
        $"{Version ?? "version not readable"} {(CudaBuild ? $"CUDA build{(CudaVersion is null ? "" : " (CUDA " + CudaVersion + (CuDnnBuildVersion is null ? "" : ", cuDNN " + CuDnnBuildVersion) + ")")}" : "CPU build")}, " +
        $"{Path ?? "path not readable"} ({Source})";
}

/// <summary>A CUDA device as its driver describes it.</summary>
/// <param name="Index">Its index (<c>cuda:Index</c>).</param>
/// <param name="Name">e.g. "NVIDIA H200".</param>
/// <param name="TotalMemory">Its memory in bytes.</param>
/// <param name="Major">Compute capability, major.</param>
/// <param name="Minor">Compute capability, minor.</param>
public sealed record CudaDeviceInfo(int Index, string Name, long TotalMemory, int Major, int Minor)
{
    /// <summary>e.g. "cuda:0 NVIDIA H200, 139.8 GiB, compute capability 9.0".</summary>
    public override string ToString() =>
        $"cuda:{Index} {Name}, {TotalMemory / (1024.0 * 1024 * 1024):0.0} GiB, compute capability {Major}.{Minor}";
}

/// <summary>
/// No libtorch could be loaded. The message's first line says what is missing and the fix (<see cref="LibTorch.MissingMessage"/>);
/// <see cref="LoaderMessages"/> are the loader's own words for each attempt.
/// </summary>
public sealed class LibTorchNotFoundException : DllNotFoundException
{
    /// <summary>Creates the exception.</summary>
    public LibTorchNotFoundException(string firstLine, IReadOnlyList<string> loaderMessages)
        : base(firstLine + (loaderMessages.Count == 0 ? "" : Environment.NewLine + "The loader said: " + string.Join("; ", loaderMessages)))
    {
        LoaderMessages = loaderMessages;
    }

    /// <summary>What the loader said for each library it was asked for.</summary>
    public IReadOnlyList<string> LoaderMessages { get; }
}
